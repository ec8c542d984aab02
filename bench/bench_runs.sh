#!/usr/bin/env bash
# bench/bench_runs.sh: agent runs and the live event stream (SPEC §4, §5, §6).
#
# Builds the release binary (make build) unless AGENTD_BIN is given, compiles the
# C client bench/fanout.c into build/fanout (cc + pkg-config libuv openssl libjwt, -lwslay),
# and against a fresh server each time (free loopback port, throw-away data
# directory, --rate-limit 0, --log-level warn) measures:
#   (1) runs/s end to end: BENCH_RUN_CONNS WebSockets (one user each) send
#       user_message closed-loop (next on the run's final agent_completed) for
#       BENCH_DURATION s; completed runs/s and events/s received (target >= 1,000 runs/s).
#   (2) fan-out latency: BENCH_FANOUT_CONNS open sockets; per event and socket,
#       receipt wall clock minus the event's "timestamp" (set at emit); p50/p99
#       (target p99 <= 1 ms).  Cases, each on a fresh server:
#         - one socket per user (BENCH_FANOUT_CONNS users), runs started open-loop
#           at BENCH_FANOUT_RATE/s over the users, BENCH_FANOUT_PACED_RUNS runs;
#         - the same with 10 sockets per user (every event goes to 10 sockets);
#         - one socket per user again, the server run with --llm-latency-ms
#           BENCH_FANOUT_SPACED_MS (model steps spaced as with a real model);
#         - every socket of ONE user, BENCH_FANOUT_RUNS runs one at a time (each
#           event to all BENCH_FANOUT_CONNS sockets: the worst case of fan-out).
# Each measurement runs BENCH_REPEAT times (default 3); the median is reported.
#
# Environment: BENCH_DURATION (10), BENCH_RUN_CONNS ("50 10"), BENCH_FANOUT_CONNS (1000),
# BENCH_FANOUT_RATE (50), BENCH_FANOUT_PACED_RUNS (500), BENCH_FANOUT_RUNS (20),
# BENCH_FANOUT_SPACED_MS (20), BENCH_REPEAT (3),
# AGENTD_BIN (build/agentd), FANOUT_BIN (build/fanout), BENCH_JSON (also write the figures there).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_runs agentd-bench-runs
BENCH_STOP_TENTHS=100
DURATION="${BENCH_DURATION:-10}"
RUN_CONNS="${BENCH_RUN_CONNS:-50 10}"
FAN_CONNS="${BENCH_FANOUT_CONNS:-1000}"
FAN_RUNS="${BENCH_FANOUT_RUNS:-20}"
FAN_RATE="${BENCH_FANOUT_RATE:-50}"
FAN_PACED_RUNS="${BENCH_FANOUT_PACED_RUNS:-500}"
FAN_SPACED="${BENCH_FANOUT_SPACED_MS:-20}"
REPEAT="${BENCH_REPEAT:-3}"

bench_build_unless_given
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
FANOUT="${FANOUT_BIN:-$ROOT/build/fanout}"
[ -x "$AGENTD" ] || { echo "bench_runs: no agentd at $AGENTD" >&2; exit 1; }
if [ -z "${FANOUT_BIN:-}" ]; then
  mkdir -p "$ROOT/build"
  # shellcheck disable=SC2046
  cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wno-unused-parameter "$ROOT/bench/fanout.c" -o "$FANOUT" \
    $(pkg-config --cflags --libs libuv openssl libjwt) -lwslay || { echo "bench_runs: cannot build bench/fanout.c" >&2; exit 1; }
fi

# 1,000 sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true



declare -a SUMMARY=()
declare -A FIG=()
FAIL=0


# try_client OUT TITLE CLIENT...: one try against the running server: prints both
# commands and the client's output (kept in OUT); a failing client sets FAIL.
try_client() {
  local out="$1" title="$2" rc
  shift 2
  echo "== $title"
  echo "   server: ${SERVER_CMD[*]}" | show
  echo "   client: $*" | show
  "$@" >"$out" 2>&1
  rc=$?
  sed 's/^/   /' "$out" | show
  [ "$rc" -eq 0 ] || { echo "   (client exit $rc)"; FAIL=1; }
  bench_server_alive || exit 1
}

echo "agentd runs benchmark: $(nproc) cores shared by client and server"

# ---- (1) runs per second --------------------------------------------------------
for conns in $RUN_CONNS; do
  files=()
  for i in $(seq 1 "$REPEAT"); do
    bench_start_server
    out="$TMP/runs_${conns}_$i.out"
    try_client "$out" "runs/s, $conns sockets, try $i" \
      "$FANOUT" --port "$PORT" --secret "$SECRET" --mode runs --conns "$conns" --duration "$DURATION" --quiet
    files+=("$out")
  done
  rps="$(median runs_per_s "${files[@]}")"
  eps="$(median events_per_s "${files[@]}")"
  FIG["runs_${conns}_runs_per_s"]="$rps"
  FIG["runs_${conns}_events_per_s"]="$eps"
  SUMMARY+=("$(printf '%-52s %10s runs/s %12s events/s' "runs end to end, $conns sockets (median of $REPEAT)" "$rps" "$eps")")
done

# ---- (2) fan-out latency ----------------------------------------------------------
# fanout_case KEY TITLE LLM_MS CLIENT_ARGS...: BENCH_REPEAT tries on fresh servers, medians.
fanout_case() {
  local key="$1" title="$2" llm="$3"
  shift 3
  local files=() mfiles=() flags=() i out
  [ "$llm" != 0 ] && flags=(--llm-latency-ms "$llm")
  for i in $(seq 1 "$REPEAT"); do
    bench_start_server "${flags[@]}"
    out="$TMP/fan_${key}_$i.out"
    try_client "$out" "fan-out latency, $title, try $i" \
      "$FANOUT" --port "$PORT" --secret "$SECRET" --mode fanout --conns "$FAN_CONNS" "$@" --quiet
    metrics_dump "$TMP/fan_${key}_$i.metrics"
    files+=("$out")
    mfiles+=("$TMP/fan_${key}_$i.metrics")
  done
  local f="fanout_${key}"
  FIG["${f}_p50_ms"]="$(median latency_ms.p50 "${files[@]}")"
  FIG["${f}_p99_ms"]="$(median latency_ms.p99 "${files[@]}")"
  FIG["${f}_thinking_p50_ms"]="$(median thinking_latency_ms.p50 "${files[@]}")"
  FIG["${f}_thinking_p99_ms"]="$(median thinking_latency_ms.p99 "${files[@]}")"
  # The server's share, from its own histograms (GET /metrics): emit -> on the sockets,
  # and emit -> stored (part of the former).
  FIG["${f}_server_p50_ms"]="$(hist_median agentd_event_delivery_seconds 0.5 "${mfiles[@]}")"
  FIG["${f}_server_p99_ms"]="$(hist_median agentd_event_delivery_seconds 0.99 "${mfiles[@]}")"
  FIG["${f}_server_within_1ms_pct"]="$(hist_median agentd_event_delivery_seconds le1ms "${mfiles[@]}")"
  FIG["${f}_stored_p99_ms"]="$(hist_median agentd_event_store_seconds 0.99 "${mfiles[@]}")"
  SUMMARY+=("$(printf '%-58s p50 %8s ms  p99 %8s ms' "fan-out, $title" "${FIG[${f}_p50_ms]}" "${FIG[${f}_p99_ms]}")")
  SUMMARY+=("$(printf '%-58s p50 %8s ms  p99 %8s ms' "   agent_thinking events only" "${FIG[${f}_thinking_p50_ms]}" \
    "${FIG[${f}_thinking_p99_ms]}")")
  SUMMARY+=("$(printf '%-58s p50 %8s ms  p99 %8s ms  (%s %% <= 1 ms)' "   server side, emit -> on the sockets" \
    "${FIG[${f}_server_p50_ms]}" "${FIG[${f}_server_p99_ms]}" "${FIG[${f}_server_within_1ms_pct]}")")
  SUMMARY+=("$(printf '%-58s %23s p99 %8s ms' "   server side, emit -> stored" "" "${FIG[${f}_stored_p99_ms]}")")
}

fanout_case users "$FAN_CONNS sockets, 1 per user, $FAN_RATE runs/s" 0 \
  --users "$FAN_CONNS" --rate "$FAN_RATE" --runs "$FAN_PACED_RUNS"
fanout_case users10 "$FAN_CONNS sockets, 10 per user, $FAN_RATE runs/s" 0 \
  --users "$((FAN_CONNS / 10))" --rate "$FAN_RATE" --runs "$FAN_PACED_RUNS"
fanout_case spaced "$FAN_CONNS sockets, 1 per user, llm ${FAN_SPACED} ms" "$FAN_SPACED" \
  --users "$FAN_CONNS" --rate "$FAN_RATE" --runs "$FAN_PACED_RUNS"
fanout_case oneuser "$FAN_CONNS sockets of ONE user, runs one at a time" 0 --runs "$FAN_RUNS"
bench_stop_server 100

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
