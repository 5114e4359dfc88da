#!/usr/bin/env bash
# CPU time per operation: starts one 3-member cluster of keel and then one of etcd, each alone on
# the machine, and prints the CPU each member and the load generator spent per operation, from
# /proc/<pid>/stat. Usage: scripts/bench-cpu.sh [ops] [workload]
set -euo pipefail
cd "$(dirname "$0")/.."
total="${1:-60000}"
workload="${2:-put}"
source scripts/bench-clusters.sh
build_keel
tick="$(getconf CLK_TCK)"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_alone() { # flavor base-port
  local flavor="$1" i
  pids=()
  start_cluster "$flavor" "$2"
  # Warm-up: connections, caches and heaps reach their working size first.
  "$keel" bench --workload "$workload" --endpoints "$eps" --clients 64 --total 20000 --val-size 256 --label warm-up >/dev/null
  local before=() after p
  for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  local t0 gen_start gen_end
  # The load generator's CPU: this shell's children's time, counted once each has exited.
  gen_start="$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)"
  t0="$(date +%s%N)"
  "$keel" bench --workload "$workload" --endpoints "$eps" --clients 64 --total "$total" --val-size 256 --label "$flavor" | tail -n 1
  gen_end="$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)"
  local line="$flavor cpu_us_per_op:" sum=0 us
  for i in 0 1 2; do
    after="$(cpu_ticks "${member_pids[$flavor-$i]}")"
    us=$(((after - before[i]) * 1000000 / tick / total))
    sum=$((sum + us))
    line+=" m$i=$us"
  done
  us=$(((gen_end - gen_start) * 1000000 / tick / total))
  echo "$line load-generator=$us members+generator=$((sum + us)) wall_ms=$((($(date +%s%N) - t0) / 1000000))"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

echo "label        workload               ops  errors conflicts elapsed_s      ops/s    p50_ms    p90_ms    p99_ms   p999_ms    max_ms max_gap_ms"
run_alone keel 22000
run_alone etcd 21000
