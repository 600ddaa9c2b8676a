#!/bin/sh
# Boots a test deployment host: its own Docker engine, then sshd in the foreground.
# Runs under `docker run --init` so orphans are reaped and SIGTERM reaches us.
set -eu

# The SSH client key the test bed generated (key authentication only).
mkdir -p /root/.ssh && chmod 700 /root/.ssh
printf '%s\n' "${AUTHORIZED_KEY:?AUTHORIZED_KEY must hold the public key to trust}" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys

# Every host has its own identity, as real hosts do.
ssh-keygen -A >/dev/null

# Docker mounts cgroup v1 controllers read-only in an unprivileged container; a fresh
# mount of the same hierarchy (we hold CAP_SYS_ADMIN) is writable, so dockerd can make
# cgroups. --privileged would do this for us, but this engine refuses it (see
# docs/multihost.md: CAP_SYS_RESOURCE is outside its bounding set).
remount_cgroups() {
  for dir in /sys/fs/cgroup/*/; do
    name=$(basename "$dir")
    grep -q " ${dir%/} cgroup ro," /proc/mounts || continue
    opts=$name; [ "$name" = systemd ] && opts=none,name=systemd
    umount "$dir" && mount -t cgroup -o "$opts" cgroup "$dir"
  done
}
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || remount_cgroups

# Inner containers live in a cgroup below this container's own, so removing the host
# container removes them and their cgroups too.
own_cgroup=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
dockerd --cgroup-parent="${own_cgroup:-/fcgikit-host}/engine" \
        --host=unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1 &

stop() {
  docker ps -q | xargs -r docker kill >/dev/null 2>&1 || true
  kill -TERM $(cat /var/run/docker.pid 2>/dev/null) 2>/dev/null || true
  exit 0
}
trap stop TERM INT
/usr/sbin/sshd -D -e &
wait $!
