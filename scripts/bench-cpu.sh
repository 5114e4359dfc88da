#!/usr/bin/env bash
# CPU time per operation: starts one 3-member cluster of keel and then one of etcd, each alone on
# the machine, and prints the CPU each member and the load generator spent per operation, from
# /proc/<pid>/stat. Usage: scripts/bench-cpu.sh [ops] [workload]
set -euo pipefail
cd "$(dirname "$0")/.."
total="${1:-60000}"
workload="${2:-put}"
target_dir="${KEEL_BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}"
if [ -z "${KEEL_BIN:-}" ]; then
  bash scripts/install-deps.sh >/dev/null
  CARGO_TARGET_DIR="$target_dir" cargo build --release -p keel
fi
keel="${KEEL_BIN:-$target_dir/release/keel}"
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
  local flavor="$1" base="$2" cluster="" i
  pids=()
  for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((base + 10 * i + 1)),"; done
  for i in 0 1 2; do
    local bin=(etcd)
    [ "$flavor" = keel ] && bin=("$keel" server --secure-port "$((base + 10 * i + 2))")
    "${bin[@]}" --name "m$i" --data-dir "$work/$flavor-m$i" \
      --listen-client-urls "http://127.0.0.1:$((base + 10 * i))" --advertise-client-urls "http://127.0.0.1:$((base + 10 * i))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 10 * i + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 * i + 1))" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new --initial-cluster-token "cpu-$flavor" \
      >"$work/$flavor-m$i.log" 2>&1 &
    pids+=($!)
  done
  local eps="http://127.0.0.1:$base,http://127.0.0.1:$((base + 10)),http://127.0.0.1:$((base + 20))"
  local ready=""
  for _ in $(seq 150); do
    if ETCDCTL_API=3 etcdctl --endpoints="${eps//http:\/\//}" --command-timeout=2s put __bench_ready 1 >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] || { echo "$flavor cluster did not start" >&2; tail -n 20 "$work/$flavor"-m*.log >&2; return 1; }
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
    after="$(cpu_ticks "${pids[$i]}")"
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
