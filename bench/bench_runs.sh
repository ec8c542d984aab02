#!/usr/bin/env bash
# bench/bench_runs.sh: agent runs and the live event stream (SPEC §4, §5, §6).
#
# Builds the release binary (make build) unless AGENTD_BIN is given, compiles the
# C client bench/fanout.c into build/fanout (cc + pkg-config libuv openssl, -lwslay),
# and against a fresh server each time (free loopback port, throw-away data
# directory, --rate-limit 0, --log-level warn) measures:
#   (1) runs/s end to end: BENCH_RUN_CONNS WebSockets (one user each) send
#       user_message closed-loop (next on the run's final agent_completed) for
#       BENCH_DURATION s; completed runs/s and events/s received (target >= 1,000 runs/s).
#   (2) fan-out latency: BENCH_FANOUT_CONNS sockets of ONE user, BENCH_FANOUT_RUNS
#       runs one at a time; per event and socket, receipt wall clock minus the
#       event's "timestamp"; p50/p99 (target p99 <= 1 ms).  Also with the server's
#       --llm-latency-ms BENCH_FANOUT_SPACED_MS so that model steps are spaced.
# Each measurement runs BENCH_REPEAT times (default 3); the median is reported.
#
# Environment: BENCH_DURATION (10), BENCH_RUN_CONNS ("50 10"), BENCH_FANOUT_CONNS (1000),
# BENCH_FANOUT_RUNS (20), BENCH_FANOUT_SPACED_MS (20), BENCH_REPEAT (3),
# AGENTD_BIN (build/agentd), FANOUT_BIN (build/fanout), BENCH_JSON (also write the figures there).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-10}"
RUN_CONNS="${BENCH_RUN_CONNS:-50 10}"
FAN_CONNS="${BENCH_FANOUT_CONNS:-1000}"
FAN_RUNS="${BENCH_FANOUT_RUNS:-20}"
FAN_SPACED="${BENCH_FANOUT_SPACED_MS:-20}"
REPEAT="${BENCH_REPEAT:-3}"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"

if [ -z "${AGENTD_BIN:-}" ]; then
  (cd "$ROOT" && make build >/dev/null) || { echo "bench_runs: make build failed" >&2; exit 1; }
fi
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
FANOUT="${FANOUT_BIN:-$ROOT/build/fanout}"
[ -x "$AGENTD" ] || { echo "bench_runs: no agentd at $AGENTD" >&2; exit 1; }
if [ -z "${FANOUT_BIN:-}" ]; then
  mkdir -p "$ROOT/build"
  # shellcheck disable=SC2046
  cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wno-unused-parameter "$ROOT/bench/fanout.c" -o "$FANOUT" \
    $(pkg-config --cflags --libs libuv openssl) -lwslay || { echo "bench_runs: cannot build bench/fanout.c" >&2; exit 1; }
fi

# 1,000 sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true

TMP="$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-runs.XXXXXX")"
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}
cleanup() {
  local rc=$?
  stop_server
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SECRET="$(openssl rand -hex 24)"
PORT=""
SERVER_CMD=()
start_server() { # extra flags...
  stop_server
  rm -rf "$TMP/data"
  mkdir -p "$TMP/data"
  SERVER_CMD=("$AGENTD" --port 0 --data-dir "$TMP/data" --jwt-secret "$SECRET" --rate-limit 0 --log-level warn "$@")
  "${SERVER_CMD[@]}" >"$TMP/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 1 150); do
    PORT="$(grep -o 'agentd listening on http://127\.0\.0\.1:[0-9]*' "$TMP/server.log" | head -n1 | sed 's/.*://')"
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench_runs: no listening line" >&2
  cat "$TMP/server.log" >&2
  exit 1
}

show() { sed "s/$SECRET/<secret>/g; s#$TMP#\$TMP#g; s#$ROOT/##g"; }

# median KEY FILE...: the median of a RESULT figure over several runs (dotted keys).
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

declare -a SUMMARY=()
declare -A FIG=()
FAIL=0

echo "agentd runs benchmark: $(nproc) cores shared by client and server"

# ---- (1) runs per second --------------------------------------------------------
for conns in $RUN_CONNS; do
  files=()
  for i in $(seq 1 "$REPEAT"); do
    start_server
    out="$TMP/runs_${conns}_$i.out"
    cmd=("$FANOUT" --port "$PORT" --secret "$SECRET" --mode runs --conns "$conns" --duration "$DURATION" --quiet)
    echo "== runs/s, $conns sockets, try $i"
    echo "   server: ${SERVER_CMD[*]}" | show
    echo "   client: ${cmd[*]}" | show
    "${cmd[@]}" >"$out" 2>&1
    rc=$?
    sed 's/^/   /' "$out" | show
    [ "$rc" -eq 0 ] || { echo "   (client exit $rc)"; FAIL=1; }
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench_runs: agentd died" >&2; tail "$TMP/server.log" >&2; exit 1; }
    files+=("$out")
  done
  rps="$(median runs_per_s "${files[@]}")"
  eps="$(median events_per_s "${files[@]}")"
  FIG["runs_${conns}_runs_per_s"]="$rps"
  FIG["runs_${conns}_events_per_s"]="$eps"
  SUMMARY+=("$(printf '%-52s %10s runs/s %12s events/s' "runs end to end, $conns sockets (median of $REPEAT)" "$rps" "$eps")")
done

# ---- (2) fan-out latency ----------------------------------------------------------
for spaced in 0 "$FAN_SPACED"; do
  files=()
  flags=()
  [ "$spaced" != 0 ] && flags=(--llm-latency-ms "$spaced")
  for i in $(seq 1 "$REPEAT"); do
    start_server "${flags[@]}"
    out="$TMP/fan_${spaced}_$i.out"
    cmd=("$FANOUT" --port "$PORT" --secret "$SECRET" --mode fanout --conns "$FAN_CONNS" --runs "$FAN_RUNS" --quiet)
    echo "== fan-out latency, $FAN_CONNS sockets of one user, llm latency ${spaced} ms, try $i"
    echo "   server: ${SERVER_CMD[*]}" | show
    echo "   client: ${cmd[*]}" | show
    "${cmd[@]}" >"$out" 2>&1
    rc=$?
    sed 's/^/   /' "$out" | show
    [ "$rc" -eq 0 ] || { echo "   (client exit $rc)"; FAIL=1; }
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench_runs: agentd died" >&2; tail "$TMP/server.log" >&2; exit 1; }
    files+=("$out")
  done
  p50="$(median latency_ms.p50 "${files[@]}")"
  p99="$(median latency_ms.p99 "${files[@]}")"
  t50="$(median thinking_latency_ms.p50 "${files[@]}")"
  t99="$(median thinking_latency_ms.p99 "${files[@]}")"
  FIG["fanout_${spaced}_p50_ms"]="$p50"
  FIG["fanout_${spaced}_p99_ms"]="$p99"
  FIG["fanout_${spaced}_thinking_p50_ms"]="$t50"
  FIG["fanout_${spaced}_thinking_p99_ms"]="$t99"
  SUMMARY+=("$(printf '%-52s p50 %8s ms  p99 %8s ms' "fan-out, $FAN_CONNS sockets, llm ${spaced} ms, all events" "$p50" "$p99")")
  SUMMARY+=("$(printf '%-52s p50 %8s ms  p99 %8s ms' "   agent_thinking events only" "$t50" "$t99")")
done
stop_server

echo "------------------------------------------------------------------------------"
printf '%s\n' "${SUMMARY[@]}"
echo "targets: >= 1,000 runs/s; fan-out p99 <= 1 ms"
if [ -n "${BENCH_JSON:-}" ]; then
  {
    printf '{'
    sep=""
    for k in "${!FIG[@]}"; do printf '%s"%s":%s' "$sep" "$k" "${FIG[$k]}"; sep=","; done
    printf '}\n'
  } >"$BENCH_JSON"
fi
exit "$FAIL"
