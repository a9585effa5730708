#!/usr/bin/env bash
# Install Debian's nginx for the COG-over-HTTP tests (tests/test_http.py start it themselves on 127.0.0.1,
# as an ordinary process with its own config; the system service is not used). Idempotent: does nothing
# when an nginx binary is already there.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "nginx: already installed ($(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# nginx-light (small) where the release has it, else nginx; never start the system service
if apt-cache show nginx-light >/dev/null 2>&1; then pkg=nginx-light; else pkg=nginx; fi
RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
# Debian's postinst may start the service: stop it, the tests run their own instance
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop nginx >/dev/null 2>&1 || true; fi
if [ -f /run/nginx.pid ]; then $SUDO kill "$(cat /run/nginx.pid)" >/dev/null 2>&1 || true; fi
echo "nginx: installed $pkg ($(/usr/sbin/nginx -v 2>&1))"
