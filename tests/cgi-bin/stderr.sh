#!/bin/sh
# Writes to stderr (the gateway tags each line with the script) and answers.
echo "first complaint" >&2
echo "second complaint" >&2
printf 'Content-Type: text/plain\n\nok\n'
