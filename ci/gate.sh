#!/usr/bin/env bash
# The regression gate's CI step, shared by ci/examples/github-actions.yml and
# ci/examples/gitlab-ci.yml (and runnable by hand):
#
#   ci/gate.sh SCENARIO STORE [KEEP]
#
# 1. Runs SCENARIO into $GATE_OUT (default reports/gate/<scenario name>),
#    compared with the runs in STORE (the restored baseline cache) when it
#    holds any; without baselines yet, the run alone decides.
# 2. On the main branch ($GATE_BRANCH equal to $GATE_MAIN, default main),
#    and only when the run passed its own expectations and the comparison
#    found no regression, copies the run into STORE and keeps the newest
#    KEEP runs (default 20).
# 3. Exits with gameday's code: 0 pass, 1 regression or failed expectation,
#    2 bad usage, 3 infrastructure, 4 inconclusive (too few baselines).
#
# Environment: GAMEDAY (the binary; default target/release/gameday, else
# `gameday` on PATH), GATE_BRANCH, GATE_MAIN, GATE_OUT, GAMEDAY_COMMIT (the
# commit under test, recorded in summary.json), GITHUB_STEP_SUMMARY (gameday
# appends compare.md to it).
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: ci/gate.sh SCENARIO STORE [KEEP]" >&2
  exit 2
fi
scenario=$1
store=$2
keep=${3:-20}
case "$keep" in
  ''|*[!0-9]*) echo "ci/gate.sh: KEEP must be a number, not '$keep'" >&2; exit 2 ;;
esac
gameday=${GAMEDAY:-}
if [ -z "$gameday" ]; then
  if [ -x target/release/gameday ]; then gameday=target/release/gameday; else gameday=gameday; fi
fi
name=$(sed -n 's/^name *= *"\(.*\)".*/\1/p' "$scenario" | head -n 1)
if [ -z "$name" ]; then
  echo "ci/gate.sh: $scenario has no name = \"...\" line" >&2
  exit 2
fi
out=${GATE_OUT:-reports/gate/$name}
rm -rf "$out"
mkdir -p "$store"

args=(run "$scenario" --out "$out")
if find "$store" -name summary.json -print -quit | grep -q .; then
  args+=(--baseline "$store")
else
  echo "ci/gate.sh: no baselines in $store yet: this run starts the store" >&2
fi
"$gameday" "${args[@]}"
code=$?
echo "ci/gate.sh: gameday exited $code; report in $out" >&2

# The run's own verdict, from its summary (the comparison may be 4 while
# the store fills up; such a run still counts as a baseline).
verdict=$(sed -n 's/^  "verdict": "\(.*\)",$/\1/p' "$out/summary.json" 2>/dev/null | head -n 1)
regression=no
if [ -f "$out/compare/compare.json" ] && grep -q '"verdict": "regression"' "$out/compare/compare.json"; then
  regression=yes
fi
if [ "${GATE_BRANCH:-}" = "${GATE_MAIN:-main}" ] && [ "$verdict" = pass ] && [ $regression = no ]; then
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  dest="$store/$stamp-${GAMEDAY_COMMIT:-local}"
  mkdir -p "$dest"
  # The run, not its comparison: a baseline is judged by its own figures.
  find "$out" -maxdepth 1 -type f -exec cp {} "$dest/" \;
  # Keep the newest KEEP runs (names sort by time).
  find "$store" -mindepth 1 -maxdepth 1 -type d | sort | head -n -"$keep" | xargs -r rm -rf
  echo "ci/gate.sh: added $dest to the baseline store ($(find "$store" -mindepth 1 -maxdepth 1 -type d | wc -l) runs kept)" >&2
else
  echo "ci/gate.sh: the store is left as it was (branch '${GATE_BRANCH:-}', verdict '${verdict:-none}', regression $regression)" >&2
fi
exit $code
