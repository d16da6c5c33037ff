#!/usr/bin/env bash
# Kept for its old name: the GPU check is bench/gpu/run.sh (same arguments).
exec "$(dirname "${BASH_SOURCE[0]}")/../bench/gpu/run.sh" "$@"
