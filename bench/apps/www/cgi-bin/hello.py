#!/usr/bin/python3
# A plain Python CGI hello: the smallest Python CGI program.
import sys

sys.stdout.write("Content-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n")
