#!/bin/sh
# A shell CGI hello.
printf 'Content-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n'
