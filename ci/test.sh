#!/usr/bin/env bash
# The test suite: formatting, lints, then every test against real
# redis-server processes and the real embedded proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
