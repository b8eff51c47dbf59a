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
# A clean build gains nothing from incremental compilation's bookkeeping.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
cargo fmt --all -- --check
# The lints run beside the tests at idle priority (SCHED_IDLE: only the CPU
# the tests leave, so their timings are undisturbed), in a target directory
# of their own (cargo's lock on target/debug stays the tests'); their
# verdict counts at the end.
mkdir -p target
chrt --idle 0 cargo clippy --locked --all-targets --target-dir target/clippy -- -D warnings \
  >target/clippy.log 2>&1 &
clippy=$!
# Every test binary runs, so that one failure does not hide another. Each
# gated test logs how long it took; the slowest are printed after.
times="$PWD/target/test-times.txt"
rm -f "$times"
status=0
GAMEDAY_TEST_TIMES="$times" cargo test --locked --no-fail-fast || status=$?
if [ -s "$times" ]; then
  echo "slowest tests (seconds behind the gate):"
  sort -rn "$times" | head -20
fi
if wait "$clippy"; then
  echo "clippy: no warnings"
else
  cat target/clippy.log
  echo "clippy failed (above)"
  status=1
fi
exit "$status"
