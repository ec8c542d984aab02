/* mcp/http.c — the Streamable HTTP transport of the MCP client (MCP
 * 2025-11-25 "Transports"), over libcurl, never on the libuv loop.
 *
 * Each HTTP server has a manager thread: it initializes a session
 * (initialize → Mcp-Session-Id → notifications/initialized → tools/list with
 * paging), registers the tools, then holds the GET stream the server may
 * offer for its own messages (405: none) so notifications/tools/list_changed
 * is heard, reconnecting with Last-Event-ID when the stream had event ids.
 * It also sends notifications/cancelled for calls their callers left, and
 * DELETEs the session at shutdown.  A failure (connection refused, a bad
 * answer) marks the server failed/restarting and the thread tries again after
 * a backoff of 1 s doubling to 60 s.
 *
 * A tool call runs on the caller's thread (a run thread or a worker), like the
 * openai provider's model calls: one POST in a multi handle of its own, pumped
 * in slices of 50 ms so the cancel probe and the deadline are checked.  The
 * answer is a JSON object or an SSE stream (as the server chooses; agentd
 * accepts both); in a stream, the event whose data answers the call's id ends
 * it.  A stream that ends before the answer is resumed with a GET carrying
 * Last-Event-ID (at most 3 times) when the server gave event ids, after the
 * stream's `retry:` milliseconds (at most 10 s) when it sent one.  404 on a
 * request with the session id (or 400, which some servers answer for an
 * unknown session) means the session is gone: the call fails UNAVAILABLE and
 * the manager initializes again.
 *
 * Bounds: an answer (a JSON body or one event's data) over MCP_RESULT_MAX is
 * TOO_LARGE; a line of the stream over that ends the transfer.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mcp/client_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define H_POLL_MS 50
#define H_BACKOFF_MIN_MS 1000
#define H_BACKOFF_MAX_MS 60000
#define H_NOTE_TIMEOUT_MS 5000 /* a notification's POST, a DELETE */
#define H_MAX_RESUMES 3
#define H_RETRY_MAX_MS 10000 /* the longest `retry:` honoured */
#define H_MAX_CANCELS 64
#define H_MAX_PAGES 1000
#define H_MAX_TOOLS 10000

typedef struct http_srv {
  mcp_server_t *s;
  pthread_t th;
  int th_started;
  pthread_cond_t cond; /* with g_mcp.mu: wakes the manager */
  /* guarded by g_mcp.mu */
  char *session;       /* Mcp-Session-Id, NULL when the server gave none */
  int want_relist, want_reinit, stop;
  long long cancels[H_MAX_CANCELS];
  size_t ncancel;
  /* any thread */
  atomic_llong next_id;
} http_srv_t;

/* ---- one HTTP exchange ---- */

typedef struct hreq {
  /* in */
  const char *method; /* "POST", "GET", "DELETE" */
  const char *body;   /* POST */
  const char *session, *proto, *last_event_id;
  long long want_id;  /* the JSON-RPC answer that ends an SSE stream; -1: none (GET stream) */
  uint64_t deadline;  /* time_mono_ms */
  const tool_call_ctx_t *ctx;
  int (*abort_fn)(void *ud); /* polled: non-zero ends the exchange (manager's flags) */
  void (*on_message)(void *ud, const char *p, size_t n); /* a server message in a stream that is not the answer */
  void *ud;
  mcp_server_t *s;
  /* out */
  long status;
  int is_sse;
  char *session_out;
  buf_t body_buf;        /* a JSON answer */
  char *answer;          /* the matched answer's text (SSE) */
  size_t answer_len;
  char last_id[256];
  long retry_ms;         /* the stream's `retry:` field, -1 when none came */
  int too_large;
  /* SSE parsing */
  buf_t line, data;
  int have_data;
} hreq_t;

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  hreq_t *h = ud;
  size_t len = size * n;
  if (len > 15 && strncasecmp(p, "mcp-session-id:", 15) == 0) {
    const char *v = p + 15;
    size_t vl = len - 15;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
    if (vl > 0 && vl < 1024) {
      free(h->session_out);
      h->session_out = xstrndup(v, vl);
    }
  } else if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
    h->is_sse = memmem(p, len, "text/event-stream", 17) != NULL;
  }
  return len;
}

/* One event's data: the answer we wait for, or another server message. */
static int on_event(hreq_t *h) {
  const char *p = h->data.base ? h->data.base : "";
  size_t n = h->data.len;
  if (n && p[n - 1] == '\n') n--;
  h->have_data = 0;
  if (n == 0) return 0;
  mcp_scan_t sc;
  mcp_rpc_scan(p, n, &sc);
  if (sc.is_object && sc.has_id && !sc.has_method && sc.id == h->want_id) {
    h->answer = xstrndup(p, n);
    h->answer_len = n;
    return 1; /* done */
  }
  if (sc.is_object && h->on_message) h->on_message(h->ud, p, n);
  return 0;
}

/* A line of the event stream (without its end).  1: the answer arrived. */
static int sse_line(hreq_t *h, const char *p, size_t n) {
  if (n == 0) {
    int done = h->have_data ? on_event(h) : 0;
    buf_reset(&h->data);
    return done;
  }
  if (p[0] == ':') return 0;
  const char *colon = memchr(p, ':', n);
  size_t fl = colon ? (size_t)(colon - p) : n;
  const char *v = colon ? colon + 1 : p + n;
  size_t vl = colon ? n - fl - 1 : 0;
  if (vl && *v == ' ') v++, vl--;
  if (fl == 4 && memcmp(p, "data", 4) == 0) {
    if (buf_append(&h->data, v, vl) != 0 || buf_append(&h->data, "\n", 1) != 0) {
      h->too_large = 1;
      return -1;
    }
    h->have_data = 1;
  } else if (fl == 5 && memcmp(p, "retry", 5) == 0 && vl > 0 && vl < 9 && strspn(v, "0123456789") >= vl) {
    h->retry_ms = strtol(v, NULL, 10);
  } else if (fl == 2 && memcmp(p, "id", 2) == 0 && vl < sizeof(h->last_id) && !memchr(v, '\0', vl)) {
    memcpy(h->last_id, v, vl);
    h->last_id[vl] = '\0';
  }
  return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  hreq_t *h = ud;
  size_t len = size * n;
  if (!h->is_sse) {
    if (buf_append(&h->body_buf, p, len) != 0) {
      h->too_large = 1;
      return 0; /* ends the transfer */
    }
    return len;
  }
  size_t i = 0;
  while (i < len) {
    const char *nl = memchr(p + i, '\n', len - i);
    size_t seg = nl ? (size_t)(nl - (p + i)) : len - i;
    if (buf_append(&h->line, p + i, seg) != 0) {
      h->too_large = 1;
      return 0;
    }
    if (!nl) break;
    size_t ll = h->line.len;
    if (ll && h->line.base[ll - 1] == '\r') ll--;
    int r = sse_line(h, h->line.base ? h->line.base : "", ll);
    buf_reset(&h->line);
    if (r != 0) return 0; /* the answer (or an over-long event) ends the transfer */
    i += seg + 1;
  }
  return len;
}

static struct curl_slist *headers_of(const hreq_t *h) {
  struct curl_slist *l = NULL;
  char tmp[1400];
  if (strcmp(h->method, "POST") == 0) {
    l = curl_slist_append(l, "Content-Type: application/json");
    l = curl_slist_append(l, "Accept: application/json, text/event-stream");
  } else if (strcmp(h->method, "GET") == 0) {
    l = curl_slist_append(l, "Accept: text/event-stream");
  }
  if (h->session) {
    snprintf(tmp, sizeof(tmp), "Mcp-Session-Id: %s", h->session);
    l = curl_slist_append(l, tmp);
  }
  if (h->proto && *h->proto) {
    snprintf(tmp, sizeof(tmp), "MCP-Protocol-Version: %s", h->proto);
    l = curl_slist_append(l, tmp);
  }
  if (h->last_event_id && *h->last_event_id) {
    snprintf(tmp, sizeof(tmp), "Last-Event-ID: %s", h->last_event_id);
    l = curl_slist_append(l, tmp);
  }
  for (char **x = h->s->headers; x && *x; x++) l = curl_slist_append(l, *x);
  return l;
}

/* agentd is shutting down: a call in flight ends now. */
static int client_stopping(void) {
  pthread_mutex_lock(&g_mcp.mu);
  int a = !g_mcp.accepting;
  pthread_mutex_unlock(&g_mcp.mu);
  return a;
}

/* Run one exchange.  0 (status in h->status; the answer in h->answer or
 * h->body_buf), AGD_ETIMEOUT, AGD_ECANCELLED (the cancel probe or abort_fn),
 * AGD_ETOO_LARGE, or AGD_EUNAVAILABLE (no connection). */
static int hreq_perform(hreq_t *h, char *errmsg, size_t errcap) {
  h->retry_ms = -1;
  buf_init(&h->body_buf, MCP_RESULT_MAX);
  buf_init(&h->line, MCP_RESULT_MAX + 64);
  buf_init(&h->data, MCP_RESULT_MAX + 1);
  CURL *e = curl_easy_init();
  CURLM *m = curl_multi_init();
  if (!e || !m) abort();
  struct curl_slist *hdrs = headers_of(h);
  curl_easy_setopt(e, CURLOPT_URL, h->s->url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 16384L);
  if (strcmp(h->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, h->body);
  } else if (strcmp(h->method, "DELETE") == 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
  }
  curl_multi_add_handle(m, e);
  int rc = 0, running = 1;
  while (running) {
    CURLMcode mc = curl_multi_perform(m, &running);
    if (mc != CURLM_OK) {
      rc = AGD_EUNAVAILABLE;
      snprintf(errmsg, errcap, "mcp server '%s': %s", h->s->name, curl_multi_strerror(mc));
      break;
    }
    if (!running || h->answer) break;
    if (time_mono_ms() >= h->deadline) {
      rc = AGD_ETIMEOUT;
      snprintf(errmsg, errcap, "mcp server '%s' did not answer within %g s", h->s->name, g_mcp.timeout_s);
      break;
    }
    if (tool_call_cancelled(h->ctx) || (h->abort_fn && h->abort_fn(h->ud)) || (h->ctx && client_stopping())) {
      rc = AGD_ECANCELLED;
      snprintf(errmsg, errcap, "cancelled");
      break;
    }
    curl_multi_poll(m, NULL, 0, H_POLL_MS, NULL);
  }
  if (rc == 0 && !h->answer) {
    CURLMsg *msg;
    int left;
    CURLcode res = CURLE_OK;
    while ((msg = curl_multi_info_read(m, &left)))
      if (msg->msg == CURLMSG_DONE) res = msg->data.result;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &h->status);
    if (h->too_large) {
      rc = AGD_ETOO_LARGE;
      snprintf(errmsg, errcap, "mcp server '%s' answered with over %u bytes (the limit)", h->s->name, MCP_RESULT_MAX);
    } else if (res != CURLE_OK && h->status == 0) {
      rc = AGD_EUNAVAILABLE;
      snprintf(errmsg, errcap, "mcp server '%s': %s", h->s->name, curl_easy_strerror(res));
    }
  } else if (h->answer) {
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &h->status);
  }
  curl_multi_remove_handle(m, e);
  curl_easy_cleanup(e);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  buf_dispose(&h->line);
  buf_dispose(&h->data);
  if (rc == 0 && !h->answer && !h->is_sse && h->body_buf.len) { /* a JSON answer: its whole body */
    h->answer = buf_steal(&h->body_buf, &h->answer_len);
  }
  buf_dispose(&h->body_buf);
  return rc;
}

static void hreq_dispose(hreq_t *h) {
  free(h->answer);
  free(h->session_out);
  h->answer = h->session_out = NULL;
}

/* ---- the session (manager thread) ---- */

static int mgr_abort(void *ud) {
  http_srv_t *hs = ud;
  pthread_mutex_lock(&g_mcp.mu);
  int a = hs->stop || hs->want_reinit || hs->want_relist || hs->ncancel;
  pthread_mutex_unlock(&g_mcp.mu);
  return a;
}

static int mgr_stopping(void *ud) {
  http_srv_t *hs = ud;
  pthread_mutex_lock(&g_mcp.mu);
  int a = hs->stop;
  pthread_mutex_unlock(&g_mcp.mu);
  return a;
}

static void on_server_message(void *ud, const char *p, size_t n) {
  http_srv_t *hs = ud;
  if (n < 64 && memmem(p, n, "notifications/tools/list_changed", 32)) {
    pthread_mutex_lock(&g_mcp.mu);
    hs->want_relist = 1;
    pthread_cond_signal(&hs->cond);
    pthread_mutex_unlock(&g_mcp.mu);
  }
}

/* A request of the manager; *answer the parsed answer's object. */
static int mgr_request(http_srv_t *hs, const char *method, const char *params, const char *session, const char *proto,
                       json_t **answer, char **session_out, char *err, size_t cap) {
  long long id = atomic_fetch_add(&hs->next_id, 1);
  size_t len;
  char *line = mcp_rpc_request(id, method, params, &len);
  hreq_t h = {.method = "POST", .body = line, .session = session, .proto = proto, .want_id = id,
              .deadline = time_mono_ms() + (uint64_t)(g_mcp.timeout_s * 1000.0), .abort_fn = mgr_stopping,
              .on_message = on_server_message, .ud = hs, .s = hs->s};
  int rc = hreq_perform(&h, err, cap);
  free(line);
  *answer = NULL;
  if (rc == 0 && (h.status < 200 || h.status > 299)) {
    snprintf(err, cap, "%s answered HTTP %ld", method, h.status);
    rc = h.status == 404 ? AGD_ENOT_FOUND : AGD_EUNAVAILABLE;
  } else if (rc == 0) {
    json_error_t jerr;
    *answer = h.answer ? json_loadb(h.answer, h.answer_len, 0, &jerr) : NULL;
    if (!json_is_object(*answer)) {
      json_decref(*answer);
      *answer = NULL;
      snprintf(err, cap, "%s: no JSON-RPC answer", method);
      rc = AGD_EUNAVAILABLE;
    }
  }
  if (session_out) {
    *session_out = h.session_out;
    h.session_out = NULL;
  }
  hreq_dispose(&h);
  return rc;
}

static int mgr_notify(http_srv_t *hs, const char *method, const char *params, const char *session, const char *proto) {
  size_t len;
  char *line = mcp_rpc_notification(method, params, &len);
  char err[256];
  hreq_t h = {.method = "POST", .body = line, .session = session, .proto = proto, .want_id = -1,
              .deadline = time_mono_ms() + H_NOTE_TIMEOUT_MS, .abort_fn = mgr_stopping, .ud = hs, .s = hs->s};
  int rc = hreq_perform(&h, err, sizeof(err));
  free(line);
  if (rc == 0 && (h.status < 200 || h.status > 299)) rc = AGD_EUNAVAILABLE;
  hreq_dispose(&h);
  return rc;
}

static int mgr_list(http_srv_t *hs, const char *session, const char *proto, char *err, size_t cap) {
  json_t *acc = json_array();
  char *cursor = NULL;
  int rc = 0;
  for (int page = 0; page < H_MAX_PAGES; page++) {
    char *params = NULL;
    if (cursor) {
      json_t *p = json_pack("{s:s}", "cursor", cursor);
      params = json_dumps(p, JSON_COMPACT);
      json_decref(p);
    }
    json_t *ans = NULL;
    rc = mgr_request(hs, "tools/list", params, session, proto, &ans, NULL, err, cap);
    free(params);
    free(cursor);
    cursor = NULL;
    if (rc != 0) break;
    json_t *res = json_object_get(ans, "result");
    json_t *tools = json_object_get(res, "tools");
    if (!res && json_integer_value(json_object_get(json_object_get(ans, "error"), "code")) == -32601) {
      json_decref(ans); /* the server has no tools/list at all: no tools */
      break;
    }
    if (!json_is_array(tools)) {
      snprintf(err, cap, "tools/list failed");
      json_decref(ans);
      rc = AGD_EUNAVAILABLE;
      break;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) if (json_array_size(acc) < H_MAX_TOOLS) json_array_append(acc, t);
    const char *next = json_string_value(json_object_get(res, "nextCursor"));
    if (next && *next) cursor = xstrdup(next);
    json_decref(ans);
    if (!cursor) break;
  }
  free(cursor);
  if (rc == 0) mcp__register_tools(hs->s, acc);
  json_decref(acc);
  return rc;
}

/* initialize → notifications/initialized → tools/list.  0 or an error in err. */
static int mgr_connect(http_srv_t *hs, char *err, size_t cap) {
  mcp_server_t *s = hs->s;
  char *params = mcp_rpc_initialize_params();
  json_t *ans = NULL;
  char *session = NULL;
  int rc = mgr_request(hs, "initialize", params, NULL, NULL, &ans, &session, err, cap);
  free(params);
  if (rc != 0) {
    free(session);
    return rc;
  }
  json_t *res = json_object_get(ans, "result");
  const char *v = json_string_value(json_object_get(res, "protocolVersion"));
  if (!json_is_object(res) || !mcp_rpc_version_ok(v)) {
    if (!json_is_object(res)) snprintf(err, cap, "initialize refused");
    else snprintf(err, cap, "unsupported protocol version '%.40s'", v ? v : "");
    json_decref(ans);
    free(session);
    return AGD_EUNAVAILABLE;
  }
  char proto[32];
  snprintf(proto, sizeof(proto), "%s", v);
  mcp__set_info(s, proto, json_object_get(res, "serverInfo"));
  int has_tools = json_object_get(json_object_get(res, "capabilities"), "tools") != NULL;
  json_decref(ans);
  pthread_mutex_lock(&g_mcp.mu);
  free(hs->session);
  hs->session = session;
  hs->want_reinit = hs->want_relist = 0;
  pthread_mutex_unlock(&g_mcp.mu);
  if (mgr_notify(hs, "notifications/initialized", NULL, session, proto) != 0) {
    snprintf(err, cap, "notifications/initialized was refused");
    return AGD_EUNAVAILABLE;
  }
  if (!has_tools) { /* prompts or resources only: connected, nothing to list */
    mcp__register_tools(s, NULL);
    return 0;
  }
  return mgr_list(hs, session, proto, err, cap);
}

/* Wait up to ms for a flag (stop, reinit, relist, cancels). */
static void mgr_wait(http_srv_t *hs, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&g_mcp.mu);
  if (!hs->stop && !hs->want_reinit && !hs->want_relist && !hs->ncancel) pthread_cond_timedwait(&hs->cond, &g_mcp.mu, &ts);
  pthread_mutex_unlock(&g_mcp.mu);
}

/* Connected: hold the GET stream, relist, send cancels, until stop or reinit. */
static void mgr_serve(http_srv_t *hs, const char *proto) {
  mcp_server_t *s = hs->s;
  int get_ok = 1, fresh = 1; /* fresh: no GET stream of this session has worked yet */
  char last_id[256] = "";
  for (;;) {
    pthread_mutex_lock(&g_mcp.mu);
    int stop = hs->stop, reinit = hs->want_reinit, relist = hs->want_relist;
    size_t nc = hs->ncancel;
    long long cancels[H_MAX_CANCELS];
    memcpy(cancels, hs->cancels, nc * sizeof(cancels[0]));
    hs->ncancel = 0;
    hs->want_relist = 0;
    char *session = hs->session ? xstrdup(hs->session) : NULL;
    pthread_mutex_unlock(&g_mcp.mu);
    if (stop || reinit) {
      free(session);
      return;
    }
    for (size_t i = 0; i < nc; i++) {
      char params[96];
      snprintf(params, sizeof(params), "{\"requestId\":%lld,\"reason\":\"cancelled by agentd\"}", cancels[i]);
      mgr_notify(hs, "notifications/cancelled", params, session, proto);
    }
    if (relist) {
      char err[256];
      if (mgr_list(hs, session, proto, err, sizeof(err)) != 0) mcp__set_error(s, "%s", err);
    }
    if (get_ok && session) {
      char err[256];
      hreq_t h = {.method = "GET", .session = session, .proto = proto, .last_event_id = last_id, .want_id = -1,
                  .deadline = UINT64_MAX, .abort_fn = mgr_abort, .on_message = on_server_message, .ud = hs, .s = s};
      int rc = hreq_perform(&h, err, sizeof(err));
      if (h.last_id[0]) snprintf(last_id, sizeof(last_id), "%s", h.last_id);
      int reinit = 0;
      if (rc == 0 && h.status == 405) {
        get_ok = 0; /* the server offers no stream of its own */
      } else if (rc == 0 && (h.status == 404 || (h.status == 400 && !fresh))) {
        reinit = 1; /* the session is gone (400: what some servers answer for an unknown one) */
      } else if (rc == AGD_EUNAVAILABLE) {
        reinit = 1; /* the server is gone: connect again (with the backoff) */
      } else if (rc == 0 && (h.status < 200 || h.status > 299)) {
        get_ok = 0; /* refused at once: do not hammer it */
      } else if (rc == 0) {
        fresh = 0; /* the stream ended: open it again, from its last event id, after its `retry` */
        mgr_wait(hs, h.retry_ms >= 0 ? (uint64_t)(h.retry_ms < H_RETRY_MAX_MS ? h.retry_ms : H_RETRY_MAX_MS) : 1000);
      }
      if (reinit) {
        pthread_mutex_lock(&g_mcp.mu);
        hs->want_reinit = 1;
        pthread_mutex_unlock(&g_mcp.mu);
      } else if (rc != 0 && rc != AGD_ECANCELLED) {
        mgr_wait(hs, 1000); /* an over-long event & co: not in a tight loop */
      }
      hreq_dispose(&h);
    } else {
      mgr_wait(hs, 1000);
    }
    free(session);
  }
}

static void *mgr_main(void *arg) {
  http_srv_t *hs = arg;
  mcp_server_t *s = hs->s;
  uint64_t backoff = H_BACKOFF_MIN_MS;
  int ever = 0;
  for (;;) {
    if (mgr_stopping(hs)) break;
    char err[256] = "";
    int rc = mgr_connect(hs, err, sizeof(err));
    if (mgr_stopping(hs)) break;
    if (rc != 0) {
      mcp__set_state(s, ever ? MCP_S_RESTARTING : MCP_S_FAILED, err);
      log_warn("mcp server '%s': %s; trying again in %.0f s", s->name, err, (double)backoff / 1000.0);
      mgr_wait(hs, backoff);
      pthread_mutex_lock(&g_mcp.mu);
      hs->want_reinit = 0;
      pthread_mutex_unlock(&g_mcp.mu);
      backoff = backoff * 2 > H_BACKOFF_MAX_MS ? H_BACKOFF_MAX_MS : backoff * 2;
      continue;
    }
    backoff = H_BACKOFF_MIN_MS;
    char proto[32];
    pthread_mutex_lock(&g_mcp.mu);
    snprintf(proto, sizeof(proto), "%s", s->proto);
    if (ever) s->restarts++;
    pthread_mutex_unlock(&g_mcp.mu);
    ever = 1;
    mcp__set_state(s, MCP_S_READY, "");
    log_info("mcp server '%s' connected (%s)", s->name, s->url);
    mgr_serve(hs, proto);
    if (mgr_stopping(hs)) break;
    mcp__set_state(s, MCP_S_RESTARTING, "the session ended; initializing again");
    log_info("mcp server '%s': the session ended; initializing again", s->name);
  }
  /* End the session politely (a short deadline; the server may be gone). */
  pthread_mutex_lock(&g_mcp.mu);
  char *session = hs->session;
  hs->session = NULL;
  pthread_mutex_unlock(&g_mcp.mu);
  if (session) {
    char err[256];
    hreq_t h = {.method = "DELETE", .session = session, .proto = s->proto, .want_id = -1,
                .deadline = time_mono_ms() + 2000, .ud = hs, .s = s};
    hreq_perform(&h, err, sizeof(err));
    hreq_dispose(&h);
    free(session);
  }
  return NULL;
}

/* ---- client.c's entry points ---- */

int mcp_http_start(mcp_server_t *s) {
  http_srv_t *hs = xcalloc(1, sizeof(*hs));
  hs->s = s;
  atomic_init(&hs->next_id, 1);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&hs->cond, &ca);
  pthread_condattr_destroy(&ca);
  s->impl = hs;
  if (pthread_create(&hs->th, NULL, mgr_main, hs) != 0) {
    mcp__set_state(s, MCP_S_FAILED, "cannot start its thread");
    return AGD_EINTERNAL;
  }
  hs->th_started = 1;
  return 0;
}

/* Wait ms (a server's `retry`) in slices, minding the cancel probe and the deadline. */
static int pause_ms(uint64_t ms, const tool_call_ctx_t *ctx, uint64_t deadline, mcp_server_t *s, char *errmsg,
                    size_t errcap) {
  uint64_t end = time_mono_ms() + ms;
  for (;;) {
    uint64_t now = time_mono_ms();
    if (now >= deadline) {
      snprintf(errmsg, errcap, "mcp server '%s' did not answer within %g s", s->name, g_mcp.timeout_s);
      return AGD_ETIMEOUT;
    }
    if (tool_call_cancelled(ctx) || client_stopping()) {
      snprintf(errmsg, errcap, "cancelled");
      return AGD_ECANCELLED;
    }
    if (now >= end) return 0;
    uint64_t slice = end - now < H_POLL_MS ? end - now : H_POLL_MS;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Remember a call its caller left, for the manager to cancel. */
static void queue_cancel(http_srv_t *hs, long long id) {
  pthread_mutex_lock(&g_mcp.mu);
  if (hs->ncancel < H_MAX_CANCELS) hs->cancels[hs->ncancel++] = id;
  pthread_cond_signal(&hs->cond);
  pthread_mutex_unlock(&g_mcp.mu);
}

int mcp_http_call(mcp_server_t *s, const char *params, const tool_call_ctx_t *ctx, uint64_t deadline_ms, char **raw,
                  size_t *raw_len, char *errmsg, size_t errcap) {
  http_srv_t *hs = s->impl;
  pthread_mutex_lock(&g_mcp.mu);
  int ready = hs && s->state == MCP_S_READY && g_mcp.accepting;
  char *session = ready && hs->session ? xstrdup(hs->session) : NULL;
  char proto[32];
  snprintf(proto, sizeof(proto), "%s", s->proto);
  pthread_mutex_unlock(&g_mcp.mu);
  if (!ready) {
    snprintf(errmsg, errcap, "mcp server '%s' is not connected", s->name);
    return AGD_EUNAVAILABLE;
  }
  long long id = atomic_fetch_add(&hs->next_id, 1);
  size_t len;
  char *line = mcp_rpc_request(id, "tools/call", params, &len);
  char last_id[256] = "";
  int rc = 0;
  for (int attempt = 0; attempt <= H_MAX_RESUMES; attempt++) {
    /* The first exchange POSTs the call; a resumption GETs the stream again from its last event. */
    hreq_t h = {.method = attempt ? "GET" : "POST", .body = line, .session = session, .proto = proto,
                .last_event_id = attempt ? last_id : NULL, .want_id = id, .deadline = deadline_ms, .ctx = ctx,
                .on_message = on_server_message, .ud = hs, .s = s};
    rc = hreq_perform(&h, errmsg, errcap);
    if (h.last_id[0]) snprintf(last_id, sizeof(last_id), "%s", h.last_id);
    mcp_scan_t sc = {0};
    if (rc == 0 && h.answer) mcp_rpc_scan(h.answer, h.answer_len, &sc);
    if (rc == 0 && h.answer && sc.has_id && sc.id == id && !sc.has_method) {
      *raw = h.answer; /* our answer, whatever the status (a JSON-RPC error may come with a 4xx) */
      *raw_len = h.answer_len;
      h.answer = NULL;
    } else if (rc == 0 && (h.status == 404 || (h.status == 400 && session))) {
      pthread_mutex_lock(&g_mcp.mu);
      hs->want_reinit = 1; /* the session is gone: the manager starts a new one */
      pthread_cond_signal(&hs->cond);
      pthread_mutex_unlock(&g_mcp.mu);
      snprintf(errmsg, errcap, "mcp server '%s' ended the session (HTTP %ld); reconnecting", s->name, h.status);
      rc = AGD_EUNAVAILABLE;
    } else if (rc == 0 && (h.status < 200 || h.status > 299)) {
      snprintf(errmsg, errcap, "mcp server '%s' answered HTTP %ld", s->name, h.status);
      rc = AGD_EUNAVAILABLE;
    } else if (rc == 0 && h.answer) {
      *raw = h.answer;
      *raw_len = h.answer_len;
      h.answer = NULL;
    } else if (rc == 0 && h.is_sse && last_id[0] && attempt < H_MAX_RESUMES) {
      /* The stream ended early: resume it, after the `retry` the server asked for (SEP-1699). */
      uint64_t wait = h.retry_ms >= 0 ? (uint64_t)(h.retry_ms < H_RETRY_MAX_MS ? h.retry_ms : H_RETRY_MAX_MS) : 0;
      hreq_dispose(&h);
      rc = pause_ms(wait, ctx, deadline_ms, s, errmsg, errcap);
      if (rc != 0) break;
      continue;
    } else if (rc == 0) {
      snprintf(errmsg, errcap, "mcp server '%s' ended the answer's stream without the answer", s->name);
      rc = AGD_EUNAVAILABLE;
    }
    hreq_dispose(&h);
    break;
  }
  free(line);
  free(session);
  if (rc == AGD_ECANCELLED || rc == AGD_ETIMEOUT) queue_cancel(hs, id);
  return rc;
}

void mcp_http_stop(mcp_server_t *s) {
  http_srv_t *hs = s->impl;
  if (!hs) return;
  pthread_mutex_lock(&g_mcp.mu);
  hs->stop = 1;
  pthread_cond_signal(&hs->cond);
  s->state = MCP_S_STOPPED;
  pthread_mutex_unlock(&g_mcp.mu);
}

void mcp_http_free(mcp_server_t *s) {
  http_srv_t *hs = s->impl;
  if (!hs) return;
  mcp_http_stop(s);
  if (hs->th_started) pthread_join(hs->th, NULL); /* it polls its stop flag every 50 ms */
  pthread_cond_destroy(&hs->cond);
  free(hs->session);
  free(hs);
  s->impl = NULL;
}
