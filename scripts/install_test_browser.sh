#!/usr/bin/env bash
# Test setup: Debian's chromium and chromium-driver, for the leaderboard page's browser tests.
# Installs them when missing and this user can (root with apt-get); otherwise those tests skip.
set -uo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
    || echo "warning: could not install chromium; the browser tests will be skipped" >&2
else
  echo "note: run 'sudo apt-get install chromium chromium-driver' to enable the browser tests" >&2
fi
exit 0
