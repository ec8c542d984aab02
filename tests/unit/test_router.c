/* tests/unit/test_router.c — api/router.c driven through a real in-process server.
 *
 * http_req_t is opaque and made by net/http.c, so the router is exercised the way
 * main wires it: server_open() with router_on_request_head/router_on_request,
 * routes registered with dummy handlers, and plain blocking sockets on the test
 * thread.  The loop runs on its own thread (net_harness.h); code that must run on
 * the loop (router_continue) goes through on_loop().  Each test closes every
 * handle and asserts uv_loop_close() == 0 (STYLE §10).  SPEC: conventions
 * (envelope, 404/405 + Allow, CORS, 401 + WWW-Authenticate, 429).
 */
#include <criterion/criterion.h>

#include "api/router.h"
#include "util/err.h"

#include "net_harness.h" /* server on its own loop thread, blocking client */

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
