#!/bin/sh
# Client redirect: an absolute URI in Location, no Status (the gateway makes it 302).
printf 'Location: http://example.com/moved?from=cgi\r\n\r\n'
