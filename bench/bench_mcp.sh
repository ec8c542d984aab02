#!/usr/bin/env bash
# bench/bench_mcp.sh: tools/call of a cheap built-in tool (calculator) through agentd's /mcp (issue 15 target:
# >= 20,000 calls/s with 50 sessions; p99 reported).
#
# Starts build/agentd (release: `make build`) on a free loopback port (bench/lib.sh: temp data dir, random JWT
# secret, --rate-limit 0, warn logs), registers one user, opens BENCH_SESSIONS MCP sessions (initialize +
# notifications/initialized, 2025-11-25), then runs
#   wrk -t2 -cBENCH_CONNS -dBENCH_DURATION --latency -s <lua> http://127.0.0.1:PORT/mcp
# whose requests are JSON tools/call messages that take the sessions in turn (Accept: application/json, so each
# answer is one JSON document on a keep-alive connection).  Prints calls/s, p50/p99 and whether any answer was
# not 200.  Each call crosses the worker pool (tool calls never run on the loop).
#
# Environment: BENCH_DURATION (s, default 10), BENCH_CONNS (default 50), BENCH_SESSIONS (default 50),
# AGENTD_BIN (default build/agentd).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_mcp agentd-bench-mcp
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-50}"
SESSIONS="${BENCH_SESSIONS:-50}"
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"

bench_require_positive DURATION CONNS SESSIONS
bench_require_tools wrk curl
[ -x "$AGENTD" ] || { echo "bench_mcp: $AGENTD not found: run 'make build' first" >&2; exit 2; }

bench_start_server
BASE="http://127.0.0.1:$PORT"
bench_register_user

SIDS=""
for i in $(seq 1 "$SESSIONS"); do
  sid="$(curl -sS -D - -o /dev/null -X POST "$BASE/mcp" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
    | tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')"
  [ -n "$sid" ] || { echo "bench_mcp: initialize gave no session" >&2; exit 1; }
  curl -sS -o /dev/null -X POST "$BASE/mcp" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $sid" \
    -H 'Content-Type: application/json' -H 'MCP-Protocol-Version: 2025-11-25' \
    -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  SIDS="$SIDS\"$sid\","
done

cat >"$TMP/mcp.lua" <<LUA
local sids = { ${SIDS%,} }
local n = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculator","arguments":{"expression":"6*7"}}}'
request = function()
  n = n + 1
  wrk.headers["Mcp-Session-Id"] = sids[(n % #sids) + 1]
  return wrk.format()
end
LUA
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/mcp.lua" "$BASE/mcp" >"$TMP/wrk" 2>&1
bench_server_alive || exit 1
cat "$TMP/wrk" | show >&2
grep -q 'Non-2xx' "$TMP/wrk" && echo "bench_mcp: some answers were not 200" >&2
RPS="$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk")"
P50="$(awk '$1 == "50%" {print $2}' "$TMP/wrk")"
P99="$(awk '$1 == "99%" {print $2}' "$TMP/wrk")"
echo
echo "command: wrk -t2 -c$CONNS -d${DURATION}s --latency -s mcp.lua $BASE/mcp  ($SESSIONS sessions, tools/call calculator)"
printf '%-14s %12s %10s %10s\n' "" "calls/s" "p50" "p99"
printf '%-14s %12s %10s %10s\n' "tools/call" "$RPS" "$P50" "$P99"
