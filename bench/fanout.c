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
 *   --mode fanout  N connections of ONE user; connection 0 starts one run at a
 *                  time (--runs of them); every event reaches all N sockets.  For
 *                  every event on every socket it records receipt time (wall
 *                  clock, taken when the bytes are read, before any parsing) minus
 *                  the event's "timestamp" (the server's wall clock at emit, same
 *                  machine) and prints p50/p90/p99/p99.9/max.  The next run starts
 *                  when every socket has the previous run's final event.
 * The last line is `RESULT {json}` with every figure.
 *
 * Thread: one thread, one uv loop; nothing is shared.
 * Ownership: all connections live in one calloc'd array owned by `g`; each owns
 * its wslay context and output buffers, released in the handle's close callback.
 * Libraries: libuv (I/O), wslay (RFC 6455 client framing), OpenSSL (key, masks,
 * SHA-1/base64 for Sec-WebSocket-Accept, HMAC-SHA256 for the HS256 token).
 * Patterns follow bench/wsload.c.  Traffic goes only to --host (default 127.0.0.1).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <uv.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HS_MAX 8192
#define RECV_MSG_MAX (1u << 22)
#define MAX_PENDING 200

enum { CS_IDLE, CS_CONNECTING, CS_HANDSHAKE, CS_WELCOME, CS_OPEN, CS_CLOSED };
enum { MODE_RUNS, MODE_FANOUT };
enum { PH_CONNECT, PH_RUN, PH_DRAIN, PH_CLOSE, PH_DONE };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  wslay_event_context_ptr ws;
  char *hs, *out, *wbuf;
  uint32_t hs_len, out_len, out_cap;
  uint32_t id;
  int state;
  bool closing, writing, handle_open, in_run;
  char key[25];
  char *token;
  int64_t last_seq;       /* last event seq seen on this socket */
  uint64_t runs_done;     /* runs mode: completed runs */
  uint64_t finals_seen;   /* fanout mode: final events seen */
} conn_t;

static struct {
  const char *host, *secret, *message;
  int port, conns, duration, runs, mode, timeout_s;
  bool quiet;
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  char host_hdr[300];
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
  uint64_t run_events; /* events seen on conn 0 in the current run */
  uint64_t events_per_run_min, events_per_run_max;
} g;

static char rdbuf[1 << 16];
static const uint8_t *rd_ptr;
static size_t rd_len, rd_pos;

static void conn_flush(conn_t *c);
static void conn_close(conn_t *c);
static void pump(void);
static void start_phase_run(void);
static void start_close(void);

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fanout: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------- token (HS256, SPEC §2 claims) ---------- */

static void b64url(const unsigned char *in, size_t n, char *out) {
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  int j = 0;
  for (int i = 0; i < len; i++) {
    char ch = out[i];
    if (ch == '=') break;
    out[j++] = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  }
  out[j] = 0;
}

static char *mint_token(const char *sub) {
  char hdr[64], claims[512], jti[25], sig[64];
  unsigned char rnd[12], mac[EVP_MAX_MD_SIZE];
  unsigned maclen = 0;
  long now = (long)time(NULL);
  if (RAND_bytes(rnd, sizeof rnd) != 1) die("RAND_bytes failed");
  for (size_t i = 0; i < sizeof rnd; i++) snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
  const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char c[400];
  snprintf(c, sizeof c,
           "{\"sub\":\"%s\",\"email\":\"%s@bench.local\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%s\",\"type\":\"access\","
           "\"iss\":\"netra-auth-service\"}",
           sub, sub, now, now + 24 * 3600, jti);
  b64url((const unsigned char *)h, strlen(h), hdr);
  b64url((const unsigned char *)c, strlen(c), claims);
  size_t n = strlen(hdr) + 1 + strlen(claims);
  char *tok = malloc(n + 64);
  if (!tok) abort();
  snprintf(tok, n + 64, "%s.%s", hdr, claims);
  if (!HMAC(EVP_sha256(), g.secret, (int)strlen(g.secret), (const unsigned char *)tok, n, mac, &maclen))
    die("HMAC failed");
  b64url(mac, maclen, sig);
  strcat(tok, ".");
  strcat(tok, sig);
  return tok;
}

/* ---------- output ---------- */

static void out_append(conn_t *c, const uint8_t *d, size_t n) {
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + n) cap *= 2;
    c->out = xrealloc(c->out, cap);
    c->out_cap = (uint32_t)cap;
  }
  memcpy(c->out + c->out_len, d, n);
  c->out_len += (uint32_t)n;
}

static int raw_send(conn_t *c, const uint8_t *d, size_t n) {
  if (!c->writing && c->out_len == 0) {
    uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)n) return 0;
    if (r < 0 && r != UV_EAGAIN) return -1;
    if (r < 0) r = 0;
    d += r;
    n -= (size_t)r;
  }
  out_append(c, d, n);
  return 0;
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(c->wbuf);
  c->wbuf = NULL;
  c->writing = false;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static ssize_t on_ws_send(wslay_event_context_ptr ctx, const uint8_t *d, size_t n, int flags, void *user) {
  if (raw_send(user, d, n) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)n;
}

static void conn_flush(conn_t *c) {
  if (c->closing) return;
  if (c->ws && c->state >= CS_WELCOME && wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
    conn_close(c);
    return;
  }
  if (!c->writing && c->out_len > 0) {
    c->wbuf = c->out;
    uv_buf_t b = uv_buf_init(c->wbuf, c->out_len);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
      free(c->wbuf);
      c->wbuf = NULL;
      conn_close(c);
      return;
    }
    c->writing = true;
  }
  if (c->ws && c->state >= CS_WELCOME && !c->writing && c->out_len == 0 && !wslay_event_want_read(c->ws) &&
      !wslay_event_want_write(c->ws))
    conn_close(c);
}

/* ---------- lifecycle ---------- */

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (c->ws) wslay_event_context_free(c->ws);
  c->ws = NULL;
  free(c->hs);
  free(c->out);
  c->hs = c->out = NULL;
  c->handle_open = false;
  c->state = CS_CLOSED;
  if (--g.live == 0 && g.phase == PH_CLOSE) {
    g.phase = PH_DONE;
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_close((uv_handle_t *)&g.progress, NULL);
  }
}

static void connect_settled(void) {
  if (g.phase == PH_CONNECT && g.ok + g.failed == g.conns) start_phase_run();
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE || c->state == CS_WELCOME) {
    g.pending--;
    g.failed++;
  } else if (c->state == CS_OPEN && g.phase != PH_CLOSE) {
    g.drops++;
  }
  if (c->handle_open) uv_close((uv_handle_t *)&c->tcp, on_closed);
  else c->state = CS_CLOSED;
  if (g.phase == PH_CONNECT) {
    pump();
    connect_settled();
  }
}

/* ---------- frames ---------- */

static ssize_t on_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
  if (rd_pos >= rd_len) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = rd_len - rd_pos;
  if (n > len) n = len;
  memcpy(buf, rd_ptr + rd_pos, n);
  rd_pos += n;
  return (ssize_t)n;
}

static int on_ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user) {
  return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static void send_text(conn_t *c, const char *s) {
  struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)s, .msg_length = strlen(s)};
  if (wslay_event_queue_msg(c->ws, &m) != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static void send_user_message(conn_t *c) {
  char buf[1200];
  snprintf(buf, sizeof buf, "{\"type\":\"user_message\",\"payload\":{\"content\":\"%s\"}}", g.message);
  c->in_run = true;
  send_text(c, buf);
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

static void fanout_final(void);

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
    if (c->id == 0) g.run_events++;
    if (final) {
      c->finals_seen++;
      g.finals_got++;
      if (g.finals_got == g.finals_needed) fanout_final();
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
  if (c->closing || arg->opcode != WSLAY_TEXT_FRAME) return;
  if (c->state == CS_WELCOME) {
    c->state = CS_OPEN;
    g.pending--;
    g.ok++;
    pump();
    connect_settled();
    return;
  }
  on_event(c, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = on_ws_recv,
    .send_callback = on_ws_send,
    .genmask_callback = on_ws_genmask,
    .on_msg_recv_callback = on_ws_msg,
};

static void ws_feed(conn_t *c, const uint8_t *d, size_t n) {
  rd_ptr = d;
  rd_len = n;
  rd_pos = 0;
  int r = wslay_event_recv(c->ws);
  rd_ptr = NULL;
  rd_len = rd_pos = 0;
  if (c->closing) return;
  if (r != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static void hs_feed(conn_t *c, const char *d, size_t n) {
  if (c->hs_len + n > HS_MAX) {
    conn_close(c);
    return;
  }
  if (!c->hs) {
    c->hs = malloc(HS_MAX);
    if (!c->hs) abort();
  }
  memcpy(c->hs + c->hs_len, d, n);
  c->hs_len += (uint32_t)n;
  const char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
  if (!end) return;
  size_t body = (size_t)(end - c->hs) + 4;
  char buf[64], expect[40];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  int k = snprintf(buf, sizeof buf, "%s%s", c->key, WS_GUID);
  EVP_Digest(buf, (size_t)k, md, &mdlen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)expect, md, (int)mdlen);
  if (c->hs_len < 12 || strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || !memmem(c->hs, body, expect, strlen(expect))) {
    if (!g.quiet) fprintf(stderr, "fanout: handshake refused: %.40s\n", c->hs);
    conn_close(c);
    return;
  }
  char *hs = c->hs;
  size_t rest = c->hs_len - body;
  c->hs = NULL;
  c->hs_len = 0;
  c->state = CS_WELCOME;
  if (rest) ws_feed(c, (const uint8_t *)hs + body, rest);
  free(hs);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  b->base = rdbuf;
  b->len = sizeof rdbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn_t *c = s->data;
  if (c->closing || nread == 0) return;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  g.recv_now = wall_now(); /* receipt: before any parsing */
  if (c->state == CS_HANDSHAKE) hs_feed(c, b->base, (size_t)nread);
  else if (c->ws) ws_feed(c, (const uint8_t *)b->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->state = CS_HANDSHAKE;
  unsigned char rnd[16];
  if (RAND_bytes(rnd, sizeof rnd) != 1) die("RAND_bytes failed");
  EVP_EncodeBlock((unsigned char *)c->key, rnd, sizeof rnd);
  char rq[2048];
  int n = snprintf(rq, sizeof rq,
                   "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                   g.host_hdr, c->key, c->token);
  if (n < 0 || (size_t)n >= sizeof rq) die("handshake request too long");
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0 || raw_send(c, (uint8_t *)rq, (size_t)n) != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static void conn_start(conn_t *c) {
  c->state = CS_CONNECTING;
  g.pending++;
  if (wslay_event_context_client_init(&c->ws, &ws_callbacks, c) != 0) abort();
  wslay_event_config_set_max_recv_msg_length(c->ws, RECV_MSG_MAX);
  if (uv_tcp_init(g.loop, &c->tcp) != 0) die("uv_tcp_init failed");
  c->tcp.data = c;
  c->handle_open = true;
  g.live++;
  uv_tcp_nodelay(&c->tcp, 1);
  c->creq.data = c;
  if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g.addr, on_connect) != 0) conn_close(c);
}

static void pump(void) {
  static bool in;
  if (in || g.phase != PH_CONNECT) return;
  in = true;
  while (g.next < g.conns && g.pending < MAX_PENDING) conn_start(&g.c[g.next++]);
  in = false;
}

/* ---------- phases ---------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct_of(const double *a, size_t n, double p) {
  if (!n) return 0;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return a[i];
}

static double pct(double p) { return pct_of(g.lat, g.lat_len, p); }
static double tpct(double p) { return pct_of(g.tlat, g.tlat_len, p); }

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
    qsort(g.lat, g.lat_len, sizeof *g.lat, cmp_double);
    qsort(g.tlat, g.tlat_len, sizeof *g.tlat, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < g.lat_len; i++) sum += g.lat[i];
    printf("fanout: %d sockets of one user, %d runs, %" PRIu64 "-%" PRIu64 " events per run, %" PRIu64
           " deliveries in %.2fs (%.0f deliveries/s)\n",
           g.ok, g.run_no, g.events_per_run_min, g.events_per_run_max, g.deliveries, secs,
           secs > 0 ? (double)g.deliveries / secs : 0);
    printf("fanout: emit -> receipt latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
           pct(50), pct(90), pct(99), pct(99.9), g.lat_len ? g.lat[g.lat_len - 1] : 0,
           g.lat_len ? sum / (double)g.lat_len : 0);
    printf("fanout: agent_thinking only (%zu): p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", g.tlat_len, tpct(50), tpct(90),
           tpct(99), g.tlat_len ? g.tlat[g.tlat_len - 1] : 0);
    printf("fanout: seq gaps %" PRIu64 ", error frames %" PRIu64 ", dropped sockets %" PRIu64 "\n", g.seq_gaps,
           g.error_frames, g.drops);
    printf("RESULT {\"mode\":\"fanout\",\"sockets\":%d,\"connect_failed\":%d,\"runs\":%d,\"deliveries\":%" PRIu64
           ",\"seconds\":%.3f,\"events_per_run_min\":%" PRIu64 ",\"events_per_run_max\":%" PRIu64
           ",\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f,\"mean\":%.4f},"
           "\"thinking_latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f},"
           "\"seq_gaps\":%" PRIu64 ",\"error_frames\":%" PRIu64 ",\"drops\":%" PRIu64 "}\n",
           g.ok, g.failed, g.run_no, g.deliveries, secs, g.events_per_run_min, g.events_per_run_max, pct(50), pct(90),
           pct(99), pct(99.9), g.lat_len ? g.lat[g.lat_len - 1] : 0, g.lat_len ? sum / (double)g.lat_len : 0,
           tpct(50), tpct(90), tpct(99), g.tlat_len ? g.tlat[g.tlat_len - 1] : 0, g.seq_gaps, g.error_frames, g.drops);
  }
  fflush(stdout);
}

static void on_close_timeout(uv_timer_t *t) {
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].handle_open && !g.c[i].closing) conn_close(&g.c[i]);
}

static void start_close(void) {
  if (g.phase >= PH_CLOSE) return;
  if (!g.t_end_ns) g.t_end_ns = uv_hrtime();
  report();
  g.phase = PH_CLOSE;
  int open = 0;
  for (int i = 0; i < g.conns; i++) {
    conn_t *c = &g.c[i];
    if (!c->handle_open || c->closing) continue;
    open++;
    if (c->state >= CS_WELCOME) {
      wslay_event_queue_close(c->ws, 1000, NULL, 0);
      conn_flush(c);
    } else {
      conn_close(c);
    }
  }
  if (g.live == 0) {
    g.phase = PH_DONE;
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_close((uv_handle_t *)&g.progress, NULL);
    return;
  }
  uv_timer_stop(&g.timer);
  uv_timer_start(&g.timer, on_close_timeout, 3000, 0);
}

static void fanout_next_run(void) {
  if (g.run_no >= g.runs || g.drops) {
    g.t_end_ns = uv_hrtime();
    start_close();
    return;
  }
  g.run_no++;
  g.finals_got = 0;
  g.run_events = 0;
  int open = 0;
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].state == CS_OPEN && !g.c[i].closing) open++;
  g.finals_needed = (uint64_t)open;
  send_user_message(&g.c[0]);
}

static void fanout_final(void) {
  if (g.run_no == 1 || g.run_events < g.events_per_run_min || !g.events_per_run_min) g.events_per_run_min = g.run_events;
  if (g.run_events > g.events_per_run_max) g.events_per_run_max = g.run_events;
  fanout_next_run();
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
      if (g.c[i].state == CS_OPEN) send_user_message(&g.c[i]);
    uv_timer_start(&g.timer, on_window_end, (uint64_t)g.duration * 1000, 0);
  } else {
    if (g.c[0].state != CS_OPEN) die("socket 0 did not connect");
    uv_timer_start(&g.timer, on_run_timeout, (uint64_t)g.timeout_s * 1000, 0);
    fanout_next_run();
  }
}

/* In runs mode, the drain phase ends as soon as no run is in flight. */
static void on_check(uv_check_t *h) {
  if (g.mode != MODE_RUNS || g.phase != PH_DRAIN) return;
  for (int i = 0; i < g.conns; i++)
    if (g.c[i].in_run && g.c[i].state == CS_OPEN && !g.c[i].closing) return;
  start_close();
}

static long parse_long(const char *name, const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || x < lo || x > hi) die("%s: want an integer %ld..%ld", name, lo, hi);
  return x;
}

static void usage(void) {
  printf("usage: fanout --port P --secret S [--mode runs|fanout] [--conns N] [--duration S] [--runs R]\n"
         "              [--host 127.0.0.1] [--message TEXT] [--timeout S] [--quiet]\n"
         "  runs:   N sockets, one user each, closed-loop user_message for --duration s (default 10)\n"
         "  fanout: N sockets of one user, --runs runs (default 20) one at a time; emit->receipt latency\n");
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
    if (i + 1 >= argc) die("%s needs a value", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--host")) g.host = v;
    else if (!strcmp(a, "--port")) g.port = (int)parse_long(a, v, 1, 65535);
    else if (!strcmp(a, "--secret")) g.secret = v;
    else if (!strcmp(a, "--conns")) g.conns = (int)parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--duration")) g.duration = (int)parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--runs")) g.runs = (int)parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--timeout")) g.timeout_s = (int)parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--message")) g.message = v;
    else if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "runs")) g.mode = MODE_RUNS;
      else if (!strcmp(v, "fanout")) g.mode = MODE_FANOUT;
      else die("--mode must be runs or fanout");
    } else die("unknown option %s (see --help)", a);
  }
  if (!g.port || !g.secret || !*g.secret) die("--port and --secret are required");
  if (strlen(g.message) > 1000 || strpbrk(g.message, "\"\\\n")) die("--message: at most 1000 plain characters");
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (uv_ip4_addr(g.host, g.port, (struct sockaddr_in *)&g.addr) != 0 &&
      uv_ip6_addr(g.host, g.port, (struct sockaddr_in6 *)&g.addr) != 0)
    die("--host must be a numeric address: %s", g.host);
  snprintf(g.host_hdr, sizeof g.host_hdr, strchr(g.host, ':') ? "[%s]:%d" : "%s:%d", g.host, g.port);

  g.c = calloc((size_t)g.conns, sizeof *g.c);
  if (!g.c) abort();
  char *shared = g.mode == MODE_FANOUT ? mint_token("usr_fanout") : NULL;
  for (int i = 0; i < g.conns; i++) {
    g.c[i].id = (uint32_t)i;
    if (shared) {
      g.c[i].token = shared;
    } else {
      char sub[64];
      snprintf(sub, sizeof sub, "usr_fanout_%d", i);
      g.c[i].token = mint_token(sub);
    }
  }
  g.loop = uv_default_loop();
  uv_timer_init(g.loop, &g.timer);
  uv_timer_init(g.loop, &g.progress);
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
  if (shared) free(shared);
  else
    for (int i = 0; i < g.conns; i++) free(g.c[i].token);
  free(g.c);
  free(g.lat);
  free(g.tlat);
  return bad;
}
