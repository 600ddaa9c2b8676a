#!/usr/bin/perl
# A legacy Perl CGI script (core Perl only, no CGI.pm needed).
use strict;
use warnings;

my %param;
for my $pair (split /[&;]/, $ENV{QUERY_STRING} // '') {
    my ($name, $value) = map { my $s = $_ // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }
                         split /=/, $pair, 2;
    $param{$name} = $value;
}
my $who = $param{name} // 'world';
$who =~ s/[<>&"]//g;

print "Content-Type: text/html; charset=utf-8\r\n\r\n";
print "<!doctype html>\n<title>hello.pl</title>\n";
print "<h1>Hello, $who, from Perl $^V</h1>\n";
print "<p>Try <a href=\"?name=Larry\">?name=Larry</a>.</p>\n";
