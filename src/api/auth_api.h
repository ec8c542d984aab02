/* api/auth_api.h — what the auth routes (api/auth_api.c, SPEC §2) offer other
 * modules: /auth/… routes (also under /api/auth and /api/v1/auth), /api/me,
 * /api/users/me, the router's authentication hook, create-on-first-use of a
 * token's user for the WebSocket handshake, and `agentd user add`.  The rate
 * limits are api/limits.h.
 * Thread: everything here runs on the loop thread, except api_cmd_user_add
 * (main thread, no loop) and the *_register functions (main thread before the
 * loop starts).  The lifecycle entry points (api_auth_register/start/stop,
 * api_cmd_user_add) are declared in api/app.h for main.
 */
#ifndef AGD_API_AUTH_API_H
#define AGD_API_AUTH_API_H

#include <uv.h>

#include "api/app.h"
#include "api/router.h"
#include "net/net.h"

/* SPEC §2 create-on-first-use for a route that authenticates by itself (the
 * WebSocket handshake: ROUTE_PUBLIC, so the router's hook does not run).
 * user_id: the verified token's sub (< ID_MAX bytes), email: its email claim
 * ("" or NULL: none; normalised here, unusable ones ignored).
 * 0: the user row exists — go on now.  ROUTER_AUTH_PENDING: the row is being
 * created on a worker; the caller returns without answering.  Once it exists
 * the route's handler runs again through router_continue(r) (same request and
 * ctx; this call then answers 0), or, if the client left or the store failed,
 * the request has been answered with an error.  Loop thread. */
int api_auth_ensure_user(http_req_t *r, route_ctx_t *ctx, const char *user_id, const char *email);

/* The refresh family (login session, "fam" claim) of the access token the
 * router's hook verified for this request; "" when none.  Loop thread. */
const char *api_auth_token_family(const route_ctx_t *ctx);

/* The token of `Authorization: Bearer <token>` (scheme case-insensitive, blanks
 * trimmed): 1 and *tok (may be empty), or 0 when there is no Authorization
 * header or it names another scheme.  The only place REST reads credentials. */
int api_bearer_token(http_req_t *r, slice_t *tok);

/* The dev user (POST /auth/dev/login's, SPEC §2), created on first use: 0 and
 * *out, or the store's error.  Blocks on the store: a worker thread.  /mcp
 * with --mcp-anonymous acts as this user (SPEC §7). */
int api_auth_dev_user(store_t *s, store_user_t *out);

#endif
