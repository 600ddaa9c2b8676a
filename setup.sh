#!/usr/bin/env bash
# Installs everything fcgikit and its tests need on a fresh Debian machine:
# the system packages (nginx, the FastCGI peers the tests compare against,
# debootstrap for the image base) and the Python package with its extras.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  nginx-light      # the web server in front, also used by the tests on 127.0.0.1
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
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the system nginx on install; fcgikit and its tests run their own.
  case " ${missing[*]} " in *" nginx-light "*) $SUDO service nginx stop >/dev/null 2>&1 || true ;; esac
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test,bench]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "setup: done"
