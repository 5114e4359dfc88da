#!/usr/bin/env bash
# Sets up what keel needs and runs a single-member keel on ./keel-data (etcd's default ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The same build the tests use, so RocksDB is compiled once whichever command runs first.
cargo test --workspace --no-run
exec "${CARGO_TARGET_DIR:-target}/debug/keel" server "$@"
