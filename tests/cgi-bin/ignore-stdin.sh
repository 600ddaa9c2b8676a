#!/bin/sh
# Answers without reading its request body.
printf 'Content-Type: text/plain\n\nI did not read your %s bytes\n' "$CONTENT_LENGTH"
