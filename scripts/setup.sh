#!/usr/bin/env bash
# Installs whatever is missing for posttrain, and nothing else: node dependencies, the compiled
# CLI, a Python virtualenv with the sidecar and its dependencies, the offline smoke model. All of it
# inside this folder: the main job (`make smoke`) never touches the system. What only the tests
# need from the system (Chromium) is scripts/setup-tests.sh, run by `make test` alone.
# Idempotent and quiet when everything is already in place (each step keeps a stamp of its inputs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STAMPS=$ROOT/.stamps
mkdir -p "$STAMPS"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 2; }
digest() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# --- node ------------------------------------------------------------------------------------
command -v node >/dev/null || die "node is not installed. Install Node.js >= 20.19 (https://nodejs.org) and rerun."
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "node $(node --version) is too old; posttrain needs Node.js >= 20.19."

key=$(digest package.json package-lock.json)
if [ ! -d node_modules ] || ! fresh npm "$key"; then
  say "installing node dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$key" >"$STAMPS/npm"
fi

# tsc is incremental, but even a no-op costs seconds: rebuild only when a source is newer.
if [ ! -f dist/cli/main.js ] || [ ! -f "$STAMPS/build" ] || [ -n "$(find src tsconfig.json -newer "$STAMPS/build" -print -quit)" ]; then
  say "building the CLI (tsc)"
  npx tsc -p tsconfig.json
  touch "$STAMPS/build"
fi

# --- python ----------------------------------------------------------------------------------
PY=${POSTTRAIN_BOOTSTRAP_PYTHON:-python3}
command -v "$PY" >/dev/null || die "$PY is not installed. Install Python >= 3.10 with venv and rerun."
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || die "$($PY --version) is too old; the sidecar needs Python >= 3.10."

HAS_GPU=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then HAS_GPU=1; fi
key=$(digest pyproject.toml scripts/constraints.txt scripts/setup.sh)-gpu$HAS_GPU
if [ ! -x .venv/bin/python ] || ! fresh venv "$key"; then
  say "creating the Python virtualenv (.venv) with the sidecar's dependencies"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv || die "could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)."
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  if [ "$HAS_GPU" = 1 ]; then
    "${pip[@]}" -c scripts/constraints.txt -e '.[gpu,dev]' >&2
  else
    # The CPU wheel. Any other torch spec pulls a multi-GB CUDA build on a machine without a GPU.
    "${pip[@]}" torch==2.13.0 >&2
    "${pip[@]}" -c scripts/constraints.txt -e '.[dev]' >&2
  fi
  echo "$key" >"$STAMPS/venv"
fi

# --- smoke model -----------------------------------------------------------------------------
if [ -f scripts/build_smoke_model.py ] && [ ! -f data/smoke-model/model.safetensors ]; then
  say "building the offline smoke model (data/smoke-model)"
  .venv/bin/python scripts/build_smoke_model.py >&2
fi

