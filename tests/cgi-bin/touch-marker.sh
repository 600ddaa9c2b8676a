#!/bin/sh
# Positive control for the confinement tests: creates the marker named by MARKER_FILE.
: > "$MARKER_FILE"
printf 'Content-Type: text/plain\n\ntouched\n'
