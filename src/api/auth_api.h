/* api/auth_api.h — what the auth routes (api/auth_api.c, SPEC §2) and the
 * rate limits (api/limits.c, SPEC §9) offer other modules.
 *
 * auth_api.c: /auth/… routes (also under /api/auth and /api/v1/auth), /api/me,
 * /api/users/me, the router's authentication hook, create-on-first-use of a
 * token's user for the WebSocket handshake, and `agentd user add`.
 * limits.c: the router's rate-limit hook for /api/… (per user, per IP when
 * anonymous) and the failed-login limit (per email+IP).
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
#include "core/ratelimit.h"
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

/* SPEC §9 default for failed logins: 5 per minute per email+IP. */
#define API_LOGIN_FAIL_BURST 5
#define API_LOGIN_FAIL_PER_S (5.0 / 60.0)

/* Set the /api/… limit hook (router_set_limit) from g_app->cfg (rate_per_s,
 * rate_burst; rate 0 → no hook at all) and allocate the failed-login table.
 * Main thread, before the loop runs (api_auth_register calls it). */
void api_limits_register(void);
/* Start / stop the unref'd timer that sweeps idle buckets (once a minute).
 * stop also frees the buckets; the hook then allows everything.  Loop thread. */
void api_limits_start(uv_loop_t *loop);
void api_limits_stop(void);

/* SPEC §9 failed logins: reserve one attempt for key ("login:<email>|<ip>")
 * before checking the password.  1 allowed; 0 limited — info filled for the
 * Retry-After / X-RateLimit-* headers (see api_limits_set_headers) and the
 * rejection counted in /metrics.  Always 1 when limits are off (--rate-limit 0).
 * A login that succeeds gives its attempt back with api_login_refund(), so only
 * failures count.  Loop thread. */
int api_login_reserve(const char *key, ratelimit_info_t *info);
void api_login_refund(const char *key);

/* SPEC §9 default for WebSocket frames: 20 per second per socket, bursts of 40
 * (the same bucket shape as the /api default; --rate-limit 0 turns it off, any
 * other value leaves it at this default). */
#define API_WS_FRAMES_PER_S 20.0
#define API_WS_FRAMES_BURST 40.0

/* SPEC §9 frame limit: take one token from the bucket of socket conn_id.
 * 1 allowed; 0 limited (the rejection is counted in /metrics).  Always 1 when
 * limits are off.  Loop thread. */
int api_limits_ws_frame(uint64_t conn_id);

/* Add X-RateLimit-Limit/-Remaining/-Reset, and Retry-After when limited, to r. */
void api_limits_set_headers(http_req_t *r, const ratelimit_info_t *info, int limited);

/* The token of `Authorization: Bearer <token>` (scheme case-insensitive, blanks
 * trimmed): 1 and *tok (may be empty), or 0 when there is no Authorization
 * header or it names another scheme.  The only place REST reads credentials. */
int api_bearer_token(http_req_t *r, slice_t *tok);

#endif
