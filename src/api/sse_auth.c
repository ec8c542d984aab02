/* api/sse_auth.c — SSE streams end when their token is revoked or expires
 * (api/sse_auth.h).  Loop thread.
 *
 * A small array of watched streams (connection id + what the token was); the
 * once-a-second sweep asks core/auth whether each token has ended — the same
 * question the WebSocket sweep asks — and drops the streams that are gone.
 */
#include "api/sse_auth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/auth_api.h"
#include "core/auth.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define SWEEP_MS 1000

typedef struct watched {
  uint64_t conn_id;
  double exp;       /* the token's exp (0: none) */
  char jti[128];    /* "" when the token has none */
  char family[128]; /* its login session, "" when none */
} watched_t;

static watched_t *tab;
static size_t n_tab, cap_tab;
static uv_timer_t sweep_timer;
static int timer_ready;

/* The final frame, then the end of the stream.  The client's EventSource sees
 * an `error` event it can act on (log in again) instead of a silent drop, and
 * does not take it for a network hiccup to retry with the same token.  "code"
 * as in WebSocket error frames, "error_code" as in the stream's other error
 * event (a run that could not start, runs_api.c). */
static void end_stream(conn_t *c, const char *why) {
  json_t *o = json_pack("{s:s,s:s,s:s}", "code", "AUTH_INVALID", "error_code", "AUTH_INVALID", "message", why);
  char *data = jsonx_dumps(o);
  json_decref(o);
  if (!data) abort();
  (void)sse_send(c, NULL, "error", data, strlen(data)); /* a reader too slow for it is closed anyway */
  free(data);
  sse_end(c);
}

/* Remove entry i (order does not matter). */
static void drop(size_t i) {
  tab[i] = tab[--n_tab];
  if (n_tab == 0 && timer_ready) uv_timer_stop(&sweep_timer);
}

/* The live SSE connection of entry i, or NULL when it went away. */
static conn_t *stream_of(const watched_t *w) {
  conn_t *c = server_conn_lookup(g_app->srv, w->conn_id);
  return c && conn_kind(c) == CONN_KIND_SSE && !conn_is_closing(c) ? c : NULL;
}

static void on_sweep(uv_timer_t *t) {
  double now = time_now();
  for (size_t i = 0; i < n_tab;) {
    conn_t *c = stream_of(&tab[i]);
    const char *why = c ? auth_token_ended(tab[i].jti, tab[i].family, tab[i].exp, now) : NULL;
    if (c && !why) {
      i++;
      continue;
    }
    if (why) end_stream(c, why);
    drop(i); /* entry i is now the former last one: look at it next */
  }
}

void api_sse_auth_watch(http_req_t *r, const route_ctx_t *ctx) {
  if (!ctx || !ctx->user_id || !timer_ready) return;
  if (n_tab == cap_tab) {
    size_t ncap = cap_tab ? 2 * cap_tab : 64;
    watched_t *nt = realloc(tab, ncap * sizeof(*nt));
    if (!nt) abort();
    tab = nt;
    cap_tab = ncap;
  }
  watched_t *w = &tab[n_tab++];
  w->conn_id = conn_id(http_req_conn(r));
  w->exp = ctx->token_exp;
  snprintf(w->jti, sizeof(w->jti), "%s", ctx->token_jti ? ctx->token_jti : "");
  snprintf(w->family, sizeof(w->family), "%s", api_auth_token_family(ctx));
  if (n_tab == 1) uv_timer_start(&sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
}

void api_sse_auth_revoke(const char *jti, const char *family) {
  int by_jti = jti && jti[0], by_fam = family && family[0];
  if (!by_jti && !by_fam) return;
  for (size_t i = 0; i < n_tab;) {
    const watched_t *w = &tab[i];
    if (!((by_jti && strcmp(w->jti, jti) == 0) || (by_fam && strcmp(w->family, family) == 0))) {
      i++;
      continue;
    }
    conn_t *c = stream_of(w);
    if (c) end_stream(c, "token revoked");
    drop(i);
  }
}

void api_sse_auth_start(uv_loop_t *loop) {
  uv_timer_init(loop, &sweep_timer);
  uv_unref((uv_handle_t *)&sweep_timer);
  timer_ready = 1;
}

void api_sse_auth_stop(void) {
  if (timer_ready) {
    uv_timer_stop(&sweep_timer);
    uv_close((uv_handle_t *)&sweep_timer, NULL);
    timer_ready = 0;
  }
  free(tab);
  tab = NULL;
  n_tab = cap_tab = 0;
}
