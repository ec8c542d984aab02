/* mcp/server.c — see server.h.
 *
 * One POST is one "exchange": its body (one JSON-RPC message, or a batch for a
 * 2025-03-26 session) is decoded on the loop; answers that need no tool
 * (initialize, ping, tools/list, logging/setLevel, every error) are made at
 * once, each tools/call becomes a worker job, and the exchange answers when
 * its last slot is filled: one JSON object (or array, for a batch), or — when
 * the client's Accept allows only text/event-stream — an SSE stream that was
 * opened at once and carries each answer as it comes (then ends).  A POST of
 * notifications and responses only is answered 202 with no body.
 *
 * Sessions live in a hash table on the loop thread.  A call in flight is
 * linked to its session so notifications/cancelled can find it by request id
 * and so ending the session (DELETE, expiry, eviction) detaches and cancels
 * its calls: the worker sees the atomic flag through tool_call_ctx_t's probe,
 * and a cancelled call's answer is dropped (SSE) or becomes error -32800
 * (JSON, where an HTTP answer is owed).
 */
#include "mcp/server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/auth_api.h"
#include "api/job.h"
#include "api/router.h"
#include "build_info.h"
#include "mcp/mcp.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

/* JSON-RPC 2.0 error codes (and MCP's use of them). */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL -32603
#define RPC_SERVER_BUSY -32000
#define RPC_CANCELLED -32800 /* as LSP: the request was cancelled (JSON answers only) */

static const char *const REVISIONS[] = {MCP_REVISION, "2025-06-18", "2025-03-26", NULL};

/* RFC 5424 severities, as MCP's logging/setLevel names them, least severe first. */
static const char *const LOG_LEVELS[] = {"debug", "info", "notice", "warning", "error", "critical", "alert",
                                         "emergency", NULL};
#define LVL_DEBUG 0
#define LVL_INFO 1
#define LVL_WARNING 3

int mcp_revision_supported(const char *v, size_t n) {
  for (size_t i = 0; REVISIONS[i]; i++)
    if (strlen(REVISIONS[i]) == n && memcmp(REVISIONS[i], v, n) == 0) return 1;
  return 0;
}

/* ---- sessions ------------------------------------------------------------ */

typedef struct mcp_call mcp_call_t;

typedef struct session {
  char id[ID_MAX];
  char user_id[ID_MAX];
  char version[16];      /* negotiated revision */
  int log_level;         /* LOG_LEVELS index: notifications/message below it are not sent */
  int initialized;       /* notifications/initialized seen */
  uint64_t last_used_ms; /* uv_now: for expiry */
  uint64_t last_used;    /* use order (a counter; milliseconds tie): for eviction */
  size_t n_calls;
  mcp_call_t *calls;     /* in flight */
  struct session *next;  /* hash chain */
} session_t;

#define NBUCKETS 1024
static session_t *buckets[NBUCKETS];
static size_t n_sessions;
static uint64_t hash_seed;
static uint64_t use_clock; /* bumped at every use of a session */

static uint64_t now_ms(void) { return uv_now(g_app->loop); }

static session_t **bucket_of(const char *id) {
  if (!hash_seed) id_random_bytes(&hash_seed, sizeof hash_seed);
  return &buckets[hash_fnv1a_str(id, hash_seed) % NBUCKETS];
}

size_t mcp_server_session_count(void) { return n_sessions; }

struct mcp_call {
  struct exchange *ex;
  size_t slot;
  session_t *sess;            /* NULL once detached (the session ended) */
  mcp_call_t *next, **pprev;  /* the session's list */
  json_t *id;                 /* the request's id (owned) */
  const tool_t *tool;         /* a reference */
  json_t *args;               /* owned */
  char user_id[ID_MAX];
  atomic_int cancelled;
  int log_level;              /* the session's, when the call started */
  /* set by the worker */
  json_t *result;
  int schema_failed;
  char vpath[256], vmsg[256];
  double ms;
};

static void call_unlink(mcp_call_t *c) {
  if (!c->sess) return;
  *c->pprev = c->next;
  if (c->next) c->next->pprev = c->pprev;
  c->sess->n_calls--;
  c->sess = NULL;
}

static void session_free(session_t *s) {
  while (s->calls) { /* its calls finish on their workers; their answers are dropped or cancelled */
    mcp_call_t *c = s->calls;
    atomic_store(&c->cancelled, 1);
    call_unlink(c);
  }
  free(s);
}

static void session_remove(session_t *s) {
  for (session_t **pp = bucket_of(s->id); *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      n_sessions--;
      session_free(s);
      return;
    }
  }
}

static int session_expired(const session_t *s, uint64_t now) {
  return now - s->last_used_ms > (uint64_t)MCP_SESSION_IDLE_S * 1000 && s->n_calls == 0;
}

/* The session of `id` owned by `user_id`, or NULL (unknown, ended, expired or
 * another user's: all look the same, so ids cannot be probed). */
static session_t *session_find(const char *id, size_t n, const char *user_id) {
  if (n == 0 || n >= ID_MAX) return NULL;
  char key[ID_MAX];
  memcpy(key, id, n);
  key[n] = 0;
  for (session_t *s = *bucket_of(key); s; s = s->next) {
    if (strcmp(s->id, key) != 0) continue;
    if (session_expired(s, now_ms())) {
      session_remove(s);
      return NULL;
    }
    if (strcmp(s->user_id, user_id) != 0) return NULL;
    s->last_used_ms = now_ms();
    s->last_used = ++use_clock;
    return s;
  }
  return NULL;
}

/* Drop expired sessions; then, if the user is at the cap, end their least
 * recently used idle one.  Runs at each initialize (bounded by the table). */
static void sessions_make_room(const char *user_id) {
  uint64_t now = now_ms();
  session_t *lru = NULL;
  size_t mine = 0;
  for (size_t b = 0; b < NBUCKETS; b++) {
    for (session_t **pp = &buckets[b]; *pp;) {
      session_t *s = *pp;
      if (session_expired(s, now)) {
        *pp = s->next;
        n_sessions--;
        session_free(s);
        continue;
      }
      if (strcmp(s->user_id, user_id) == 0) {
        mine++;
        if (s->n_calls == 0 && (!lru || s->last_used < lru->last_used)) lru = s;
      }
      pp = &s->next;
    }
  }
  if (mine >= MCP_MAX_SESSIONS_PER_USER && lru) session_remove(lru);
}

static session_t *session_new(const char *user_id, const char *version) {
  session_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  id_new(s->id, "mcs");
  snprintf(s->user_id, sizeof s->user_id, "%s", user_id);
  snprintf(s->version, sizeof s->version, "%s", version);
  s->log_level = LVL_INFO;
  s->last_used_ms = now_ms();
  s->last_used = ++use_clock;
  session_t **b = bucket_of(s->id);
  s->next = *b;
  *b = s;
  n_sessions++;
  return s;
}

void mcp_server_reset(void) {
  for (size_t b = 0; b < NBUCKETS; b++) {
    while (buckets[b]) {
      session_t *s = buckets[b];
      buckets[b] = s->next;
      session_free(s);
    }
  }
  n_sessions = 0;
}

/* ---- exchanges (one POST) -------------------------------------------------- */

typedef struct exchange {
  http_req_t *r;      /* NULL once answered (SSE: once the stream started) */
  uint64_t conn;      /* SSE: the stream's connection */
  int sse;
  int batch;
  size_t n_slots, n_pending;
  json_t **slots;     /* answers in message order; NULL: none (a notification, a cancelled call) */
} exchange_t;

static json_t *rpc_error(const json_t *id, int code, const char *msg) {
  return json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", "code", code,
                   "message", msg);
}

static json_t *rpc_result(const json_t *id, json_t *result) {
  return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

static void sse_message(exchange_t *ex, const json_t *msg) {
  conn_t *c = server_conn_lookup(g_app->srv, ex->conn);
  if (!c) return; /* the client left */
  char *s = jsonx_dumps(msg);
  if (s) sse_send(c, NULL, "message", s, strlen(s));
  free(s);
}

/* Every slot is settled: answer. */
static void exchange_finish(exchange_t *ex) {
  if (ex->sse) {
    conn_t *c = server_conn_lookup(g_app->srv, ex->conn);
    if (c) sse_end(c);
  } else {
    json_t *out = NULL;
    if (ex->batch) {
      out = json_array();
      for (size_t i = 0; i < ex->n_slots; i++)
        if (ex->slots[i]) json_array_append(out, ex->slots[i]);
      if (json_array_size(out) == 0) json_decref(out), out = NULL;
    } else if (ex->slots[0]) {
      out = json_incref(ex->slots[0]);
    }
    if (out) http_respond_json(ex->r, 200, out);
    else http_respond(ex->r, 202, NULL, NULL, 0);
  }
  for (size_t i = 0; i < ex->n_slots; i++) json_decref(ex->slots[i]);
  free(ex->slots);
  free(ex);
}

/* Fill slot i (takes `msg`; NULL: no answer) and answer when it was the last. */
static void exchange_settle(exchange_t *ex, size_t i, json_t *msg) {
  if (ex->sse && msg) sse_message(ex, msg); /* SSE answers go out as they come */
  ex->slots[i] = msg;
  if (--ex->n_pending == 0) exchange_finish(ex);
}

/* ---- tools ----------------------------------------------------------------- */

static int is_builtin(const tool_t *t) { return !t->source || strcmp(t->source, "builtin") == 0; }

static json_t *tool_json(const tool_t *t) {
  return json_pack("{s:s,s:s,s:O,s:{s:b,s:b}}", "name", t->name, "description", t->description ? t->description : "",
                   "inputSchema", tool_schema(t), "annotations", "destructiveHint", t->destructive, "readOnlyHint",
                   !t->destructive);
}

/* tools/list: builtin tools in registration order, MCP_PAGE_SIZE a page; the
 * cursor is the opaque "o<offset>". */
static json_t *tools_list(const json_t *params, int *err_code, const char **err_msg) {
  size_t off = 0;
  const json_t *cur = json_object_get(params, "cursor");
  if (cur && !json_is_null(cur)) {
    const char *s = json_string_value(cur);
    char *end = NULL;
    unsigned long v = s && s[0] == 'o' && s[1] >= '0' && s[1] <= '9' ? strtoul(s + 1, &end, 10) : 0;
    if (!end || *end || v > 100000) {
      *err_code = RPC_INVALID_PARAMS;
      *err_msg = "invalid cursor";
      return NULL;
    }
    off = v;
  }
  tool_list_t *l = tool_list_acquire();
  size_t n = tool_list_size(l), seen = 0;
  json_t *arr = json_array();
  int more = 0;
  for (size_t i = 0; i < n; i++) {
    const tool_t *t = tool_list_get(l, i);
    if (!is_builtin(t)) continue;
    if (seen++ < off) continue;
    if (json_array_size(arr) == MCP_PAGE_SIZE) {
      more = 1;
      break;
    }
    json_array_append_new(arr, tool_json(t));
  }
  tool_list_release(l);
  json_t *res = json_pack("{s:o}", "tools", arr);
  if (more) {
    char c[32];
    snprintf(c, sizeof c, "o%zu", off + MCP_PAGE_SIZE);
    json_object_set_new(res, "nextCursor", json_string(c));
  }
  return res;
}

static int call_cancelled(const void *arg) { return atomic_load(&((const mcp_call_t *)arg)->cancelled); }

static int call_work(void *p) {
  mcp_call_t *c = p;
  tool_call_ctx_t tc = {
      .user_id = c->user_id,
      .store = g_app->store,
      .llm = g_app->llm,
      .cancelled = call_cancelled,
      .cancel_arg = c,
  };
  int rc = tool_validate(c->tool, c->args, c->vpath, sizeof c->vpath, c->vmsg, sizeof c->vmsg);
  if (rc != 0) {
    c->schema_failed = 1;
    return rc;
  }
  uint64_t t0 = time_mono_ns();
  rc = tool_call(c->tool, &tc, c->args, &c->result);
  c->ms = (double)(time_mono_ns() - t0) / 1e6;
  return rc;
}

/* The CallToolResult of a finished call. */
static json_t *call_result(mcp_call_t *c, int rc) {
  char msg[600];
  if (c->schema_failed) {
    snprintf(msg, sizeof msg, "invalid arguments: %s %s", c->vpath, c->vmsg);
  } else if (rc != 0) {
    const char *e = json_string_value(json_object_get(c->result, "error"));
    snprintf(msg, sizeof msg, "%s", e ? e : agd_err_code(rc));
  } else {
    json_t *v = c->result ? c->result : json_null();
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
      snprintf(msg, sizeof msg, "the tool's result could not be encoded");
    } else if (strlen(text) > MCP_MAX_RESULT) {
      free(text);
      snprintf(msg, sizeof msg, "the tool's result is larger than %u bytes", MCP_MAX_RESULT);
    } else {
      json_t *content = json_pack("[{s:s,s:s}]", "type", "text", "text", text);
      free(text);
      /* structuredContent must be an object: a scalar or array result is wrapped. */
      json_t *sc = json_is_object(v) ? json_incref(v) : json_pack("{s:O}", "result", v);
      return json_pack("{s:o,s:o,s:b}", "content", content, "structuredContent", sc, "isError", 0);
    }
  }
  return json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text", msg, "isError", 1);
}

static void call_done(http_req_t *unused, void *p, int rc) {
  mcp_call_t *c = p;
  int cancelled = atomic_load(&c->cancelled);
  call_unlink(c);
  exchange_t *ex = c->ex;
  json_t *answer = NULL;
  if (cancelled) {
    /* MCP: a cancelled request gets no answer.  An SSE stream just goes without
     * it; a JSON POST still owes an HTTP answer, so it says -32800. */
    if (!ex->sse) answer = rpc_error(c->id, RPC_CANCELLED, "request cancelled");
  } else {
    json_t *res = call_result(c, rc);
    int failed = json_is_true(json_object_get(res, "isError"));
    int level = failed ? LVL_WARNING : LVL_DEBUG;
    if (ex->sse && level >= c->log_level) {
      json_t *note = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:b,s:f}}}", "jsonrpc", "2.0", "method",
                               "notifications/message", "params", "level", LOG_LEVELS[level], "logger", "agentd",
                               "data", "tool", c->tool->name, "ok", !failed, "ms", c->ms);
      sse_message(ex, note);
      json_decref(note);
    }
    answer = rpc_result(c->id, res);
  }
  json_decref(c->id);
  json_decref(c->args);
  json_decref(c->result);
  tool_unref(c->tool);
  exchange_settle(ex, c->slot, answer);
}

/* tools/call: NULL when the call went to a worker (its slot is settled later),
 * else the answer now. */
static json_t *tools_call(exchange_t *ex, size_t slot, session_t *s, const json_t *id, const json_t *params) {
  const json_t *jname = json_object_get(params, "name");
  if (!json_is_string(jname) || jsonx_has_nul(jname)) return rpc_error(id, RPC_INVALID_PARAMS, "params.name must be a string");
  const tool_t *t = tool_find(json_string_value(jname));
  if (t && !is_builtin(t)) { /* agentd serves its own tools, never re-exports another server's */
    tool_unref(t);
    t = NULL;
  }
  if (!t) {
    char msg[200];
    snprintf(msg, sizeof msg, "Unknown tool: %.120s", json_string_value(jname));
    return rpc_error(id, RPC_INVALID_PARAMS, msg);
  }
  if (s->n_calls >= MCP_MAX_INFLIGHT) {
    tool_unref(t);
    return rpc_error(id, RPC_SERVER_BUSY, "too many tool calls in flight on this session");
  }
  json_t *args = json_object_get(params, "arguments");
  if (!args || json_is_null(args)) args = json_object();
  else json_incref(args);
  if (jsonx_has_nul(args)) { /* tools read their arguments' strings as C strings */
    json_decref(args);
    tool_unref(t);
    return rpc_result(id, json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text",
                                    "invalid arguments: strings must not contain NUL characters", "isError", 1));
  }
  mcp_call_t *c = job_new(sizeof(*c));
  c->ex = ex;
  c->slot = slot;
  c->id = json_deep_copy(id);
  c->tool = t;
  c->args = args;
  c->log_level = s->log_level;
  snprintf(c->user_id, sizeof c->user_id, "%s", s->user_id);
  c->sess = s;
  c->next = s->calls;
  c->pprev = &s->calls;
  if (s->calls) s->calls->pprev = &c->next;
  s->calls = c;
  s->n_calls++;
  job_run(NULL, c, call_work, call_done);
  return NULL;
}

static void cancel_call(session_t *s, const json_t *params) {
  const json_t *rid = json_object_get(params, "requestId");
  if (!rid) return;
  for (mcp_call_t *c = s->calls; c; c = c->next)
    if (json_equal(c->id, (json_t *)rid)) atomic_store(&c->cancelled, 1);
}

/* ---- dispatch ---------------------------------------------------------------- */

static int valid_id(const json_t *id) { return json_is_string(id) || json_is_integer(id); }

static json_t *initialize(const json_t *id, const json_t *params, session_t *s) {
  json_t *caps = json_pack("{s:{s:b},s:{}}", "tools", "listChanged", 0, "logging");
  return rpc_result(id, json_pack("{s:s,s:o,s:{s:s,s:s,s:s},s:s}", "protocolVersion", s->version, "capabilities",
                                  caps, "serverInfo", "name", MCP_SELF_NAME, "title", "agentd", "version",
                                  AGENTD_VERSION, "instructions",
                                  "agentd's built-in tools: workload analysis over the caller's own LLM call "
                                  "records, price lookups, request classification and a calculator."));
}

/* One message of the POST.  Requests fill slot i now or later; notifications
 * and responses leave it empty. */
static void dispatch(exchange_t *ex, size_t i, session_t *s, const json_t *m) {
  const json_t *jv = json_object_get(m, "jsonrpc");
  const json_t *id = json_object_get(m, "id");
  const json_t *jmethod = json_object_get(m, "method");
  const json_t *params = json_object_get(m, "params");
  if (!json_is_object(m) || !json_is_string(jv) || strcmp(json_string_value(jv), "2.0") != 0) {
    exchange_settle(ex, i, rpc_error(valid_id(id) ? id : NULL, RPC_INVALID_REQUEST, "not a JSON-RPC 2.0 message"));
    return;
  }
  if (!jmethod) { /* a response to a request of ours: agentd sends none, so it is accepted and ignored */
    if (id && (json_object_get(m, "result") || json_object_get(m, "error"))) exchange_settle(ex, i, NULL);
    else exchange_settle(ex, i, rpc_error(NULL, RPC_INVALID_REQUEST, "a message needs a method, or a result or error"));
    return;
  }
  if (!json_is_string(jmethod) || (id && !valid_id(id)) || (params && !json_is_object(params))) {
    exchange_settle(ex, i, rpc_error(valid_id(id) ? id : NULL, RPC_INVALID_REQUEST,
                                     "method must be a string, id a string or an integer, params an object"));
    return;
  }
  const char *method = json_string_value(jmethod);
  json_t *empty = NULL;
  if (!params) params = empty = json_object();
  if (!id) { /* a notification */
    if (strcmp(method, "notifications/initialized") == 0) s->initialized = 1;
    else if (strcmp(method, "notifications/cancelled") == 0) cancel_call(s, params);
    exchange_settle(ex, i, NULL);
  } else if (strcmp(method, "initialize") == 0) {
    exchange_settle(ex, i, initialize(id, params, s));
  } else if (strcmp(method, "ping") == 0) {
    exchange_settle(ex, i, rpc_result(id, json_object()));
  } else if (strcmp(method, "tools/list") == 0) {
    int code = 0;
    const char *msg = NULL;
    json_t *res = tools_list(params, &code, &msg);
    exchange_settle(ex, i, res ? rpc_result(id, res) : rpc_error(id, code, msg));
  } else if (strcmp(method, "tools/call") == 0) {
    json_t *now = tools_call(ex, i, s, id, params);
    if (now) exchange_settle(ex, i, now);
  } else if (strcmp(method, "logging/setLevel") == 0) {
    const char *lv = json_string_value(json_object_get(params, "level"));
    int k = -1;
    for (int j = 0; lv && LOG_LEVELS[j]; j++)
      if (strcmp(LOG_LEVELS[j], lv) == 0) k = j;
    if (k < 0) {
      exchange_settle(ex, i, rpc_error(id, RPC_INVALID_PARAMS, "level must be one of debug, info, notice, "
                                                               "warning, error, critical, alert, emergency"));
    } else {
      s->log_level = k;
      exchange_settle(ex, i, rpc_result(id, json_object()));
    }
  } else {
    char msg[160];
    snprintf(msg, sizeof msg, "Method not found: %.100s", method);
    exchange_settle(ex, i, rpc_error(id, RPC_METHOD_NOT_FOUND, msg));
  }
  json_decref(empty);
}

/* ---- HTTP ------------------------------------------------------------------- */

/* Does the header list `name` (a comma-separated media-range list) allow `type`? */
static int accept_allows(slice_t v, const char *type) {
  size_t tl = strlen(type);
  const char *p = v.p, *end = v.p + v.n;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
    const char *q = p;
    while (q < end && *q != ',' && *q != ';' && *q != ' ') q++;
    size_t n = (size_t)(q - p);
    if ((n == tl && strncasecmp(p, type, tl) == 0) || (n == 3 && memcmp(p, "*/*", 3) == 0)) return 1;
    /* a range of the form type/STAR allows every subtype */
    const char *slash = memchr(type, '/', tl);
    if (slash && n == (size_t)(slash - type) + 2 && strncasecmp(p, type, (size_t)(slash - type) + 1) == 0 &&
        p[n - 1] == '*')
      return 1;
    while (q < end && *q != ',') q++;
    p = q;
  }
  return 0;
}

static int is_loopback_host(const char *h, size_t n) {
  return (n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n == 3 && memcmp(h, "::1", 3) == 0) ||
         (n >= 4 && memcmp(h, "127.", 4) == 0);
}

/* The host part of "host[:port]" / "[v6]:port". */
static slice_t host_name(slice_t hp) {
  if (hp.n && hp.p[0] == '[') {
    const char *e = memchr(hp.p, ']', hp.n);
    return e ? slice_of(hp.p + 1, (size_t)(e - hp.p - 1)) : slice_of(hp.p, 0);
  }
  const char *c = memchr(hp.p, ':', hp.n);
  return c ? slice_of(hp.p, (size_t)(c - hp.p)) : hp;
}

/* The "scheme://host[:port]" of --public-url (without path), or an empty slice. */
static slice_t public_origin(const config_t *cfg) {
  if (!cfg->public_url) return slice_of("", 0);
  const char *u = cfg->public_url, *s = strstr(u, "://");
  if (!s) return slice_of("", 0);
  const char *e = strchr(s + 3, '/');
  return slice_of(u, e ? (size_t)(e - u) : strlen(u));
}

/* DNS rebinding (SPEC §7): a browser page may only reach /mcp from agentd's
 * own origin or an allowed one; and a server bound to loopback answers only to
 * loopback names (or --public-url's host), since a rebound name passes the
 * Origin check by being same-origin with itself. */
static const char *origin_refusal(http_req_t *r) {
  const config_t *cfg = g_app->cfg;
  slice_t host = {0}, origin;
  int has_host = http_req_header(r, "host", &host);
  slice_t pub = public_origin(cfg);
  if (cfg->host && is_loopback_host(cfg->host, strlen(cfg->host)) && has_host) {
    slice_t hn = host_name(host);
    int ok = is_loopback_host(hn.p, hn.n);
    if (!ok && pub.n) {
      const char *ph = strstr(pub.p, "://") + 3;
      slice_t pn = host_name(slice_of(ph, (size_t)(pub.p + pub.n - ph)));
      ok = pn.n == hn.n && strncasecmp(pn.p, hn.p, hn.n) == 0;
    }
    if (!ok) return "Host is not agentd's own (DNS rebinding protection)";
  }
  if (!http_req_header(r, "origin", &origin)) return NULL; /* not a browser */
  if (config_cors_allowed(cfg, origin.p, origin.n)) return NULL;
  if (pub.n && origin.n == pub.n && strncasecmp(origin.p, pub.p, pub.n) == 0) return NULL;
  if (!pub.n && has_host) {
    const char *scheme = http_req_is_tls(r) ? "https://" : "http://";
    size_t sl = strlen(scheme);
    if (origin.n == sl + host.n && strncasecmp(origin.p, scheme, sl) == 0 &&
        strncasecmp(origin.p + sl, host.p, host.n) == 0)
      return NULL;
  }
  return "Origin not allowed";
}

/* The dev user's id for --mcp-anonymous, resolved once on a worker. */
static char dev_user_id[ID_MAX];

typedef struct dev_job {
  store_user_t user;
  route_handler_fn again; /* the handler to run once the dev user is known */
} dev_job_t;

static int dev_work(void *p) { return api_auth_dev_user(g_app->store, &((dev_job_t *)p)->user); }

static void dev_done(http_req_t *r, void *p, int rc) {
  if (rc != 0) {
    http_respond_error(r, rc, NULL, NULL);
    return;
  }
  dev_job_t *j = p;
  snprintf(dev_user_id, sizeof dev_user_id, "%s", j->user.id);
  if (!http_req_alive(r)) { /* the client left meanwhile: just free the request */
    http_respond_error(r, AGD_ECANCELLED, "client went away", NULL);
    return;
  }
  j->again(r, http_req_data(r)); /* the handler again, now with the dev user known */
}

/* The caller's user id, or NULL after answering (401) or while the dev user is
 * being resolved (h_mcp runs again). */
static const char *mcp_user(http_req_t *r, route_ctx_t *ctx, route_handler_fn again) {
  if (ctx->user_id) return ctx->user_id;
  slice_t tok;
  if (api_bearer_token(r, &tok)) { /* the router's hook refused it: this route is only auth-optional for --mcp-anonymous */
    http_respond_error(r, AGD_EAUTH_INVALID, "invalid or expired token", NULL);
    return NULL;
  }
  if (!g_app->cfg->mcp_anonymous) {
    http_respond_error(r, AGD_EAUTH_REQUIRED, "authentication required: send Authorization: Bearer <token>", NULL);
    return NULL;
  }
  if (dev_user_id[0]) return dev_user_id;
  dev_job_t *j = job_new(sizeof(*j));
  j->again = again;
  job_run(r, j, dev_work, dev_done);
  return NULL;
}

/* The checks every /mcp request shares: Origin/Host, credentials, the
 * protocol version header.  Returns the user id or NULL after answering. */
static const char *mcp_common(http_req_t *r, route_ctx_t *ctx, route_handler_fn again) {
  const char *why = origin_refusal(r);
  if (why) {
    http_respond_error(r, AGD_EFORBIDDEN, why, NULL);
    return NULL;
  }
  const char *uid = mcp_user(r, ctx, again);
  if (!uid) return NULL;
  slice_t pv;
  if (http_req_header(r, "mcp-protocol-version", &pv) && !mcp_revision_supported(pv.p, pv.n)) {
    http_respond_error(r, AGD_EBAD_REQUEST, "unsupported MCP-Protocol-Version (agentd speaks 2025-11-25, "
                                            "2025-06-18 and 2025-03-26)", NULL);
    return NULL;
  }
  return uid;
}

/* The session a non-initialize request names, or NULL after answering 400/404. */
static session_t *mcp_session(http_req_t *r, const char *uid) {
  slice_t sid;
  if (!http_req_header(r, "mcp-session-id", &sid) || sid.n == 0) {
    http_respond_error(r, AGD_EBAD_REQUEST, "Mcp-Session-Id header required (send initialize first)", NULL);
    return NULL;
  }
  session_t *s = session_find(sid.p, sid.n, uid);
  if (!s) http_respond_error(r, AGD_ENOT_FOUND, "MCP session not found or ended: initialize again", NULL);
  return s;
}

static void respond_rpc_error(http_req_t *r, int code, const char *msg) {
  http_respond_json(r, 400, rpc_error(NULL, code, msg));
}

static void h_mcp(http_req_t *r, route_ctx_t *ctx) {
  const char *uid = mcp_common(r, ctx, h_mcp);
  if (!uid) return;
  /* The body: a JSON-RPC message, or (2025-03-26) a batch of them. */
  json_t *body = NULL;
  char msg[200];
  int rc = http_req_json(r, &body, msg, sizeof msg);
  if (rc == AGD_EUNSUPPORTED_MEDIA || rc == AGD_ETOO_LARGE) {
    http_respond_error(r, rc, rc == AGD_ETOO_LARGE ? "JSON nested too deeply" : NULL, NULL);
    return;
  }
  if (rc != 0) {
    char full[240];
    snprintf(full, sizeof full, "Parse error: %s", msg);
    respond_rpc_error(r, RPC_PARSE_ERROR, full);
    return;
  }
  int batch = json_is_array(body);
  size_t n = batch ? json_array_size(body) : 1;
  if ((!batch && !json_is_object(body)) || n == 0 || n > MCP_MAX_BATCH) {
    json_decref(body);
    respond_rpc_error(r, RPC_INVALID_REQUEST, n > MCP_MAX_BATCH ? "batch too large" : "expected a JSON-RPC message");
    return;
  }
  /* How to answer: JSON whenever the client takes it (one answer, keep-alive),
   * an SSE stream when it accepts only that. */
  slice_t acc;
  int json_ok = 1, sse_ok = 0;
  if (http_req_header(r, "accept", &acc) && acc.n) {
    json_ok = accept_allows(acc, "application/json");
    sse_ok = accept_allows(acc, "text/event-stream");
  }
  int has_request = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *m = batch ? json_array_get(body, i) : body;
    if (json_object_get(m, "method") && json_object_get(m, "id")) has_request = 1;
  }
  if (has_request && !json_ok && !sse_ok) {
    json_decref(body);
    http_respond_error(r, AGD_EBAD_REQUEST, "Accept must allow application/json or text/event-stream", NULL);
    return;
  }
  const json_t *first = batch ? json_array_get(body, 0) : body;
  const char *m0 = json_string_value(json_object_get(first, "method"));
  int is_init = !batch && m0 && strcmp(m0, "initialize") == 0 && json_object_get(first, "id");
  session_t *s = NULL;
  if (is_init) {
    const char *want = json_string_value(json_object_get(json_object_get(first, "params"), "protocolVersion"));
    sessions_make_room(uid);
    if (n_sessions >= MCP_MAX_SESSIONS) {
      json_decref(body);
      http_respond_error(r, AGD_EUNAVAILABLE, "too many MCP sessions: try again later", NULL);
      return;
    }
    /* Version negotiation: the client's revision when agentd speaks it, else agentd's latest. */
    s = session_new(uid, want && mcp_revision_supported(want, strlen(want)) ? want : MCP_REVISION);
    http_resp_header(r, "Mcp-Session-Id", s->id);
  } else {
    s = mcp_session(r, uid);
    if (!s) {
      json_decref(body);
      return;
    }
    if (batch && strcmp(s->version, "2025-03-26") != 0) { /* batching left MCP in 2025-06-18 */
      json_decref(body);
      respond_rpc_error(r, RPC_INVALID_REQUEST, "JSON-RPC batches are not part of this MCP revision");
      return;
    }
  }
  exchange_t *ex = calloc(1, sizeof(*ex));
  if (!ex) abort();
  ex->r = r;
  ex->batch = batch;
  ex->n_slots = ex->n_pending = n;
  ex->slots = calloc(n, sizeof(json_t *));
  if (!ex->slots) abort();
  if (has_request && !json_ok) {
    ex->sse = 1;
    ex->conn = conn_id(http_req_conn(r));
    sse_start(r);
    ex->r = NULL;
  }
  ex->n_pending++; /* held while dispatching, so an early last answer cannot finish it under us */
  for (size_t i = 0; i < n; i++) dispatch(ex, i, s, batch ? json_array_get(body, i) : body);
  json_decref(body);
  ex->n_pending--;
  if (ex->n_pending == 0) exchange_finish(ex);
}

static void h_mcp_delete(http_req_t *r, route_ctx_t *ctx) {
  const char *uid = mcp_common(r, ctx, h_mcp_delete);
  if (!uid) return;
  session_t *s = mcp_session(r, uid);
  if (!s) return;
  session_remove(s);
  http_respond(r, 204, NULL, NULL, 0);
}

void mcp_server_register(void) {
  /* Public + auth-optional: the router verifies a token when one is sent, and
   * the handler decides (401, or the dev user under --mcp-anonymous) after the
   * Origin check, so a rebinding page gets 403 whatever it sends. */
  unsigned f = ROUTE_PUBLIC | ROUTE_AUTH_OPTIONAL | ROUTE_RATELIMIT;
  router_add("/mcp", HTTP_M_POST, h_mcp, f);
  router_add("/mcp", HTTP_M_DELETE, h_mcp_delete, f);
}
