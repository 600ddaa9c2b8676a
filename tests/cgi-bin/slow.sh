#!/bin/sh
# Takes SLOW seconds (query string, default 2) to answer.
sleep "${QUERY_STRING:-2}"
printf 'Content-Type: text/plain\n\nslept\n'
