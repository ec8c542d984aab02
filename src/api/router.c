/* api/router.c — route table and the checks shared by every route (see router.h).
 * Loop thread at run time; the table is filled at start.
 */
#include "api/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "util/err.h"
#include "util/log.h"

#define ROUTER_MAX_ROUTES 256
#define ROUTER_MAX_SEGS 12

typedef struct route {
  char *pattern;            /* also the metrics label */
  unsigned methods;
  unsigned flags;
  route_handler_fn fn;
  route_begin_fn begin;     /* streamed body routes */
  int n_segs;
  char *segs[ROUTER_MAX_SEGS]; /* literal, or "{name}" */
  int n_literals;
} route_t;

static route_t routes[ROUTER_MAX_ROUTES];
static int n_routes;
static router_auth_fn auth_hook;
static router_limit_fn limit_hook;

static int split_segments(char *path, char **segs, int max) {
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(path, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
    if (n == max) return -1;
    segs[n++] = t;
  }
  return n;
}

void router_add(const char *pattern, unsigned methods, route_handler_fn fn, unsigned flags) {
  if (n_routes == ROUTER_MAX_ROUTES) {
    log_error("router: too many routes (max %d)", ROUTER_MAX_ROUTES);
    abort();
  }
  route_t *rt = &routes[n_routes++];
  rt->pattern = strdup(pattern);
  char *tmp = strdup(pattern);
  rt->n_segs = split_segments(tmp, rt->segs, ROUTER_MAX_SEGS);
  if (rt->n_segs < 0) abort();
  for (int i = 0; i < rt->n_segs; i++) {
    rt->segs[i] = strdup(rt->segs[i]);
    if (rt->segs[i][0] != '{') rt->n_literals++;
  }
  free(tmp);
  if (methods & HTTP_M_GET) methods |= HTTP_M_HEAD;
  rt->methods = methods;
  rt->fn = fn;
  rt->flags = flags;
}

void router_add_stream(const char *pattern, unsigned methods, route_begin_fn begin, route_handler_fn fn,
                       unsigned flags) {
  router_add(pattern, methods, fn, flags | ROUTE_INGEST);
  routes[n_routes - 1].begin = begin;
}

void router_add_prefixed(const char *const *prefixes, const char *suffix, unsigned methods, route_handler_fn fn,
                         unsigned flags) {
  for (; *prefixes; prefixes++) {
    char pat[256];
    snprintf(pat, sizeof(pat), "%s%s", *prefixes, suffix);
    router_add(pat, methods, fn, flags);
  }
}

void router_set_auth(router_auth_fn fn) { auth_hook = fn; }
void router_set_limit(router_limit_fn fn) { limit_hook = fn; }

void router_reset(void) {
  for (int i = 0; i < n_routes; i++) {
    free(routes[i].pattern);
    for (int j = 0; j < routes[i].n_segs; j++) free(routes[i].segs[j]);
  }
  memset(routes, 0, sizeof(routes));
  n_routes = 0;
  auth_hook = NULL;
  limit_hook = NULL;
}

const char *route_param(const route_ctx_t *ctx, const char *name) {
  for (int i = 0; i < ctx->n_params; i++)
    if (strcmp(ctx->param_names[i], name) == 0) return ctx->param_values[i];
  return NULL;
}

/* Does route rt match the path segments?  Fills params into ctx when given. */
static int route_match(const route_t *rt, char **segs, int n, route_ctx_t *ctx) {
  if (rt->n_segs != n) return 0;
  for (int i = 0; i < n; i++) {
    if (rt->segs[i][0] == '{') continue;
    if (strcmp(rt->segs[i], segs[i]) != 0) return 0;
  }
  if (ctx) {
    ctx->n_params = 0;
    for (int i = 0; i < n && ctx->n_params < ROUTE_MAX_PARAMS; i++) {
      if (rt->segs[i][0] != '{') continue;
      ctx->param_names[ctx->n_params] = rt->segs[i] + 1; /* "name}": the caller strips the brace */
      ctx->param_values[ctx->n_params] = segs[i];
      ctx->n_params++;
    }
  }
  return 1;
}

/* Find the best route for the path: the one with most literal segments that
 * allows the method; *allow collects the methods of every matching pattern. */
static route_t *router_find(const char *path, unsigned method, unsigned *allow, char ***segs_out, int *n_out,
                            pool_t *pool) {
  size_t len = strlen(path);
  char *copy = pool_strndup(pool, path, len);
  char **segs = pool_alloc(pool, sizeof(char *) * ROUTER_MAX_SEGS);
  int n = split_segments(copy, segs, ROUTER_MAX_SEGS);
  *allow = 0;
  *segs_out = segs;
  *n_out = n;
  if (n < 0) return NULL;
  route_t *best = NULL;
  for (int i = 0; i < n_routes; i++) {
    route_t *rt = &routes[i];
    if (!route_match(rt, segs, n, NULL)) continue;
    *allow |= rt->methods;
    if (!(rt->methods & method)) continue;
    if (!best || rt->n_literals > best->n_literals) best = rt;
  }
  return best;
}

static route_ctx_t *ctx_of(http_req_t *r) { return http_req_data(r); }

long router_on_request_head(http_req_t *r) {
  pool_t *pool = http_req_pool(r);
  route_ctx_t *ctx = pool_alloc(pool, sizeof(*ctx));
  memset(ctx, 0, sizeof(*ctx));
  char **segs;
  int n;
  unsigned allow;
  route_t *rt = router_find(http_req_path(r), http_req_method(r), &allow, &segs, &n, pool);
  if (rt) {
    ctx->route = rt;
    route_match(rt, segs, n, ctx);
    /* param names are "{name}": strip the braces into the pool */
    for (int i = 0; i < ctx->n_params; i++) {
      const char *nm = ctx->param_names[i];
      size_t l = strlen(nm);
      ctx->param_names[i] = pool_strndup(pool, nm, l > 0 ? l - 1 : 0);
    }
    http_req_set_route_label(r, rt->pattern);
  }
  http_req_set_data(r, ctx);
  if (rt && rt->begin) {
    int rc = rt->begin(r, ctx);
    if (rc < 0) return rc;
  }
  if (rt && (rt->flags & ROUTE_INGEST)) return (long)server_config(conn_server(http_req_conn(r)))->max_ingest_bytes;
  return 0;
}

static void append_method_names(char *out, size_t cap, unsigned m) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{HTTP_M_GET, "GET"},     {HTTP_M_HEAD, "HEAD"},     {HTTP_M_POST, "POST"},
               {HTTP_M_PUT, "PUT"},     {HTTP_M_PATCH, "PATCH"},   {HTTP_M_DELETE, "DELETE"},
               {HTTP_M_OPTIONS, "OPTIONS"}};
  out[0] = 0;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (!(m & names[i].bit)) continue;
    if (out[0]) strncat(out, ", ", cap - strlen(out) - 1);
    strncat(out, names[i].name, cap - strlen(out) - 1);
  }
}

/* CORS preflight (SPEC conventions): 204 always; Access-Control-Allow-* only for
 * an allowed Origin (http.c adds Allow-Origin itself for allowed origins). */
static void router_preflight(http_req_t *r, unsigned allow) {
  char methods[96];
  append_method_names(methods, sizeof(methods), allow | HTTP_M_OPTIONS);
  http_resp_header(r, "Allow", methods);
  slice_t origin, reqm;
  const config_t *cfg = server_config(conn_server(http_req_conn(r)));
  if (http_req_header(r, "origin", &origin) && config_cors_allowed(cfg, origin.p, origin.n) &&
      http_req_header(r, "access-control-request-method", &reqm)) {
    http_resp_header(r, "Access-Control-Allow-Methods", methods);
    http_resp_header(r, "Access-Control-Allow-Headers",
                     "Authorization, Content-Type, X-Request-ID, Last-Event-ID, Accept, Mcp-Session-Id, "
                     "MCP-Protocol-Version");
    http_resp_header(r, "Access-Control-Max-Age", "600");
  }
  http_respond(r, 204, NULL, NULL, 0);
}

void router_on_request(http_req_t *r) {
  route_ctx_t *ctx = ctx_of(r);
  const route_t *rt = ctx->route;
  unsigned method = http_req_method(r);
  if (!rt) {
    char **segs;
    int n;
    unsigned allow;
    router_find(http_req_path(r), method, &allow, &segs, &n, http_req_pool(r));
    if (!allow) {
      http_respond_error(r, AGD_ENOT_FOUND, "no route for this path", NULL);
      return;
    }
    if (method == HTTP_M_OPTIONS) {
      router_preflight(r, allow);
      return;
    }
    char methods[96];
    append_method_names(methods, sizeof(methods), allow);
    http_resp_header(r, "Allow", methods);
    char msg[160];
    snprintf(msg, sizeof(msg), "method %s not allowed; allowed: %s", http_req_method_name(r), methods);
    http_respond_error(r, AGD_EMETHOD_NOT_ALLOWED, msg, NULL);
    return;
  }
  if (!(rt->flags & ROUTE_PUBLIC) || (rt->flags & ROUTE_AUTH_OPTIONAL)) {
    const char *why = NULL;
    int rc = auth_hook ? auth_hook(r, ctx, &why) : AGD_EAUTH_REQUIRED;
    if (rc == ROUTER_AUTH_PENDING) return;
    if (rc != 0 && !(rt->flags & ROUTE_PUBLIC)) {
      http_respond_error(r, rc, rc == AGD_EAUTH_REQUIRED ? "authentication required: send Authorization: Bearer <token>"
                                                         : (why ? why : "invalid or expired token"),
                         NULL);
      return;
    }
  }
  router_continue(r);
}

void router_continue(http_req_t *r) {
  route_ctx_t *ctx = ctx_of(r);
  const route_t *rt = ctx->route;
  if (!(rt->flags & ROUTE_NO_RATELIMIT) && limit_hook &&
      (strncmp(http_req_path(r), "/api/", 5) == 0 || (rt->flags & ROUTE_RATELIMIT))) {
    if (limit_hook(r, ctx) != 0) {
      http_respond_error(r, AGD_ERATE_LIMITED, "rate limit exceeded: slow down", NULL);
      return;
    }
  }
  rt->fn(r, ctx);
}

json_t *router_json_body(http_req_t *r, int any_type) {
  json_t *v = NULL;
  char msg[200];
  int rc = http_req_json(r, &v, msg, sizeof(msg));
  if (rc == AGD_EVALIDATION) { /* valid JSON (a \u0000 in a key): 422, never 400 */
    router_respond_validation(r, "body", msg);
    return NULL;
  }
  if (rc != 0) {
    char full[240];
    snprintf(full, sizeof(full), "%s%s", rc == AGD_EBAD_REQUEST ? "malformed JSON: " : "", msg);
    http_respond_error(r, rc, rc == AGD_ETOO_LARGE ? "JSON nested too deeply" : full, NULL);
    return NULL;
  }
  if (!any_type && !json_is_object(v)) {
    json_decref(v);
    router_respond_validation(r, "body", "expected a JSON object");
    return NULL;
  }
  return v;
}

void router_respond_validation(http_req_t *r, const char *field, const char *message) {
  json_t *d = json_array();
  json_array_append_new(d, json_pack("{s:s,s:s}", "field", field, "message", message));
  char msg[256];
  snprintf(msg, sizeof(msg), "%s: %s", field, message);
  http_respond_error(r, AGD_EVALIDATION, msg, d);
}
