#!/bin/sh
# Runs forever and forks a grandchild that runs forever; reports the grandchild's pid.
sleep 1000 &
echo "grandchild=$!" >&2
while :; do sleep 1; done
