#!/bin/sh
# Not a CGI response: no header block.
echo "<html>just html</html>"
