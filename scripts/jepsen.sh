#!/usr/bin/env bash
# Runs the fault matrix (register and set under every nemesis family) against a 3-member keel
# cluster and a 3-member etcd 3.4 cluster, then prints one row per (workload, nemesis) comparing
# validity, throughput and latency. Exits 1 if any run was invalid or could not complete.
# Usage: scripts/jepsen.sh [seconds-per-run] [report-dir]   (KEEL_BIN, JEPSEN_BIN override the binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
out="${2:-$(mktemp -d /tmp/keel-jepsen.XXXXXX)}"
target_dir="${CARGO_TARGET_DIR:-target}"
bash scripts/install-deps.sh >/dev/null
jepsen="${JEPSEN_BIN:-$target_dir/debug/keel-jepsen}"
keel="${KEEL_BIN:-$target_dir/debug/keel}"
[ -x "$jepsen" ] || cargo test --workspace --no-run
status=0
for target in keel etcd; do
  for workload in register set; do
    for nemesis in none kill pause partition skew member disk; do
      "$jepsen" run --target "$target" --workload "$workload" --nemesis "$nemesis" --time-limit "$secs" \
        --keel-bin "$keel" --out "$out/$target" || status=1
    done
  done
done
echo
"$jepsen" compare "$out/keel" "$out/etcd"
echo
echo "reports: $out/keel/index.md $out/etcd/index.md"
exit "$status"
