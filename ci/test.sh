#!/usr/bin/env bash
# The test suite: formatting, lints, then every test against real
# redis-server processes, real containers and the real embedded proxy.
# ci/docker.sh provides a Docker engine and a local Redis image (no registry
# is needed), so the docker backend is tested too.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
GAMEDAY_REDIS_IMAGE="$(ci/docker.sh)"
export GAMEDAY_REDIS_IMAGE
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Every test binary runs, so that one failure does not hide another.
cargo test --locked --no-fail-fast
