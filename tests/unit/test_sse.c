/* tests/unit/test_sse.c — net/sse.c: sse_format() byte for byte, and whole
 * streams (sse_start/sse_send/sse_end) over a real in-process server, checked as
 * the exact chunked bytes on the wire (SPEC §4: "id: <seq>\nevent: <type>\ndata:
 * <Event JSON>\n\n").
 *
 * The loop runs on its own thread (harness below); the test thread is the
 * client, and runs code on the loop with on_loop().  Each stream test closes
 * every handle and asserts uv_loop_close() == 0 (STYLE §10).
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
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#define UNUSED __attribute__((unused))

/* ---- sse_format ---------------------------------------------------------- */

static void expect_format(const char *id, const char *event, const char *data, size_t n, const char *want) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(sse_format(&b, id, event, data, n), 0);
  cr_expect_eq(b.len, strlen(want), "length %zu, want %zu: [%.*s]", b.len, strlen(want), (int)b.len, b.base);
  cr_expect(b.len == strlen(want) && memcmp(b.base, want, b.len) == 0, "got [%.*s] want [%s]", (int)b.len, b.base,
            want);
  buf_dispose(&b);
}
#define FMT(id, ev, data, want) expect_format(id, ev, data, sizeof(data) - 1, want)

Test(sse_format, fields) {
  FMT("42", "agent_started", "{\"a\":1}", "id: 42\nevent: agent_started\ndata: {\"a\":1}\n\n");
  /* NULL id / event are omitted */
  FMT(NULL, "ping", "x", "event: ping\ndata: x\n\n");
  FMT("7", NULL, "x", "id: 7\ndata: x\n\n");
  FMT(NULL, NULL, "x", "data: x\n\n");
}

Test(sse_format, id_or_event_with_newline_is_omitted) {
  FMT("1\n2", "e", "x", "event: e\ndata: x\n\n");
  FMT("1\r", "e", "x", "event: e\ndata: x\n\n");
  FMT("9", "ev\nid: 666", "x", "id: 9\ndata: x\n\n");
  FMT("9", "ev\r", "x", "id: 9\ndata: x\n\n");
}

Test(sse_format, data_lines) {
  FMT(NULL, NULL, "", "data: \n\n");
  /* multi-line data: one data: line per line */
  FMT(NULL, NULL, "a\nb\nc", "data: a\ndata: b\ndata: c\n\n");
  FMT("1", "e", "first\n\nthird", "id: 1\nevent: e\ndata: first\ndata: \ndata: third\n\n");
  /* CRLF is one line break */
  FMT(NULL, NULL, "a\r\nb", "data: a\ndata: b\n\n");
  FMT(NULL, NULL, "a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n");
  /* n bounds the data: bytes past it are not sent (no NUL needed) */
  expect_format(NULL, NULL, "abcdef", 3, "data: abc\n\n");
}

Test(sse_format, buffer) {
  buf_t b;
  buf_init(&b, 0);
  buf_append_str(&b, "X");
  cr_assert_eq(sse_format(&b, "1", NULL, "d", 1), 0);
  cr_expect_str_eq(b.base, "Xid: 1\ndata: d\n\n", "appends to what is there");
  buf_dispose(&b);
  buf_init(&b, 8);
  cr_expect_eq(sse_format(&b, "1", "event", "data", 4), AGD_ETOO_LARGE, "a capped buffer reports the overflow");
  buf_dispose(&b);
}

/* Three defects in how sse_format() splits data into "data:" lines; one fix
 * (see the report) cures all three:
 *  1. The SSE parser (HTML "event stream interpretation") ends a line at CRLF,
 *     LF *or a lone CR*.  Data is split on LF only, so a lone CR reaches the
 *     client as a line break inside a data: line: "x\rid: 999" makes the browser
 *     see an `id:` field (moving Last-Event-ID), "x\revent: evil" an event name.
 *  2. "Data lines split on '\n'" (net.h): "a\n" is the lines "a" and "", so the
 *     client's data is "a\n"; the do/while drops the empty last line, and a
 *     payload ending in a newline (an LLM token "\n") arrives without it.
 *  3. data NULL with n 0 reaches memchr(NULL, '\n', 0): undefined behaviour
 *     (UBSan: "null pointer passed as argument 1"). */
Test(sse_format, data_line_splitting) {
  FMT(NULL, NULL, "a\rb", "data: a\ndata: b\n\n");
  FMT("5", NULL, "x\rid: 999", "id: 5\ndata: x\ndata: id: 999\n\n");
  FMT(NULL, NULL, "a\n", "data: a\ndata: \n\n");
  FMT(NULL, NULL, "\n", "data: \ndata: \n\n");
  expect_format(NULL, NULL, NULL, 0, "data: \n\n");
}

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

/* ---- streams over a real server ----------------------------------------- */

static uint64_t sse_id;
static int stream_closes, queue_rc = 1;

static void t_on_request(http_req_t *r) {
  const char *path = http_req_path(r);
  if (strcmp(path, "/whole") == 0) {
    /* start, two frames and the end, all inside the handler */
    cr_assert_eq(sse_start(r), 0);
    conn_t *c = http_req_conn(r);
    cr_assert_eq(sse_send(c, "1", "message", "hello", 5), 0);
    cr_assert_eq(sse_send(c, NULL, NULL, "a\nb", 3), 0);
    sse_end(c);
    return;
  }
  if (strcmp(path, "/open") == 0) {
    cr_assert_eq(sse_start(r), 0);
    sse_id = conn_id(http_req_conn(r));
    return;
  }
  http_respond(r, 200, "text/plain", "plain", 5);
}

static void t_stream_close(conn_t *c) { stream_closes++; }

static const net_callbacks_t sse_cb = {.on_request = t_on_request, .on_stream_close = t_stream_close};

static void start_sse(void) {
  srv_config();
  srv_start(&sse_cb);
}

/* Read the response head (returned) and leave the body bytes in c->in. */
static resp_t *read_head(cli_t *c) {
  char *end;
  while (!(end = c->in ? strstr(c->in, "\r\n\r\n") : NULL))
    cr_assert_gt(cli_fill(c), 0, "closed before the head");
  resp_t *r = calloc(1, sizeof(*r));
  size_t hl = (size_t)(end - c->in) + 2;
  memcpy(r->head, c->in, hl);
  sscanf(r->head, "HTTP/1.1 %d", &r->status);
  cli_consume(c, hl + 2);
  return r;
}

static void check_stream_head(const resp_t *r) {
  char v[128];
  cr_expect_eq(r->status, 200);
  cr_expect(resp_header(r, "content-type", v, sizeof(v)));
  cr_expect_str_eq(v, "text/event-stream; charset=utf-8");
  cr_expect(resp_header(r, "transfer-encoding", v, sizeof(v)));
  cr_expect_str_eq(v, "chunked");
  cr_expect(resp_header(r, "cache-control", v, sizeof(v)));
  cr_expect_str_eq(v, "no-cache");
  cr_expect_not(resp_has(r, "content-length"));
  cr_expect(resp_has(r, "x-request-id"));
}

/* Wait until the buffered body is exactly want (or longer: fail). */
static void expect_bytes(cli_t *c, const char *want) {
  size_t n = strlen(want);
  while (c->len < n && cli_fill(c) > 0) {}
  cr_expect_eq(c->len, n, "got %zu bytes [%s], want %zu [%s]", c->len, c->in, n, want);
  cr_expect_str_eq(c->in, want);
  cli_consume(c, c->len);
}

Test(sse, start_send_end_exact_chunked_bytes, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /whole HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_t *r = read_head(c);
  check_stream_head(r);
  resp_free(r);
  cr_expect(cli_wait_closed(c), "sse_end closes the connection");
  cr_expect_str_eq(c->in, "f\r\n: stream open\n\n\r\n"
                          "22\r\nid: 1\nevent: message\ndata: hello\n\n\r\n"
                          "11\r\ndata: a\ndata: b\n\n\r\n"
                          "0\r\n\r\n");
  cli_close(c);
  srv_stop();
}

static int have_stream(void) { return server_conn_lookup(srv, sse_id) != NULL; }
static int stream_gone(void) {
  return server_conn_lookup(srv, sse_id) == NULL && server_conn_count(srv, CONN_KIND_SSE) == 0;
}
static void send_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, sse_id);
  cr_assert_not_null(c);
  queue_rc = sse_send(c, "2", "tick", arg, strlen(arg));
}
static void end_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, sse_id);
  cr_assert_not_null(c);
  sse_end(c);
}

Test(sse, frames_sent_later_from_the_loop, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_t *r = read_head(c);
  check_stream_head(r);
  resp_free(r);
  expect_bytes(c, "f\r\n: stream open\n\n\r\n");
  cr_assert(wait_for(have_stream));
  cr_expect_eq(server_conn_count(srv, CONN_KIND_SSE), 1);
  cr_expect_eq(server_conn_count(srv, CONN_KIND_HTTP), 0);
  on_loop(send_job, "{\"n\":1}");
  cr_expect_eq(queue_rc, 0);
  expect_bytes(c, "21\r\nid: 2\nevent: tick\ndata: {\"n\":1}\n\n\r\n");
  on_loop(end_job, NULL);
  cr_expect(cli_wait_closed(c));
  cr_expect_str_eq(c->in, "0\r\n\r\n");
  cli_close(c);
  cr_expect(wait_for(stream_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(sse, client_leaving_unregisters_the_stream, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  cr_assert(wait_for(have_stream));
  cli_close(c);
  cr_expect(wait_for(stream_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(sse, heartbeat_comment, .timeout = 10) {
  srv_config();
  cfg.sse_heartbeat = 0.2;
  srv_start(&sse_cb);
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  expect_bytes(c, "f\r\n: stream open\n\n\r\n");
  expect_bytes(c, "d\r\n: heartbeat\n\n\r\n");
  cli_close(c);
  srv_stop();
}

Test(sse, send_queue_bound_ends_the_stream, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&sse_cb);
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  cr_assert(wait_for(have_stream));
  char *big = malloc(5000);
  memset(big, 'x', 4999);
  big[4999] = 0;
  on_loop(send_job, big);
  free(big);
  cr_expect_eq(queue_rc, AGD_EUNAVAILABLE);
  cr_expect(wait_for(stream_gone));
  cr_expect(cli_wait_closed(c));
  cli_close(c);
  srv_stop();
}
