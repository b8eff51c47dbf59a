#!/usr/bin/env bash
# The main job: a real game day, end to end, on a local Redis.
# Installs what is missing, builds gameday, runs scenarios/quickstart.toml
# (40 s of cache-aside load through a 10 s outage and 5 s of 100 ms latency)
# and leaves a report directory with the verdict.
#   ci/quickstart.sh [extra `gameday run` arguments, e.g. --out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
# The examples too: the reference shop the shop-* scenarios start.
cargo build --release --locked --quiet --bins --examples
exec target/release/gameday run scenarios/quickstart.toml "$@"
