#!/usr/bin/env bash
# bench/run.sh: agentd's benchmark (what `make bench` runs; see bench/README.md).
#
# Starts build/agentd on a free loopback port with a throw-away data directory,
# a random 48-character JWT secret, rate limits off and warn-level logs, then:
#   (a) wrk against GET /health with 100 and 50 connections: requests/s, latency;
#   (b) wsload: BENCH_CONNS WebSocket connections (default 10000), server RSS per
#       idle connection, then ping round trips on BENCH_ACTIVE of them;
#   (c) a summary table with the exact commands used.
# The server is stopped on exit, whatever happens. Only 127.0.0.1 is targeted.
#
# Environment overrides:
#   BENCH_DURATION  seconds per measurement (default 10)
#   BENCH_CONNS     WebSocket connections (default 10000)
#   BENCH_ACTIVE    connections doing ping round trips (default 100)
#   BENCH_MODE      ping (WebSocket PING frames) or appping ({"type":"ping"}) (default ping)
#   BENCH_PIPELINE  pings in flight per active connection (default 1)
#   BENCH_WRK_CONNS wrk connection counts, space separated (default "100 50")
#   BENCH_JSON      if set, also write every figure as one JSON object to this file
#   AGENTD_BIN      server binary (default build/agentd)
#   WSLOAD_BIN      load client (default build/wsload; compiled into a temp dir if missing)
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench agentd-bench
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-10000}"
ACTIVE="${BENCH_ACTIVE:-100}"
MODE="${BENCH_MODE:-ping}"
PIPELINE="${BENCH_PIPELINE:-1}"
WRK_CONNS="${BENCH_WRK_CONNS:-100 50}"
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"
WSLOAD="${WSLOAD_BIN:-$ROOT/build/wsload}"

bench_require_positive DURATION CONNS ACTIVE PIPELINE
case "$MODE" in ping|appping) ;; *) echo "bench: BENCH_MODE must be ping or appping" >&2; exit 2 ;; esac

say() { printf '%s\n' "$*"; }
hr() { say "------------------------------------------------------------------------------"; }

# ---- binaries --------------------------------------------------------------
if [ ! -x "$AGENTD" ]; then
  say "bench: $AGENTD not found; run 'make build' first (make bench does)" >&2
  exit 1
fi
if [ ! -x "$WSLOAD" ]; then
  say "bench: $WSLOAD not found; compiling bench/wsload.c into $TMP"
  if gcc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Wno-unused-parameter "$ROOT/bench/wsload.c" -o "$TMP/wsload" \
       $(pkg-config --cflags --libs libuv openssl libjwt) -lwslay; then
    WSLOAD="$TMP/wsload"
  else
    say "bench: cannot build wsload; the WebSocket benchmark will be skipped" >&2
    WSLOAD=""
  fi
fi
HAVE_WRK=1
if ! command -v wrk >/dev/null 2>&1; then
  HAVE_WRK=0
  say "bench: wrk is not installed (Debian package 'wrk'; 'make deps' installs it): HTTP benchmark skipped" >&2
fi

# Both the server and wsload hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 256)) ]; then
  say "bench: warning: open-file limit $(ulimit -n) is below $((CONNS + 256)); some connections will fail" >&2
fi

# ---- server ----------------------------------------------------------------
bench_start_server
BASE="http://127.0.0.1:$PORT"
CPU="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
say "agentd benchmark: $AGENTD (pid $SERVER_PID) on $BASE"
say "machine: $(nproc) cores${CPU:+, $CPU}; duration ${DURATION}s per run; client and server share the cores"
hr

# Placeholder shown instead of the secret in the printed commands.
SHOWN_SECRET='<random-48-char-secret>'
declare -a SUMMARY=()
declare -a COMMANDS=()
JSON_PARTS=()
STATUS=0

# ---- (a) HTTP: wrk on /health ---------------------------------------------
if [ "$HAVE_WRK" = 1 ]; then
  for c in $WRK_CONNS; do
    cmd=(wrk -t1 -c"$c" -d"${DURATION}s" --latency "$BASE/health")
    say "(a) ${cmd[*]}"
    out="$TMP/wrk_c$c.txt"
    "${cmd[@]}" >"$out" 2>&1
    wrc=$?
    sed 's/^/    /' "$out"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    sockerr="$(grep -o 'Socket errors:.*' "$out" || true)"
    [ "$wrc" -ne 0 ] && { STATUS=1; say "    wrk exited with $wrc"; }
    note=""
    [ -n "$non2xx" ] && note=" non-2xx=$non2xx"
    [ -n "$sockerr" ] && note="$note ($sockerr)"
    SUMMARY+=("$(printf '%-34s %s' "GET /health, $c conns" "${rps:-?} req/s, latency p50 ${p50:-?} p99 ${p99:-?}$note")")
    COMMANDS+=("${cmd[*]}")
    JSON_PARTS+=("\"wrk_c$c\":{\"req_per_s\":${rps:-null},\"p50\":\"${p50:-}\",\"p99\":\"${p99:-}\",\"non_2xx\":${non2xx:-0}}")
    bench_server_alive || exit 1
    hr
  done
else
  SUMMARY+=("$(printf '%-34s %s' "GET /health" "skipped: wrk not installed")")
fi

# ---- (a2) reference: nginx on the same machine, same moment ----------------
# The issue's targets are relative to nginx (one worker, fixed /health); the
# machine's speed varies, so when nginx is installed it is measured here too.
if [ "$HAVE_WRK" = 1 ] && command -v nginx >/dev/null 2>&1 && [ "${BENCH_NGINX:-1}" = 1 ]; then
  NGX="$TMP/nginx"
  mkdir -p "$NGX/logs"
  NPORT=$(( PORT + 1 ))
  body="$(curl -s "$BASE/health" 2>/dev/null | tr -d "'")"
  cat >"$NGX/nginx.conf" <<NGINXCONF
worker_processes 1;
daemon off;
error_log $NGX/logs/error.log;
pid $NGX/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NPORT;
    location /health { default_type application/json; return 200 '$body'; }
  }
}
NGINXCONF
  nginx -c "$NGX/nginx.conf" -p "$NGX" >/dev/null 2>&1 &
  NGX_PID=$!
  sleep 0.5
  if kill -0 "$NGX_PID" 2>/dev/null; then
    cmd=(wrk -t1 -c100 -d"${DURATION}s" "http://127.0.0.1:$NPORT/health")
    say "(a2) reference: nginx 1 worker, fixed /health body: ${cmd[*]}"
    out="$TMP/wrk_nginx.txt"
    "${cmd[@]}" >"$out" 2>&1
    nrps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    sed 's/^/    /' "$out"
    SUMMARY+=("$(printf '%-34s %s' "nginx GET /health, 100 conns" "${nrps:-?} req/s (reference)")")
    COMMANDS+=("nginx -c <tmp>/nginx.conf (1 worker, return 200 <same body>); ${cmd[*]}")
    JSON_PARTS+=("\"nginx_c100\":{\"req_per_s\":${nrps:-null}}")
    kill "$NGX_PID" 2>/dev/null
    wait "$NGX_PID" 2>/dev/null
    hr
  else
    say "(a2) nginx did not start: reference skipped"
  fi
fi

# ---- (b) WebSocket: wsload --------------------------------------------------
if [ -n "$WSLOAD" ]; then
  ws_args=(--host 127.0.0.1 --port "$PORT" --conns "$CONNS" --active "$ACTIVE" --duration "$DURATION"
           --mode "$MODE" --pipeline "$PIPELINE" --server-pid "$SERVER_PID")
  shown="$WSLOAD ${ws_args[*]} --secret $SHOWN_SECRET"
  say "(b) $shown"
  "$WSLOAD" "${ws_args[@]}" --secret "$SECRET" 2>&1 | tee "$TMP/wsload.txt" | sed 's/^/    /'
  wsrc=${PIPESTATUS[0]}
  COMMANDS+=("$shown")
  result="$(grep '^RESULT ' "$TMP/wsload.txt" | tail -n1 | sed 's/^RESULT //')"
  if [ -z "$result" ]; then
    say "    wsload printed no RESULT line (exit $wsrc)"
    STATUS=1
    SUMMARY+=("$(printf '%-34s %s' "WebSocket" "failed (exit $wsrc)")")
  else
    [ "$wsrc" -ne 0 ] && { say "    wsload exited with $wsrc (2: nothing connected, 3: failures or errors)"; STATUS=1; }
    JSON_PARTS+=("\"wsload\":$result")
    if [ -n "$PY" ]; then
      cat >"$TMP/summary.py" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
def f(x, d=1):
    return "n/a" if x is None else format(x, ",.%df" % d)
lat = r["latency_us"]
fails = ", ".join("%s %s" % kv for kv in r["fail_reasons"].items())
row = lambda k, v: print("%-34s %s" % (k, v))
row("WS connect", "%d/%d in %.2f s (%s/s)%s" % (r["connected"], r["conns"], r["connect_time_s"],
    f(r["connect_rate_per_s"], 0), (", failed: " + fails) if fails else ""))
rss = r["rss_per_conn_kib"]
row("WS server RSS per idle conn", "%s KiB%s" % (f(rss, 2), "" if rss is None else
    " (%s -> %s KiB)" % (r["server_rss_before_kib"], r["server_rss_after_kib"])))
row("WS %s round trips" % r["mode"], "%s/s on %d conns (pipeline %d), %d errors" % (
    f(r["round_trips_per_s"], 0), r["active"], r["pipeline"], r["errors"]))
row("WS round-trip latency (us)", "p50 %d  p90 %d  p99 %d  max %d" % (lat["p50"], lat["p90"], lat["p99"], lat["max"]))
EOF
      while IFS= read -r line; do SUMMARY+=("$line"); done < <("$PY" "$TMP/summary.py" "$result")
    else
      SUMMARY+=("$(printf '%-34s %s' "WebSocket" "$result")")
    fi
  fi
  bench_server_alive || exit 1
  hr
else
  SUMMARY+=("$(printf '%-34s %s' "WebSocket" "skipped: no wsload binary")")
fi

# ---- (c) summary -------------------------------------------------------------
SERVER_SHOWN="$AGENTD --port 0 --data-dir <tmp>/data --jwt-secret $SHOWN_SECRET --rate-limit 0 --log-level warn"
say "SUMMARY ($("$AGENTD" --version 2>/dev/null | head -n1), $(date -u '+%Y-%m-%d %H:%M:%SZ'))"
for line in "${SUMMARY[@]}"; do say "  $line"; done
say "commands:"
say "  server: $SERVER_SHOWN   (port $PORT)"
for c in "${COMMANDS[@]}"; do say "  $c"; done
if [ -n "${BENCH_JSON:-}" ]; then
  ( IFS=,; printf '{"port":%s,"duration_s":%s,%s}\n' "$PORT" "$DURATION" "${JSON_PARTS[*]}" ) >"$BENCH_JSON"
  say "figures written to $BENCH_JSON"
fi
exit "$STATUS"
