#!/usr/bin/env bash
# bench/bench_llm.sh: streaming from a model (issue 14; SPEC §11).
#
# Builds the release binary (make build) unless AGENTD_BIN is given, compiles
# bench/llmstream.c into build/llmstream (cc + pkg-config libuv openssl libjwt
# jansson, Debian's llhttp sources from /usr/share/llhttp as meson builds them,
# -lwslay) unless LLMSTREAM_BIN is given, and BENCH_REPEAT times (default 3):
#   1. starts llmstream (the model server listens at once on a free loopback
#      port and prints it; its chat clients wait for agentd's port in a file),
#   2. starts a fresh agentd (lib.sh: free port, throw-away data dir,
#      --rate-limit 0, --log-level warn) with --llm openai --max-runs 2000,
#      OPENAI_BASE_URL=http://127.0.0.1:LLM_PORT/v1 OPENAI_MODEL=bench-model,
#   3. writes "AGENTD_PORT AGENTD_PID" to that file: llmstream connects
#      BENCH_CHATS WebSockets (one user each), sends one user_message per chat
#      (spread over 1 s), streams BENCH_CHUNKS deltas of BENCH_CHUNK_BYTES at
#      BENCH_CHUNK_HZ per stream into each model call, and measures the added
#      latency (chunk written -> its text read from the WebSocket), agentd's CPU
#      per 1,000 chunks, its RSS per in-flight model call, and lost text.
# Medians of the tries are reported; the exact commands are printed.
#
# Environment: BENCH_CHATS (1000), BENCH_CHUNKS (100), BENCH_CHUNK_HZ (20),
# BENCH_LLMSTREAM_FLAGS (more llmstream options, e.g. "--no-barrier"),
# BENCH_CHUNK_BYTES (40), BENCH_ROUNDS (1), BENCH_REPEAT (3), BENCH_LLM_FLAGS
# ("--llm openai"; e.g. "--llm builtin" checks the script's plumbing without a
# model: then every chat counts as mismatched, as no stream is written), AGENTD_BIN
# (build/agentd), LLMSTREAM_BIN (build/llmstream), BENCH_JSON (also write the
# figures there as one JSON object).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_llm agentd-bench-llm
BENCH_STOP_TENTHS=100
CHATS="${BENCH_CHATS:-1000}"
CHUNKS="${BENCH_CHUNKS:-100}"
CHUNK_HZ="${BENCH_CHUNK_HZ:-20}"
CHUNK_BYTES="${BENCH_CHUNK_BYTES:-40}"
ROUNDS="${BENCH_ROUNDS:-1}"
REPEAT="${BENCH_REPEAT:-3}"
read -r -a LLM_FLAGS <<<"${BENCH_LLM_FLAGS:---llm openai}"
read -r -a LS_FLAGS <<<"${BENCH_LLMSTREAM_FLAGS:-}"
bench_require_positive CHATS CHUNKS CHUNK_HZ CHUNK_BYTES ROUNDS REPEAT

LS_PID=""
# Stop llmstream too when the script ends (then lib.sh's cleanup, exit status kept).
llm_cleanup() {
  local rc=$?
  if [ -n "$LS_PID" ] && kill -0 "$LS_PID" 2>/dev/null; then
    kill -TERM "$LS_PID" 2>/dev/null
    wait "$LS_PID" 2>/dev/null
  fi
  (exit "$rc")
  bench_cleanup
}
trap llm_cleanup EXIT

bench_build_unless_given
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
LLMSTREAM="${LLMSTREAM_BIN:-$ROOT/build/llmstream}"
[ -x "$AGENTD" ] || { echo "bench_llm: no agentd at $AGENTD" >&2; exit 1; }
if [ -z "${LLMSTREAM_BIN:-}" ]; then
  mkdir -p "$ROOT/build"
  LLHTTP=/usr/share/llhttp
  # shellcheck disable=SC2046
  cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wno-unused-parameter -I/usr/share/include/llhttp \
    "$ROOT/bench/llmstream.c" "$LLHTTP/llhttp.c" "$LLHTTP/api.c" "$LLHTTP/http.c" -o "$LLMSTREAM" \
    $(pkg-config --cflags --libs libuv openssl libjwt jansson) -lwslay ||
    { echo "bench_llm: cannot build bench/llmstream.c" >&2; exit 1; }
fi

# 1,000 WebSockets and 1,000 model connections on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true



# total KEY FILE...: the sum of a RESULT figure over the tries.
total() {
  local key="$1"
  shift
  "$PY" - "$key" "$@" <<'EOF'
import json, sys
key, files = sys.argv[1], sys.argv[2:]
t = 0
for f in files:
    for line in open(f):
        if line.startswith("RESULT "):
            t += int(json.loads(line[7:])[key])
print(t)
EOF
}



# busy_pct: how busy the machine's CPUs were over one second (from /proc/stat), before a try.
busy_pct() {
  local a b
  read -r -a a </proc/stat
  sleep 1
  read -r -a b </proc/stat
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  if [ "$total" -gt 0 ]; then echo $(( 100 * (total - idle) / total )); else echo "?"; fi
}

echo "agentd streaming-from-a-model benchmark: $(nproc) cores shared by agentd and llmstream"
FAIL=0
files=()
mfiles=()
for i in $(seq 1 "$REPEAT"); do
  out="$TMP/llm_$i.out"
  pfile="$TMP/agentd_$i.port"
  LS_CMD=("$LLMSTREAM" --secret "$SECRET" --port-file "$pfile" --chats "$CHATS" --rounds "$ROUNDS"
    --chunks "$CHUNKS" --chunk-hz "$CHUNK_HZ" --chunk-bytes "$CHUNK_BYTES" ${LS_FLAGS[@]+"${LS_FLAGS[@]}"})
  "${LS_CMD[@]}" >"$out" 2>&1 </dev/null &
  LS_PID=$!
  LLM_PORT=""
  for _ in $(seq 1 100); do
    LLM_PORT="$(grep -o 'llmstream listening on http://127\.0\.0\.1:[0-9]*' "$out" 2>/dev/null | head -n1 | sed 's/.*://')"
    [ -n "$LLM_PORT" ] && break
    kill -0 "$LS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$LLM_PORT" ]; then
    echo "bench_llm: llmstream printed no listening line; its output:" >&2
    cat "$out" >&2
    exit 1
  fi
  export OPENAI_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" OPENAI_MODEL=bench-model OPENAI_API_KEY=sk-bench
  bench_start_server "${LLM_FLAGS[@]}" --max-runs 2000
  echo "$PORT $SERVER_PID" >"$pfile.tmp" && mv "$pfile.tmp" "$pfile"
  echo "== try $i of $REPEAT (before it: CPUs $(busy_pct) % busy over 1 s; load average $(cut -d' ' -f1-3 /proc/loadavg), which counts agentd's run threads of the try before)"
  echo "   model + chats: ${LS_CMD[*]}" | show
  echo "   server: OPENAI_BASE_URL=$OPENAI_BASE_URL OPENAI_MODEL=$OPENAI_MODEL OPENAI_API_KEY=sk-bench ${SERVER_CMD[*]}" | show
  echo "   (llmstream reads \"AGENTD_PORT AGENTD_PID\" from the port file once agentd listens: $PORT $SERVER_PID)" | show
  wait "$LS_PID"
  rc=$?
  LS_PID=""
  sed 's/^/   /' "$out" | show
  [ "$rc" -eq 0 ] || { echo "   (llmstream exit $rc)"; FAIL=1; }
  if grep -qv 'agentd listening on' "$TMP/server.log"; then
    echo "   agentd's log (warnings and errors, last 10 lines):"
    grep -v 'agentd listening on' "$TMP/server.log" | tail -n 10 | sed 's/^/     /' | show
  fi
  bench_server_alive || exit 1
  metrics_dump "$TMP/llm_$i.metrics"
  bench_stop_server 100
  files+=("$out")
  mfiles+=("$TMP/llm_$i.metrics")
done

declare -A FIG=()
for k in latency_ms.p50 latency_ms.p90 latency_ms.p99 latency_ms.p999 latency_ms.max chunks_per_s full_chunks_per_s \
  cpu_ms_per_1000_chunks self_cpu_s rss_full_per_call_kib rss_per_call_kib rss_idle_kib rss_full_kib rss_peak_kib \
  partial_events rss_barrier_per_call_kib rss_barrier_kib stack_per_call_kib anon_per_call_kib file_per_call_kib \
  barrier_wait_s rss_barrier_per_call_ex_db_kib db_cache_growth_kib; do
  FIG["$k"]="$(median "$k" "${files[@]}")"
done
# The server's share of the latency (its own histograms over every event of the try):
# emit -> written on the sockets, and emit -> stored (part of the former).
FIG[server_delivery_p50_ms]="$(hist_median agentd_event_delivery_seconds 0.5 "${mfiles[@]}")"
FIG[server_delivery_p99_ms]="$(hist_median agentd_event_delivery_seconds 0.99 "${mfiles[@]}")"
FIG[server_store_p99_ms]="$(hist_median agentd_event_store_seconds 0.99 "${mfiles[@]}")"
for k in completed failed mismatched response_mismatched stamps_lost drops connect_failed; do
  FIG["$k"]="$(total "$k" "${files[@]}")"
done

echo "------------------------------------------------------------------------------"
echo "streaming from a model: $CHATS chats, $CHUNKS chunks of $CHUNK_BYTES bytes at $CHUNK_HZ/s each (medians of $REPEAT tries)"
printf '%-48s p50 %s ms  p90 %s ms  p99 %s ms  p99.9 %s ms  max %s ms\n' "added latency (chunk written -> text read)" \
  "${FIG[latency_ms.p50]}" "${FIG[latency_ms.p90]}" "${FIG[latency_ms.p99]}" "${FIG[latency_ms.p999]}" "${FIG[latency_ms.max]}"
printf '%-48s p50 %s ms  p99 %s ms  (emit -> stored p99 %s ms)\n' "   of it in agentd, emit -> on the sockets" \
  "${FIG[server_delivery_p50_ms]}" "${FIG[server_delivery_p99_ms]}" "${FIG[server_store_p99_ms]}"
printf '%-48s %s while all calls were in flight (%s on average over the window)\n' "chunks/s into agentd" \
  "${FIG[full_chunks_per_s]}" "${FIG[chunks_per_s]}"
printf '%-48s %s ms (llmstream itself: %s s of CPU per try)\n' "agentd CPU per 1,000 chunks" \
  "${FIG[cpu_ms_per_1000_chunks]}" "${FIG[self_cpu_s]}"
if [ "${FIG[rss_barrier_per_call_kib]#-}" = "${FIG[rss_barrier_per_call_kib]}" ]; then
  printf '%-48s %s KiB at the barrier (idle %s KiB, then %s KiB; of it stacks %s, other anonymous %s, files %s KiB per call)\n' \
    "agentd RSS per in-flight model call" "${FIG[rss_barrier_per_call_kib]}" "${FIG[rss_idle_kib]}" \
    "${FIG[rss_barrier_kib]}" "${FIG[stack_per_call_kib]}" "${FIG[anon_per_call_kib]}" "${FIG[file_per_call_kib]}"
  printf '%-48s %s KiB without the growth of SQLite'"'"'s page caches (+%s KiB: bounded, shared by every run)\n' \
    "   the same, fixed costs set apart" "${FIG[rss_barrier_per_call_ex_db_kib]}" "${FIG[db_cache_growth_kib]}"
else # --no-barrier, or a barrier never reached: -1
  printf '%-48s no barrier sample (idle %s KiB)\n' "agentd RSS per in-flight model call" "${FIG[rss_idle_kib]}"
fi
printf '%-48s %s KiB mid-stream, all in flight (then %s KiB); %s KiB at the peak (%s KiB)\n' \
  "   the same with the events stored so far" "${FIG[rss_full_per_call_kib]}" "${FIG[rss_full_kib]}" \
  "${FIG[rss_per_call_kib]}" "${FIG[rss_peak_kib]}"
printf '%-48s completed %s, failed %s, text mismatched %s (agent_response %s), stamps lost %s, dropped sockets %s\n' \
  "chats over all tries" "${FIG[completed]}" "${FIG[failed]}" "${FIG[mismatched]}" "${FIG[response_mismatched]}" \
  "${FIG[stamps_lost]}" "${FIG[drops]}"
echo "targets: p99 <= 5 ms; RSS <= 64 KiB per in-flight model call; zero lost text"
if [ -n "${BENCH_JSON:-}" ]; then
  {
    printf '{'
    sep=""
    for k in "${!FIG[@]}"; do printf '%s"%s":%s' "$sep" "$k" "${FIG[$k]}"; sep=","; done
    printf '}\n'
  } >"$BENCH_JSON"
fi
[ "${FIG[failed]}" = 0 ] && [ "${FIG[mismatched]}" = 0 ] && [ "${FIG[stamps_lost]}" = 0 ] || FAIL=1
exit "$FAIL"
