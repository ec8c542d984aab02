/* tests/unit/test_ws.c — net/ws.c (WebSocket over a real in-process server, RFC
 * 6455 via wslay; SPEC §6 close codes and limits).
 *
 * The loop runs on its own thread (harness below); the test thread is a raw
 * WebSocket client over a blocking socket: it builds masked frames by hand and
 * parses the server's.  Code that must run on the loop (ws_send_text, ws_close
 * from outside a callback) goes through on_loop().  Each test closes every
 * handle and asserts uv_loop_close() == 0 (STYLE §10).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "net/net.h"
#include "util/err.h"
#include "util/log.h"

#define UNUSED __attribute__((unused))

/* ---- harness: the server runs on its own loop thread; the test thread talks to
 * it with blocking sockets and runs code on the loop with on_loop() ---------- */

static config_t cfg;
static uv_loop_t loop;
static server_t *srv;
static uv_async_t wake;
static pthread_t loop_thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static void (*job_fn)(void *);
static void *job_arg;
static int job_done, stop_requested, loop_close_rc = -1;

static UNUSED void on_wake(uv_async_t *a) {
  pthread_mutex_lock(&mu);
  void (*fn)(void *) = job_fn;
  void *arg = job_arg;
  int stop = stop_requested;
  job_fn = NULL;
  pthread_mutex_unlock(&mu);
  if (fn) {
    fn(arg);
    pthread_mutex_lock(&mu);
    job_done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
  if (stop) uv_stop(a->loop);
}

static UNUSED void *loop_main(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  server_close(srv);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  loop_close_rc = uv_loop_close(&loop);
  return NULL;
}

/* Default configuration (--port 0); a test may change cfg before srv_start(). */
static UNUSED void srv_config(void) {
  char err[256];
  log_init(LOG_OFF, LOG_FMT_TEXT);
  cr_assert_eq(config_parse(&cfg, 5, (char *[]){"agentd", "--port", "0", "--cors-origins", "http://ok.example", NULL},
                            err, sizeof(err)),
               0, "%s", err);
}

static UNUSED void srv_start(const net_callbacks_t *cb) {
  char err[256];
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(server_open(&srv, &loop, &cfg, cb, err, sizeof(err)), 0, "%s", err);
  cr_assert_gt(server_port(srv), 0);
  uv_async_init(&loop, &wake, on_wake);
  cr_assert_eq(pthread_create(&loop_thread, NULL, loop_main, NULL), 0);
}

/* Run fn(arg) on the loop thread and wait for it. */
static UNUSED void on_loop(void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&mu);
  job_fn = fn;
  job_arg = arg;
  job_done = 0;
  pthread_mutex_unlock(&mu);
  uv_async_send(&wake);
  pthread_mutex_lock(&mu);
  while (!job_done) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

/* Poll pred (run on the loop thread) until it sets *(int *)arg or ~3 s pass. */
typedef struct { int (*pred)(void); int result; } poll_t;
static UNUSED void poll_job(void *arg) { poll_t *p = arg; p->result = p->pred(); }
static UNUSED int wait_for(int (*pred)(void)) {
  poll_t p = {pred, 0};
  for (int i = 0; i < 600; i++) {
    on_loop(poll_job, &p);
    if (p.result) return 1;
    usleep(5000);
  }
  return 0;
}

/* Stop the loop, close the server and assert the loop closes clean (STYLE §10). */
static UNUSED void srv_stop(void) {
  pthread_mutex_lock(&mu);
  stop_requested = 1;
  pthread_mutex_unlock(&mu);
  uv_async_send(&wake);
  pthread_join(loop_thread, NULL);
  cr_assert_eq(loop_close_rc, 0, "uv_loop_close: %d (a handle was left open)", loop_close_rc);
  config_dispose(&cfg);
}

/* ---- blocking client ---- */

typedef struct cli {
  int fd;
  char *in;        /* received, not yet consumed */
  size_t len, cap;
} cli_t;

static UNUSED cli_t *cli_open(void) {
  cli_t *c = calloc(1, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(c->fd, 0);
  struct timeval tv = {3, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port(srv))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
  return c;
}

static UNUSED void cli_close(cli_t *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  free(c->in);
  free(c);
}

static UNUSED void cli_send(cli_t *c, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    cr_assert_gt(w, 0, "send: %s", strerror(errno));
    s += w;
    n -= (size_t)w;
  }
}
static UNUSED void cli_sends(cli_t *c, const char *s) { cli_send(c, s, strlen(s)); }

/* One more recv into c->in: bytes read, 0 at EOF, -1 on error/timeout. */
static UNUSED ssize_t cli_fill(cli_t *c) {
  if (c->cap - c->len < 65536) {
    c->cap = c->cap ? c->cap * 2 : 131072;
    c->in = realloc(c->in, c->cap + 1);
  }
  ssize_t r = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
  if (r > 0) c->len += (size_t)r;
  c->in[c->len] = 0;
  return r;
}

/* Wait until at least n bytes are buffered; 0 if the peer closed first. */
static UNUSED int cli_need(cli_t *c, size_t n) {
  while (c->len < n)
    if (cli_fill(c) <= 0) return 0;
  return 1;
}

static UNUSED void cli_consume(cli_t *c, size_t n) {
  memmove(c->in, c->in + n, c->len - n);
  c->len -= n;
  c->in[c->len] = 0;
}

/* 1 when the server closed the connection (EOF or reset) within the timeout;
 * bytes before the close are kept in c->in. */
static UNUSED int cli_wait_closed(cli_t *c) {
  for (;;) {
    ssize_t r = cli_fill(c);
    if (r == 0) return 1;
    if (r < 0) return errno == ECONNRESET;
  }
}

/* A parsed response. */
typedef struct resp {
  int status;
  char head[16384]; /* status line and headers, NUL-terminated */
  char *body;       /* NUL-terminated (malloc) */
  size_t body_len;
} resp_t;

static UNUSED void resp_free(resp_t *r) {
  if (r) free(r->body);
  free(r);
}

/* Header value (case-insensitive name) copied into out; 1 found, 0 absent. */
static UNUSED int resp_header(const resp_t *r, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= cap) n = cap - 1;
      memcpy(out, v, n);
      out[n] = 0;
      return 1;
    }
  }
  return 0;
}

static UNUSED int resp_has(const resp_t *r, const char *name) {
  char tmp[4];
  return resp_header(r, name, tmp, sizeof(tmp));
}

/* Read one response.  no_body: the request was HEAD.  NULL if the connection
 * closed (or timed out) before a whole response arrived. */
static UNUSED resp_t *cli_response(cli_t *c, int no_body) {
  char *end;
  while (!(end = c->in ? strstr(c->in, "\r\n\r\n") : NULL))
    if (cli_fill(c) <= 0) return NULL;
  resp_t *r = calloc(1, sizeof(*r));
  size_t hl = (size_t)(end - c->in) + 2;
  cr_assert_lt(hl, sizeof(r->head));
  memcpy(r->head, c->in, hl);
  r->head[hl] = 0;
  cr_assert_eq(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1, "bad status line: %s", r->head);
  cli_consume(c, hl + 2);
  char v[64];
  if (no_body || r->status < 200 || r->status == 204 || r->status == 304) {
    r->body = calloc(1, 1);
  } else if (resp_header(r, "content-length", v, sizeof(v))) {
    size_t n = strtoul(v, NULL, 10);
    if (!cli_need(c, n)) { resp_free(r); return NULL; }
    r->body = malloc(n + 1);
    memcpy(r->body, c->in, n);
    r->body[n] = 0;
    r->body_len = n;
    cli_consume(c, n);
  } else if (resp_header(r, "transfer-encoding", v, sizeof(v))) {
    r->body = calloc(1, 1);
    for (;;) {
      char *crlf;
      while (!(crlf = strstr(c->in ? c->in : "", "\r\n")))
        if (cli_fill(c) <= 0) { resp_free(r); return NULL; }
      size_t n = strtoul(c->in, NULL, 16);
      size_t skip = (size_t)(crlf - c->in) + 2;
      if (!cli_need(c, skip + n + 2)) { resp_free(r); return NULL; }
      r->body = realloc(r->body, r->body_len + n + 1);
      memcpy(r->body + r->body_len, c->in + skip, n);
      r->body_len += n;
      r->body[r->body_len] = 0;
      cli_consume(c, skip + n + 2);
      if (n == 0) break;
    }
  } else {
    while (cli_fill(c) > 0) {}
    r->body = malloc(c->len + 1);
    memcpy(r->body, c->in, c->len);
    r->body[c->len] = 0;
    r->body_len = c->len;
    cli_consume(c, c->len);
  }
  return r;
}

/* Connect, send one raw request, read one response, close. */
static UNUSED resp_t *roundtrip(const char *raw) {
  cli_t *c = cli_open();
  cli_sends(c, raw);
  resp_t *r = cli_response(c, strncmp(raw, "HEAD ", 5) == 0);
  cli_close(c);
  return r;
}

/* The SPEC error envelope's error_code, or "" (static buffer). */
static UNUSED const char *resp_error_code(const resp_t *r) {
  static char code[64];
  code[0] = 0;
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  if (j && json_is_string(json_object_get(j, "error_code")))
    snprintf(code, sizeof(code), "%s", json_string_value(json_object_get(j, "error_code")));
  json_decref(j);
  return code;
}

/* ---- server side ---- */

static uint64_t ws_id;          /* id of the last opened WebSocket */
static int opens, stream_closes, burst_fail_at = -1;
static char open_user[64];

static void t_on_request(http_req_t *r) {
  if (strcmp(http_req_path(r), "/ws") == 0) {
    ws_upgrade(r, "u1");
    return;
  }
  http_respond(r, 200, "text/plain", "plain", 5);
}

static int send_welcome; /* set before srv_start() */
static void t_ws_open(conn_t *c) {
  opens++;
  if (send_welcome) cr_expect_eq(ws_send_text(c, "welcome", 7), 0);
  ws_id = conn_id(c);
  snprintf(open_user, sizeof(open_user), "%s", conn_user_id(c));
}

static void t_ws_text(conn_t *c, const char *p, size_t n) {
  if (n == 9 && memcmp(p, "close1001", 9) == 0) {
    ws_close(c, 1001, "bye");
    return;
  }
  int count, size;
  char cmd[32];
  snprintf(cmd, sizeof(cmd), "%.*s", (int)(n < 31 ? n : 31), n ? p : "");
  if (sscanf(cmd, "burst:%d:%d", &count, &size) == 2) {
    char *m = malloc((size_t)size);
    memset(m, 'm', (size_t)size);
    for (int i = 0; i < count; i++)
      if (ws_send_text(c, m, (size_t)size) != 0) {
        burst_fail_at = i;
        break;
      }
    free(m);
    return;
  }
  ws_send_text(c, p, n);
}

static void t_stream_close(conn_t *c) { stream_closes++; }

static const net_callbacks_t ws_cb = {
    .on_request = t_on_request, .ws_on_open = t_ws_open, .ws_on_text = t_ws_text, .on_stream_close = t_stream_close};

static void start_ws(void) {
  srv_config();
  srv_start(&ws_cb);
}

static int ws_gone(void) { return server_conn_lookup(srv, ws_id) == NULL && server_conn_count(srv, CONN_KIND_WS) == 0; }

/* ---- client side ---- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define UPGRADE(extra)                                                                                     \
  "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " KEY    \
  "\r\nSec-WebSocket-Version: 13\r\n" extra "\r\n"

/* One masked (or not) frame. */
static size_t frame(uint8_t *out, int fin, int op, const void *p, size_t n, int masked) {
  size_t o = 0;
  out[o++] = (uint8_t)((fin ? 0x80 : 0) | op);
  uint8_t m = masked ? 0x80 : 0;
  if (n < 126) {
    out[o++] = (uint8_t)(m | n);
  } else if (n < 65536) {
    out[o++] = m | 126;
    out[o++] = (uint8_t)(n >> 8);
    out[o++] = (uint8_t)n;
  } else {
    out[o++] = m | 127;
    for (int i = 7; i >= 0; i--) out[o++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) {
    memcpy(out + o, key, 4);
    o += 4;
  }
  for (size_t i = 0; i < n; i++) out[o + i] = ((const uint8_t *)p)[i] ^ (masked ? key[i % 4] : 0);
  return o + n;
}

static void ws_send(cli_t *c, int fin, int op, const void *p, size_t n) {
  uint8_t *b = malloc(n + 14);
  size_t len = frame(b, fin, op, p, n, 1);
  cli_send(c, b, len);
  free(b);
}
static void ws_text(cli_t *c, const char *s) { ws_send(c, 1, 1, s, strlen(s)); }

typedef struct wsf {
  int fin, op;
  uint8_t *p; /* NUL-terminated */
  size_t n;
} wsf_t;

/* Read one server frame; 0 when the connection closed first. */
static int ws_read(cli_t *c, wsf_t *f) {
  if (!cli_need(c, 2)) return 0;
  uint8_t *h = (uint8_t *)c->in;
  cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
  size_t hl = 2;
  uint64_t n = h[1] & 0x7f;
  if (n == 126) hl = 4;
  else if (n == 127) hl = 10;
  if (!cli_need(c, hl)) return 0;
  h = (uint8_t *)c->in;
  if (n == 126) n = ((uint64_t)h[2] << 8) | h[3];
  else if (n == 127) {
    n = 0;
    for (int i = 0; i < 8; i++) n = (n << 8) | h[2 + i];
  }
  if (!cli_need(c, hl + n)) return 0;
  h = (uint8_t *)c->in;
  f->fin = h[0] >> 7;
  f->op = h[0] & 0x0f;
  f->n = n;
  f->p = malloc(n + 1);
  memcpy(f->p, h + hl, n);
  f->p[n] = 0;
  cli_consume(c, hl + n);
  return 1;
}

/* Expect a whole text message equal to want. */
static void expect_text(cli_t *c, const char *want, size_t n) {
  wsf_t f;
  cr_assert(ws_read(c, &f), "connection closed, expected a text frame");
  cr_expect_eq(f.op, 1, "opcode %d", f.op);
  cr_expect(f.fin);
  cr_expect_eq(f.n, n);
  cr_expect(f.n == n && memcmp(f.p, want, n) == 0, "payload differs");
  free(f.p);
}

/* Expect a close frame with code (and reason when not NULL), then the TCP close. */
static void expect_close(cli_t *c, int code, const char *reason) {
  wsf_t f;
  cr_assert(ws_read(c, &f), "connection closed without a close frame");
  cr_expect_eq(f.op, 8, "opcode %d, expected close", f.op);
  cr_assert_geq(f.n, 2);
  cr_expect_eq((f.p[0] << 8) | f.p[1], code, "close code %d", (f.p[0] << 8) | f.p[1]);
  if (reason) cr_expect_str_eq((char *)f.p + 2, reason);
  free(f.p);
  cr_expect(cli_wait_closed(c), "TCP closed after the close frame");
}

static cli_t *ws_open(const char *upgrade) {
  cli_t *c = cli_open();
  cli_sends(c, upgrade);
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_assert_eq(r->status, 101, "%s", r->head);
  resp_free(r);
  return c;
}

/* ---- handshake ---- */

Test(ws, handshake, .timeout = 10) {
  start_ws();
  cli_t *c = cli_open();
  cli_sends(c, UPGRADE(""));
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  char v[128];
  cr_expect_eq(r->status, 101);
  cr_expect(resp_header(r, "upgrade", v, sizeof(v)) && strcasecmp(v, "websocket") == 0);
  cr_expect(resp_header(r, "connection", v, sizeof(v)) && strcasecmp(v, "Upgrade") == 0);
  cr_expect(resp_header(r, "sec-websocket-accept", v, sizeof(v)));
  cr_expect_str_eq(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 §1.3 sample");
  cr_expect_not(resp_has(r, "sec-websocket-protocol"), "no subprotocol unless offered");
  cr_expect_not(resp_has(r, "content-length"));
  cr_expect(resp_has(r, "x-request-id"));
  resp_free(r);
  ws_text(c, "hi");
  expect_text(c, "hi", 2);
  cr_expect_eq(opens, 1);
  cr_expect_str_eq(open_user, "u1");
  cr_expect_eq(server_conn_count(srv, CONN_KIND_WS), 1);
  cr_expect_eq(server_conn_count(srv, CONN_KIND_HTTP), 0);
  cli_close(c);
  cr_expect(wait_for(ws_gone), "conn unregistered after the client dropped");
  cr_expect_eq(stream_closes, 1);
  /* the subprotocol is echoed when offered (SPEC §6: jwt-auth only) */
  c = cli_open();
  cli_sends(c, UPGRADE("Sec-WebSocket-Protocol: chat, jwt-auth\r\n"));
  r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 101);
  cr_expect(resp_header(r, "sec-websocket-protocol", v, sizeof(v)));
  cr_expect_str_eq(v, "jwt-auth");
  resp_free(r);
  cli_close(c);
  srv_stop();
}

Test(ws, bad_handshakes, .timeout = 10) {
  start_ws();
  char v[64];
  resp_t *r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 426);
  cr_expect(resp_header(r, "sec-websocket-version", v, sizeof(v)) && strcmp(v, "13") == 0);
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "missing key");
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "short key");
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "not an upgrade");
  resp_free(r);
  cr_expect_eq(opens, 0);
  srv_stop();
}

/* ---- messages ---- */

/* ws_on_open runs before the handler has returned: a welcome sent there must
 * follow the 101 head, and a frame that came with the handshake is still read. */
Test(ws, welcome_from_ws_on_open, .timeout = 10) {
  send_welcome = 1;
  start_ws();
  cli_t *c = cli_open();
  uint8_t buf[512];
  size_t hl = strlen(UPGRADE(""));
  memcpy(buf, UPGRADE(""), hl);
  size_t n = frame(buf + hl, 1, 1, "early", 5, 1);
  cli_send(c, buf, hl + n);
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 101);
  resp_free(r);
  expect_text(c, "welcome", 7);
  expect_text(c, "early", 5);
  cli_close(c);
  srv_stop();
}



Test(ws, text_echo_all_length_encodings, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  size_t sizes[] = {0, 1, 125, 126, 65535, 65536};
  char *m = malloc(65536);
  for (size_t i = 0; i < 65536; i++) m[i] = (char)('a' + i % 26);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    ws_send(c, 1, 1, m, sizes[i]);
    expect_text(c, m, sizes[i]);
  }
  free(m);
  cli_close(c);
  srv_stop();
}

Test(ws, ping_gets_pong, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 9, "abc", 3);
  wsf_t f;
  cr_assert(ws_read(c, &f));
  cr_expect_eq(f.op, 10);
  cr_expect_str_eq((char *)f.p, "abc");
  free(f.p);
  cli_close(c);
  srv_stop();
}

Test(ws, fragmented_message_across_reads, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 0, 1, "Hel", 3);
  usleep(20000);
  ws_send(c, 1, 9, "p", 1); /* a control frame between fragments */
  usleep(20000);
  ws_send(c, 0, 0, "lo, ", 4);
  usleep(20000);
  /* the last fragment with its header split over two writes */
  uint8_t b[32];
  size_t n = frame(b, 1, 0, "world", 5, 1);
  cli_send(c, b, 1);
  usleep(20000);
  cli_send(c, b + 1, 3);
  usleep(20000);
  cli_send(c, b + 4, n - 4);
  wsf_t f;
  cr_assert(ws_read(c, &f));
  cr_expect_eq(f.op, 10, "pong for the interleaved ping first");
  free(f.p);
  expect_text(c, "Hello, world", 12);
  /* and the connection keeps working */
  ws_text(c, "again");
  expect_text(c, "again", 5);
  cli_close(c);
  srv_stop();
}

Test(ws, many_messages_in_one_write, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  uint8_t b[4096];
  size_t o = 0;
  char msg[16];
  for (int i = 0; i < 50; i++) {
    int n = snprintf(msg, sizeof(msg), "m%d", i);
    o += frame(b + o, 1, 1, msg, (size_t)n, 1);
  }
  cli_send(c, b, o);
  for (int i = 0; i < 50; i++) {
    int n = snprintf(msg, sizeof(msg), "m%d", i);
    expect_text(c, msg, (size_t)n);
  }
  cli_close(c);
  srv_stop();
}

/* ---- close codes (SPEC §6) ---- */

Test(ws, invalid_utf8_closes_1007, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 1, "ok\xff\xfe", 4);
  expect_close(c, 1007, NULL);
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  srv_stop();
}

Test(ws, binary_closes_1003, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 2, "\x01\x02", 2);
  expect_close(c, 1003, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, unmasked_frame_closes_1002, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  uint8_t b[16];
  size_t n = frame(b, 1, 1, "nomask", 6, 0);
  cli_send(c, b, n);
  expect_close(c, 1002, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, message_over_max_ws_frame_closes_1009, .timeout = 10) {
  srv_config();
  cfg.max_ws_frame = 1000;
  srv_start(&ws_cb);
  char m[1001];
  memset(m, 'x', sizeof(m));
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 1, m, 1000); /* = limit */
  expect_text(c, m, 1000);
  ws_send(c, 1, 1, m, 1001); /* limit + 1 */
  expect_close(c, 1009, NULL);
  cli_close(c);
  /* the limit is on the message: fragments that add up past it */
  c = ws_open(UPGRADE(""));
  ws_send(c, 0, 1, m, 600);
  ws_send(c, 1, 0, m, 600);
  expect_close(c, 1009, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, client_close_is_answered, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 8, "\x03\xe8" "done", 6);
  expect_close(c, 1000, NULL);
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(ws, ws_close_1001_from_handler, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "close1001");
  expect_close(c, 1001, "bye");
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  srv_stop();
}

static void close_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, ws_id);
  cr_assert_not_null(c);
  ws_close(c, 1001, "server shutting down");
}

Test(ws, ws_close_1001_from_outside, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "x");
  expect_text(c, "x", 1);
  on_loop(close_job, NULL);
  expect_close(c, 1001, "server shutting down");
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

static int shutdown_done;
static void on_shutdown_done(server_t *s, void *arg) { shutdown_done++; }
static void shutdown_job(void *arg) { server_shutdown(srv, 5.0, on_shutdown_done, NULL); }
static int is_shutdown_done(void) { return shutdown_done == 1; }

Test(ws, server_shutdown_sends_1001, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  cli_t *idle = cli_open(); /* an idle HTTP keep-alive connection */
  on_loop(shutdown_job, NULL);
  expect_close(c, 1001, "server shutting down");
  cr_expect(cli_wait_closed(idle), "idle HTTP connection closed at shutdown");
  cr_expect(wait_for(is_shutdown_done), "done_cb once every connection is gone, before the grace");
  cli_close(c);
  cli_close(idle);
  srv_stop();
}

Test(ws, ping_and_idle_timeout, .timeout = 10) {
  srv_config();
  cfg.ws_ping_interval = 0.05;
  cfg.ws_idle_timeout = 0.3;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  int pings = 0;
  wsf_t f;
  for (;;) {
    cr_assert(ws_read(c, &f), "closed without a close frame");
    if (f.op == 9) {
      pings++;
      free(f.p);
      continue;
    }
    cr_expect_eq(f.op, 8);
    cr_expect_eq((f.p[0] << 8) | f.p[1], 1000);
    free(f.p);
    break;
  }
  cr_expect_geq(pings, 1, "server pings before the idle close");
  cr_expect(cli_wait_closed(c));
  cli_close(c);
  srv_stop();
}

/* ---- send queue bound (SPEC §6: slow reader closed with 1013) ---- */

static int send_rc;
static void send_big_job(void *arg) {
  static char m[16384];
  memset(m, 'q', sizeof(m));
  conn_t *c = server_conn_lookup(srv, ws_id);
  send_rc = c ? ws_send_text(c, m, sizeof(m)) : 1;
}

Test(ws, send_queue_bound_1013_when_client_never_reads, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 64 * 1024;
  srv_start(&ws_cb);
  cli_t *c = cli_open();
  int small = 4096;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  cli_sends(c, UPGRADE(""));
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_assert_eq(r->status, 101);
  resp_free(r);
  /* the server keeps sending, one message per loop turn; the client reads nothing */
  int i;
  for (i = 0; i < 5000; i++) {
    on_loop(send_big_job, NULL);
    if (send_rc != 0) break;
  }
  cr_assert_eq(send_rc, AGD_EUNAVAILABLE, "ws_send_text refused after %d messages", i);
  cr_expect(wait_for(ws_gone), "the slow reader's conn is closed and unregistered");
  cr_expect_eq(stream_closes, 1);
  cli_close(c);
  srv_stop();
}

Test(ws, send_queue_bound_outside_recv_is_exact, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  /* burst from outside any callback: 16 KiB > limit on the first message */
  on_loop(send_big_job, NULL);
  cr_expect_eq(send_rc, AGD_EUNAVAILABLE);
  cr_expect(wait_for(ws_gone));
  cli_close(c);
  srv_stop();
}

/* A handler that answers one incoming message with many (a replay, a resume)
 * sends from inside ws_on_text: those messages wait in wslay's queue, which
 * ws_send_text() does not count, so the bound is never hit and memory grows
 * with the burst.  Expected: a send fails (1013) once ~4 KiB are queued. */
Test(ws, burst_inside_on_text_respects_send_queue_bound, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "burst:100:1000");
  /* the burst is answered by the time its first message arrives */
  wsf_t f = {0};
  if (ws_read(c, &f)) free(f.p);
  cr_expect(burst_fail_at >= 0 && burst_fail_at <= 5,
            "100 x 1000 bytes queued against a 4096-byte bound; first refused send: %d", burst_fail_at);
  cli_close(c);
  srv_stop();
}
