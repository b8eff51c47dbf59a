#!/usr/bin/env bash
# Makes the docker backend usable on a machine with no container registry:
# installs Debian's docker.io if no engine is there, starts dockerd when no
# engine answers, and builds a local Redis image FROM scratch out of the
# host's own redis-server and the libraries ldd lists.
#   ci/docker.sh                  -> prints the image name to use (GAMEDAY_REDIS_IMAGE)
#   ci/docker.sh --proxy BINARY   -> builds an image of `BINARY proxy` too and
#                                    prints its name (GAMEDAY_PROXY_IMAGE)
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

# Bump when the recipe below changes, so that old local images are rebuilt.
RECIPE=2
recipe_of() { docker image inspect -f '{{ index .Config.Labels "gameday.recipe" }}' "$1" 2>/dev/null || true; }

# Copies each binary (as $dest/<name>) and the libraries ldd lists into $root.
copy_with_libs() {
  local root=$1; shift
  for pair in "$@"; do
    local bin=${pair%%=*} dest=${pair#*=}
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$bin" "$root$dest"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

if [ "$(recipe_of "$IMAGE")" != "$RECIPE" ]; then
  log "building $IMAGE from $(command -v redis-server)"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs/data" "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  # A real file named redis-server (Redis picks its mode from argv[0]), and
  # a /bin/sh, which the compose lab's sentinels use to write their config.
  copy_with_libs "$ctx/rootfs" \
    "$(command -v redis-server)=/usr/local/bin/redis-server" \
    "$(readlink -f /bin/sh)=/bin/sh"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin
WORKDIR /data
LABEL gameday.recipe=$RECIPE
CMD ["redis-server"]
DOCKERFILE
  docker build -q -t "$IMAGE" "$ctx" >&2
fi

# With --proxy BINARY: also an image of `gameday proxy` (for the compose lab),
# rebuilt whenever the binary changed.
if [ "${1:-}" = "--proxy" ]; then
  bin=$2
  PROXY_IMAGE="${GAMEDAY_LOCAL_PROXY_IMAGE:-gameday/proxy-local:latest}"
  sum=$(sha256sum "$bin" | cut -c1-16)
  if [ "$(recipe_of "$PROXY_IMAGE")" != "$RECIPE-$sum" ]; then
    log "building $PROXY_IMAGE from $bin"
    pctx=$(mktemp -d)
    copy_with_libs "$pctx/rootfs" "$bin=/usr/local/bin/gameday"
    cat > "$pctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL gameday.recipe=$RECIPE-$sum
ENTRYPOINT ["/usr/local/bin/gameday", "proxy"]
DOCKERFILE
    docker build -q -t "$PROXY_IMAGE" "$pctx" >&2
    rm -rf "$pctx"
  fi
  echo "$PROXY_IMAGE"
  exit 0
fi
echo "$IMAGE"
