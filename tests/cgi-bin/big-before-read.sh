#!/bin/sh
# Prints 256 KiB (more than a pipe holds) BEFORE it reads its body, then counts the body.
printf 'Content-Type: text/plain\n\n'
i=0
while [ $i -lt 4096 ]; do
    printf '%063d\n' "$i"
    i=$((i + 1))
done
printf 'body=%s\n' "$(wc -c | tr -d ' ')"
