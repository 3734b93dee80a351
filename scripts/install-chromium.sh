#!/bin/sh
# Install Debian's chromium for the dashboard's browser test (tests/e2e/test_dashboard.py).
# Exits 0 when /usr/bin/chromium is already there, or when installing is not possible here
# (not root, no apt-get): the browser test then skips itself, naming what is missing.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: /usr/bin/chromium is missing and cannot be installed here" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
