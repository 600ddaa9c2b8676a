#!/bin/sh
# A legacy shell CGI script: POSIX sh only (no bashisms), runs under dash or busybox.
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Hello from a shell CGI script.\n'
printf 'method: %s\n' "${REQUEST_METHOD:-}"
printf 'query: %s\n' "${QUERY_STRING:-}"
printf 'script: %s\n' "${SCRIPT_NAME:-}"
printf 'gateway: %s\n' "${GATEWAY_INTERFACE:-}"
printf 'server: %s\n' "${SERVER_SOFTWARE:-}"
