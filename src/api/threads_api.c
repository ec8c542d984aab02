/* api/threads_api.c — threads and messages over REST (SPEC §3) and the WebSocket thread
 * frames (SPEC §6); see threads_api.h.
 *
 * Loop thread, except the *_work functions, which run on the worker pool: they call the
 * store and build the answer's JSON there, so the loop only validates and sends.  A job
 * (tjob_t) owns copies of everything it needs; WebSocket jobs carry the conn id.
 */
#include "api/threads_api.h"
#include "api/query.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/ws_api.h"
#include "api/router.h"
#include "api/ws_frames.h"
#include "core/messages.h"
#include "util/err.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/utf8.h"
#include "util/xalloc.h"

threads_run_start_fn threads_run_starter;

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define OFFSET_MAX 1000000000000L /* far past any real table; a bigger value is a bad query */
#define WS_HISTORY_DEFAULT 50

/* ---- text helpers ---------------------------------------------------------------------- */

static int is_space(unsigned char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }

char *threads_title_from(const char *content, char *out, size_t cap) {
  enum { MAXC = THREADS_AUTO_TITLE_CHARS };
  char norm[(MAXC + 1) * 4 + 8];
  size_t start[MAXC + 2]; /* byte offset of code point i in norm */
  size_t nb = 0;
  int cps = 0, space = 0;
  const unsigned char *p = (const unsigned char *)content;
  while (*p && cps <= MAXC) {
    if (is_space(*p)) {
      space = nb > 0;
      p++;
      continue;
    }
    if (space) {
      start[cps++] = nb;
      norm[nb++] = ' ';
      space = 0;
      if (cps > MAXC) break;
    }
    size_t len = utf8_seq_len(*p);
    start[cps++] = nb;
    for (size_t i = 0; i < len && *p; i++) norm[nb++] = (char)*p++;
  }
  start[cps] = nb;
  size_t end = nb;
  int cut = cps > MAXC;
  if (cut) {
    end = start[MAXC - 1]; /* room for the ellipsis */
    if (norm[end] != ' ') {
      size_t k = end;
      while (k > 0 && norm[k - 1] != ' ') k--;
      if (k > 0) end = k - 1; /* the last whole word; a single long word is cut hard */
    }
    while (end > 0 && norm[end - 1] == ' ') end--;
  }
  snprintf(out, cap, "%.*s%s", (int)end, norm, cut ? "\xE2\x80\xA6" : "");
  return out;
}

/* 1 when s has nothing but ASCII whitespace. */
static int blank(const char *s) {
  for (; *s; s++)
    if (!is_space((unsigned char)*s)) return 0;
  return 1;
}

/* ---- JSON shapes (SPEC §3) -------------------------------------------------------------- */
/* Answers are written into a buf_t on the worker (never on the loop): list pages are the
 * hot path, and a jansson tree per row cost more than the query.  The object layout is
 * fixed here; strings are escaped by jansson; numbers are plain decimals.  Metadata is
 * stored as a JSON object text (the store's CHECK guarantees it) and is copied as is. */

static void put_str(buf_t *b, const char *s) {
  json_t *v = s ? json_string(s) : NULL;
  jsonx_append(b, v ? v : json_null());
  json_decref(v);
}

/* Decimal digits of v (≥ 0), at least `width` of them (zero-padded). */
static void put_uint(buf_t *b, unsigned long long v, int width) {
  char tmp[24];
  int n = 0;
  do {
    tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v || n < width);
  buf_append(b, tmp + sizeof tmp - n, (size_t)n);
}

static void put_long(buf_t *b, long v) {
  if (v < 0) {
    buf_append(b, "-", 1);
    put_uint(b, 0ULL - (unsigned long long)v, 1);
  } else {
    put_uint(b, (unsigned long long)v, 1);
  }
}

/* Epoch seconds with microseconds, as a JSON number. */
static void put_time(buf_t *b, double t) {
  if (!(t >= 0 && t < 1e12)) {
    buf_appendf(b, "%.6f", t == t ? t : 0.0);
    return;
  }
  long long us = llround(t * 1e6);
  put_uint(b, (unsigned long long)(us / 1000000), 1);
  buf_append(b, ".", 1);
  put_uint(b, (unsigned long long)(us % 1000000), 6);
}

static void put_meta(buf_t *b, const char *text) { buf_append_str(b, text && text[0] == '{' ? text : "{}"); }

static void put_thread(buf_t *b, const store_thread_t *t) {
  buf_append_str(b, "{\"id\":");
  put_str(b, t->id);
  buf_append_str(b, ",\"object\":\"thread\",\"title\":");
  if (t->title) put_str(b, t->title);
  else buf_append_str(b, "null");
  buf_append_str(b, ",\"created_at\":");
  put_time(b, t->created_at);
  buf_append_str(b, ",\"updated_at\":");
  put_time(b, t->updated_at);
  buf_append_str(b, ",\"message_count\":");
  put_long(b, t->message_count);
  buf_append_str(b, ",\"status\":");
  put_str(b, t->status);
  buf_append_str(b, ",\"metadata\":");
  put_meta(b, t->metadata);
  buf_append(b, "}", 1);
}

/* A Message; content: m->content, or (content_head) its first bytes, marked truncated. */
static void put_message_as(buf_t *b, const store_message_t *m, const char *content_head) {
  buf_append_str(b, "{\"id\":");
  put_str(b, m->id);
  buf_append_str(b, ",\"object\":\"thread.message\",\"thread_id\":");
  put_str(b, m->thread_id);
  buf_append_str(b, ",\"role\":");
  put_str(b, m->role);
  buf_append_str(b, ",\"content\":");
  put_str(b, content_head ? content_head : m->content);
  if (content_head) buf_append_str(b, ",\"content_truncated\":true");
  buf_append_str(b, ",\"created_at\":");
  put_time(b, m->created_at);
  if (m->run_id[0]) {
    buf_append_str(b, ",\"run_id\":");
    put_str(b, m->run_id);
  }
  buf_append_str(b, ",\"metadata\":");
  put_meta(b, m->metadata);
  buf_append(b, "}", 1);
}

static void put_message(buf_t *b, const store_message_t *m) { put_message_as(b, m, NULL); }

/* A WebSocket history page (SPEC §6 thread_history / thread_switched).  A frame goes out
 * whole, and one past the socket's send queue limit closes it (1013), while a message may
 * be as long as the body limit (issue 13, defect 13).  So the page keeps its newest
 * messages that fit `budget` bytes; older ones are left to the next page (has_more, with
 * "before": the oldest id sent).  A newest message alone over the budget goes with its
 * content cut to WS_HISTORY_HEAD bytes and "content_truncated": true (GET
 * /api/messages/{id} has it whole).  l is oldest first. */
#define WS_HISTORY_HEAD 16384
static void put_history_messages(buf_t *b, const store_message_list_t *l, size_t budget, int *has_more) {
  size_t first = l->n, used = 0;
  buf_t one;
  buf_init(&one, 0);
  while (first > 0) { /* newest first, while they fit */
    buf_reset(&one);
    put_message(&one, &l->items[first - 1]);
    if (used + one.len + 1 > budget) break;
    used += one.len + 1;
    first--;
  }
  buf_dispose(&one);
  buf_append(b, "[", 1);
  if (first == l->n && l->n > 0) { /* the newest alone is too big: its head */
    const store_message_t *m = &l->items[l->n - 1];
    size_t n = strlen(m->content);
    if (n > WS_HISTORY_HEAD) n = WS_HISTORY_HEAD;
    while (n > 0 && ((unsigned char)m->content[n] & 0xC0) == 0x80) n--; /* a character boundary */
    char *head = strndup(m->content, n);
    if (!head) abort();
    put_message_as(b, m, head);
    free(head);
    if (l->n > 1) *has_more = 1; /* the older ones of this page come next */
  } else if (first > 0) {
    *has_more = 1;
  }
  for (size_t i = first; i < l->n; i++) {
    if (b->base[b->len - 1] != '[') buf_append(b, ",", 1);
    put_message(b, &l->items[i]);
  }
  buf_append(b, "]", 1);
}

static void put_messages(buf_t *b, const store_message_list_t *l) {
  buf_reserve(b, 64 + l->n * 320);
  buf_append(b, "[", 1);
  for (size_t i = 0; i < l->n; i++) {
    if (i) buf_append(b, ",", 1);
    put_message(b, &l->items[i]);
  }
  buf_append(b, "]", 1);
}

static void put_bool(buf_t *b, const char *key, int v) {
  buf_appendf(b, ",\"%s\":%s", key, v ? "true" : "false");
}

/* ---- jobs ------------------------------------------------------------------------------ */

typedef enum {
  OP_THREAD_LIST,
  OP_THREAD_CREATE,
  OP_THREAD_GET,
  OP_THREAD_UPDATE,
  OP_THREAD_DELETE,
  OP_MSG_LIST,      /* a thread's messages, oldest first (also /api/history) */
  OP_MSG_ADD,
  OP_MSG_LIST_USER, /* the caller's messages, newest first */
  OP_MSG_GET,
  OP_MSG_DELETE,
  OP_HISTORY,       /* WS: get_thread_history / switch_thread */
} op_t;

typedef struct tjob {
  op_t op;
  char user_id[ID_MAX];
  char thread_id[ID_MAX];
  int has_thread;        /* thread_id is set */
  char msg_id[ID_MAX];   /* OP_MSG_GET/DELETE: the message; OP_HISTORY: "before" ("" none) */
  int set_title;
  char *title;           /* malloc'd or NULL */
  char *metadata;        /* malloc'd JSON object text or NULL */
  char *content;         /* malloc'd */
  char role[16];
  int limit;
  long offset;
  int include_archived;
  int hard;
  int run;               /* OP_MSG_ADD: a run start (threads_run_starter), not a job */
  int status;            /* HTTP status of a success */
  int not_found_msg;     /* 1: "message not found", else "thread not found" */
  buf_t out;             /* the answer's JSON text (REST body / WS "data"), built on the worker */
  /* WebSocket */
  int ws;
  uint64_t conn_id;
  json_t *reply_to;      /* loop-only reference */
  const char *reply_type;
  /* dispatch */
  struct tjob *next;     /* pending list / batch */
  http_req_t *req;       /* REST: the request to answer (loop-only); NULL for WS */
  int rc;                /* the worker's result */
  char auto_title[256];  /* OP_MSG_ADD without thread: the new thread's title */
} tjob_t;

/* A job template on the caller's stack (validation fails before anything is queued). */
static void tjob_init(tjob_t *j, op_t op, const char *user_id) {
  memset(j, 0, sizeof *j);
  j->op = op;
  snprintf(j->user_id, sizeof j->user_id, "%s", user_id ? user_id : "");
  j->status = 200;
  buf_init(&j->out, 0);
}

static void set_thread(tjob_t *j, const char *id) {
  /* An id too long to be ours still goes to the store, which answers NOT_FOUND. */
  if (strlen(id) >= sizeof j->thread_id) id = "thr_?";
  snprintf(j->thread_id, sizeof j->thread_id, "%s", id);
  j->has_thread = 1;
}

static void set_msg(tjob_t *j, const char *id) {
  if (strlen(id) >= sizeof j->msg_id) id = "msg_?";
  snprintf(j->msg_id, sizeof j->msg_id, "%s", id);
}

static void put_list_envelope(buf_t *b, const store_message_list_t *l, tjob_t *j) {
  buf_append_str(b, "{\"thread_id\":");
  if (j->has_thread) put_str(b, j->thread_id);
  else buf_append_str(b, "null");
  buf_append_str(b, ",\"messages\":");
  put_messages(b, l);
  buf_appendf(b, ",\"total\":%ld,\"limit\":%d,\"offset\":%ld", l->total, j->limit, j->offset);
  put_bool(b, "has_more", l->has_more);
  buf_append(b, "}", 1);
}

/* Worker: the store call and the answer's text in j->out. */
static int tjob_work(tjob_t *j) {
  store_t *s = g_app->store;
  if (!s) return AGD_EUNAVAILABLE;
  buf_t *b = &j->out;
  int rc = 0;
  switch (j->op) {
  case OP_THREAD_LIST: {
    store_thread_list_t l;
    rc = store_thread_list(s, j->user_id, j->include_archived, j->limit, j->offset, &l);
    if (rc) break;
    buf_reserve(b, 256 + l.n * 256);
    buf_append_str(b, "{\"threads\":[");
    for (size_t i = 0; i < l.n; i++) {
      if (i) buf_append(b, ",", 1);
      put_thread(b, &l.items[i]);
    }
    buf_appendf(b, "],\"total\":%ld,\"limit\":%d,\"offset\":%ld", l.total, j->limit, j->offset);
    put_bool(b, "has_more", j->offset + (long)l.n < l.total);
    buf_append(b, "}", 1);
    store_thread_list_dispose(&l);
    break;
  }
  case OP_THREAD_CREATE:
  case OP_THREAD_GET:
  case OP_THREAD_UPDATE: {
    store_thread_t t;
    if (j->op == OP_THREAD_CREATE) rc = store_thread_create(s, j->user_id, j->title, j->metadata, &t);
    else if (j->op == OP_THREAD_GET) rc = store_thread_get(s, j->user_id, j->thread_id, &t);
    else rc = store_thread_update(s, j->user_id, j->thread_id, j->set_title, j->title, j->metadata, &t);
    if (rc) break;
    put_thread(b, &t);
    store_thread_dispose(&t);
    break;
  }
  case OP_THREAD_DELETE:
    rc = j->hard ? store_thread_delete(s, j->user_id, j->thread_id)
                 : store_thread_archive(s, j->user_id, j->thread_id);
    if (rc) break;
    if (j->ws) {
      buf_append_str(b, "{\"thread_id\":");
      put_str(b, j->thread_id);
      buf_append_str(b, ",\"status\":\"archived\"}");
    } else {
      buf_appendf(b, "{\"status\":\"%s\",\"id\":", j->hard ? "deleted" : "archived");
      put_str(b, j->thread_id);
      buf_append(b, "}", 1);
    }
    break;
  case OP_MSG_LIST:
  case OP_MSG_LIST_USER: {
    store_message_list_t l;
    if (j->op == OP_MSG_LIST) rc = store_message_list(s, j->user_id, j->thread_id, j->limit, j->offset, &l);
    else
      rc = store_message_list_user(s, j->user_id, j->has_thread ? j->thread_id : NULL, j->limit, j->offset, &l);
    if (rc) break;
    put_list_envelope(b, &l, j);
    store_message_list_dispose(&l);
    break;
  }
  case OP_MSG_ADD: /* written through core/messages (submit), never on a worker */
    rc = AGD_EINTERNAL;
    break;
  case OP_MSG_GET: {
    store_message_t m;
    rc = store_message_get(s, j->user_id, j->msg_id, &m);
    if (rc) break;
    put_message(b, &m);
    store_message_dispose(&m);
    break;
  }
  case OP_MSG_DELETE:
    rc = store_message_delete(s, j->user_id, j->msg_id);
    if (rc) break;
    buf_append_str(b, "{\"status\":\"deleted\",\"id\":");
    put_str(b, j->msg_id);
    buf_append_str(b, ",\"deleted\":true}");
    break;
  case OP_HISTORY: {
    store_message_list_t l;
    rc = store_message_history(s, j->user_id, j->thread_id, j->msg_id[0] ? j->msg_id : NULL, j->limit, &l);
    if (rc) break;
    buf_append_str(b, "{\"thread_id\":");
    put_str(b, j->thread_id);
    buf_append_str(b, ",\"messages\":");
    int more = l.has_more;
    /* half the send queue: the rest is room for the events queued meanwhile */
    put_history_messages(b, &l, g_app->cfg->send_queue_limit / 2, &more);
    put_bool(b, "has_more", more);
    buf_append(b, "}", 1);
    store_message_list_dispose(&l);
    break;
  }
  }
  if (rc) buf_reset(b);
  return rc;
}

/* Worker: record the result. */
static void tjob_finish(tjob_t *j, int rc) { j->rc = rc; }

static const char *nf_message(const tjob_t *j) {
  return j->not_found_msg ? "message not found" : "thread not found";
}

static void tjob_free(tjob_t *j) {
  free(j->title);
  free(j->metadata);
  free(j->content);
  buf_dispose(&j->out);
  json_decref(j->reply_to);
  j->reply_to = NULL;
}

static void ws_reply(tjob_t *j, int rc);

static void tjob_done(http_req_t *r, tjob_t *j, int rc) {
  if (j->ws) {
    ws_reply(j, rc);
  } else if (rc == AGD_ENOT_FOUND) {
    http_respond_error(r, rc, nf_message(j), NULL);
  } else if (rc == AGD_EVALIDATION) {
    router_respond_validation(r, "metadata", "must be a JSON object");
  } else if (rc) {
    http_respond_error(r, rc, NULL, NULL);
  } else {
    http_respond(r, j->status, "application/json", j->out.base, j->out.len);
  }
  tjob_free(j);
}

/* ---- request parsing (loop) ------------------------------------------------------------ */

/* SPEC conventions: limit 1..100 (default 20), offset ≥ 0; anything else is 400 (never
 * clamped).  0 ok; -1 answered. */
static int parse_page(http_req_t *r, tjob_t *j) {
  long long limit, offset;
  if (query_int(r, "limit", 1, PAGE_MAX, PAGE_DEFAULT, &limit) < 0) return -1;
  if (query_int(r, "offset", 0, OFFSET_MAX, 0, &offset) < 0) return -1;
  j->limit = (int)limit;
  j->offset = offset;
  return 0;
}

/* Boolean query flag: 0/1, or -1 (answered 400) for a value that is not one. */
static int query_flag(http_req_t *r, const char *name) {
  const char *v;
  if (!http_req_query(r, name, &v)) return 0;
  if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) return 1;
  if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !v[0]) return 0;
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be true or false", name);
  http_respond_error(r, AGD_EBAD_REQUEST, msg, NULL);
  return -1;
}

/* A field check failure, shared by REST (422/413 answers) and WS (error frames). */
typedef struct field_err {
  int code;            /* AGD_EVALIDATION or AGD_ETOO_LARGE; 0 = fine */
  const char *field;
  const char *message;
} field_err_t;

static int ferr(field_err_t *e, int code, const char *field, const char *message) {
  e->code = code;
  e->field = field;
  e->message = message;
  return -1;
}

static void respond_field_err(http_req_t *r, const field_err_t *e) {
  if (e->code == AGD_EVALIDATION) {
    router_respond_validation(r, e->field, e->message);
    return;
  }
  json_t *d = json_array();
  json_array_append_new(d, json_pack("{s:s,s:s}", "field", e->field, "message", e->message));
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", e->field, e->message);
  http_respond_error(r, e->code, msg, d);
}

/* A string body field read as a C string (util/jsonx.h): 0 and *out (NULL when absent or
 * null), or -1 with e filled: 422 naming the field for another type or a NUL character
 * (valid JSON "\u0000" a C string would cut short; issue 13, defect 7). */
static int take_cstr(json_t *body, const char *field, const char **out, field_err_t *e) {
  int rc = jsonx_get_cstr(body, field, out);
  return rc ? ferr(e, AGD_EVALIDATION, field, jsonx_cstr_why(rc)) : 0;
}

/* title: absent → *set 0; a string → copied; else an error.  SPEC conventions: no cap
 * below the body limit; only what the store cannot hold (STORE_TITLE_MAX bytes, reached
 * only with a raised --max-body-bytes) is 413. */
static int take_title(json_t *body, tjob_t *j, field_err_t *e) {
  json_t *v = json_object_get(body, "title");
  if (!v) return 0;
  if (json_is_null(v)) return ferr(e, AGD_EVALIDATION, "title", "must be a string");
  const char *s;
  if (take_cstr(body, "title", &s, e)) return -1;
  if (json_string_length(v) > THREADS_TITLE_MAX_BYTES)
    return ferr(e, AGD_ETOO_LARGE, "title", "longer than the server stores (" THREADS_FIELD_MAX_TEXT ")");
  j->set_title = 1;
  j->title = xstrdup(s);
  return 0;
}

/* metadata: absent → NULL; a JSON object → its compact text; else an error. */
static int take_metadata(json_t *body, tjob_t *j, field_err_t *e) {
  json_t *v = json_object_get(body, "metadata");
  if (!v) return 0;
  if (!json_is_object(v)) return ferr(e, AGD_EVALIDATION, "metadata", "must be a JSON object");
  /* Stored as JSON text and read back as C strings: a NUL would not survive (defect 7). */
  if (jsonx_has_nul(v)) return ferr(e, AGD_EVALIDATION, "metadata", "strings must not contain NUL characters");
  j->metadata = jsonx_dumps(v);
  return 0;
}

/* content (required), role (default "user"), metadata. */
static int take_message(json_t *body, tjob_t *j, field_err_t *e) {
  const char *s, *role;
  if (take_cstr(body, "content", &s, e)) return -1;
  if (!s) return ferr(e, AGD_EVALIDATION, "content", "is required");
  /* SPEC conventions: no cap below the body limit (issue 13, defect 13). */
  if (strlen(s) > THREADS_CONTENT_MAX_BYTES)
    return ferr(e, AGD_ETOO_LARGE, "content", "longer than the server stores (" THREADS_FIELD_MAX_TEXT ")");
  if (blank(s)) return ferr(e, AGD_EVALIDATION, "content", "must not be empty");
  int rrc = jsonx_get_cstr(body, "role", &role);
  if (rrc == JSONX_ENUL) return ferr(e, AGD_EVALIDATION, "role", jsonx_cstr_why(rrc));
  if (rrc == 0 && !role) role = "user"; /* absent or null */
  if (rrc || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") && strcmp(role, "tool")))
    return ferr(e, AGD_EVALIDATION, "role", "must be one of user, assistant, system, tool");
  if (take_metadata(body, j, e)) return -1;
  snprintf(j->role, sizeof j->role, "%s", role);
  j->content = xstrdup(s);
  return 0;
}

static const char *user_of(route_ctx_t *ctx) { return ctx->user_id ? ctx->user_id : ""; }

/* ---- dispatch: batches on the worker pool ------------------------------------------------
 * Jobs wait on a loop-only pending list.  At most BATCH_WORKERS batches run at a time on
 * libuv's pool; a batch takes every pending job (up to BATCH_MAX) when it starts, so under
 * load one pool round trip serves many requests.  When idle, a job starts its own batch at
 * once, so latency stays one round trip.  A message is not a job of these: it is written
 * through the one message path (core/messages.h, msg_submit), in the event writer's group
 * commit. */

#define BATCH_WORKERS 2
#define BATCH_MAX 256

typedef struct tbatch {
  uv_work_t work;
  tjob_t *head;
} tbatch_t;

static tjob_t *pend_head, **pend_tail = &pend_head;
static int batches_active;

static void batch_work(uv_work_t *w) {
  tbatch_t *b = w->data;
  for (tjob_t *j = b->head; j; j = j->next) tjob_finish(j, tjob_work(j));
}

static void batch_start(void);

static void batch_done(uv_work_t *w, int status) {
  tbatch_t *b = w->data;
  for (tjob_t *j = b->head, *next; j; j = next) {
    next = j->next;
    tjob_done(j->req, j, status != 0 && j->rc == 0 ? AGD_EINTERNAL : j->rc);
    free(j);
  }
  free(b);
  batches_active--;
  batch_start();
}

static void batch_start(void) {
  while (pend_head && batches_active < BATCH_WORKERS) {
    tbatch_t *b = calloc(1, sizeof *b);
    if (!b) abort();
    b->head = pend_head;
    tjob_t *last = pend_head;
    for (int k = 1; last->next && k < BATCH_MAX; k++) last = last->next;
    pend_head = last->next;
    if (!pend_head) pend_tail = &pend_head;
    last->next = NULL;
    b->work.data = b;
    if (uv_queue_work(g_app->loop, &b->work, batch_work, batch_done) != 0) {
      for (tjob_t *j = b->head, *next; j; j = next) {
        next = j->next;
        tjob_done(j->req, j, AGD_EUNAVAILABLE);
        free(j);
      }
      free(b);
      continue;
    }
    batches_active++;
  }
}

json_t *threads_message_json(const store_message_t *m) {
  buf_t b;
  buf_init(&b, 0);
  put_message(&b, m);
  json_t *o = json_loadb(b.base, b.len, 0, NULL);
  buf_dispose(&b);
  return o;
}

/* Loop: a message write is over (stored and committed, or refused). */
static void msg_done(void *arg, int rc, const store_message_t *m) {
  tjob_t *j = arg;
  if (rc == 0) put_message(&j->out, m);
  tjob_done(j->req, j, rc);
  free(j);
}

/* OP_MSG_ADD: the message goes to the one message path; answered after its commit. */
static void msg_submit(tjob_t *j) {
  if (!g_app->store) {
    msg_done(j, AGD_EUNAVAILABLE, NULL);
    return;
  }
  messages_write_t w = {.user_id = j->user_id,
                        .msg = {.thread_id = j->has_thread ? j->thread_id : NULL,
                                .role = j->role,
                                .content = j->content,
                                .metadata = j->metadata},
                        .done = msg_done,
                        .arg = j};
  if (!j->has_thread) w.msg.new_thread_title = threads_title_from(j->content, j->auto_title, sizeof j->auto_title);
  int rc = messages_write(&w);
  if (rc != 0) msg_done(j, rc, NULL);
}

/* Queue the job described by tmpl (its malloc'd members move into the job); r is the
 * request to answer, NULL for a WebSocket job. */
static void submit(http_req_t *r, const tjob_t *tmpl) {
  tjob_t *j = malloc(sizeof(*j));
  if (!j) abort();
  *j = *tmpl;
  j->req = r;
  j->next = NULL;
  if (j->op == OP_MSG_ADD) {
    msg_submit(j);
    return;
  }
  *pend_tail = j;
  pend_tail = &j->next;
  batch_start();
}

/* ---- REST handlers (SPEC §3) ----------------------------------------------------------- */

static void h_threads_list(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_THREAD_LIST, user_of(ctx));
  int inc = query_flag(r, "include_archived");
  if (inc < 0 || parse_page(r, &j) != 0) return;
  j.include_archived = inc;
  submit(r, &j);
}

static void h_threads_create(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  tjob_t j;
  tjob_init(&j, OP_THREAD_CREATE, user_of(ctx));
  field_err_t e = {0};
  int bad = take_title(body, &j, &e) || take_metadata(body, &j, &e);
  json_decref(body);
  if (bad) {
    respond_field_err(r, &e);
    tjob_free(&j);
    return;
  }
  j.status = 201;
  submit(r, &j);
}

static void h_thread_get(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_THREAD_GET, user_of(ctx));
  set_thread(&j, route_param(ctx, "id"));
  submit(r, &j);
}

static void h_thread_update(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  tjob_t j;
  tjob_init(&j, OP_THREAD_UPDATE, user_of(ctx));
  set_thread(&j, route_param(ctx, "id"));
  field_err_t e = {0};
  int bad = take_title(body, &j, &e) || take_metadata(body, &j, &e);
  json_decref(body);
  if (bad) {
    respond_field_err(r, &e);
    tjob_free(&j);
    return;
  }
  submit(r, &j);
}

static void h_thread_delete(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_THREAD_DELETE, user_of(ctx));
  set_thread(&j, route_param(ctx, "id"));
  j.hard = query_flag(r, "hard");
  if (j.hard < 0) return;
  submit(r, &j);
}

static void h_thread_messages(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_MSG_LIST, user_of(ctx));
  set_thread(&j, route_param(ctx, "id"));
  if (parse_page(r, &j) != 0) return;
  submit(r, &j);
}

/* POST a message: into thread_id (path or body), or into a new thread when none. */
static void post_message(http_req_t *r, route_ctx_t *ctx, const char *path_thread) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  tjob_t j;
  tjob_init(&j, OP_MSG_ADD, user_of(ctx));
  j.status = 201;
  j.not_found_msg = 0; /* the thread is what may be missing */
  field_err_t e = {0};
  int bad = 0;
  if (path_thread) {
    set_thread(&j, path_thread);
    json_t *run = json_object_get(body, "run");
    if (run && !json_is_null(run) && !json_is_boolean(run)) bad = ferr(&e, AGD_EVALIDATION, "run", "must be a boolean");
    j.run = json_is_true(run);
  } else {
    const char *t;
    bad = take_cstr(body, "thread_id", &t, &e);
    if (!bad && t && t[0]) set_thread(&j, t);
  }
  if (!bad) bad = take_message(body, &j, &e);
  json_decref(body);
  if (bad) {
    respond_field_err(r, &e);
    tjob_free(&j);
    return;
  }
  if (j.run && !threads_run_starter) {
    /* TODO(runs issue): the runs module sets threads_run_starter at start. */
    http_respond_error(r, AGD_EUNAVAILABLE, "agent runs not enabled", NULL);
    tjob_free(&j);
    return;
  }
  if (j.run) {
    /* The runs module takes the run's slot first (a refused run stores nothing), then
     * writes the message and the run row together. */
    store_message_new_t in = {.thread_id = j.thread_id, .role = j.role, .content = j.content, .metadata = j.metadata};
    threads_run_starter(r, j.user_id, &in);
    tjob_free(&j);
    return;
  }
  submit(r, &j);
}

static void h_thread_messages_post(http_req_t *r, route_ctx_t *ctx) { post_message(r, ctx, route_param(ctx, "id")); }
static void h_messages_post(http_req_t *r, route_ctx_t *ctx) { post_message(r, ctx, NULL); }

static void h_messages_list(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_MSG_LIST_USER, user_of(ctx));
  const char *t;
  if (http_req_query(r, "thread_id", &t) && t[0]) set_thread(&j, t);
  if (parse_page(r, &j) != 0) return;
  submit(r, &j);
}

static void h_message_get(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, http_req_method(r) == HTTP_M_DELETE ? OP_MSG_DELETE : OP_MSG_GET, user_of(ctx));
  set_msg(&j, route_param(ctx, "id"));
  j.not_found_msg = 1;
  submit(r, &j);
}

static void h_history(http_req_t *r, route_ctx_t *ctx) {
  tjob_t j;
  tjob_init(&j, OP_MSG_LIST, user_of(ctx));
  const char *t;
  if (!http_req_query(r, "thread_id", &t) || !t[0]) {
    http_respond_error(r, AGD_EBAD_REQUEST, "thread_id is required", NULL);
    return;
  }
  set_thread(&j, t);
  if (parse_page(r, &j) != 0) return;
  submit(r, &j);
}

static void threads_register_ws_frames(void);

void api_threads_register(void) {
  threads_register_ws_frames();
  router_add("/api/threads", HTTP_M_GET, h_threads_list, 0);
  router_add("/api/threads", HTTP_M_POST, h_threads_create, 0);
  router_add("/api/threads/{id}", HTTP_M_GET, h_thread_get, 0);
  router_add("/api/threads/{id}", HTTP_M_PUT | HTTP_M_PATCH, h_thread_update, 0);
  router_add("/api/threads/{id}", HTTP_M_DELETE, h_thread_delete, 0);
  router_add("/api/threads/{id}/messages", HTTP_M_GET, h_thread_messages, 0);
  router_add("/api/threads/{id}/messages", HTTP_M_POST, h_thread_messages_post, 0);
  router_add("/api/messages", HTTP_M_GET, h_messages_list, 0);
  router_add("/api/messages", HTTP_M_POST, h_messages_post, 0);
  router_add("/api/chat/messages", HTTP_M_GET, h_messages_list, 0);
  router_add("/api/chat/messages", HTTP_M_POST, h_messages_post, 0);
  router_add("/api/messages/{id}", HTTP_M_GET | HTTP_M_DELETE, h_message_get, 0);
  router_add("/api/history", HTTP_M_GET, h_history, 0);
}

/* ---- WebSocket thread frames (SPEC §6) ---------------------------------------------------- */

static void ws_send_error_frame(conn_t *c, int rc, const char *message, json_t *reply_to) {
  api_ws_send_error(c, agd_err_code(rc), message, reply_to);
}

static void ws_reply(tjob_t *j, int rc) {
  conn_t *c = g_app->srv ? server_conn_lookup(g_app->srv, j->conn_id) : NULL;
  if (!c || conn_is_closing(c)) return; /* the socket went away meanwhile: drop */
  if (rc) {
    const char *msg = rc == AGD_ENOT_FOUND ? nf_message(j)
                      : rc == AGD_EVALIDATION ? "metadata: must be a JSON object" : "request failed";
    ws_send_error_frame(c, rc, msg, j->reply_to);
    return;
  }
  buf_t f;
  buf_init(&f, 0);
  buf_appendf(&f, "{\"type\":\"%s\",\"data\":", j->reply_type);
  buf_append(&f, j->out.base, j->out.len);
  buf_append_str(&f, ",\"timestamp\":");
  put_time(&f, time_now());
  if (j->reply_to) {
    buf_append_str(&f, ",\"reply_to\":");
    jsonx_append(&f, j->reply_to);
  }
  buf_append(&f, "}", 1);
  ws_send_text(c, f.base, f.len);
  buf_dispose(&f);
}

/* An optional WS integer in [lo, hi]: 1 absent, 0 ok, -1 bad. */
static int ws_int(json_t *p, const char *key, long lo, long hi, long *out) {
  json_t *v = json_object_get(p, key);
  if (!v || json_is_null(v)) return 1;
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return -1;
  *out = (long)json_integer_value(v);
  return 0;
}

/* thread_id of a WS payload: 0 ok, -1 (e filled) when missing or not a string. */
static int ws_thread_id(json_t *p, tjob_t *j, field_err_t *e) {
  const char *v;
  if (take_cstr(p, "thread_id", &v, e)) return -1;
  if (!v || !v[0]) return ferr(e, AGD_EVALIDATION, "thread_id", "is required (a string)");
  set_thread(j, v);
  return 0;
}

/* The thread frames of SPEC §6 and the reply each gets. */
typedef struct ws_thread_kind {
  const char *type, *reply;
  op_t op;
} ws_thread_kind_t;

static const ws_thread_kind_t ws_thread_kinds[] = {
    {"switch_thread", "thread_switched", OP_HISTORY},      {"get_thread_history", "thread_history", OP_HISTORY},
    {"create_thread", "thread_created", OP_THREAD_CREATE}, {"rename_thread", "thread_renamed", OP_THREAD_UPDATE},
    {"delete_thread", "thread_deleted", OP_THREAD_DELETE}, {"list_threads", "thread_list", OP_THREAD_LIST},
};

/* One thread frame; arg is its ws_thread_kind_t. */
static void ws_thread_frame(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  const ws_thread_kind_t *kind = arg;
  json_t *p = ws_frame_payload(frame);
  tjob_t j;
  tjob_init(&j, kind->op, conn_user_id(c));
  j.ws = 1;
  j.conn_id = conn_id(c);
  j.reply_type = kind->reply;
  field_err_t e = {0};
  int bad = 0;
  long n;
  switch (kind->op) {
  case OP_HISTORY: {
    bad = ws_thread_id(p, &j, &e);
    j.limit = WS_HISTORY_DEFAULT;
    if (!bad && ws_int(p, "limit", 1, PAGE_MAX, &n) == 0) j.limit = (int)n;
    else if (!bad && ws_int(p, "limit", 1, PAGE_MAX, &n) < 0)
      bad = ferr(&e, AGD_EVALIDATION, "limit", "must be an integer from 1 to 100");
    const char *before;
    if (!bad && strcmp(kind->type, "get_thread_history") == 0) {
      if (jsonx_get_cstr(p, "before", &before) != 0) bad = ferr(&e, AGD_EVALIDATION, "before", "must be a message id");
      else if (before) set_msg(&j, before);
    }
    break;
  }
  case OP_THREAD_CREATE:
    bad = take_title(p, &j, &e) || take_metadata(p, &j, &e);
    break;
  case OP_THREAD_UPDATE:
    bad = ws_thread_id(p, &j, &e);
    if (!bad && !json_object_get(p, "title")) bad = ferr(&e, AGD_EVALIDATION, "title", "is required");
    if (!bad) bad = take_title(p, &j, &e);
    break;
  case OP_THREAD_DELETE:
    bad = ws_thread_id(p, &j, &e);
    break;
  case OP_THREAD_LIST: {
    j.limit = PAGE_DEFAULT;
    int rl = ws_int(p, "limit", 1, PAGE_MAX, &n);
    if (rl == 0) j.limit = (int)n;
    int ro = ws_int(p, "offset", 0, OFFSET_MAX, &n);
    if (ro == 0) j.offset = n;
    if (rl < 0) bad = ferr(&e, AGD_EVALIDATION, "limit", "must be an integer from 1 to 100");
    else if (ro < 0) bad = ferr(&e, AGD_EVALIDATION, "offset", "must be an integer >= 0");
    j.include_archived = json_is_true(json_object_get(p, "include_archived"));
    break;
  }
  default:
    break;
  }
  if (bad) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", e.field, e.message);
    ws_send_error_frame(c, e.code, msg, id);
    tjob_free(&j);
    return;
  }
  if (id) j.reply_to = json_incref(id);
  submit(NULL, &j);
}

static void threads_register_ws_frames(void) {
  for (size_t k = 0; k < sizeof ws_thread_kinds / sizeof ws_thread_kinds[0]; k++)
    if (ws_frames_add(ws_thread_kinds[k].type, ws_thread_frame, &ws_thread_kinds[k]) != 0)
      abort(); /* a type claimed twice: a bug caught at start */
}
