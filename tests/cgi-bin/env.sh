#!/bin/sh
# GET with a query string: echoes the CGI variables a script relies on.
printf 'Content-Type: text/plain\r\n'
printf 'X-Script: env.sh\r\n\r\n'
printf 'method=%s\n' "$REQUEST_METHOD"
printf 'query=%s\n' "$QUERY_STRING"
printf 'script_name=%s\n' "$SCRIPT_NAME"
printf 'path_info=%s\n' "$PATH_INFO"
printf 'gateway=%s\n' "$GATEWAY_INTERFACE"
printf 'server_protocol=%s\n' "$SERVER_PROTOCOL"
printf 'remote_addr=%s\n' "$REMOTE_ADDR"
printf 'http_x_test=%s\n' "$HTTP_X_TEST"
printf 'app_setting=%s\n' "$APP_SETTING"
