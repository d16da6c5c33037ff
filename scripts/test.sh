#!/usr/bin/env bash
# Every test: pytest (sidecar), then vitest (controller). Both run even if the first fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh || exit $?
scripts/setup-tests.sh || exit $?
status=0
# pytest first: its reliability rows are rendered into docs/RELIABILITY.md when vitest ends.
.venv/bin/python -m pytest || status=1
npx vitest run "$@" || status=1
exit $status
