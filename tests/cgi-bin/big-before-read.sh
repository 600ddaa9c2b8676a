#!/bin/sh
# Prints N lines of 64 bytes (query string, default 4096: 256 KiB, more than a pipe
# holds) BEFORE it reads its body, then counts the body.
n=${QUERY_STRING:-4096}
printf 'Content-Type: text/plain\n\n'
i=0
while [ "$i" -lt "$n" ]; do
    printf '%063d\n' "$i"
    i=$((i + 1))
done
printf 'body=%s\n' "$(wc -c | tr -d ' ')"
