#!/usr/bin/env bash
# bench/bench_me.sh: the cost of authentication on an API route.
#
# Starts build/agentd (release build: `make build`) on a free loopback port with a
# throw-away data directory, a random JWT secret, --rate-limit 0 and warn logs;
# registers one user with curl; then runs
#   wrk -t1 -c100 -d10s -H 'Authorization: Bearer <token>' http://127.0.0.1:PORT/api/me
#   wrk -t1 -c100 -d10s http://127.0.0.1:PORT/health
# BENCH_ROUNDS times, alternating (the machine is shared: alternating keeps a
# load change from favouring one route), and prints every round, the best of
# each route and their ratio, and the median of the per-round ratios.
# /api/me verifies the JWT on the loop (a repeated token: from the verified-token
# cache) and answers from the cached user row (re-read on a worker after 30 s);
# /health answers from memory.  The server is stopped on exit, whatever happens.
#
# Environment: BENCH_DURATION (seconds per run, default 10), BENCH_CONNS
# (default 100), BENCH_ROUNDS (default 1), AGENTD_BIN (default build/agentd).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench_me agentd-bench-me
DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNS:-100}"
ROUNDS="${BENCH_ROUNDS:-1}"
AGENTD="${AGENTD_BIN:-$ROOT/build/agentd}"

bench_require_positive DURATION CONNS ROUNDS
bench_require_tools wrk curl
[ -x "$AGENTD" ] || { echo "bench_me: $AGENTD not found: run 'make build' first" >&2; exit 2; }

bench_start_server
BASE="http://127.0.0.1:$PORT"

bench_register_user
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$BASE/api/me")"
[ "$code" = 200 ] || { echo "bench_me: /api/me answered $code" >&2; exit 1; }

# wrk's "Requests/sec:" line, and a warning when anything but 2xx came back.
run_wrk() { # name, then wrk arguments
  local name="$1"; shift
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" >"$TMP/wrk_$name" 2>&1
  cat "$TMP/wrk_$name" >&2
  if grep -q 'Non-2xx' "$TMP/wrk_$name"; then echo "bench_me: $name had non-2xx answers" >&2; fi
  awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk_$name"
}

ME_ALL=""; HEALTH_ALL=""; RATIOS=""
for round in $(seq 1 "$ROUNDS"); do
  ME_RPS="$(run_wrk me -H "Authorization: Bearer $TOKEN" "$BASE/api/me")"
  HEALTH_RPS="$(run_wrk health "$BASE/health")"
  bench_server_alive || exit 1
  [ -n "$ME_RPS" ] && [ -n "$HEALTH_RPS" ] || { echo "bench_me: wrk gave no figures" >&2; exit 1; }
  ME_ALL="$ME_ALL $ME_RPS"; HEALTH_ALL="$HEALTH_ALL $HEALTH_RPS"
  RATIOS="$RATIOS $(awk -v a="$ME_RPS" -v b="$HEALTH_RPS" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }')"
done

best() { printf '%s\n' $1 | sort -g | tail -1; }
median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ME_BEST="$(best "$ME_ALL")"; HEALTH_BEST="$(best "$HEALTH_ALL")"
RATIO="$(awk -v a="$ME_BEST" -v b="$HEALTH_BEST" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')"
echo
echo "commands:"
echo "  $AGENTD --port 0 --data-dir <tmp> --jwt-secret <random> --rate-limit 0 --log-level warn"
echo "  wrk -t1 -c$CONNS -d${DURATION}s -H 'Authorization: Bearer <token>' $BASE/api/me"
echo "  wrk -t1 -c$CONNS -d${DURATION}s $BASE/health"
echo "  ($ROUNDS round(s), alternating)"
printf '%-12s %12s %12s %8s\n' "round" "/api/me" "/health" "ratio"
set -- $RATIOS
i=1
for m in $ME_ALL; do
  h="$(printf '%s\n' $HEALTH_ALL | sed -n "${i}p")"
  printf '%-12s %12s %12s %8s\n' "$i" "$m" "$h" "$1"
  shift; i=$((i + 1))
done
printf '%-12s %12s %12s %8s\n' "best" "$ME_BEST" "$HEALTH_BEST" "$RATIO"
printf '%-12s %12s %12s %8s\n' "median" "$(median "$ME_ALL")" "$(median "$HEALTH_ALL")" "$(median "$RATIOS")"
