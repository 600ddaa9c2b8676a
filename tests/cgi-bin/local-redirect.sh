#!/bin/sh
# Local redirect (RFC 3875 6.2.2): a path alone; the server serves it internally.
printf 'Location: /cgi-bin/env.sh?via=local-redirect\n\n'
