#!/usr/bin/env bash
# Install the Debian 12 packages agentd's build, tests and benchmarks need.
# Idempotent and quick when everything is present (one dpkg query).
set -euo pipefail
PKGS=(
  build-essential pkg-config meson ninja-build git
  libuv1-dev libwslay-dev node-llhttp libjansson-dev libjwt-dev libargon2-dev
  libsqlite3-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libssl-dev
  libcriterion-dev
  python3 python3-pytest python3-httpx python3-websockets
  openssl sqlite3 wrk curl
)
if [ "${1:-}" = "--server-deps" ]; then
  PKGS+=(postgresql redis-server)
fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
