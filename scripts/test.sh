#!/usr/bin/env bash
# Sets up everything the tests need, then runs the whole suite. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/python-env.sh
# Always the same cargo invocation (tests and binaries in one debug build): a different feature
# resolution would compile RocksDB a second time.
cargo test --workspace --no-run
# One test at a time: the end-to-end tests run clusters of real processes on 2 cores.
cargo test --workspace --no-fail-fast -- --test-threads=1
