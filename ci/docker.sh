#!/usr/bin/env bash
# Makes the docker backend usable on a machine with no container registry:
# installs Debian's docker.io if no engine is there, starts dockerd when no
# engine answers, and builds a local Redis image FROM scratch out of the
# host's own redis-server and the libraries ldd lists.
#   ci/docker.sh            -> prints the image name to use (GAMEDAY_REDIS_IMAGE)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${GAMEDAY_LOCAL_IMAGE:-gameday/redis-local:latest}"
log() { echo "ci/docker.sh: $*" >&2; }

ci/deps.sh >&2
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/tmp/gameday-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; its log:"; tail -20 /tmp/gameday-dockerd.log >&2; exit 1; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE from $(command -v redis-server)"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
  # A real file named redis-server: Redis picks its mode from argv[0].
  cp -L "$(command -v redis-server)" "$ctx/rootfs/usr/local/bin/redis-server"
  for lib in $(ldd "$(command -v redis-server)" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
WORKDIR /data
CMD ["redis-server"]
DOCKERFILE
  docker build -q -t "$IMAGE" "$ctx" >&2
fi
echo "$IMAGE"
