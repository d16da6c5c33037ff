#!/usr/bin/env bash
# Every test: vitest (controller) and pytest (sidecar). Both run even if the first fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh || exit $?
status=0
npx vitest run "$@" || status=1
.venv/bin/python -m pytest || status=1
exit $status
