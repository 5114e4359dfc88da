#!/usr/bin/env bash
# Installs the Debian packages keel needs to build and test. Idempotent: safe to run again.
set -euo pipefail

packages=(
  clang libclang-dev          # rocksdb's bindgen and C++ build
  etcd-client etcd-server     # etcdctl 3.4 for tests, etcd for differential runs and benchmarks
  iproute2 iptables           # network namespaces and partitions for the fault harness
  nftables                    # nft: the agent's Service proxy applies its rules with it
  faketime                    # libfaketime: clock skew of one member in the fault harness
  procps psmisc               # ps/pkill/fuser used by tests
  util-linux                  # prlimit: the descriptor-exhaustion test lowers a master's limit
  curl                        # raw REST requests whose status codes tests check
  python3 python3-venv        # the Python kubernetes client tests run in a venv
  containerd runc             # the container runtime the node agent drives over CRI (and ctr)
  containernetworking-plugins # CNI bridge, host-local, portmap, loopback in /usr/lib/cni
  busybox-static              # the content of the images tests build locally (no registry here)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
