#!/usr/bin/env bash
# The compose lab, end to end: builds the local images (no registry here),
# brings docker-compose.yml's Sentinel lab up with gameday's own proxy in
# the Toxiproxy seat, waits until the sentinels agree, runs
# scenarios/lab-sentinel.toml against it with the external backend, checks
# that the lab's proxies are left idle, and brings the lab down (also on
# failure or Ctrl-C).
#   ci/compose.sh [extra `gameday run` arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "ci/compose.sh: $*" >&2; }
OUT="${OUT:-reports/ci-compose-lab}"
PROJECT=gameday-lab

# The same build as ci/quickstart.sh (examples bring the dev-dependencies and
# their features): any other set of flags would rebuild the crate.
cargo build --release --locked --quiet --bins --examples
export GAMEDAY_REDIS_IMAGE="${GAMEDAY_REDIS_IMAGE:-$(ci/docker.sh)}"
export GAMEDAY_PROXY_IMAGE="${GAMEDAY_PROXY_IMAGE:-$(ci/docker.sh --proxy target/release/gameday)}"

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    log "installing docker-compose"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-compose >/dev/null
  fi
  compose=(docker-compose)
fi
compose+=(-p "$PROJECT" -f docker-compose.yml)

down() { "${compose[@]}" down -t 2 >/dev/null 2>&1 || true; }
down
trap down EXIT
trap 'exit 130' INT TERM
log "lab up: redis $GAMEDAY_REDIS_IMAGE, proxy $GAMEDAY_PROXY_IMAGE"
"${compose[@]}" up -d >&2

# Ready: every sentinel, through its proxy, knows the primary, both replicas
# and the two other sentinels.
ready=""
for _ in $(seq 1 120); do
  ready=yes
  for port in 16411 16412 16413; do
    info=$(redis-cli -p "$port" SENTINEL MASTER gameday 2>/dev/null | paste -sd' ' || true)
    [[ "$info" == *"num-slaves 2 "* && "$info" == *"num-other-sentinels 2 "* ]] || ready=""
  done
  [ -n "$ready" ] && break
  sleep 0.5
done
if [ -z "$ready" ]; then
  log "the lab did not become ready within 60s; its logs:"
  "${compose[@]}" logs --tail 20 >&2
  exit 3
fi
log "lab ready"

status=0
target/release/gameday run scenarios/lab-sentinel.toml --out "$OUT" "$@" || status=$?

# The run borrowed the lab's proxies: all six must still be there, enabled,
# without toxics.
left=$(curl -sf http://127.0.0.1:8474/proxies | python3 -c '
import json, sys
proxies = json.load(sys.stdin)
bad = [n for n, p in proxies.items() if not p["enabled"] or p["toxics"]]
print(f"{len(proxies)} proxies, {len(bad)} not idle: {bad}")
sys.exit(0 if len(proxies) == 6 and not bad else 1)
') || { log "the lab's proxies were not left idle: $left"; status=1; }
log "after the run: $left"
exit "$status"
