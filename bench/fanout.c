/*
 * fanout: agent-run benchmark client for agentd's /ws endpoint (bench/README.md,
 * "Agent runs and the event stream").
 *
 * Job: two measurements over WebSockets (SPEC §5, §6):
 *   --mode runs    N connections, one user each (usr_fanout_<i>); every
 *                  connection sends `user_message` frames closed-loop (the next
 *                  one when its run's final `agent_completed` of the supervisor
 *                  arrives) for --duration seconds.  Prints completed runs/s and
 *                  events/s received, and checks each user's seq is +1.
 *   --mode fanout  N connections of --users U users (socket i belongs to user
 *                  i % U; default U = 1: every event reaches all N sockets).  With
 *                  --rate 0 (default) socket 0 starts one run at a time, the next
 *                  when every socket has the previous run's final event; with
 *                  --rate R the first socket of each user starts runs open-loop,
 *                  R per second in turn over the users (a user whose run is still
 *                  going is skipped, and counted), --runs in all.  For every event
 *                  on every socket it records receipt time (wall clock, taken when
 *                  the bytes are read, before any parsing) minus the event's
 *                  "timestamp" (the server's wall clock at emit, same machine) and
 *                  prints p50/p90/p99/p99.9/max.
 * The last line is `RESULT {json}` with every figure.
 *
 * Thread: one thread, one uv loop; nothing is shared.
 * Ownership: all connections live in one calloc'd array owned by `g`; each owns
 * its wslay context and output buffers, released in the handle's close callback.
 * Libraries: libuv (I/O), wslay (RFC 6455 client framing), OpenSSL (key, masks,
 * SHA-1/base64 for Sec-WebSocket-Accept), libjwt (HS256 token), all through
 * bench/wsclient.h (the client connection shared with bench/wsload.c).
 * Traffic goes only to --host (default 127.0.0.1).
 */
#include <inttypes.h>

#define WSC_PROG "fanout"
#include "wsclient.h"

#define RECV_MSG_MAX (1u << 22)
#define MAX_PENDING 200

enum { MODE_RUNS, MODE_FANOUT };
enum { PH_CONNECT, PH_RUN, PH_DRAIN, PH_CLOSE, PH_DONE };

typedef struct conn {
  wsc_conn_t w;           /* first: the callbacks of wsclient.h hand back &c->w */
  bool in_run;
  int64_t last_seq;       /* last event seq seen on this socket */
  uint64_t runs_done;     /* runs mode: completed runs */
  uint64_t finals_seen;   /* fanout mode: final events seen */
  int user;               /* fanout mode: index of its user (socket i: i % users) */
  uint64_t run_events;    /* fanout mode: events of the current run on this socket */
} conn_t;

static struct {
  const char *host, *secret, *message;
  int port, conns, duration, runs, mode, timeout_s, users, rate;
  bool quiet;
  uv_loop_t *loop;
  conn_t *c;
  uv_timer_t timer, progress;
  int phase, next, pending, ok, failed, live;
  uint64_t t0_ns, t_run_ns, t_end_ns;
  /* figures */
  uint64_t runs_done, runs_in_window, events, events_in_window, error_frames, seq_gaps, drops;
  uint64_t rate_limited;
  /* fanout */
  int run_no;
  uint64_t finals_needed, finals_got, deliveries;
  double *lat;      /* ms, every event */
  size_t lat_len, lat_cap;
  double *tlat;     /* ms, agent_thinking only (isolated events when the server runs with --llm-latency-ms) */
  size_t tlat_len, tlat_cap;
  double recv_now;  /* wall clock (s) of the read being processed */
  uint64_t events_per_run_min, events_per_run_max;
  /* paced fanout (--rate) */
  uv_timer_t pace;
  int started, next_user;
  uint64_t skipped;
} g;

static void conn_close(conn_t *c);
static void pump(void);
static void start_phase_run(void);
static void start_close(void);

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------- lifecycle ---------- */

static void on_closed(wsc_conn_t *w) {
  if (--g.live == 0 && g.phase == PH_CLOSE) {
    g.phase = PH_DONE;
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_close((uv_handle_t *)&g.progress, NULL);
    uv_close((uv_handle_t *)&g.pace, NULL);
  }
}

static void connect_settled(void) {
  if (g.phase == PH_CONNECT && g.ok + g.failed == g.conns) start_phase_run();
}

static void conn_close(conn_t *c) {
  if (c->w.closing) return;
  c->w.closing = true;
  if (c->w.state == CS_CONNECTING || c->w.state == CS_HANDSHAKE || c->w.state == CS_WELCOME) {
    g.pending--;
    g.failed++;
  } else if (c->w.state == CS_OPEN && g.phase != PH_CLOSE) {
    g.drops++;
  }
  wsc_close_handle(&c->w);
  if (g.phase == PH_CONNECT) {
    pump();
    connect_settled();
  }
}

static void on_close(wsc_conn_t *w) { conn_close((conn_t *)w); }

static void on_fail(wsc_conn_t *w, enum wsc_fail why, int http_status) {
  bool handshake = why == WSC_FAIL_HTTP_STATUS || why == WSC_FAIL_BAD_ACCEPT || why == WSC_FAIL_BAD_RESPONSE;
  if (handshake && w->hs && !g.quiet) fprintf(stderr, "fanout: handshake refused: %.40s\n", w->hs);
  conn_close((conn_t *)w);
}

/* Receipt time: taken when the bytes are read, before any parsing. */
static void on_data(wsc_conn_t *w) { g.recv_now = wall_now(); }

/* ---------- frames ---------- */

static void send_user_message(conn_t *c) {
  char buf[1200];
  snprintf(buf, sizeof buf, "{\"type\":\"user_message\",\"payload\":{\"content\":\"%s\"}}", g.message);
  c->in_run = true;
  wsc_send_text(&c->w, buf);
}

/* The first occurrence of "key": in an event is its top-level field (the server
 * writes type, seq, run_id, thread_id, agent_name, timestamp, then data). */
static const char *field(const uint8_t *m, size_t n, const char *key) {
  char pat[40];
  int k = snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = memmem(m, n, pat, (size_t)k);
  return p ? p + k : NULL;
}

static bool starts(const char *p, const uint8_t *end, const char *s) {
  size_t n = strlen(s);
  return p && (size_t)((const char *)end - p) >= n && memcmp(p, s, n) == 0;
}

static void fanout_next_run(void);

static void on_event(conn_t *c, const uint8_t *m, size_t n) {
  const uint8_t *end = m + n;
  const char *type = field(m, n, "type");
  if (!type) return;
  if (starts(type, end, "\"error\"")) {
    g.error_frames++;
    if (memmem(m, n, "RATE_LIMITED", 12)) g.rate_limited++;
    if (g.mode == MODE_RUNS && c->in_run) c->in_run = false; /* not started: try again on the next tick */
    return;
  }
  const char *seqp = field(m, n, "seq");
  if (!seqp) return; /* message_received and other replies */
  int64_t seq = strtoll(seqp, NULL, 10);
  if (c->last_seq > 0 && seq != c->last_seq + 1) g.seq_gaps++;
  c->last_seq = seq;
  g.events++;
  if (g.phase == PH_RUN) g.events_in_window++;
  bool final = starts(type, end, "\"agent_completed\"") && starts(field(m, n, "agent_name"), end, "\"supervisor\"");
  final = final || starts(type, end, "\"agent_error\"") || starts(type, end, "\"agent_stopped\"");
  if (g.mode == MODE_FANOUT) {
    const char *ts = field(m, n, "timestamp");
    if (ts) {
      double lat_ms = (g.recv_now - strtod(ts, NULL)) * 1000.0;
      if (g.lat_len == g.lat_cap) {
        g.lat_cap = g.lat_cap ? g.lat_cap * 2 : 1 << 16;
        g.lat = xrealloc(g.lat, g.lat_cap * sizeof *g.lat);
      }
      g.lat[g.lat_len++] = lat_ms;
      if (starts(type, end, "\"agent_thinking\"")) {
        if (g.tlat_len == g.tlat_cap) {
          g.tlat_cap = g.tlat_cap ? g.tlat_cap * 2 : 1 << 14;
          g.tlat = xrealloc(g.tlat, g.tlat_cap * sizeof *g.tlat);
        }
        g.tlat[g.tlat_len++] = lat_ms;
      }
    }
    g.deliveries++;
    c->run_events++;
    if (final) {
      c->finals_seen++;
      g.finals_got++;
      if ((int)c->w.id < g.users) { /* a run's driver: its events per run */
        if (!g.events_per_run_min || c->run_events < g.events_per_run_min) g.events_per_run_min = c->run_events;
        if (c->run_events > g.events_per_run_max) g.events_per_run_max = c->run_events;
        c->in_run = false;
      }
      c->run_events = 0;
      if (g.finals_got == g.finals_needed) fanout_next_run();
    }
    return;
  }
  if (final) {
    c->in_run = false;
    c->runs_done++;
    g.runs_done++;
    if (g.phase == PH_RUN) {
      g.runs_in_window++;
      send_user_message(c);
    }
  }
}

static void on_ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  conn_t *c = user;
  if (c->w.closing || arg->opcode != WSLAY_TEXT_FRAME) return;
  if (c->w.state == CS_WELCOME) {
    /* A first frame that is not `resume` tells the server this socket takes
     * live events now (docs/protocol.md: without one, a socket's live events
     * wait up to 1 s for a possible resume).  A listening client of the product
     * does the same; the bench measures steady-state delivery, not that wait. */
    wsc_send_text(&c->w, "{\"type\":\"ping\"}");
    c->w.state = CS_OPEN;
    g.pending--;
    g.ok++;
    pump();
    connect_settled();
    return;
  }
  on_event(c, arg->msg, arg->msg_length);
}

static const wsc_ops_t ws_ops = {
    .fail = on_fail,
    .close = on_close,
    .closed = on_closed,
    .on_msg = on_ws_msg,
    .on_data = on_data,
};

static void conn_start(conn_t *c) {
  g.pending++;
  if (wsc_conn_init(&c->w, g.loop) != 0) wsc_die("uv_tcp_init failed");
  g.live++;
  wsc_conn_connect(&c->w);
}

static void pump(void) {
  static bool in;
  if (in || g.phase != PH_CONNECT) return;
  in = true;
  while (g.next < g.conns && g.pending < MAX_PENDING) conn_start(&g.c[g.next++]);
  in = false;
}

/* ---------- phases ---------- */

static double pct(double p) { return wsc_pct(g.lat, g.lat_len, p); }
static double tpct(double p) { return wsc_pct(g.tlat, g.tlat_len, p); }

static void report(void) {
  double secs = (double)(g.t_end_ns - g.t_run_ns) / 1e9;
  if (g.mode == MODE_RUNS) {
    double rps = secs > 0 ? (double)g.runs_in_window / secs : 0, eps = secs > 0 ? (double)g.events_in_window / secs : 0;
    printf("runs: %d sockets (one user each), %.1fs: %" PRIu64 " runs completed (%.0f runs/s), %" PRIu64
           " events received (%.0f events/s)\n",
           g.ok, secs, g.runs_in_window, rps, g.events_in_window, eps);
    printf("runs: seq gaps %" PRIu64 ", error frames %" PRIu64 " (rate limited %" PRIu64 "), dropped sockets %" PRIu64
           "\n",
           g.seq_gaps, g.error_frames, g.rate_limited, g.drops);
    printf("RESULT {\"mode\":\"runs\",\"sockets\":%d,\"connect_failed\":%d,\"seconds\":%.3f,\"runs\":%" PRIu64
           ",\"runs_per_s\":%.1f,\"events\":%" PRIu64 ",\"events_per_s\":%.1f,\"seq_gaps\":%" PRIu64
           ",\"error_frames\":%" PRIu64 ",\"drops\":%" PRIu64 "}\n",
           g.ok, g.failed, secs, g.runs_in_window, rps, g.events_in_window, eps, g.seq_gaps, g.error_frames, g.drops);
  } else {
    qsort(g.lat, g.lat_len, sizeof *g.lat, wsc_cmp_double);
    qsort(g.tlat, g.tlat_len, sizeof *g.tlat, wsc_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < g.lat_len; i++) sum += g.lat[i];
    int runs = g.rate ? g.started : g.run_no;
    char how[64];
    if (g.rate) snprintf(how, sizeof how, "started %d/s open-loop, %" PRIu64 " skipped", g.rate, g.skipped);
    else snprintf(how, sizeof how, "one at a time");
    printf("fanout: %d sockets of %d user(s), %d runs (%s), %" PRIu64 "-%" PRIu64 " events per run, %" PRIu64
           " deliveries in %.2fs (%.0f deliveries/s)\n",
           g.ok, g.users, runs, how, g.events_per_run_min, g.events_per_run_max, g.deliveries, secs,
           secs > 0 ? (double)g.deliveries / secs : 0);
    printf("fanout: emit -> receipt latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
           pct(50), pct(90), pct(99), pct(99.9), g.lat_len ? g.lat[g.lat_len - 1] : 0,
           g.lat_len ? sum / (double)g.lat_len : 0);
    printf("fanout: agent_thinking only (%zu): p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", g.tlat_len, tpct(50), tpct(90),
           tpct(99), g.tlat_len ? g.tlat[g.tlat_len - 1] : 0);
    printf("fanout: seq gaps %" PRIu64 ", error frames %" PRIu64 ", dropped sockets %" PRIu64 "\n", g.seq_gaps,
           g.error_frames, g.drops);
    printf("RESULT {\"mode\":\"fanout\",\"sockets\":%d,\"users\":%d,\"rate\":%d,\"skipped\":%" PRIu64
           ",\"connect_failed\":%d,\"runs\":%d,\"deliveries\":%" PRIu64
           ",\"seconds\":%.3f,\"events_per_run_min\":%" PRIu64 ",\"events_per_run_max\":%" PRIu64
           ",\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f,\"mean\":%.4f},"
           "\"thinking_latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f},"
           "\"seq_gaps\":%" PRIu64 ",\"error_frames\":%" PRIu64 ",\"drops\":%" PRIu64 "}\n",
           g.ok, g.users, g.rate, g.skipped, g.failed, runs, g.deliveries, secs, g.events_per_run_min, g.events_per_run_max, pct(50), pct(90),
           pct(99), pct(99.9), g.lat_len ? g.lat[g.lat_len - 1] : 0, g.lat_len ? sum / (double)g.lat_len : 0,
           tpct(50), tpct(90), tpct(99), g.tlat_len ? g.tlat[g.tlat_len - 1] : 0, g.seq_gaps, g.error_frames, g.drops);
  }
  fflush(stdout);
}

static void on_close_timeout(uv_timer_t *t) {
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].w.handle_open && !g.c[i].w.closing) conn_close(&g.c[i]);
}

static void start_close(void) {
  if (g.phase >= PH_CLOSE) return;
  if (!g.t_end_ns) g.t_end_ns = uv_hrtime();
  report();
  g.phase = PH_CLOSE;
  int open = 0;
  for (int i = 0; i < g.conns; i++) {
    conn_t *c = &g.c[i];
    if (!c->w.handle_open || c->w.closing) continue;
    open++;
    if (c->w.state >= CS_WELCOME) {
      wslay_event_queue_close(c->w.ws, 1000, NULL, 0);
      wsc_flush(&c->w);
    } else {
      conn_close(c);
    }
  }
  if (g.live == 0) {
    g.phase = PH_DONE;
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_close((uv_handle_t *)&g.progress, NULL);
    uv_close((uv_handle_t *)&g.pace, NULL);
    return;
  }
  uv_timer_stop(&g.timer);
  uv_timer_start(&g.timer, on_close_timeout, 3000, 0);
}

/* Paced: start the next user's run (one per tick). */
static void on_pace(uv_timer_t *t) {
  if (g.started >= g.runs || g.phase != PH_RUN) {
    uv_timer_stop(&g.pace);
    return;
  }
  for (int k = 0; k < g.users; k++) {
    conn_t *c = &g.c[(g.next_user + k) % g.users];
    if (c->in_run || c->w.state != CS_OPEN || c->w.closing) continue;
    g.next_user = (c->user + 1) % g.users;
    g.started++;
    send_user_message(c);
    return;
  }
  g.skipped++; /* every user still has a run going: the rate is more than the server keeps up with */
}

static void fanout_next_run(void) {
  if (g.rate) { /* paced: the end is when every run's final event reached every socket */
    g.t_end_ns = uv_hrtime();
    uv_timer_stop(&g.pace);
    start_close();
    return;
  }
  if (g.run_no >= g.runs || g.drops) {
    g.t_end_ns = uv_hrtime();
    start_close();
    return;
  }
  g.run_no++;
  g.finals_got = 0;
  int open = 0;
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].w.state == CS_OPEN && !g.c[i].w.closing) open++;
  g.finals_needed = (uint64_t)open;
  send_user_message(&g.c[0]);
}

static void on_drain_timeout(uv_timer_t *t) { start_close(); }

static void on_window_end(uv_timer_t *t) {
  g.t_end_ns = uv_hrtime();
  g.phase = PH_DRAIN; /* stop sending; let runs in flight finish (not counted) */
  uv_timer_start(&g.timer, on_drain_timeout, 5000, 0);
}

static void on_run_timeout(uv_timer_t *t) {
  fprintf(stderr, "fanout: gave up after %ds (run %d: %" PRIu64 "/%" PRIu64 " final events)\n", g.timeout_s, g.run_no,
          g.finals_got, g.finals_needed);
  g.t_end_ns = uv_hrtime();
  start_close();
}

static void on_progress(uv_timer_t *t) {
  if (g.quiet) return;
  if (g.phase == PH_CONNECT)
    fprintf(stderr, "  ... %d connected, %d failed, %d pending\n", g.ok, g.failed, g.pending);
  else if (g.phase == PH_RUN && g.mode == MODE_RUNS)
    fprintf(stderr, "  ... %" PRIu64 " runs, %" PRIu64 " events\n", g.runs_in_window, g.events_in_window);
  else if (g.phase == PH_RUN)
    fprintf(stderr, "  ... run %d, %" PRIu64 " deliveries\n", g.run_no, g.deliveries);
}

static void start_phase_run(void) {
  double secs = (double)(uv_hrtime() - g.t0_ns) / 1e9;
  if (!g.quiet) printf("connected %d of %d sockets in %.2fs (%d failed)\n", g.ok, g.conns, secs, g.failed);
  fflush(stdout);
  if (g.ok == 0) {
    start_close();
    return;
  }
  g.phase = PH_RUN;
  g.t_run_ns = uv_hrtime();
  if (g.mode == MODE_RUNS) {
    for (int i = 0; i < g.conns; i++)
      if (g.c[i].w.state == CS_OPEN) send_user_message(&g.c[i]);
    uv_timer_start(&g.timer, on_window_end, (uint64_t)g.duration * 1000, 0);
  } else {
    if (g.c[0].w.state != CS_OPEN) wsc_die("socket 0 did not connect");
    uv_timer_start(&g.timer, on_run_timeout, (uint64_t)g.timeout_s * 1000, 0);
    if (g.rate) {
      /* Every run's final event reaches every socket of its user. */
      g.finals_needed = (uint64_t)g.runs * (uint64_t)(g.conns / g.users);
      uint64_t every = g.rate >= 1000 ? 1 : (uint64_t)(1000 / g.rate);
      uv_timer_start(&g.pace, on_pace, every, every);
    } else {
      fanout_next_run();
    }
  }
}

/* In runs mode, the drain phase ends as soon as no run is in flight. */
static void on_check(uv_check_t *h) {
  if (g.mode != MODE_RUNS || g.phase != PH_DRAIN) return;
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].in_run && g.c[i].w.state == CS_OPEN && !g.c[i].w.closing) return;
  start_close();
}

static void usage(void) {
  printf("usage: fanout --port P --secret S [--mode runs|fanout] [--conns N] [--duration S] [--runs R]\n"
         "              [--users U] [--rate R] [--host 127.0.0.1] [--message TEXT] [--timeout S] [--quiet]\n"
         "  runs:   N sockets, one user each, closed-loop user_message for --duration s (default 10)\n"
         "  fanout: N sockets of U users (default 1), --runs runs (default 20), one at a time or --rate\n"
         "          per second open-loop over the users; emit->receipt latency of every delivery\n");
}

int main(int argc, char **argv) {
  g.host = "127.0.0.1";
  g.conns = 50;
  g.duration = 10;
  g.runs = 20;
  g.timeout_s = 120;
  g.message = "What are my LLM costs by model?";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      g.quiet = true;
      continue;
    }
    if (i + 1 >= argc) wsc_die("%s needs a value", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--host")) g.host = v;
    else if (!strcmp(a, "--port")) g.port = (int)wsc_parse_long(a, v, 1, 65535);
    else if (!strcmp(a, "--secret")) g.secret = v;
    else if (!strcmp(a, "--conns")) g.conns = (int)wsc_parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--duration")) g.duration = (int)wsc_parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--runs")) g.runs = (int)wsc_parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--timeout")) g.timeout_s = (int)wsc_parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--message")) g.message = v;
    else if (!strcmp(a, "--users")) g.users = (int)wsc_parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--rate")) g.rate = (int)wsc_parse_long(a, v, 0, 1000);
    else if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "runs")) g.mode = MODE_RUNS;
      else if (!strcmp(v, "fanout")) g.mode = MODE_FANOUT;
      else wsc_die("--mode must be runs or fanout");
    } else wsc_die("unknown option %s (see --help)", a);
  }
  if (!g.port || !g.secret || !*g.secret) wsc_die("--port and --secret are required");
  if (!g.users) g.users = 1;
  if (g.mode == MODE_FANOUT && (g.users > g.conns || g.conns % g.users != 0))
    wsc_die("--users must divide --conns (the same number of sockets per user)");
  if (g.mode == MODE_FANOUT && g.rate == 0 && g.users != 1) wsc_die("--users > 1 needs --rate");
  if (strlen(g.message) > 1000 || strpbrk(g.message, "\"\\\n")) wsc_die("--message: at most 1000 plain characters");
  wsc_raise_nofile(NULL, NULL);
  if (wsc_set_host(g.host, g.port) != 0) wsc_die("--host must be a numeric address: %s", g.host);
  wsc.ops = &ws_ops;
  wsc.path = "/ws";
  wsc.recv_msg_max = RECV_MSG_MAX;

  g.c = calloc((size_t)g.conns, sizeof *g.c);
  if (!g.c) abort();
  /* Fanout: one token per user, shared by its sockets; runs: one user per socket. */
  int ntok = g.mode == MODE_FANOUT ? g.users : g.conns;
  char **tokens = calloc((size_t)ntok, sizeof *tokens);
  if (!tokens) abort();
  for (int u = 0; u < ntok; u++) {
    char sub[64];
    if (g.mode == MODE_FANOUT && g.users == 1) snprintf(sub, sizeof sub, "usr_fanout");
    else snprintf(sub, sizeof sub, "usr_fanout_%d", u);
    tokens[u] = wsc_mint_token(g.secret, sub);
  }
  for (int i = 0; i < g.conns; i++) {
    g.c[i].w.id = (uint32_t)i;
    g.c[i].user = i % ntok;
    g.c[i].w.token = tokens[i % ntok];
  }
  g.loop = uv_default_loop();
  uv_timer_init(g.loop, &g.timer);
  uv_timer_init(g.loop, &g.progress);
  uv_timer_init(g.loop, &g.pace);
  uv_timer_start(&g.progress, on_progress, 2000, 2000);
  uv_check_t check;
  uv_check_init(g.loop, &check);
  uv_check_start(&check, on_check);
  uv_unref((uv_handle_t *)&check);
  g.t0_ns = uv_hrtime();
  g.phase = PH_CONNECT;
  pump();
  uv_run(g.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&check, NULL);
  uv_run(g.loop, UV_RUN_DEFAULT);
  uv_loop_close(g.loop);
  int bad = g.ok == 0 ? 2 : (g.failed || g.drops || g.seq_gaps) ? 3 : 0;
  for (int u = 0; u < ntok; u++) free(tokens[u]);
  free(tokens);
  free(g.c);
  free(g.lat);
  free(g.tlat);
  return bad;
}
