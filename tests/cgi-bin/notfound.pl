#!/usr/bin/env perl
# A program that chooses its status.
print "Status: 404 Not Found\r\n";
print "Content-Type: text/plain\r\n\r\n";
print "no such thing here\n";
