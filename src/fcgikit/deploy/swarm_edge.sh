#!/bin/sh
# fcgikit on Docker Swarm: nginx follows the tasks of the workers and cgi services.
#
# Mounted into the nginx task as a Swarm config and run as its command (as www-data, no
# capability, read-only root: it writes only in /run/fcgikit, a tmpfs). Swarm's DNS
# (endpoint_mode dnsrr) answers `tasks.SERVICE` with the address of every task that is
# running (healthy, when the image has a HEALTHCHECK); this loop asks every
# FCGIKIT_EDGE_INTERVAL seconds and, when the answer changed, writes /run/fcgikit/backends,
# which the edge's Lua balancer re-reads by itself (fcgikit_edge.lua): no reload, so no
# kept-alive client connection is closed. Nothing listens for it: the list cannot be
# changed from the public port.
#
# The list (see docs/stack.md, "How backends reach the edge"):
#   version CHECKSUM
#   workers 10.0.1.5:9000 10.0.1.5
#   cgi 10.0.1.7:9000 10.0.1.7
set -u

# no-new-privileges, which a Swarm service of Docker 20.10 cannot ask for (it ignores
# security_opt): this script, nginx and all they run may not gain privileges by execve
# (setuid bits, file capabilities). setpriv is util-linux's, in every Debian image.
if ! grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status 2>/dev/null; then
    if command -v setpriv >/dev/null 2>&1; then
        exec setpriv --no-new-privs sh "$0" "$@"
    fi
    echo "fcgikit swarm edge: no setpriv in this image: nginx runs without no-new-privileges" >&2
fi

POOLS=${FCGIKIT_EDGE_POOLS:-workers}
PORT=${FCGIKIT_EDGE_PORT:-9000}
INTERVAL=${FCGIKIT_EDGE_INTERVAL:-1}
LIST=/run/fcgikit/backends

addresses() {
    getent ahostsv4 "tasks.$1" 2>/dev/null | awk '{print $1}' | sort -u
}

entries() {
    for pool in $POOLS; do
        for address in $(addresses "$pool"); do
            echo "$pool $address:$PORT $address"
        done
    done
}

EMPTY=0  # answers in a row with no task at all, while the list has some

# Writes the list when it changed (atomically); exit status 0 when it did.
update() {
    lines=$(entries)
    # No task at all, when there were some: believed on the third answer in a row only, so a
    # DNS hiccup does not empty the list (a real scale to 0 takes 2 s longer to show).
    if [ -z "$lines" ] && [ -f "$LIST" ] && [ "$(sed 1d "$LIST")" != "" ] && [ "$EMPTY" -lt 2 ]; then
        EMPTY=$((EMPTY + 1))
        return 1
    fi
    EMPTY=0
    version=$(printf '%s' "$lines" | cksum | awk '{print $1}')
    text=$(printf 'version %s\n%s' "$version" "$lines")
    if [ -f "$LIST" ] && [ "$(cat "$LIST")" = "$text" ]; then
        return 1
    fi
    printf '%s\n' "$text" > "$LIST.new" && mv -f "$LIST.new" "$LIST"
}

update
(
    while sleep "$INTERVAL"; do
        if update; then
            echo "fcgikit swarm edge: backends now:" $(sed 1d "$LIST" | awk '{print $1 "=" $2}') >&2
        fi
    done
) &
exec nginx -g 'daemon off;'
