/* api/limits.h — the SPEC §9 rate limits the API applies (api/limits.c): the
 * router's hook for /api/… (per user, per IP when anonymous), failed logins (per
 * email+IP) and WebSocket frames (per socket).  The run limits are core/runs'.
 *
 * Thread: the loop thread, except api_limits_register (main thread, before the
 * loop starts).
 */
#ifndef AGD_API_LIMITS_H
#define AGD_API_LIMITS_H

#include <stdint.h>
#include <uv.h>

#include "core/ratelimit.h"
#include "net/net.h"

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

#endif
