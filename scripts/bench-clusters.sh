# Shared by the benchmark scripts; sourced, not run, from the repository root.

# Sets `keel` to the binary to measure: as shipped, an optimised build (its own profile, so the
# test build is untouched). KEEL_BIN overrides, e.g. to compare a debug build.
build_keel() {
  local target_dir="${KEEL_BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}"
  if [ -z "${KEEL_BIN:-}" ]; then
    bash scripts/install-deps.sh >/dev/null
    CARGO_TARGET_DIR="$target_dir" cargo build --release -p keel
  fi
  keel="${KEEL_BIN:-$target_dir/release/keel}"
}

# start_cluster <flavor> <base-port> starts 3 members of keel or etcd on loopback (MASTERS=1
# starts one) and waits until they take a write. The caller sets `work` (a scratch directory)
# and declares `pids=()`; this sets `eps` and adds to `pids` and `member_pids`.

declare -A member_pids # "<flavor>-<i>" -> pid
# more flags for every keel master (KEEL_FLAGS adds some from the environment, split on spaces)
read -r -a keel_flags <<<"${KEEL_FLAGS:-}"

start_cluster() { # flavor base-port
  local flavor="$1" base="$2" cluster="" i members
  members=$(seq 0 $((${MASTERS:-3} - 1)))
  [ "$flavor" = keel ] && [ ! -f "$work/certificate.key" ] && "$keel" certificate-key >"$work/certificate.key"
  for i in $members; do cluster+="m$i=http://127.0.0.1:$((base + 10 * i + 1)),"; done
  eps=""
  for i in $members; do
    local bin=(etcd)
    # Each keel master also serves the Kubernetes REST API, on a port of its own here. The
    # client port runs in the clear, as etcd's does beside it, so both are measured alike.
    # The masters seal the cluster's keys with one certificate key.
    [ "$flavor" = keel ] && bin=("$keel" server --secure-port "$((base + 10 * i + 2))" --dns-port "$((base + 10 * i + 3))" --store-insecure
      --certificate-key-file "$work/certificate.key" ${keel_flags[@]+"${keel_flags[@]}"})
    "${bin[@]}" --name "m$i" --data-dir "$work/$flavor-m$i" \
      --listen-client-urls "http://127.0.0.1:$((base + 10 * i))" --advertise-client-urls "http://127.0.0.1:$((base + 10 * i))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 10 * i + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 * i + 1))" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new --initial-cluster-token "bench-$flavor" \
      >"$work/$flavor-m$i.log" 2>&1 &
    pids+=($!)
    member_pids["$flavor-$i"]=$!
    eps+="http://127.0.0.1:$((base + 10 * i)),"
  done
  eps="${eps%,}"
  for _ in $(seq 150); do
    ETCDCTL_API=3 etcdctl --endpoints="${eps//http:\/\//}" --command-timeout=2s put __bench_ready 1 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$flavor cluster did not start; logs:" >&2
  tail -n 20 "$work/$flavor"-m*.log >&2
  return 1
}

# admin_token prints the keel cluster's admin token from the kubeconfig its first master writes
# once it serves the API (the API refuses callers without credentials).
admin_token() {
  local kubeconfig="$work/keel-m0/admin.kubeconfig"
  for _ in $(seq 300); do
    if [ -s "$kubeconfig" ]; then
      sed -n 's/^ *token: *//p' "$kubeconfig"
      return 0
    fi
    sleep 0.2
  done
  echo "no admin kubeconfig at $kubeconfig" >&2
  return 1
}
