#!/usr/bin/env bash
# The API write-path benchmark: 3 keel masters (release build) and `keel bench api` (ConfigMap,
# Service and Deployment creates into a namespace of pods) for `runs` runs; then the same
# against fresh masters started with --selector-warnings=false, which skip the lint that
# Service and Deployment writes otherwise pay for.
# Usage: scripts/bench-api.sh [pods] [writes] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-clusters.sh
pods="${1:-5000}" writes="${2:-2000}" runs="${3:-3}"
build_keel
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
base=33000
for warnings in true false; do
  keel_flags=(--selector-warnings="$warnings")
  start_cluster keel "$base"
  token="$(admin_token)"
  for run in $(seq "$runs"); do
    echo "bench-api: selector warnings $warnings, run $run of $runs" >&2
    echo "selector warnings: $warnings"
    "$keel" bench api --server "$eps" --token "$token" --pods "$pods" --writes "$writes"
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pids=()
  rm -rf "$work"/keel-m*
  base=$((base + 100))
done
