#!/usr/bin/env bash
# The controller manager benchmark: 3 keel masters (release build), then `keel bench
# controllers` (a Deployment applied and rolled on simulated nodes) for `runs` runs; then a
# failover run in which the master whose controller manager is active is killed with SIGKILL a
# few seconds into the rolling update (max gap is the longest time between two pod creates).
# Usage: scripts/bench-controllers.sh [nodes] [replicas] [runs]
# FAILOVER=0 skips the failover run; KEEL_BIN measures a given binary (see bench-clusters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-clusters.sh
nodes="${1:-1000}" replicas="${2:-3000}" runs="${3:-3}"
build_keel
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_cluster keel 32000
servers="$eps"
token="$(admin_token)"
for run in $(seq "$runs"); do
  echo "bench-controllers: run $run of $runs" >&2
  "$keel" bench controllers --server "$servers" --token "$token" --nodes "$nodes" --replicas "$replicas"
done
[ "${FAILOVER:-1}" = 0 ] && exit 0
holder_member() {
  ETCDCTL_API=3 etcdctl --endpoints="${servers//http:\/\//}" get /registry/leases/kube-system/kube-controller-manager --print-value-only |
    grep -o '"holderIdentity":"[^"]*"' | sed -E 's/.*_m([0-9]+)_.*/\1/'
}
"$keel" bench controllers --server "$servers" --token "$token" --nodes "$nodes" --replicas "$replicas" >"$work/failover.out" 2>"$work/failover.err" &
bench=$!
# Wait until this run's rolling update starts (the bench says so), then kill.
for _ in $(seq 6000); do
  grep -q "rolling out a new image" "$work/failover.err" 2>/dev/null && break
  sleep 0.1
done
sleep 2
m="$(holder_member)"
echo "bench-controllers: killing m$m (pid ${member_pids[keel-$m]}), whose controller manager is active" >&2
kill -9 "${member_pids[keel-$m]}"
wait "$bench" || true
echo "failover (m$m killed during the rolling update):"
cat "$work/failover.out"
