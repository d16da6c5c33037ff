#!/usr/bin/env bash
# What only the tests need beyond scripts/setup.sh: Debian's headless Chromium for the report's
# browser test (tests/report/browser.test.ts). It is a system package (~300 MB with its
# dependencies, apt-get as root), so it belongs to the test command's set-up, never to the main
# job's, and it is announced before it is installed. Installed only as root or with passwordless
# sudo; elsewhere the browser test is skipped (and fails under CI, which must have it). A machine
# where it cannot be installed is stamped, so the notice is given once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAMPS=$PWD/.stamps
mkdir -p "$STAMPS"

say() { printf 'setup-tests: %s\n' "$*" >&2; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && ! fresh chromium "absent-uid$(id -u)"; then
  as_root=()
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo -n); fi
  if [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; then
    say "installing Debian's chromium with apt-get (a system package, ~300 MB with its dependencies), for the report's browser test only"
    apt=(${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get -qq)
    "${apt[@]}" install -y chromium >&2 </dev/null \
      || { "${apt[@]}" update >&2 && "${apt[@]}" install -y chromium >&2 </dev/null; } \
      || say "warning: could not install chromium; the report's browser test will be skipped"
  else
    say "chromium is missing and installing it needs root (apt-get install chromium); the report's browser test will be skipped"
  fi
  [ -x /usr/bin/chromium ] || echo "absent-uid$(id -u)" >"$STAMPS/chromium"
fi
