#!/usr/bin/env bash
# bench/bench_threads.sh: throughput of the threads API (SPEC §3).
#
# Builds the release binary (make build) unless AGENTD_BIN is given, starts it on a
# free loopback port with a throw-away data directory, --rate-limit 0 and warn-level
# logs, mints an access token for one user (HS256 with the server's secret), creates
# 20 threads, then runs wrk:
#   (1) GET /api/threads                                  (target >= 20,000 req/s)
#   (2) POST /api/threads/{id}/messages into one thread    (target >= 5,000 req/s)
#   (3) POST messages to the 20 threads round-robin         (target >= 5,000 req/s)
# and prints requests/s of each with the exact commands.  The server is stopped on exit.
#
# Environment: BENCH_DURATION (seconds, default 10), BENCH_CONNS (wrk connections,
# default 50), AGENTD_BIN (default build/agentd).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_threads agentd-bench-threads
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-50}"

bench_build_unless_given
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
command -v wrk >/dev/null || { echo "bench_threads: wrk is not installed" >&2; exit 1; }

bench_start_server
BASE="http://127.0.0.1:$PORT"

# An access token as netra-auth-service issues them (the user is created on first use).
TOKEN="$("$PY" - "$SECRET" <<'EOF'
import base64, hashlib, hmac, json, secrets, sys, time
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"sub": "usr_bench_threads", "email": "bench@example.test", "iat": now, "exp": now + 3600,
          "jti": secrets.token_hex(12), "type": "access", "iss": "netra-auth-service"}
si = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
print(si + "." + b64(hmac.new(sys.argv[1].encode(), si.encode(), hashlib.sha256).digest()))
EOF
)"
AUTH="Authorization: Bearer $TOKEN"

THREADS=()
for i in $(seq 1 20); do
  id="$(curl -fsS -X POST -H "$AUTH" -H 'Content-Type: application/json' -d "{\"title\":\"bench $i\"}" \
        "$BASE/api/threads" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  [ -n "$id" ] || { echo "bench_threads: cannot create a thread" >&2; exit 1; }
  THREADS+=("$id")
done

# wrk scripts: one thread, and the 20 threads round-robin.
cat >"$TMP/one.lua" <<EOF
wrk.method = "POST"
wrk.path = "/api/threads/${THREADS[0]}/messages"
wrk.body = '{"content":"benchmark message: hello from wrk, a sentence of ordinary length."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
EOF
{
  printf 'local threads = {'
  for t in "${THREADS[@]}"; do printf '"%s",' "$t"; done
  printf '}\n'
  cat <<EOF
local i = 0
local body = '{"content":"benchmark message: hello from wrk, a sentence of ordinary length."}'
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $TOKEN"}
request = function()
  i = i + 1
  return wrk.format("POST", "/api/threads/" .. threads[(i % #threads) + 1] .. "/messages", headers, body)
end
EOF
} >"$TMP/rr.lua"

declare -a SUMMARY=()
run() { # label, wrk args...
  local label="$1"
  shift
  echo "== $label"
  echo "   wrk $*" | sed "s/$TOKEN/<token>/g; s#$TMP#\$TMP#g"
  local out
  out="$(wrk "$@" 2>&1)"
  echo "$out" | sed 's/^/   /'
  local rps non2xx
  rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  non2xx="$(echo "$out" | awk '/Non-2xx/ {print $NF}')"
  SUMMARY+=("$(printf '%-44s %12s req/s%s' "$label" "${rps:-?}" "${non2xx:+  (non-2xx: $non2xx)}")")
}

echo "agentd threads benchmark: $AGENTD on $BASE; $(nproc) cores shared by client and server"
run "GET /api/threads (20 threads)" -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$AUTH" "$BASE/api/threads"
run "POST messages, one thread" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/one.lua" "$BASE"
run "POST messages, 20 threads round-robin" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/rr.lua" "$BASE"

total="$(curl -fsS -H "$AUTH" "$BASE/api/messages?limit=1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
echo "------------------------------------------------------------------------------"
printf '%s\n' "${SUMMARY[@]}"
echo "messages stored: $total"
echo "server: ${SERVER_CMD[*]}" | sed "s/$SECRET/<secret>/; s#$TMP#\$TMP#g"
bench_server_alive || exit 1
