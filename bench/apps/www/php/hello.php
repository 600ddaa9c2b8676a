<?php
// The PHP hello: the same script behind php-fpm and behind fcgikit.spawn + php-cgi.
header("Content-Type: text/plain");
echo "Hello, world!\n";
