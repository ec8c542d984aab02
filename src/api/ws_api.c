/* api/ws_api.c — see ws_api.h: handshake credentials, the welcome frame, and
 * the client frame protocol (keepalives here; the thread and run frames plug in
 * through api/ws_frames).
 */
#include "api/ws_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/router.h"
#include "api/auth_api.h"
#include "api/limits.h"
#include "api/ws_frames.h"
#include "api/query.h"
#include "core/auth.h"
#include "core/events.h"
#include "core/metrics.h"
#include "util/b64url.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

/* Per-socket state of the protocol (conn_data). */
typedef struct ws_session {
  struct ws_session *prev, *next; /* all open sessions (logout and expiry sweeps) */
  conn_t *conn;
  events_sub_t *sub;  /* the user's live events (core/events) */
  char last_run[ID_MAX]; /* the latest run this socket started (stop_agent default) */
  const char *jti;    /* the handshake token's jti: logout of it closes the socket (1008); in strs */
  const char *family; /* its login session (fam): a revoked session closes the socket too; in strs */
  double token_exp;   /* its expiry: the socket is closed with 1008 after it */
  int64_t resume_after; /* handshake ?after_seq= / Last-Event-ID: replay from it (-1: none) */
  double hold_until;  /* > 0: live events held until the first frame or this time */
  /* jti and family, each NUL-terminated, sized to them: fixed 128-byte fields
   * would be a third of an idle socket's memory (docs/performance.md). */
  char strs[];
} ws_session_t;

/* A socket opened without a resume point holds its live events until its first
 * frame says whether it resumes (issue 13, defect 1), or WS_HOLD_S at most for a
 * client that only listens.  One timer for every held socket, running only
 * while there is one. */
#define WS_HOLD_S 1.0
#define WS_HOLD_TICK_MS 100
static uv_timer_t hold_timer;
static size_t n_held;

static ws_session_t sessions = {.prev = &sessions, .next = &sessions};
static uv_timer_t expiry_timer;

static void session_link(ws_session_t *s) {
  s->prev = sessions.prev;
  s->next = &sessions;
  sessions.prev->next = s;
  sessions.prev = s;
}

static void session_unlink(ws_session_t *s) {
  if (!s->next) return;
  s->prev->next = s->next;
  s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

/* SPEC §2: logout closes the open sockets of that token with 1008. */
void api_ws_revoke_token(const char *jti) {
  if (!jti || !jti[0]) return;
  for (ws_session_t *s = sessions.next, *next; s != &sessions; s = next) {
    next = s->next;
    if (strcmp(s->jti, jti) == 0) ws_close(s->conn, 1008, "token revoked");
  }
}

/* SPEC §6: a socket whose token expired, or was revoked by any path (its
 * session's family at logout, a refresh-token reuse, another instance sharing
 * the revocation backend), is closed with 1008 — core/auth decides, as for SSE
 * streams (api/sse_auth.c). */
static void on_expiry_timer(uv_timer_t *t) {
  double now = time_now();
  for (ws_session_t *s = sessions.next, *next; s != &sessions; s = next) {
    next = s->next;
    const char *why = auth_token_ended(s->jti, s->family, s->token_exp, now);
    if (why) ws_close(s->conn, 1008, why);
  }
}

static void session_release(ws_session_t *s) {
  if (s->hold_until <= 0) return;
  s->hold_until = 0;
  if (--n_held == 0) uv_timer_stop(&hold_timer);
  events_release(s->sub);
}

static void on_hold_timer(uv_timer_t *t) {
  double now = time_now();
  for (ws_session_t *s = sessions.next, *next; s != &sessions && n_held > 0; s = next) {
    next = s->next;
    if (s->hold_until > 0 && now >= s->hold_until) session_release(s);
  }
}

void api_ws_start(uv_loop_t *loop) {
  uv_timer_init(loop, &hold_timer);
  uv_unref((uv_handle_t *)&hold_timer);
  uv_timer_init(loop, &expiry_timer);
  uv_timer_start(&expiry_timer, on_expiry_timer, 1000, 1000);
  uv_unref((uv_handle_t *)&expiry_timer);
}

void api_ws_stop(void) {
  uv_timer_stop(&expiry_timer);
  uv_close((uv_handle_t *)&expiry_timer, NULL);
  uv_timer_stop(&hold_timer);
  uv_close((uv_handle_t *)&hold_timer, NULL);
}

/* The handshake's resume point: Last-Event-ID (as SSE) or ?after_seq=.  0 and
 * *after (-1: none), or -1 after answering 400. */
static int ws_resume_point(http_req_t *r, int64_t *after) {
  *after = -1;
  slice_t h;
  if (http_req_header(r, "last-event-id", &h) && h.n > 0) {
    char tmp[24];
    long long v;
    if (h.n >= sizeof tmp) goto bad;
    memcpy(tmp, h.p, h.n);
    tmp[h.n] = 0;
    if (query_parse_int(tmp, 0, INT64_MAX, &v) != 0) goto bad;
    *after = v;
    return 0;
  }
  long long v;
  if (query_int(r, "after_seq", 0, INT64_MAX, -1, &v) != 0) return -1;
  *after = v;
  return 0;
bad:
  http_respond_error(r, AGD_EBAD_REQUEST, "Last-Event-ID: must be an event seq", NULL);
  return -1;
}

/* ---- handshake (SPEC §6) ---- */


/* Credentials, in SPEC order: Authorization: Bearer, subprotocol jwt.<b64url>, ?token=.
 * Returns 1 and the token (pool) or 0 when none was given. */
static int ws_find_token(http_req_t *r, const char **tok, size_t *len) {
  slice_t v;
  if (api_bearer_token(r, &v) && v.n > 0) {
    *tok = pool_strndup(http_req_pool(r), v.p, v.n);
    *len = v.n;
    return 1;
  }
  if (http_req_header(r, "sec-websocket-protocol", &v)) {
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == ',')) p++;
      const char *s = p;
      while (p < end && *p != ',') p++;
      const char *e = p;
      while (e > s && e[-1] == ' ') e--;
      if (e - s > 4 && strncmp(s, "jwt.", 4) == 0) {
        char *out = pool_alloc(http_req_pool(r), (size_t)(e - s));
        size_t n = 0;
        if (b64url_decode(s + 4, (size_t)(e - s - 4), (unsigned char *)out, (size_t)(e - s) - 1, &n) != 0 || n == 0) {
          *tok = "";
          *len = 0;
          return 1; /* a credential was given, and it is invalid */
        }
        out[n] = 0;
        *tok = out;
        *len = n;
        return 1;
      }
    }
  }
  const char *q;
  if (http_req_query(r, "token", &q) && q[0]) {
    *tok = q;
    *len = strlen(q);
    return 1;
  }
  return 0;
}

/* SPEC §6 handshake: credentials in SPEC order (none → 403, invalid → 401), the
 * user row created on first use (SPEC §2: asynchronous — this handler then runs
 * again for the same request once the row exists), then the upgrade. */
static void h_ws(http_req_t *r, route_ctx_t *ctx) {
  /* api/auth_api.h (declared here: the include belongs at the top of the file) */
  const char *tok;
  size_t len;
  if (!ws_find_token(r, &tok, &len)) {
    http_respond_error(r, AGD_EFORBIDDEN, "credentials required: Authorization: Bearer, jwt.<token> subprotocol or ?token=",
                       NULL);
    return;
  }
  auth_identity_t claims; /* core/auth: the one verifier (signature, claims, cache, revocation) */
  if (auth_verify_access(tok, len, time_now(), &claims) != 0) {
    char msg[128];
    snprintf(msg, sizeof(msg), "invalid token: %s", claims.error ? claims.error : "malformed");
    http_respond_error(r, AGD_EAUTH_INVALID, msg, NULL);
    return;
  }
  int64_t resume_after;
  if (ws_resume_point(r, &resume_after) != 0) return;
  if (api_auth_ensure_user(r, ctx, claims.user_id, claims.email) != 0) return; /* h_ws runs again later */
  conn_t *c = http_req_conn(r);
  size_t jl = strlen(claims.jti), fl = strlen(claims.family); /* each < 128: auth_identity_t */
  ws_session_t *s = xcalloc(1, sizeof(*s) + jl + 1 + fl + 1);
  memcpy(s->strs, claims.jti, jl + 1);
  memcpy(s->strs + jl + 1, claims.family, fl + 1);
  s->jti = s->strs;
  s->family = s->strs + jl + 1;
  s->token_exp = claims.exp;
  s->resume_after = resume_after;
  s->conn = c;
  conn_set_data(c, s);
  if (ws_upgrade(r, claims.user_id) != 0) {
    conn_set_data(c, NULL);
    free(s);
  }
}

/* ---- frames ---- */

static void ws_send_json(conn_t *c, json_t *o) {
  buf_t b;
  buf_init(&b, 0);
  jsonx_append(&b, o);
  ws_send_text(c, b.base, b.len);
  buf_dispose(&b);
  json_decref(o);
}

/* SPEC §6 error frame: {"type":"error","code","message","data":{"code","message"}}. */
static void ws_send_error(conn_t *c, const char *code, const char *message, json_t *reply_to) {
  json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:f}", "type", "error", "code", code, "message", message, "data",
                        "code", code, "message", message, "timestamp", time_now());
  if (reply_to) json_object_set(o, "reply_to", reply_to);
  ws_send_json(c, o);
}

/* Exported for the other protocol modules (app.h). */
void api_ws_send_json(conn_t *c, json_t *o) { ws_send_json(c, o); }
void api_ws_send_error(conn_t *c, const char *code, const char *message, json_t *reply_to) {
  ws_send_error(c, code, message, reply_to);
}

events_sub_t *api_ws_events_sub(conn_t *c) {
  ws_session_t *s = conn_kind(c) == CONN_KIND_WS ? conn_data(c) : NULL;
  return s ? s->sub : NULL;
}

void api_ws_remember_run(conn_t *c, const char *run_id) {
  ws_session_t *s = conn_kind(c) == CONN_KIND_WS ? conn_data(c) : NULL;
  if (s) snprintf(s->last_run, sizeof(s->last_run), "%s", run_id ? run_id : "");
}

const char *api_ws_last_run(conn_t *c) {
  ws_session_t *s = conn_kind(c) == CONN_KIND_WS ? conn_data(c) : NULL;
  return s && s->last_run[0] ? s->last_run : NULL;
}

void api_ws_on_open(conn_t *c) {
  ws_session_t *s = conn_data(c);
  if (s) {
    session_link(s);
    /* Every socket gets its user's events: from the handshake's resume point
     * (replay, then live), or live once its first frame shows it is not a
     * `resume` — held until then, so a resume can never come after live events. */
    s->sub = events_subscribe(c, conn_user_id(c), NULL, NULL, s->resume_after, 0);
    if (s->sub && s->resume_after < 0) {
      events_hold(s->sub);
      s->hold_until = time_now() + WS_HOLD_S;
      if (n_held++ == 0) uv_timer_start(&hold_timer, on_hold_timer, WS_HOLD_TICK_MS, WS_HOLD_TICK_MS);
    }
  }
  char cid[ID_MAX];
  id_new(cid, "conn");
  const config_t *cfg = g_app->cfg;
  double now = time_now();
  json_t *data = json_pack("{s:s,s:s,s:s,s:b,s:f,s:{s:i,s:i}}", "event", "connection_established", "connection_id", cid,
                           "user_id", conn_user_id(c), "connection_ready", 1, "server_time", now, "config",
                           "heartbeat_interval", (int)cfg->ws_ping_interval, "max_message_size",
                           (int)cfg->max_ws_frame);
  json_t *o = json_pack("{s:s,s:s,s:b,s:o,s:f}", "type", "system_message", "event", "connection_established",
                        "connection_ready", 1, "data", data, "timestamp", now);
  ws_send_json(c, o);
}

void api_stream_on_close(conn_t *c) {
  events_conn_closed(c);
  if (conn_kind(c) == CONN_KIND_WS && conn_data(c)) {
    ws_session_t *s = conn_data(c);
    if (s->hold_until > 0 && --n_held == 0) uv_timer_stop(&hold_timer);
    session_unlink(s);
    free(s);
  }
  conn_set_data(c, NULL);
}

/* After the first frame of a held socket: a `resume` has started its replay
 * (events_resume ended the hold); anything else lets it go live now. */
static void first_frame_seen(conn_t *c) {
  ws_session_t *s = conn_kind(c) == CONN_KIND_WS ? conn_data(c) : NULL;
  if (s) session_release(s);
}

void api_ws_on_text(conn_t *c, const char *p, size_t n) {
  metrics_add("agentd_ws_frames_received_total", NULL, 1);
  int allowed = api_limits_ws_frame(conn_id(c));
  /* Parsed even when refused (the frame is within --max-ws-frame): the
   * refusal answers the frame's id like any other error (reply_to). */
  json_t *frame = NULL;
  char msg[160];
  int rc = jsonx_parse(p, n, g_app->cfg->max_json_depth, &frame, msg, sizeof(msg));
  json_t *id = rc == 0 && json_is_object(frame) ? json_object_get(frame, "id") : NULL;
  if (!allowed) {
    ws_send_error(c, "RATE_LIMITED", "too many frames: at most 20 per second", id);
    json_decref(frame);
    first_frame_seen(c);
    return;
  }
  if (rc == AGD_EVALIDATION) { /* valid JSON jansson cannot hold (a \u0000 in a key) */
    char m[200];
    snprintf(m, sizeof(m), "body: %s", msg);
    ws_send_error(c, "VALIDATION_ERROR", m, NULL);
    first_frame_seen(c);
    return;
  }
  if (rc != 0 || !json_is_object(frame)) {
    char m[200];
    snprintf(m, sizeof(m), "invalid JSON: %s", rc != 0 ? msg : "expected an object");
    ws_send_error(c, "INVALID_JSON", m, NULL);
    json_decref(frame);
    first_frame_seen(c);
    return;
  }
  const char *type = jsonx_get_str(frame, "type");
  if (!type) {
    ws_send_error(c, "INVALID_MESSAGE", "missing \"type\"", id);
  } else if (!ws_frames_dispatch(c, type, frame, id)) {
    char m[200];
    snprintf(m, sizeof(m), "unknown message type: %.100s", type);
    ws_send_error(c, "UNKNOWN_TYPE", m, id);
  }
  json_decref(frame);
  first_frame_seen(c);
}

/* ---- keepalive frames (SPEC §6) ---- */

/* ping → pong, heartbeat → heartbeat_ack, pong → ack (only when it has an id: a
 * bare pong is a keepalive and needs no answer).  arg is the reply type. */
static void ws_keepalive_frame(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  const char *reply = arg;
  if (!id && strcmp(reply, "ack") == 0) return;
  json_t *o = json_pack("{s:s,s:f}", "type", reply, "timestamp", time_now());
  if (id) json_object_set(o, "reply_to", id);
  ws_send_json(c, o);
}

void api_ws_register(void) {
  if (ws_frames_add("ping", ws_keepalive_frame, "pong") || ws_frames_add("heartbeat", ws_keepalive_frame, "heartbeat_ack") ||
      ws_frames_add("pong", ws_keepalive_frame, "ack"))
    abort(); /* a type claimed twice: a bug caught at start */
  router_add("/ws", HTTP_M_GET, h_ws, ROUTE_PUBLIC | ROUTE_NO_RATELIMIT);
  router_add("/websocket", HTTP_M_GET, h_ws, ROUTE_PUBLIC | ROUTE_NO_RATELIMIT);
}
