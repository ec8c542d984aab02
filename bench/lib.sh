# bench/lib.sh: what the bench scripts share (sourced by bench/run.sh, bench_me.sh,
# bench_threads.sh, bench_runs.sh; not run on its own).
#
# A fresh agentd for a measurement: a throw-away temp dir ($TMP, removed on exit),
# a random 48-character JWT secret ($SECRET), the server on a free loopback port
# (--port 0) with --rate-limit 0 and warn-level logs, its port read from its
# "agentd listening on http://127.0.0.1:PORT" line ($PORT), and the server stopped
# on exit whatever happens (TERM, then KILL after the grace period).
#
# Use:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init NAME TMP_PREFIX   # NAME prefixes every message ("bench_me: ...")
#   bench_start_server [extra agentd flags...]
#   bench_server_alive || exit 1
# Sets ROOT (the repository) and PY (Debian's python3) when sourced.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3 || true)"

BENCH_NAME=bench
TMP=""
SERVER_PID=""
SERVER_CMD=()
PORT=""
SECRET=""

# bench_init NAME TMP_PREFIX: the message prefix, $TMP, the exit/interrupt traps
# and $SECRET (openssl rand, or /dev/urandom without openssl).
bench_init() {
  BENCH_NAME="$1"
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if command -v openssl >/dev/null 2>&1; then
    SECRET="$(openssl rand -hex 24)"
  else
    SECRET="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  fi
}

# bench_require_positive VAR...: each $VAR (set from BENCH_VAR) is a positive integer, else exit 2.
bench_require_positive() {
  local v
  for v in "$@"; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
      echo "$BENCH_NAME: BENCH_$v must be a positive integer (got '${!v}')" >&2
      exit 2
    fi
  done
}

# bench_require_tools CMD...: each command is on PATH, else exit 2.
bench_require_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$BENCH_NAME: $t is not installed (scripts/deps.sh)" >&2; exit 2; }
  done
}

# bench_register_user: register bench@example.test on $BASE and set $TOKEN to its
# access token; exit 1 if the server refuses.
bench_register_user() {
  local resp
  resp="$(curl -sS -X POST "$BASE/auth/register" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.test","password":"bench password 1"}')"
  TOKEN="$(printf '%s' "$resp" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
  [ -n "$TOKEN" ] || { echo "$BENCH_NAME: register failed: $resp" >&2; exit 1; }
}

# bench_build_unless_given: `make build` unless AGENTD_BIN names a binary; exit 1 if it fails.
bench_build_unless_given() {
  if [ -z "${AGENTD_BIN:-}" ]; then
    (cd "$ROOT" && make build >/dev/null) || { echo "$BENCH_NAME: make build failed" >&2; exit 1; }
  fi
}

# bench_stop_server [TENTHS]: TERM the server, KILL it after TENTHS tenths of a second (default 50).
bench_stop_server() {
  local tenths="${1:-50}"
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 "$tenths"); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}

# The EXIT trap: stop the server (grace BENCH_STOP_TENTHS, default 50), remove $TMP, keep the exit status.
bench_cleanup() {
  local rc=$?
  bench_stop_server "${BENCH_STOP_TENTHS:-50}"
  [ -n "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}

# bench_server_alive: 0 while the server runs; else says so with the end of its log, 1.
bench_server_alive() {
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "$BENCH_NAME: agentd (pid $SERVER_PID) is gone; last lines of its log:" >&2
    tail -n 20 "$TMP/server.log" >&2
    return 1
  fi
}

# bench_start_server [flags...]: a fresh server on an empty $TMP/data (a running
# one is stopped first): SERVER_CMD, SERVER_PID and PORT; its output goes to
# $TMP/server.log.  Exits 1 when it dies or prints no listening line within 15 s.
bench_start_server() {
  bench_stop_server "${BENCH_STOP_TENTHS:-50}"
  rm -rf "$TMP/data"
  mkdir -p "$TMP/data"
  SERVER_CMD=("$AGENTD" --port 0 --data-dir "$TMP/data" --jwt-secret "$SECRET" --rate-limit 0 --log-level warn "$@")
  "${SERVER_CMD[@]}" >"$TMP/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 1 150); do
    PORT="$(grep -o 'agentd listening on http://127\.0\.0\.1:[0-9]*' "$TMP/server.log" 2>/dev/null | head -n1 | sed 's/.*://')"
    [ -n "$PORT" ] && return 0
    bench_server_alive || exit 1
    sleep 0.1
  done
  echo "$BENCH_NAME: agentd printed no 'agentd listening on' line within 15 s; its log:" >&2
  cat "$TMP/server.log" >&2
  exit 1
}

# show: a command or output line with the secret and the temp dir as placeholders (needs SECRET, TMP, ROOT).
show() { sed "s/$SECRET/<secret>/g; s#$TMP#\$TMP#g; s#$ROOT/##g"; }

# median KEY FILE...: the median of a RESULT figure over the tries (dotted keys).
median() {
  local key="$1"
  shift
  "$PY" - "$key" "$@" <<'EOF'
import json, statistics, sys
key, files = sys.argv[1], sys.argv[2:]
vals = []
for f in files:
    for line in open(f):
        if line.startswith("RESULT "):
            v = json.loads(line[7:])
            for k in key.split("."):
                v = v[k]
            vals.append(float(v))
print("%.3f" % statistics.median(vals) if vals else "?")
EOF
}

# metrics_dump OUT (needs PORT): the server's GET /metrics (its event latency histograms).
metrics_dump() {
  "$PY" -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode())' \
    "$PORT" >"$1" 2>/dev/null || echo "   (no /metrics)"
}

# hist_median NAME Q FILES...: the median over tries of histogram NAME's quantile Q
# (0..1; as Prometheus' histogram_quantile: linear within the bucket), in ms;
# Q = "le1ms": the share of observations at most 1 ms, in %.
hist_median() {
  local name="$1" q="$2"
  shift 2
  "$PY" - "$name" "$q" "$@" <<'EOF'
import re, statistics, sys
name, q, files = sys.argv[1], sys.argv[2], sys.argv[3:]
vals = []
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    b = [(float("inf") if le == "+Inf" else float(le), float(c))
         for le, c in re.findall(r'^%s_bucket\{le="([^"]+)"\} (\S+)$' % name, text, re.M)]
    if not b or b[-1][1] == 0:
        continue
    total = b[-1][1]
    if q == "le1ms":
        vals.append(100.0 * next(c for le, c in b if le >= 0.001) / total)
        continue
    rank, lo, below = float(q) * total, 0.0, 0.0
    for le, c in b:
        if c >= rank:
            hi = lo if le == float("inf") else le
            vals.append(1000.0 * (lo + (hi - lo) * ((rank - below) / (c - below) if c > below else 0)))
            break
        lo, below = le, c
print("%.3f" % statistics.median(vals) if vals else "?")
EOF
}
