#!/usr/bin/env bash
# bench/bench_mcp_client.sh: agentd's MCP client calling a stdio server's tool (issue 15): the overhead per call
# above the server's own time (target p50 <= 0.2 ms).
#
# Starts build/agentd with --mcp-config naming tests/mcp/servers/timed.py (a stdio server whose tool `noop`
# reports its own time per call, from reading the request line to writing the answer), then calls
# `timed.noop` BENCH_CALLS times (default 5000, after 200 to warm up) one after another through
# POST /api/tools/execute on one keep-alive connection.  Per call:
#   overhead = execution_time_ms (agentd's time around the tool call on the worker: the schema check, the
#              bridge to the loop, the pipe write, the wait, the answer's parse)
#            - server_us (the server's own time)
# so it counts both pipe transits and the wake-ups, but not HTTP or the worker queue.  Prints p50, p90, p99
# and the mean, and a RESULT line (JSON).
#   AGENTD_BIN   server binary (default build/agentd)
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_mcp_client agentd-bench-mcp-client
CALLS="${BENCH_CALLS:-5000}"
bench_require_positive CALLS
bench_build_unless_given
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
[ -x "$AGENTD" ] || { echo "bench_mcp: no agentd at $AGENTD" >&2; exit 1; }

printf '{"servers":{"timed":{"command":["%s","%s"]}}}\n' "$PY" "$ROOT/tests/mcp/servers/timed.py" > "$TMP/mcp.json"
bench_start_server --mcp-config "$TMP/mcp.json"
echo "bench_mcp: $(printf '%s ' "${SERVER_CMD[@]}" | show)"

"$PY" - "$PORT" "$SECRET" "$CALLS" <<'PYEOF'
import base64, hashlib, hmac, http.client, json, statistics, sys, time
port, secret, calls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "usr_bench_mcp", "email": "bench@example.test", "iat": now, "exp": now + 3600,
                       "type": "access", "iss": "netra-auth-service", "jti": "bench-mcp"}).encode())
sig = b64(hmac.new(secret.encode(), (head + "." + body).encode(), hashlib.sha256).digest())
hdrs = {"Authorization": "Bearer %s.%s.%s" % (head, body, sig), "Content-Type": "application/json"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
deadline = time.monotonic() + 30
while True:  # the server lists its tools in the background after boot
    c.request("GET", "/api/tools", headers=hdrs)
    if any(t["name"] == "timed.noop" for t in json.loads(c.getresponse().read())["tools"]):
        break
    if time.monotonic() > deadline:
        sys.exit("bench_mcp: timed.noop never appeared")
    time.sleep(0.1)
req = json.dumps({"tool_name": "timed.noop", "arguments": {}})
over = []
for i in range(200 + calls):
    c.request("POST", "/api/tools/execute", body=req, headers=hdrs)
    r = c.getresponse()
    j = json.loads(r.read())
    if r.status != 200:
        sys.exit("bench_mcp: %d %s" % (r.status, j))
    if i >= 200:
        over.append(j["execution_time_ms"] - j["result"]["server_us"] / 1000.0)
over.sort()
q = lambda p: over[min(len(over) - 1, int(p * len(over)))]
res = {"calls": calls, "overhead_ms": {"p50": round(q(0.50), 4), "p90": round(q(0.90), 4), "p99": round(q(0.99), 4),
                                       "mean": round(statistics.fmean(over), 4)}}
print("MCP stdio tool call, overhead above the server's own time (ms): p50 %.4f  p90 %.4f  p99 %.4f  mean %.4f"
      % (res["overhead_ms"]["p50"], res["overhead_ms"]["p90"], res["overhead_ms"]["p99"], res["overhead_ms"]["mean"]))
print("RESULT " + json.dumps(res))
PYEOF
