#!/usr/bin/env bash
# The pod start-up benchmark: one keel master (release build) and `keel bench pod-startup
# --local` (a private containerd and a real agent) for `runs` runs of each shape: 100 pods at
# once (a burst: the time until all run, and the agent's memory), then 100 pods at steady
# rates (each pod's own start-up, as Kubernetes' SLO measures it).
# Usage: scripts/bench-pods.sh [pods] [runs] [rates...]   (root; defaults: 100 3 5 10)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-clusters.sh
pods="${1:-100}" runs="${2:-3}"
shift $(($# < 2 ? $# : 2))
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(5 10)
build_keel
work="$(mktemp -d)"
trap 'kill "$master" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
base=34000
"$keel" server --store-insecure --data-dir "$work/m0" --secure-port "$((base + 2))" --dns-port "$((base + 3))" \
  --listen-client-urls "http://127.0.0.1:$base" --advertise-client-urls "http://127.0.0.1:$base" \
  --listen-peer-urls "http://127.0.0.1:$((base + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 1))" \
  >"$work/m0.log" 2>&1 &
master=$!
for _ in $(seq 300); do [ -s "$work/m0/admin.kubeconfig" ] && break; sleep 0.2; done
bench() { "$keel" bench pod-startup --local --pods "$pods" --kubeconfig "$work/m0/admin.kubeconfig" "$@"; }
for run in $(seq "$runs"); do
  echo "bench-pods: burst, run $run of $runs" >&2
  bench
done
for rate in "${rates[@]}"; do
  for run in $(seq "$runs"); do
    echo "bench-pods: $rate pods/s, run $run of $runs" >&2
    bench --rate "$rate"
  done
done
