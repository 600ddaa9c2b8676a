#!/usr/bin/env bash
# Installs everything fcgikit and its tests need on a fresh Debian machine:
# the system packages (nginx, the other front-ends the tests run: Apache,
# lighttpd, Caddy; the FastCGI peers the tests compare against, debootstrap for
# the image base) and the Python package with its extras; and it makes room in
# the kernel's connection-tracking table for the benchmarks' short connections.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  nginx-light      # the web server in front, also used by the tests on 127.0.0.1
  apache2-bin      # Apache 2.4 + mod_proxy_fcgi: the binary and modules, without the system service
  lighttpd         # lighttpd 1.4 + mod_fastcgi (tests run their own, on 127.0.0.1)
  caddy            # Caddy 2.6 with its fastcgi transport (tests run their own, on 127.0.0.1)
  fcgiwrap         # the C CGI gateway our CGI fallback is compared against
  spawn-fcgi       # the C process manager fcgikit.spawn is compared against
  libfcgi-dev      # to compile libfcgi test programs
  php-cgi          # a FastCGI program fcgikit.spawn must run unmodified (tests)
  php-fpm          # the PHP FastCGI manager fcgikit.spawn + php-cgi is compared against (bench)
  gcc libc6-dev
  perl
  wrk              # the benchmark client
  debootstrap      # to build the image base where no registry answers
  openssh-client   # to reach deployment hosts
  iproute2 curl
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Services whose packages start a system daemon on port 80 when installed:
# fcgikit and its tests run their own, on free ports.
SERVICES=(nginx lighttpd caddy)

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Debian's postinst scripts start the services they install (invoke-rc.d or
  # deb-systemd-invoke); both obey policy-rc.d, so one that answers 101 ("not
  # allowed") for the length of the install keeps them from ever starting.
  # An existing policy-rc.d (Docker images ship one) is left as it is.
  policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    own_policy=1
    trap '$SUDO rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# fcgikit setup.sh: no service starts while packages are installed\nexit 101\n' \
      | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
  # Whatever started anyway is stopped, and what this run installed does not
  # start at boot either.
  for service in "${SERVICES[@]}"; do
    case " ${missing[*]} " in *" $service "*|*" $service-light "*) ;; *) continue ;; esac
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
      $SUDO service "$service" stop >/dev/null 2>&1 || true
      $SUDO update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  done
fi

# The host's connection-tracking table (netfilter; Docker's bridges and NAT keep it on) holds
# every TCP connection until two minutes after it closed, and when it is full the kernel
# drops new connections' first packets: their connects time out. The benchmarks' scenarios
# without keep-alive open thousands of connections a second (a --quick run leaves about
# 200,000 entries); the default size, 262,144, was reached in a CI run. Raised for this boot
# only, never lowered (docs/bench.md).
CONNTRACK_MAX=1048576 conntrack_max=/proc/sys/net/netfilter/nf_conntrack_max
if [ -e "$conntrack_max" ] && current=$(cat "$conntrack_max") && [ "$current" -lt "$CONNTRACK_MAX" ]; then
  echo "setup: net.netfilter.nf_conntrack_max $current -> $CONNTRACK_MAX (until reboot)"
  echo "$CONNTRACK_MAX" | $SUDO tee "$conntrack_max" >/dev/null \
    || echo "setup: could not raise nf_conntrack_max; the benchmarks' connects may time out" >&2
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test,bench]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "setup: done"
