#!/usr/bin/env bash
# Installs what gameday needs at run time and for its tests, if missing:
# redis-server (the process backend's nodes) and redis-tools
# (redis-benchmark, the peer in `gameday bench load`) and wrk (the peer in
# `gameday bench http`) and python3-venv (the proxy's compatibility test).
# Debian packages only.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
# wrk: the peer of `gameday bench http`.
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# python3-venv: the proxy's compatibility test installs toxiproxy-python
# from PyPI into a venv of its own.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci/deps.sh: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d keeps the package from starting a system redis on 6379.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "ci/deps.sh: cargo is missing (install Rust first)" >&2; exit 1; }
redis-server --version
