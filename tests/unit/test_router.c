/* tests/unit/test_router.c — api/router.c driven through a real in-process server.
 *
 * http_req_t is opaque and made by net/http.c, so the router is exercised the way
 * main wires it: server_open() with router_on_request_head/router_on_request,
 * routes registered with dummy handlers, and plain blocking sockets on the test
 * thread.  The loop runs on its own thread (harness below); code that must run on
 * the loop (router_continue) goes through on_loop().  Each test closes every
 * handle and asserts uv_loop_close() == 0 (STYLE §10).  SPEC: conventions
 * (envelope, 404/405 + Allow, CORS, 401 + WWW-Authenticate, 429).
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

#include "api/router.h"
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

/* ---- handlers and hooks ---- */

static const net_callbacks_t router_cb = {.on_request_head = router_on_request_head,
                                          .on_request = router_on_request};

static void reply_text(http_req_t *r, const char *s) { http_respond(r, 200, "text/plain", s, strlen(s)); }

static void h_literal(http_req_t *r, route_ctx_t *ctx) { reply_text(r, "literal"); }

static void h_name(http_req_t *r, route_ctx_t *ctx) {
  char *s = pool_sprintf(http_req_pool(r), "name=%s n=%d method=%s", route_param(ctx, "name"), ctx->n_params,
                         http_req_method_name(r));
  reply_text(r, s);
}

static void h_two(http_req_t *r, route_ctx_t *ctx) {
  char *s = pool_sprintf(http_req_pool(r), "tid=%s mid=%s missing=%s", route_param(ctx, "tid"),
                         route_param(ctx, "mid"), route_param(ctx, "nope") ? "yes" : "no");
  reply_text(r, s);
}

static void h_user(http_req_t *r, route_ctx_t *ctx) {
  char *s = pool_sprintf(http_req_pool(r), "user=%s", ctx->user_id ? ctx->user_id : "(none)");
  reply_text(r, s);
}

static void h_json(http_req_t *r, route_ctx_t *ctx) {
  json_t *v = router_json_body(r, 0);
  if (!v) return;
  http_respond_json(r, 200, v);
}

static void h_len(http_req_t *r, route_ctx_t *ctx) {
  char *s = pool_sprintf(http_req_pool(r), "len=%zu", http_req_body(r).n);
  reply_text(r, s);
}

/* Auth: "Bearer good" → u1, "Bearer bad" → AUTH_INVALID, nothing → AUTH_REQUIRED. */
static int auth_calls;
static int auth_by_header(http_req_t *r, route_ctx_t *ctx, const char **why) {
  auth_calls++;
  slice_t v;
  if (!http_req_header(r, "authorization", &v)) return AGD_EAUTH_REQUIRED;
  if (slice_eq_cstr(v, "Bearer good")) {
    ctx->user_id = "u1";
    return 0;
  }
  *why = "token expired";
  return AGD_EAUTH_INVALID;
}

static http_req_t *pending_req;
static int auth_pending(http_req_t *r, route_ctx_t *ctx, const char **why) {
  pending_req = r;
  return ROUTER_AUTH_PENDING;
}
static int have_pending(void) { return pending_req != NULL; }
static void continue_job(void *arg) {
  route_ctx_t *ctx = http_req_data(pending_req);
  ctx->user_id = arg;
  http_req_t *r = pending_req;
  pending_req = NULL;
  router_continue(r);
}

static int limit_calls;
static int limit_deny(http_req_t *r, route_ctx_t *ctx) {
  limit_calls++;
  http_resp_header(r, "Retry-After", "7");
  return AGD_ERATE_LIMITED;
}

/* ---- helpers ---- */

static resp_t *ask(cli_t *c, const char *raw) {
  cli_sends(c, raw);
  resp_t *r = cli_response(c, strncmp(raw, "HEAD ", 5) == 0);
  cr_assert_not_null(r, "no response to: %s", raw);
  return r;
}

static void expect_body(cli_t *c, const char *raw, int status, const char *body) {
  resp_t *r = ask(c, raw);
  cr_expect_eq(r->status, status, "%s -> %d", raw, r->status);
  cr_expect_str_eq(r->body, body, "%s", raw);
  resp_free(r);
}

static void start_router(void) {
  srv_config();
  srv_start(&router_cb);
}

static void stop_router(void) {
  srv_stop();
  router_reset();
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- matching ---- */

Test(router, literal_beats_param_registered_after, .timeout = 10) {
  router_add("/api/agents/{name}", HTTP_M_GET, h_name, ROUTE_PUBLIC);
  router_add("/api/agents/status", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  expect_body(c, GET("/api/agents/status"), 200, "literal");
  expect_body(c, GET("/api/agents/bob"), 200, "name=bob n=1 method=GET");
  expect_body(c, GET("/api/agents/statusx"), 200, "name=statusx n=1 method=GET");
  cli_close(c);
  stop_router();
}

Test(router, literal_beats_param_registered_before, .timeout = 10) {
  router_add("/api/agents/status", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  router_add("/api/agents/{name}", HTTP_M_GET, h_name, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  expect_body(c, GET("/api/agents/status"), 200, "literal");
  expect_body(c, GET("/api/agents/alice"), 200, "name=alice n=1 method=GET");
  /* a trailing slash and doubled slashes are normalised away before matching */
  expect_body(c, GET("/api//agents/status/"), 200, "literal");
  cli_close(c);
  stop_router();
}

Test(router, params_decoded, .timeout = 10) {
  router_add("/api/agents/{name}", HTTP_M_GET, h_name, ROUTE_PUBLIC);
  router_add("/api/threads/{tid}/messages/{mid}", HTTP_M_GET, h_two, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  expect_body(c, GET("/api/agents/J%C3%BCrgen%20X"), 200, "name=J\xC3\xBCrgen X n=1 method=GET");
  expect_body(c, GET("/api/agents/a+b"), 200, "name=a+b n=1 method=GET"); /* '+' is literal in a path */
  expect_body(c, GET("/api/threads/t1/messages/m%7E2"), 200, "tid=t1 mid=m~2 missing=no");
  cli_close(c);
  stop_router();
}

Test(router, prefixed_routes, .timeout = 10) {
  router_add_prefixed((const char *[]){"/auth", "/api/auth", "/api/v1/auth", NULL}, "/login", HTTP_M_GET, h_literal,
                      ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  expect_body(c, GET("/auth/login"), 200, "literal");
  expect_body(c, GET("/api/auth/login"), 200, "literal");
  expect_body(c, GET("/api/v1/auth/login"), 200, "literal");
  resp_t *r = ask(c, GET("/api/v2/auth/login"));
  cr_expect_eq(r->status, 404);
  resp_free(r);
  cli_close(c);
  stop_router();
}

Test(router, not_found_vs_method_not_allowed, .timeout = 10) {
  router_add("/api/agents/status", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  router_add("/api/items/{id}", HTTP_M_GET | HTTP_M_DELETE, h_literal, ROUTE_PUBLIC);
  router_add("/api/items/{id}", HTTP_M_PUT, h_literal, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  char v[256];

  resp_t *r = ask(c, GET("/api/nope"));
  cr_expect_eq(r->status, 404);
  cr_expect_str_eq(resp_error_code(r), "NOT_FOUND");
  cr_expect_not(resp_has(r, "allow"));
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  cr_assert_not_null(j, "envelope is JSON: %s", r->body);
  cr_expect(json_is_true(json_object_get(j, "error")));
  cr_expect(resp_header(r, "x-request-id", v, sizeof(v)));
  cr_expect_str_eq(json_string_value(json_object_get(j, "request_id")), v, "request_id is the X-Request-ID");
  json_decref(j);
  resp_free(r);

  r = ask(c, GET("/api/agents/status/extra"));
  cr_expect_eq(r->status, 404, "more segments than any pattern");
  resp_free(r);

  r = ask(c, "POST /api/agents/status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  cr_expect_eq(r->status, 405);
  cr_expect_str_eq(resp_error_code(r), "METHOD_NOT_ALLOWED");
  cr_expect(resp_header(r, "allow", v, sizeof(v)));
  cr_expect_str_eq(v, "GET, HEAD");
  resp_free(r);

  /* Allow is the union over every registration of the pattern */
  r = ask(c, "PATCH /api/items/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  cr_expect_eq(r->status, 405);
  cr_expect(resp_header(r, "allow", v, sizeof(v)));
  cr_expect_str_eq(v, "GET, HEAD, PUT, DELETE");
  resp_free(r);
  cli_close(c);
  stop_router();
}

Test(router, head_on_get_route_has_no_body, .timeout = 10) {
  router_add("/api/agents/{name}", HTTP_M_GET, h_name, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  char v[64];
  /* HEAD then GET in one write: any stray body bytes after the HEAD answer
   * would corrupt the second response. */
  cli_sends(c, "HEAD /api/agents/x HTTP/1.1\r\nHost: t\r\n\r\nGET /api/agents/x HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_t *h = cli_response(c, 1);
  cr_assert_not_null(h);
  cr_expect_eq(h->status, 200);
  cr_expect(resp_header(h, "content-length", v, sizeof(v)));
  cr_expect_str_eq(v, "22", "Content-Length of what the handler gave (\"name=x n=1 method=HEAD\")");
  resp_t *g = cli_response(c, 0);
  cr_assert_not_null(g);
  cr_expect_eq(g->status, 200);
  cr_expect_str_eq(g->body, "name=x n=1 method=GET");
  resp_free(h);
  resp_free(g);
  cli_close(c);
  stop_router();
}

/* ---- CORS preflight ---- */

#define PREFLIGHT(origin)                                                                                  \
  "OPTIONS /api/agents/status HTTP/1.1\r\nHost: t\r\nOrigin: " origin "\r\n"                               \
  "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\r\n"

Test(router, preflight_allowed_origin, .timeout = 10) {
  router_add("/api/agents/status", HTTP_M_GET, h_literal, 0);
  start_router();
  cli_t *c = cli_open();
  char v[256];
  resp_t *r = ask(c, PREFLIGHT("http://ok.example"));
  cr_expect_eq(r->status, 204);
  cr_expect_eq(r->body_len, 0);
  cr_expect(resp_header(r, "access-control-allow-origin", v, sizeof(v)));
  cr_expect_str_eq(v, "http://ok.example");
  cr_expect(resp_header(r, "access-control-allow-methods", v, sizeof(v)));
  cr_expect_str_eq(v, "GET, HEAD, OPTIONS");
  cr_expect(resp_header(r, "access-control-allow-headers", v, sizeof(v)));
  cr_expect(strstr(v, "Authorization") != NULL, "%s", v);
  cr_expect(resp_header(r, "access-control-max-age", v, sizeof(v)));
  cr_expect(resp_header(r, "vary", v, sizeof(v)));
  cr_expect_str_eq(v, "Origin");
  cr_expect(resp_header(r, "allow", v, sizeof(v)));
  cr_expect_str_eq(v, "GET, HEAD, OPTIONS");
  resp_free(r);
  /* the keep-alive connection is still usable; a plain GET from an allowed
   * origin gets Allow-Origin too (auth is not asked of a preflight) */
  r = ask(c, "GET /api/agents/status HTTP/1.1\r\nHost: t\r\nOrigin: http://ok.example\r\n\r\n");
  cr_expect_eq(r->status, 401, "protected route without credentials");
  cr_expect(resp_header(r, "access-control-allow-origin", v, sizeof(v)));
  cr_expect_str_eq(v, "http://ok.example");
  resp_free(r);
  cli_close(c);
  stop_router();
}

Test(router, preflight_foreign_origin_gets_no_cors, .timeout = 10) {
  router_add("/api/agents/status", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  const char *origins[] = {PREFLIGHT("http://evil.example"), PREFLIGHT("http://ok.example.evil"),
                           PREFLIGHT("HTTP://OK.EXAMPLE")};
  for (size_t i = 0; i < 3; i++) {
    resp_t *r = ask(c, origins[i]);
    cr_expect_eq(r->status, 204, "preflight answers 204 always");
    cr_expect_not(resp_has(r, "access-control-allow-origin"), "%s", origins[i]);
    cr_expect_not(resp_has(r, "access-control-allow-methods"), "%s", origins[i]);
    cr_expect_not(resp_has(r, "access-control-allow-headers"), "%s", origins[i]);
    cr_expect_not(resp_has(r, "access-control-allow-credentials"), "%s", origins[i]);
    resp_free(r);
  }
  resp_t *r = ask(c, "GET /api/agents/status HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\n\r\n");
  cr_expect_eq(r->status, 200);
  cr_expect_not(resp_has(r, "access-control-allow-origin"));
  resp_free(r);
  /* an unknown path is 404 even for OPTIONS */
  r = ask(c, "OPTIONS /api/none HTTP/1.1\r\nHost: t\r\nOrigin: http://ok.example\r\n\r\n");
  cr_expect_eq(r->status, 404);
  resp_free(r);
  cli_close(c);
  stop_router();
}

/* RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any
 * response with a status code of 1xx (Informational) or 204 (No Content)."
 * http_respond() always writes Content-Length, so 204s carry "Content-Length: 0". */
Test(router, no_content_length_on_204, .timeout = 10) {
  router_add("/api/agents/status", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  start_router();
  resp_t *r = roundtrip(PREFLIGHT("http://ok.example"));
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 204);
  cr_expect_not(resp_has(r, "content-length"), "204 must not carry Content-Length:\n%s", r->head);
  resp_free(r);
  stop_router();
}

/* ---- auth ---- */

Test(router, no_auth_hook_means_401, .timeout = 10) {
  router_add("/api/me", HTTP_M_GET, h_user, 0);
  start_router();
  resp_t *r = roundtrip(GET("/api/me"));
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 401);
  char v[64];
  cr_expect(resp_header(r, "www-authenticate", v, sizeof(v)));
  cr_expect_str_eq(v, "Bearer");
  cr_expect_str_eq(resp_error_code(r), "AUTH_REQUIRED");
  resp_free(r);
  stop_router();
}

Test(router, auth_hook_results, .timeout = 10) {
  router_add("/api/me", HTTP_M_GET, h_user, 0);
  router_add("/api/open", HTTP_M_GET, h_user, ROUTE_PUBLIC);
  router_add("/api/maybe", HTTP_M_GET, h_user, ROUTE_PUBLIC | ROUTE_AUTH_OPTIONAL);
  router_set_auth(auth_by_header);
  start_router();
  cli_t *c = cli_open();
  char v[128];

  resp_t *r = ask(c, GET("/api/me"));
  cr_expect_eq(r->status, 401);
  cr_expect(resp_header(r, "www-authenticate", v, sizeof(v)));
  cr_expect_str_eq(v, "Bearer");
  cr_expect_str_eq(resp_error_code(r), "AUTH_REQUIRED");
  resp_free(r);

  r = ask(c, "GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer bad\r\n\r\n");
  cr_expect_eq(r->status, 401);
  cr_expect(resp_has(r, "www-authenticate"));
  cr_expect_str_eq(resp_error_code(r), "AUTH_INVALID");
  cr_expect(strstr(r->body, "token expired") != NULL, "the hook's reason is the message: %s", r->body);
  resp_free(r);

  expect_body(c, "GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n", 200, "user=u1");

  int before = auth_calls;
  expect_body(c, GET("/api/open"), 200, "user=(none)");
  cr_expect_eq(auth_calls, before, "public routes do not call the auth hook");

  expect_body(c, GET("/api/maybe"), 200, "user=(none)");
  expect_body(c, "GET /api/maybe HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n", 200, "user=u1");
  expect_body(c, "GET /api/maybe HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer bad\r\n\r\n", 200, "user=(none)");
  cli_close(c);
  stop_router();
}

Test(router, auth_pending_then_router_continue, .timeout = 10) {
  router_add("/api/me", HTTP_M_GET, h_user, 0);
  router_set_auth(auth_pending);
  start_router();
  cli_t *c = cli_open();
  cli_sends(c, GET("/api/me"));
  cr_assert(wait_for(have_pending), "auth hook was called");
  /* nothing is answered while the hook is pending */
  struct timeval tv = {0, 100000};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  cr_expect_lt(cli_fill(c), 0, "no bytes before router_continue");
  tv.tv_sec = 3;
  tv.tv_usec = 0;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  on_loop(continue_job, "late");
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 200);
  cr_expect_str_eq(r->body, "user=late");
  resp_free(r);
  /* the connection stays usable for the next request */
  cli_sends(c, GET("/api/me"));
  cr_assert(wait_for(have_pending));
  on_loop(continue_job, "again");
  r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_str_eq(r->body, "user=again");
  resp_free(r);
  cli_close(c);
  stop_router();
}

/* ---- rate limit ---- */

Test(router, limit_hook_429, .timeout = 10) {
  router_add("/api/limited", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  router_add("/api/free", HTTP_M_GET, h_literal, ROUTE_PUBLIC | ROUTE_NO_RATELIMIT);
  router_add("/health", HTTP_M_GET, h_literal, ROUTE_PUBLIC);
  router_add("/api/me", HTTP_M_GET, h_user, 0);
  router_set_auth(auth_by_header);
  router_set_limit(limit_deny);
  start_router();
  cli_t *c = cli_open();
  char v[64];
  resp_t *r = ask(c, GET("/api/limited"));
  cr_expect_eq(r->status, 429);
  cr_expect_str_eq(resp_error_code(r), "RATE_LIMITED");
  cr_expect(resp_header(r, "retry-after", v, sizeof(v)));
  cr_expect_str_eq(v, "7");
  resp_free(r);
  cr_expect_eq(limit_calls, 1);

  expect_body(c, GET("/api/free"), 200, "literal");
  expect_body(c, GET("/health"), 200, "literal");
  cr_expect_eq(limit_calls, 1, "NO_RATELIMIT routes and non-/api/ paths skip the hook");

  /* authentication comes first: an unauthenticated request is 401, not 429 */
  r = ask(c, GET("/api/me"));
  cr_expect_eq(r->status, 401);
  resp_free(r);
  r = ask(c, "GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n");
  cr_expect_eq(r->status, 429);
  resp_free(r);
  cli_close(c);
  stop_router();
}

/* ---- bodies ---- */

Test(router, ingest_routes_get_the_larger_body_limit, .timeout = 10) {
  router_add("/api/ingest", HTTP_M_POST, h_len, ROUTE_PUBLIC | ROUTE_INGEST);
  router_add("/api/small", HTTP_M_POST, h_len, ROUTE_PUBLIC);
  srv_config();
  cfg.max_body_bytes = 64;
  cfg.max_ingest_bytes = 256;
  srv_start(&router_cb);
  char req[1024], body[300];
  memset(body, 'x', sizeof(body));
  struct { const char *path; size_t n; int status; } cases[] = {
      {"/api/small", 64, 200}, {"/api/small", 65, 413}, {"/api/ingest", 65, 200},
      {"/api/ingest", 256, 200}, {"/api/ingest", 257, 413},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int hl = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", cases[i].path,
                      cases[i].n);
    memcpy(req + hl, body, cases[i].n);
    req[hl + cases[i].n] = 0;
    resp_t *r = roundtrip(req);
    cr_assert_not_null(r);
    cr_expect_eq(r->status, cases[i].status, "%s with %zu bytes -> %d", cases[i].path, cases[i].n, r->status);
    resp_free(r);
  }
  stop_router();
}

Test(router, json_body_errors, .timeout = 10) {
  router_add("/api/json", HTTP_M_POST, h_json, ROUTE_PUBLIC);
  start_router();
  cli_t *c = cli_open();
  struct { const char *ctype, *body; int status; const char *code; } cases[] = {
      {"text/plain", "{}", 415, "UNSUPPORTED_MEDIA_TYPE"},
      {"application/json", "{\"a\":", 400, "BAD_REQUEST"},
      {"application/json", "[1]", 422, "VALIDATION_ERROR"},
      {NULL, "{\"a\":1}", 200, ""},
      {"application/json; charset=utf-8", "{\"a\":1}", 200, ""},
      {"application/merge-patch+json", "{\"a\":1}", 200, ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char req[512];
    char ct[128] = "";
    if (cases[i].ctype) snprintf(ct, sizeof(ct), "Content-Type: %s\r\n", cases[i].ctype);
    snprintf(req, sizeof(req), "POST /api/json HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s", ct,
             strlen(cases[i].body), cases[i].body);
    resp_t *r = ask(c, req);
    cr_expect_eq(r->status, cases[i].status, "case %zu: %d %s", i, r->status, r->body);
    cr_expect_str_eq(resp_error_code(r), cases[i].code, "case %zu", i);
    if (cases[i].status == 200) cr_expect_str_eq(r->body, "{\"a\":1}");
    if (cases[i].status == 422) cr_expect(strstr(r->body, "\"field\"") != NULL, "%s", r->body);
    resp_free(r);
  }
  cli_close(c);
  stop_router();
}
