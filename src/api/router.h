/* api/router.h — the route table: path patterns with parameters, per-route
 * methods, 404/405 (with Allow) in the SPEC envelope, CORS preflight, and the
 * checks every protected route shares (authentication, rate limits).
 *
 * Routes are registered at start (main thread, before the loop runs) and read
 * on the loop thread afterwards.  Handlers run on the loop thread and answer
 * with http_respond*() now or later.
 */
#ifndef AGD_API_ROUTER_H
#define AGD_API_ROUTER_H

#include "net/net.h"

/* Route flags. */
enum {
  ROUTE_PUBLIC = 1u << 0,       /* no credentials needed (SPEC marks it public) */
  ROUTE_NO_RATELIMIT = 1u << 1, /* SPEC §9: /health*, /metrics are never limited */
  ROUTE_INGEST = 1u << 2,       /* body limit is cfg->max_ingest_bytes (SPEC: ingest routes) */
  ROUTE_AUTH_OPTIONAL = 1u << 3, /* identity used when given, not required */
  ROUTE_RATELIMIT = 1u << 4      /* rate limited like /api/… although outside it (/mcp, SPEC §7) */
};

#define ROUTE_MAX_PARAMS 4

/* What a handler gets besides the request. */
typedef struct route_ctx {
  const struct route *route;
  int n_params;
  const char *param_names[ROUTE_MAX_PARAMS];
  const char *param_values[ROUTE_MAX_PARAMS]; /* decoded, pool-allocated */
  const char *user_id;     /* authenticated user, NULL on public routes without credentials */
  const char *email;       /* from the token, may be "" */
  const char *token_jti;   /* the access token's jti, may be "" */
  double token_exp;
  void *auth_extra;        /* for the auth module */
} route_ctx_t;

typedef void (*route_handler_fn)(http_req_t *r, route_ctx_t *ctx);

/* Authenticate a request from its Authorization header.  Returns 0 and fills
 * ctx->user_id/email/token_jti, AGD_EAUTH_REQUIRED (no credentials) or
 * AGD_EAUTH_INVALID (bad ones; *why may get a short reason), or
 * ROUTER_AUTH_PENDING when it finishes asynchronously (e.g. the user row must
 * be created first): the hook then calls router_continue(r) on the loop
 * thread, or answers the request itself. */
#define ROUTER_AUTH_PENDING 1
typedef int (*router_auth_fn)(http_req_t *r, route_ctx_t *ctx, const char **why);
/* Rate limit hook: 0 allowed, AGD_ERATE_LIMITED (the hook has already added
 * Retry-After and X-RateLimit-* headers to r).  May add headers when allowed. */
typedef int (*router_limit_fn)(http_req_t *r, route_ctx_t *ctx);

/* Register a route.  pattern: "/api/threads/{id}/messages"; {name} matches one
 * non-empty segment.  methods: HTTP_M_* mask (GET implies HEAD).  The same
 * pattern may be registered several times with different methods. */
void router_add(const char *pattern, unsigned methods, route_handler_fn fn, unsigned flags);
/* A route whose body is streamed (net.h http_req_stream_body): `begin` runs when
 * the headers are complete, before any body byte is read.  It must
 * authenticate the request itself (the shared auth check runs only at dispatch)
 * and call http_req_stream_body(); it returns 0, or a negative AGD_E* to answer
 * at once without reading the body (401, 415, …).  `fn` runs after the last
 * chunk was consumed.  Body limit: cfg->max_ingest_bytes. */
typedef int (*route_begin_fn)(http_req_t *r, route_ctx_t *ctx);
void router_add_stream(const char *pattern, unsigned methods, route_begin_fn begin, route_handler_fn fn,
                       unsigned flags);
/* Mount the same handler under several prefixes, e.g. router_add_prefixed(
 * (const char*[]){"/auth", "/api/auth", "/api/v1/auth", NULL}, "/login", …). */
void router_add_prefixed(const char *const *prefixes, const char *suffix, unsigned methods, route_handler_fn fn,
                         unsigned flags);
void router_set_auth(router_auth_fn fn);
void router_set_limit(router_limit_fn fn);
/* Drop every route (tests, shutdown). */
void router_reset(void);

/* The value of path parameter `name`, or NULL. */
const char *route_param(const route_ctx_t *ctx, const char *name);

/* Resume a request whose auth hook returned ROUTER_AUTH_PENDING: rate limit, then the handler. */
void router_continue(http_req_t *r);

/* net_callbacks_t entries (main wires them). */
long router_on_request_head(http_req_t *r);
void router_on_request(http_req_t *r);

/* For handlers: parse the JSON body; on failure answer the SPEC error and
 * return NULL (the caller just returns).  Requires an object unless any_type. */
json_t *router_json_body(http_req_t *r, int any_type);
/* Answer 422 VALIDATION_ERROR with details [{"field","message"}]. */
void router_respond_validation(http_req_t *r, const char *field, const char *message);

#endif
