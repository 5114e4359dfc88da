#!/usr/bin/env bash
# The scheduler benchmark: 3 keel masters (release build), then `keel bench scheduler` for each
# workload, then a failover run in which the master whose scheduler is active is killed with
# SIGKILL mid-run (max_gap is the longest time between two binds).
# Usage: scripts/bench-scheduler.sh [nodes] [pods] [rate]
# WORKLOADS="basic …" runs only those workloads; FAILOVER=0 skips the failover run; KEEL_BIN
# measures a given binary (see bench-clusters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-clusters.sh
nodes="${1:-5000}" pods="${2:-30000}" rate="${3:-3000}"
build_keel
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_cluster keel 31000
servers="$eps"
token="$(admin_token)"
# CPU ticks (user + system) the masters have used so far.
masters_ticks() {
  local sum=0 pid fields
  for pid in "${member_pids[@]}"; do
    read -r -a fields <"/proc/$pid/stat" || continue
    sum=$((sum + fields[13] + fields[14]))
  done
  echo "$sum"
}
# Each run also prints the masters' CPU time per pod while its pods are created (registering
# the nodes left out), from /proc: the cost of a pod, steadier between runs than pods/s.
for workload in ${WORKLOADS:-basic affinity spread anti-affinity}; do
  out="$work/bench-$workload.out"
  "$keel" bench scheduler --server "$servers" --token "$token" --nodes "$nodes" --pods "$pods" --rate "$rate" --workload "$workload" >"$out" 2>&1 &
  run=$!
  until grep -q "creating $pods pods" "$out" 2>/dev/null || ! kill -0 "$run" 2>/dev/null; do sleep 0.2; done
  before="$(masters_ticks)" started="$(date +%s%N)"
  until grep -q "created $pods pods" "$out" 2>/dev/null || ! kill -0 "$run" 2>/dev/null; do sleep 0.2; done
  after="$(masters_ticks)" ended="$(date +%s%N)"
  status=0
  wait "$run" || status=$?
  cat "$out"
  [ "$status" = 0 ] || exit "$status"
  ticks_per_s="$(getconf CLK_TCK)"
  awk -v t=$((after - before)) -v hz="$ticks_per_s" -v n="$pods" -v ns=$((ended - started)) -v w="$workload" \
    'BEGIN { printf "scheduler %-13s masters CPU %.2f ms per pod (%.2f cores busy)\n", w, t * 1000 / hz / n, t / hz / (ns / 1e9) }'
done
[ "${FAILOVER:-1}" = 0 ] && exit 0
# Failover: kill the active scheduler's master a few seconds into a run, then measure.
holder_member() {
  ETCDCTL_API=3 etcdctl --endpoints="${servers//http:\/\//}" get /registry/leases/kube-system/kube-scheduler --print-value-only |
    grep -o '"holderIdentity":"[^"]*"' | sed -E 's/.*_m([0-9]+)_.*/\1/'
}
failover_pods=$((rate * 12))
"$keel" bench scheduler --server "$servers" --token "$token" --nodes "$nodes" --pods "$failover_pods" --rate "$rate" --workload basic &
bench=$!
# Registration of the nodes comes first; kill once pods are flowing.
for _ in $(seq 600); do
  [ -n "$(ETCDCTL_API=3 etcdctl --endpoints="${servers//http:\/\//}" get /registry/pods/ --prefix --keys-only --limit 1 2>/dev/null)" ] && break
  sleep 0.2
done
sleep 4
m="$(holder_member)"
echo "bench-scheduler: killing m$m (pid ${member_pids[keel-$m]}), whose scheduler is active" >&2
kill -9 "${member_pids[keel-$m]}"
wait "$bench"
