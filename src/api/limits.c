/* api/limits.c — SPEC §9 rate limits for HTTP: the router's limit hook (token
 * bucket per user, per client IP when anonymous, on /api/…) and the
 * failed-login limit (5/min per email+IP) and the per-socket WebSocket frame
 * limit (20/s, bursts of 40).
 *
 * Loop thread only (the hook, the login table and the sweep timer).  Owns one
 * ratelimit_t (bounded: RL_MAX_KEYS buckets, LRU eviction) and a fixed-size
 * login table.  `--rate-limit 0` turns both off; any other value keeps the
 * login limit at its SPEC default.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth_api.h"
#include "api/limits.h"
#include "api/router.h"
#include "core/metrics.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/timeutil.h"

#define RL_MAX_KEYS 100000
#define SWEEP_MS 60000

/* Failed-login buckets.  ratelimit_t has no way to look at a bucket without
 * taking from it, and a successful login must not count, so these few lines
 * keep their own buckets: a token is reserved before the password check and
 * given back on success.  Open addressing over a fixed table, keyed by a
 * seeded 64-bit hash; a probe window of LOGIN_PROBE slots, where a bucket that
 * has refilled (the same as absent) or else the least recently used one is
 * replaced.  Memory is LOGIN_SLOTS * 24 bytes, whatever the traffic. */
#define LOGIN_SLOTS 16384 /* power of two */
#define LOGIN_PROBE 8

typedef struct login_slot {
  uint64_t h;    /* key hash; 0 = empty */
  double tokens; /* at `at` */
  double at;     /* monotonic seconds of the last update */
} login_slot_t;

static ratelimit_t *api_rl;    /* NULL: /api limits off */
static ratelimit_t *ws_rl;     /* per-socket frame buckets; NULL: off */
static login_slot_t *login_tab; /* NULL: login limit off */
static uint64_t login_seed;
static uv_timer_t sweep_timer;
static int sweep_started;

static double now_mono(void) { return (double)time_mono_ns() / 1e9; }

void api_limits_set_headers(http_req_t *r, const ratelimit_info_t *info, int limited) {
  char v[32];
  snprintf(v, sizeof v, "%ld", info->limit);
  http_resp_header(r, "X-RateLimit-Limit", v);
  snprintf(v, sizeof v, "%ld", info->remaining);
  http_resp_header(r, "X-RateLimit-Remaining", v);
  snprintf(v, sizeof v, "%ld", info->reset_s);
  http_resp_header(r, "X-RateLimit-Reset", v);
  if (limited) {
    snprintf(v, sizeof v, "%ld", info->retry_after_s > 0 ? info->retry_after_s : 1);
    http_resp_header(r, "Retry-After", v);
  }
}

/* SPEC §9: per user (ctx->user_id), else per client IP; /api/… only (the router
 * skips other paths and ROUTE_NO_RATELIMIT routes). */
static int limit_hook(http_req_t *r, route_ctx_t *ctx) {
  if (!api_rl) return 0;
  char key[160];
  if (ctx->user_id && ctx->user_id[0]) snprintf(key, sizeof key, "u:%s", ctx->user_id);
  else snprintf(key, sizeof key, "ip:%s", http_req_peer_ip(r));
  ratelimit_info_t info;
  int ok = ratelimit_try_take(api_rl, key, now_mono(), &info);
  api_limits_set_headers(r, &info, !ok);
  if (ok) return 0;
  metrics_add("agentd_ratelimit_rejections_total", "kind=\"http\"", 1);
  return AGD_ERATE_LIMITED;
}

void api_limits_register(void) {
  const config_t *cfg = g_app->cfg;
  metrics_describe("agentd_ratelimit_rejections_total", "counter", "Requests refused by a rate limit (SPEC §9)");
  if (cfg->rate_per_s <= 0) return; /* SPEC §9: --rate-limit 0 turns every limit off */
  api_rl = ratelimit_new(cfg->rate_per_s, cfg->rate_burst, RL_MAX_KEYS);
  router_set_limit(limit_hook);
  ws_rl = ratelimit_new(API_WS_FRAMES_PER_S, API_WS_FRAMES_BURST, RL_MAX_KEYS);
  login_tab = calloc(LOGIN_SLOTS, sizeof(*login_tab));
  if (!login_tab) abort();
  id_random_bytes(&login_seed, sizeof login_seed);
}

static void on_sweep(uv_timer_t *t) {
  if (api_rl) ratelimit_sweep(api_rl, now_mono());
  if (ws_rl) ratelimit_sweep(ws_rl, now_mono());
}

int api_limits_ws_frame(uint64_t conn_id) {
  if (!ws_rl) return 1;
  char key[32];
  snprintf(key, sizeof key, "c:%llu", (unsigned long long)conn_id); /* ids are never reused */
  if (ratelimit_try_take(ws_rl, key, now_mono(), NULL)) return 1;
  metrics_add("agentd_ratelimit_rejections_total", "kind=\"ws_frame\"", 1);
  return 0;
}

void api_limits_start(uv_loop_t *loop) {
  if (sweep_started) return;
  uv_timer_init(loop, &sweep_timer);
  uv_timer_start(&sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&sweep_timer);
  sweep_started = 1;
}

void api_limits_stop(void) {
  if (sweep_started) {
    uv_timer_stop(&sweep_timer);
    uv_close((uv_handle_t *)&sweep_timer, NULL);
    sweep_started = 0;
  }
  ratelimit_free(api_rl);
  api_rl = NULL;
  ratelimit_free(ws_rl);
  ws_rl = NULL;
  free(login_tab);
  login_tab = NULL;
}

/* ---- failed logins ---- */

static uint64_t login_hash(const char *key) {
  uint64_t h = hash_fnv1a_str(key, login_seed); /* seeded, then mixed */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h ? h : 1;
}

static double login_tokens(const login_slot_t *s, double now) {
  double t = s->tokens + (now - s->at) * API_LOGIN_FAIL_PER_S;
  return t > API_LOGIN_FAIL_BURST ? API_LOGIN_FAIL_BURST : t;
}

/* The slot of key, or a fresh (full) one replacing the idlest of the window. */
static login_slot_t *login_slot(uint64_t h, double now, int create) {
  size_t i0 = (size_t)(h & (LOGIN_SLOTS - 1));
  login_slot_t *victim = NULL;
  int vrank = 3; /* 0 empty, 1 refilled (same as absent), 2 in use: oldest goes */
  for (size_t k = 0; k < LOGIN_PROBE; k++) {
    login_slot_t *s = &login_tab[(i0 + k) & (LOGIN_SLOTS - 1)];
    if (s->h == h) return s;
    int rank = s->h == 0 ? 0 : login_tokens(s, now) >= API_LOGIN_FAIL_BURST ? 1 : 2;
    if (rank < vrank || (rank == 2 && vrank == 2 && s->at < victim->at)) {
      victim = s;
      vrank = rank;
    }
  }
  if (!create) return NULL;
  if (!victim) return NULL;
  victim->h = h;
  victim->tokens = API_LOGIN_FAIL_BURST;
  victim->at = now;
  return victim;
}

int api_login_reserve(const char *key, ratelimit_info_t *info) {
  memset(info, 0, sizeof(*info));
  if (!login_tab) {
    info->limit = info->remaining = API_LOGIN_FAIL_BURST;
    return 1;
  }
  double now = now_mono();
  login_slot_t *s = login_slot(login_hash(key), now, 1);
  double t = login_tokens(s, now);
  int ok = t >= 1.0;
  if (ok) t -= 1.0;
  s->tokens = t;
  s->at = now;
  info->limit = API_LOGIN_FAIL_BURST;
  info->remaining = (long)floor(t);
  info->reset_s = (long)ceil((API_LOGIN_FAIL_BURST - t) / API_LOGIN_FAIL_PER_S);
  info->retry_after_s = ok ? 0 : (long)ceil((1.0 - t) / API_LOGIN_FAIL_PER_S);
  if (!ok && info->retry_after_s < 1) info->retry_after_s = 1;
  if (!ok) metrics_add("agentd_ratelimit_rejections_total", "kind=\"login\"", 1);
  return ok;
}

void api_login_refund(const char *key) {
  if (!login_tab) return;
  double now = now_mono();
  login_slot_t *s = login_slot(login_hash(key), now, 0);
  if (!s) return;
  double t = login_tokens(s, now) + 1.0;
  s->tokens = t > API_LOGIN_FAIL_BURST ? API_LOGIN_FAIL_BURST : t;
  s->at = now;
}
