#!/usr/bin/env perl
# GET with a query string, in Perl: decodes name=... and greets.
use strict;
use warnings;
my %form;
for my $pair (split /[&;]/, $ENV{QUERY_STRING} // '') {
    my ($k, $v) = split /=/, $pair, 2;
    next unless defined $k;
    for ($k, $v) { next unless defined; tr/+/ /; s/%([0-9A-Fa-f]{2})/chr hex $1/ge; }
    $form{$k} = $v // '';
}
my $name = $form{name} // 'world';
print "Content-Type: text/plain; charset=utf-8\n\n";
print "hello, $name\n";
print "method=$ENV{REQUEST_METHOD}\n";
