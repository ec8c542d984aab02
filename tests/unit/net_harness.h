/* tests/unit/net_harness.h — the in-process server/client harness shared by the
 * net unit tests (test_http.c, test_ws.c, test_sse.c, test_router.c).
 *
 * Job: run a real server (server_open on --port 0) on its own loop thread and let
 * the test thread talk to it with plain blocking sockets (cli_*) and run code on
 * the loop with on_loop().  srv_stop() asserts uv_loop_close() == 0 (STYLE §10).
 * Threads: srv_start/on_loop/wait_for/srv_stop and cli_* from the test thread
 * only; callbacks given to on_loop/wait_for run on the loop thread.
 * Ownership: cli_open()/cli_response()/roundtrip() results are the caller's
 * (cli_close, resp_free); resp_error_code() returns a static buffer.
 *
 * Test-only: everything is static (each tests/unit/test_*.c is its own
 * executable), and include it once per test file.  Meson globs only *.c, so this
 * header is never built on its own.
 */
#ifndef AGENTD_TESTS_UNIT_NET_HARNESS_H
#define AGENTD_TESTS_UNIT_NET_HARNESS_H

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

#endif /* AGENTD_TESTS_UNIT_NET_HARNESS_H */
