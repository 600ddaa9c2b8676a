#!/bin/sh
# Non-parsed-header program: prints its own HTTP status line.
printf 'HTTP/1.1 202 Accepted\r\n'
printf 'Content-Type: text/plain\r\n'
printf 'X-NPH: yes\r\n\r\n'
printf 'nph body\n'
