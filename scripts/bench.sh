#!/usr/bin/env bash
# Runs `keel bench` against a 3-member keel cluster and a 3-member etcd cluster on loopback, in one
# run, and prints one result row per (target, workload). Usage: scripts/bench.sh [total-ops]
set -euo pipefail
cd "$(dirname "$0")/.."
total="${1:-20000}"
source scripts/bench-clusters.sh
build_keel
echo "keel binary: $keel; etcd: $(etcd --version | head -1)"
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print int($2/1048576)}') GiB"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # KEEL_BENCH_LOGS=<dir> keeps every member's log for a look afterwards.
  if [ -n "${KEEL_BENCH_LOGS:-}" ]; then mkdir -p "$KEEL_BENCH_LOGS" && cp "$work"/*.log "$KEEL_BENCH_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT


# Below the kernel's ephemeral range (32768 and up), so no outgoing connection holds a port
# a member is about to listen on.
start_cluster etcd 21000
etcd_eps="$eps"
start_cluster keel 22000
keel_eps="$eps"
# A discarded pass first: connections, caches and each runtime's heap reach their working size
# before anything is measured.
for eps in "$etcd_eps" "$keel_eps"; do
  "$keel" bench --workload put --endpoints "$eps" --clients 64 --total "$total" --val-size 256 --label warm-up >/dev/null
done
for workload in put get-linearizable get-serializable txn-cas; do
  for target in etcd keel; do
    eps="$etcd_eps"; [ "$target" = keel ] && eps="$keel_eps"
    "$keel" bench --workload "$workload" --endpoints "$eps" --clients 64 --total "$total" --val-size 256 --label "$target"
  done
done
for target in etcd keel; do
  eps="$etcd_eps"; [ "$target" = keel ] && eps="$keel_eps"
  "$keel" bench --workload put --endpoints "$eps" --clients 1 --conns 1 --total 2000 --val-size 256 --label "$target-1client"
  "$keel" bench --workload watch-latency --endpoints "$eps" --total 2000 --label "$target"
done

# Memory: 1M keys of 256 B written once, then each member's resident set size.
keys="${KEEL_BENCH_KEYS:-1000000}"
for target in etcd keel; do
  eps="$etcd_eps"; [ "$target" = keel ] && eps="$keel_eps"
  "$keel" bench --workload fill --endpoints "$eps" --clients 16 --key-space "$keys" --val-size 256 --label "$target-fill"
  sleep 5
  rss=""
  for i in 0 1 2; do
    rss+="$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/${member_pids[$target-$i]}/status") "
  done
  echo "$target rss_mib after $keys keys (m0 m1 m2): $rss"
done

# Failover: the leader is killed 4 s into a 12 s put run; max_gap_ms is the longest stretch
# without an acknowledged put.
leader_of() { # flavor eps -> index of the member that leads
  local i ep
  for i in 0 1 2; do
    ep="$(echo "$2" | cut -d, -f$((i + 1)))"
    if ETCDCTL_API=3 etcdctl --endpoints="${ep#http://}" --command-timeout=2s endpoint status -w json 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["leader"]==s["header"]["member_id"] else 1)'; then
      echo "$i"; return 0
    fi
  done
  return 1
}
for target in etcd keel; do
  eps="$etcd_eps"; [ "$target" = keel ] && eps="$keel_eps"
  "$keel" bench --workload put --endpoints "$eps" --clients 64 --duration 12 --timeout 2 --val-size 256 --label "$target-failover" &
  bench_pid=$!
  sleep 4
  leader="$(leader_of "$target" "$eps")"
  kill -9 "${member_pids[$target-$leader]}"
  echo "$target: killed the leader m$leader"
  wait "$bench_pid" || true
done
