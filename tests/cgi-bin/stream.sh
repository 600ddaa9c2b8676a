#!/bin/sh
# Streams a line every 0.2 s until it is killed; the first line names its pid.
printf 'Content-Type: text/plain\n\n'
echo "pid=$$"
while :; do
    echo tick
    sleep 0.2
done
