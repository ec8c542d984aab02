/* api/runs_api.c — agent runs and events (SPEC §4, §5, §6).
 *
 * Starting a run is two steps: a worker job stores the user message (in a new
 * thread when none is given) and the run row (status queued); back on the loop
 * the run is handed to core/runs.  Its steps reach clients as Events through
 * core/events; REST callers that wait (execute) are answered when the run's end
 * arrives on the loop, after its last event.
 */
#include "api/runs_api.h"
#include "api/query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "api/app.h"
#include "api/ws_api.h"
#include "api/job.h"
#include "api/router.h"
#include "api/sse_auth.h"
#include "api/threads_api.h"
#include "api/ws_frames.h"
#include "core/events.h"
#include "core/messages.h"
#include "core/runs.h"
#include "store/store.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define EVENTS_PAGE_MAX 1000

/* SPEC §9: a refused run start answers 429 with Retry-After. */
static void respond_run_limited(http_req_t *r) {
  http_resp_header(r, "Retry-After", "1");
  http_respond_error(r, AGD_ERATE_LIMITED, "too many runs: wait for one to finish", NULL);
}

/* ---- shapes ---- */

static json_t *json_or_null(const char *text) {
  if (!text || !text[0]) return json_null();
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}

static json_t *run_json(const store_run_t *r) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(r->id));
  json_object_set_new(o, "object", json_string("run"));
  json_object_set_new(o, "thread_id", json_string(r->thread_id));
  json_object_set_new(o, "agent", json_string(r->agent));
  json_object_set_new(o, "status", json_string(r->status));
  json_object_set_new(o, "created_at", json_real(r->created_at));
  json_object_set_new(o, "started_at", r->started_at > 0 ? json_real(r->started_at) : json_null());
  json_object_set_new(o, "completed_at", r->completed_at > 0 ? json_real(r->completed_at) : json_null());
  json_object_set_new(o, "input", json_string(r->input ? r->input : ""));
  json_object_set_new(o, "result", json_or_null(r->result));
  json_object_set_new(o, "error", json_or_null(r->error));
  json_object_set_new(o, "event_count", json_integer(r->event_count));
  /* SPEC §11: always an object, so a client reads r.usage.cost_usd without a check;
   * zeros until the run ends, for the builtin provider (no model) and for runs
   * stored before usage was recorded. */
  json_t *u = r->usage ? json_loads(r->usage, 0, NULL) : NULL;
  if (!json_is_object(u)) {
    json_decref(u);
    u = json_pack("{s:i,s:i,s:i,s:f,s:i}", "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0,
                  "cost_usd", 0.0, "llm_calls", 0);
  }
  json_object_set_new(o, "usage", u);
  return o;
}

static json_t *events_json(const store_event_list_t *l) {
  json_t *a = json_array();
  for (size_t i = 0; i < l->n; i++) {
    json_t *e = json_loads(l->items[i].json, 0, NULL);
    if (e) json_array_append_new(a, e);
  }
  return a;
}

/* ---- starting a run ---- */

typedef enum { START_EXECUTE = 0, START_BACKGROUND, START_STREAM, START_WS, START_THREAD_MESSAGE } start_mode_t;

typedef struct start_job {
  start_mode_t mode;
  char user_id[ID_MAX];
  char thread_id[ID_MAX]; /* in: requested ("" = new); out: actual */
  char agent[32];
  char *message;          /* the user's text */
  char *context_json;     /* optional */
  char message_id[ID_MAX];
  char run_id[ID_MAX];
  char title[256];
  char role[16];          /* the message's ("" = user) */
  char *metadata;         /* the message's (JSON object text) or NULL */
  uint64_t conn_id;       /* START_WS */
  json_t *reply_to;       /* START_WS: the frame's id; START_THREAD_MESSAGE: the stored Message */
  run_slot_t *slot;       /* the user's limits, held from the request until runs_submit */
  store_run_t run;        /* out */
  http_req_t *req;        /* start_job_run: while the message is written */
  job_done_fn done;
} start_job_t;

/* The run row of a start and its read-back (again in each attempt of the commit:
 * the row of an earlier one was rolled back). */
static int start_run_rows(store_t *st, start_job_t *j) {
  id_new(j->run_id, "run");
  int rc = store_run_create(st, j->user_id, j->run_id, j->thread_id, j->agent, j->message, time_now());
  if (rc != 0) return rc;
  store_run_dispose(&j->run);
  return store_run_get(st, j->user_id, j->run_id, &j->run);
}

/* messages_write's `also`: the user's message m is stored (in a new thread when the
 * request named none); the run row joins its transaction. */
static int start_after_message(store_t *st, const store_message_t *m, void *arg) {
  start_job_t *j = arg;
  snprintf(j->message_id, sizeof(j->message_id), "%s", m->id);
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", m->thread_id);
  return start_run_rows(st, j);
}

static void start_message_done(void *arg, int rc, const store_message_t *m) {
  start_job_t *j = arg;
  if (rc == 0 && j->mode == START_THREAD_MESSAGE) j->reply_to = threads_message_json(m); /* the 202 body */
  j->done(j->req, j, rc);
  job_discard(j);
}

/* The user's message goes through the one message path (core/messages.h), the run
 * row in its transaction: both are in the event writer's group commit, and the
 * answer (message_received, 200/202) goes out after that commit.  The run's slot is
 * already held (runs_reserve), so a start refused by a limit has stored nothing. */
static void start_job_run(http_req_t *r, start_job_t *j, job_done_fn done) {
  j->req = r;
  j->done = done;
  messages_write_t w = {.user_id = j->user_id,
                        .msg = {.thread_id = j->thread_id[0] ? j->thread_id : NULL,
                                .new_thread_title = j->title,
                                .role = j->role[0] ? j->role : "user",
                                .content = j->message,
                                .metadata = j->metadata},
                        .also = start_after_message,
                        .done = start_message_done,
                        .arg = j};
  int rc = messages_write(&w);
  if (rc != 0) start_message_done(j, rc, NULL);
}

static void start_job_free(start_job_t *j) {
  runs_release(j->slot); /* not submitted: its place goes back to the user */
  free(j->message);
  free(j->metadata);
  free(j->context_json);
  json_decref(j->reply_to);
  store_run_dispose(&j->run);
}

/* ---- waiting for the end (execute, stop) ---- */

typedef struct wait_ctx {
  http_req_t *req;
  char user_id[ID_MAX];
  char run_id[ID_MAX];
  int stop; /* answering a stop request: the Run only */
} wait_ctx_t;

typedef struct finish_job {
  wait_ctx_t w;
  char *response;
  store_run_t run;
  store_event_list_t events;
} finish_job_t;

static int finish_work(void *arg) {
  finish_job_t *j = arg;
  int rc = store_run_get(g_app->store, j->w.user_id, j->w.run_id, &j->run);
  if (rc == 0 && !j->w.stop)
    rc = store_event_list(g_app->store, j->w.user_id, 0, j->w.run_id, NULL, EVENTS_PAGE_MAX, &j->events);
  return rc;
}

static void finish_done(http_req_t *r, void *arg, int rc) {
  finish_job_t *j = arg;
  if (rc != 0) {
    http_respond_error(r, rc, NULL, NULL);
  } else if (j->w.stop) {
    http_respond_json(r, 200, run_json(&j->run));
  } else {
    json_t *err = json_or_null(j->run.error);
    const char *code = json_is_object(err) ? jsonx_get_str(err, "error_code") : NULL;
    if (code && strcmp(code, "TIMEOUT") == 0) {
      /* SPEC §4: a run over the deadline is cancelled and answers 504. */
      http_respond_error(r, AGD_ETIMEOUT, "the run exceeded its deadline and was cancelled", NULL);
    } else {
      json_t *o = json_object();
      json_object_set_new(o, "run", run_json(&j->run));
      json_object_set_new(o, "response", json_string(j->response ? j->response : ""));
      json_object_set_new(o, "result", json_or_null(j->run.result));
      json_object_set_new(o, "events", events_json(&j->events));
      http_respond_json(r, 200, o);
    }
    json_decref(err);
  }
  free(j->response);
  store_run_dispose(&j->run);
  store_event_list_free(&j->events);
}

static void answer_when_done(wait_ctx_t *w, const char *response) {
  finish_job_t *j = job_new(sizeof(*j));
  j->w = *w;
  j->response = response ? strdup(response) : NULL;
  job_run(w->req, j, finish_work, finish_done);
  free(w);
}

static void on_run_done(void *arg, const char *run_id, const char *status, const char *response) {
  answer_when_done(arg, response);
}

/* ---- after the run row exists ---- */

static void start_done(http_req_t *r, void *arg, int rc) {
  start_job_t *j = arg;
  if (rc != 0) {
    if (rc == AGD_ENOT_FOUND) http_respond_error(r, rc, "thread not found", NULL);
    else http_respond_error(r, rc, NULL, NULL);
    start_job_free(j);
    return;
  }
  json_t *ctx = j->context_json ? json_loads(j->context_json, 0, NULL) : NULL;
  run_request_t req = {.run_id = j->run_id, .user_id = j->user_id, .thread_id = j->thread_id, .agent = j->agent,
                       .input = j->message, .context = ctx};
  wait_ctx_t *w = NULL;
  if (j->mode == START_EXECUTE) {
    w = calloc(1, sizeof(*w));
    if (!w) abort();
    w->req = r;
    snprintf(w->user_id, sizeof(w->user_id), "%s", j->user_id);
    snprintf(w->run_id, sizeof(w->run_id), "%s", j->run_id);
  }
  if (j->mode == START_STREAM) {
    /* Subscribe before the run starts, so its first event is seen. */
    conn_t *c = http_req_conn(r);
    conn_set_user_id(c, j->user_id);
    api_sse_auth_watch(r, http_req_data(r)); /* the stream ends with its token (revoked, expired) */
    sse_start(r);
    events_subscribe(c, j->user_id, j->run_id, NULL, -1, 1);
  }
  int src = runs_submit(j->slot, &req, w ? on_run_done : NULL, w);
  j->slot = NULL;
  json_decref(ctx);
  if (src != 0) {
    free(w);
    if (j->mode == START_STREAM) {
      char msg[160];
      snprintf(msg, sizeof(msg), "{\"error_code\":\"%s\",\"message\":\"run not started\"}", agd_err_code(src));
      sse_send(http_req_conn(r), NULL, "error", msg, strlen(msg));
      sse_end(http_req_conn(r));
    } else {
      if (src == AGD_ERATE_LIMITED) respond_run_limited(r);
      else http_respond_error(r, src, NULL, NULL);
    }
    start_job_free(j);
    return;
  }
  switch (j->mode) {
  case START_EXECUTE: break; /* answered by on_run_done */
  case START_STREAM: break;
  case START_BACKGROUND: http_respond_json(r, 202, run_json(&j->run)); break;
  case START_THREAD_MESSAGE: {
    /* SPEC §3: 202 {"message": Message, "run": Run} */
    json_t *o = json_object();
    json_object_set(o, "message", j->reply_to);
    json_object_set_new(o, "run", run_json(&j->run));
    http_respond_json(r, 202, o);
    break;
  }
  default: break;
  }
  start_job_free(j);
}

/* The first of keys (NULL-terminated) present in p, as a C string (util/jsonx.h):
 * 0 and *out (NULL when none is), or JSONX_ENOT_STRING (only when strict; else such a
 * member is skipped, as WebSocket frames always were) / JSONX_ENUL with *field the key
 * at fault (a NUL character is refused, never cut short: issue 13, defect 7). */
static int first_cstr(const json_t *p, const char *const *keys, int strict, const char **out, const char **field) {
  *out = NULL;
  for (; *keys; keys++) {
    *field = *keys;
    int rc = jsonx_get_cstr(p, *keys, out);
    if (rc == JSONX_ENOT_STRING && !strict) continue;
    if (rc || *out) return rc;
  }
  return 0;
}

/* Parse the common body of execute/start/stream: {"message","agent"?,"thread_id"?,"context"?}. */
static start_job_t *start_parse(http_req_t *r, route_ctx_t *ctx, json_t *body, const char *agent_fixed) {
  const char *msg, *agent, *thread_id, *field;
  int rc = first_cstr(body, (const char *const[]){"message", "content", NULL}, 1, &msg, &field);
  if (rc) {
    router_respond_validation(r, field, jsonx_cstr_why(rc));
    return NULL;
  }
  if (!msg || !msg[strspn(msg, " \t\r\n")]) {
    router_respond_validation(r, "message", "required: the user's request");
    return NULL;
  }
  if (strlen(msg) > THREADS_CONTENT_MAX_BYTES) { /* SPEC: no cap below the body limit (threads_api.h) */
    json_t *d = json_pack("[{s:s,s:s}]", "field", field, "message", "longer than the server stores (" THREADS_FIELD_MAX_TEXT ")");
    http_respond_error(r, AGD_ETOO_LARGE, "message: longer than the server stores (" THREADS_FIELD_MAX_TEXT ")", d);
    return NULL;
  }
  if (!agent_fixed && (rc = jsonx_get_cstr(body, "agent", &agent)) != 0) {
    router_respond_validation(r, "agent", jsonx_cstr_why(rc));
    return NULL;
  }
  if (agent_fixed) agent = agent_fixed;
  if (!agent) agent = "supervisor";
  if (!agent_find(agent)) {
    router_respond_validation(r, "agent", "unknown agent (see GET /api/agents)");
    return NULL;
  }
  if ((rc = jsonx_get_cstr(body, "thread_id", &thread_id)) != 0) {
    router_respond_validation(r, "thread_id", jsonx_cstr_why(rc));
    return NULL;
  }
  if (thread_id && strlen(thread_id) >= ID_MAX) {
    http_respond_error(r, AGD_ENOT_FOUND, "thread not found", NULL);
    return NULL;
  }
  json_t *cv = json_object_get(body, "context");
  if (cv && !json_is_object(cv) && !json_is_null(cv)) {
    router_respond_validation(r, "context", "must be an object");
    return NULL;
  }
  if (jsonx_has_nul(cv)) { /* stored as JSON text, read back by agents as C strings */
    router_respond_validation(r, "context", "strings must not contain NUL characters");
    return NULL;
  }
  start_job_t *j = job_new(sizeof(*j));
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", thread_id ? thread_id : "");
  snprintf(j->agent, sizeof(j->agent), "%s", agent);
  j->message = strdup(msg);
  if (json_is_object(cv)) j->context_json = jsonx_dumps(cv);
  threads_title_from(msg, j->title, sizeof(j->title));
  return j;
}

static void start_from_request(http_req_t *r, route_ctx_t *ctx, start_mode_t mode, const char *agent_fixed) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  start_job_t *j = start_parse(r, ctx, body, agent_fixed);
  json_decref(body);
  if (!j) return;
  int rc = runs_reserve(ctx->user_id, &j->slot);
  if (rc != 0) {
    start_job_free(j);
    job_discard(j);
    if (rc == AGD_ERATE_LIMITED) respond_run_limited(r);
    else http_respond_error(r, rc, NULL, NULL);
    return;
  }
  j->mode = mode;
  start_job_run(r, j, start_done);
}

static void h_execute(http_req_t *r, route_ctx_t *ctx) { start_from_request(r, ctx, START_EXECUTE, NULL); }
static void h_start(http_req_t *r, route_ctx_t *ctx) { start_from_request(r, ctx, START_BACKGROUND, NULL); }
static void h_stream(http_req_t *r, route_ctx_t *ctx) { start_from_request(r, ctx, START_STREAM, NULL); }

static void h_execute_named(http_req_t *r, route_ctx_t *ctx) {
  const char *name = route_param(ctx, "name");
  const agent_ops_t *a = name ? agent_find(name) : NULL;
  if (!a || strcmp(name, "supervisor") == 0) {
    http_respond_error(r, AGD_ENOT_FOUND, "no such agent (see GET /api/agents)", NULL);
    return;
  }
  start_from_request(r, ctx, START_EXECUTE, a->name);
}

/* threads_api's hook: POST /api/threads/{id}/messages with "run": true.  The slot
 * first: a run refused by a limit leaves no message behind. */
static void thread_message_run(http_req_t *r, const char *user_id, const store_message_new_t *msg) {
  run_slot_t *slot;
  int rc = runs_reserve(user_id, &slot);
  if (rc != 0) {
    if (rc == AGD_ERATE_LIMITED) respond_run_limited(r);
    else http_respond_error(r, rc, NULL, NULL);
    return;
  }
  start_job_t *j = job_new(sizeof(*j));
  j->slot = slot;
  j->mode = START_THREAD_MESSAGE;
  snprintf(j->user_id, sizeof(j->user_id), "%s", user_id);
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", msg->thread_id ? msg->thread_id : "");
  snprintf(j->agent, sizeof(j->agent), "supervisor");
  snprintf(j->role, sizeof(j->role), "%s", msg->role ? msg->role : "user");
  j->message = strdup(msg->content ? msg->content : "");
  j->metadata = msg->metadata ? strdup(msg->metadata) : NULL;
  if (!j->message || (msg->metadata && !j->metadata)) abort();
  threads_title_from(j->message, j->title, sizeof(j->title));
  start_job_run(r, j, start_done);
}

/* ---- stop / status / runs ---- */

typedef struct run_get_job {
  char user_id[ID_MAX];
  char run_id[ID_MAX];
  char thread_id[ID_MAX];
  int64_t after_seq;
  int limit;
  int mode; /* 0 get, 1 events of a run, 2 stop check, 3 thread runs, 4 active runs, 5 user events */
  store_run_t run;
  store_run_list_t runs;
  store_event_list_t events;
  store_thread_t thread;
} run_get_job_t;

static int run_get_work(void *arg) {
  run_get_job_t *j = arg;
  store_t *st = g_app->store;
  switch (j->mode) {
  case 0:
  case 2: return store_run_get(st, j->user_id, j->run_id, &j->run);
  case 1: {
    int rc = store_run_get(st, j->user_id, j->run_id, &j->run);
    if (rc == 0) rc = store_event_list(st, j->user_id, j->after_seq, j->run_id, NULL, j->limit, &j->events);
    return rc;
  }
  case 3: {
    int rc = store_thread_get(st, j->user_id, j->thread_id, &j->thread);
    if (rc == 0) rc = store_run_list(st, j->user_id, j->thread_id, 0, 100, 0, &j->runs);
    return rc;
  }
  case 4: return store_run_list(st, j->user_id, NULL, 1, 100, 0, &j->runs);
  case 5:
    return store_event_list(st, j->user_id, j->after_seq, j->run_id[0] ? j->run_id : NULL,
                            j->thread_id[0] ? j->thread_id : NULL, j->limit, &j->events);
  default: return AGD_EINTERNAL;
  }
}

static void run_get_free(run_get_job_t *j) {
  store_run_dispose(&j->run);
  store_run_list_dispose(&j->runs);
  store_event_list_free(&j->events);
  store_thread_dispose(&j->thread);
}

static json_t *runs_array(const store_run_list_t *l) {
  json_t *a = json_array();
  for (size_t i = 0; i < l->n; i++) json_array_append_new(a, run_json(&l->items[i]));
  return a;
}

static void run_get_done(http_req_t *r, void *arg, int rc) {
  run_get_job_t *j = arg;
  if (rc != 0) {
    http_respond_error(r, rc, rc == AGD_ENOT_FOUND ? (j->mode == 3 ? "thread not found" : "run not found") : NULL,
                       NULL);
  } else if (j->mode == 0) {
    http_respond_json(r, 200, run_json(&j->run));
  } else if (j->mode == 1) {
    json_t *o = json_pack("{s:s,s:o,s:b}", "run_id", j->run_id, "events", events_json(&j->events), "has_more",
                          j->events.has_more);
    http_respond_json(r, 200, o);
  } else if (j->mode == 2) {
    /* stop: still active → cancel and answer once it ended; else 409. */
    if (strcmp(j->run.status, "queued") != 0 && strcmp(j->run.status, "running") != 0 &&
        strcmp(j->run.status, "waiting") != 0) {
      http_respond_error(r, AGD_ECONFLICT, "run already finished", NULL);
    } else if (runs_cancel(j->user_id, j->run_id) != 0) {
      /* Not active in this process (it ended between the read and now). */
      http_respond_error(r, AGD_ECONFLICT, "run already finished", NULL);
    } else {
      wait_ctx_t *w = calloc(1, sizeof(*w));
      if (!w) abort();
      w->req = r;
      w->stop = 1;
      snprintf(w->user_id, sizeof(w->user_id), "%s", j->user_id);
      snprintf(w->run_id, sizeof(w->run_id), "%s", j->run_id);
      if (runs_watch(j->user_id, j->run_id, on_run_done, w) != 0) answer_when_done(w, NULL);
    }
  } else if (j->mode == 3 || j->mode == 4) {
    json_t *o = json_pack("{s:o,s:I,s:b}", "runs", runs_array(&j->runs), "total", (json_int_t)j->runs.total,
                          "has_more", (int)(j->runs.total > (long)j->runs.n));
    http_respond_json(r, 200, o);
  } else {
    json_t *o = json_pack("{s:o,s:b}", "events", events_json(&j->events), "has_more", j->events.has_more);
    http_respond_json(r, 200, o);
  }
  run_get_free(j);
}

static int id_ok(const char *id) { return id && id[0] && strlen(id) < ID_MAX; }

static void h_stop(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  const char *run_id, *field;
  int rc = first_cstr(body, (const char *const[]){"run_id", "agent_id", NULL}, 1, &run_id, &field);
  if (rc) {
    json_decref(body);
    router_respond_validation(r, field, jsonx_cstr_why(rc));
    return;
  }
  if (!run_id) {
    json_decref(body);
    router_respond_validation(r, "run_id", "required");
    return;
  }
  if (!id_ok(run_id)) {
    json_decref(body);
    http_respond_error(r, AGD_ENOT_FOUND, "run not found", NULL);
    return;
  }
  run_get_job_t *j = job_new(sizeof(*j));
  j->mode = 2;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
  json_decref(body);
  job_run(r, j, run_get_work, run_get_done);
}

static void h_status(http_req_t *r, route_ctx_t *ctx) {
  const char *run_id;
  run_get_job_t *j = job_new(sizeof(*j));
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  if (http_req_query(r, "run_id", &run_id) && run_id[0]) {
    if (!id_ok(run_id)) {
      run_get_free(j);
      job_discard(j);
      http_respond_error(r, AGD_ENOT_FOUND, "run not found", NULL);
      return;
    }
    j->mode = 0;
    snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
  } else {
    j->mode = 4;
  }
  job_run(r, j, run_get_work, run_get_done);
}

static void h_run_get(http_req_t *r, route_ctx_t *ctx) {
  const char *id = route_param(ctx, "id");
  if (!id_ok(id)) {
    http_respond_error(r, AGD_ENOT_FOUND, "run not found", NULL);
    return;
  }
  run_get_job_t *j = job_new(sizeof(*j));
  j->mode = 0;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", id);
  job_run(r, j, run_get_work, run_get_done);
}

static void h_run_events(http_req_t *r, route_ctx_t *ctx) {
  const char *id = route_param(ctx, "id");
  long long after, limit;
  if (query_int(r, "after_seq", 0, INT64_MAX, 0, &after) || query_int(r, "limit", 1, EVENTS_PAGE_MAX, 100, &limit))
    return;
  if (!id_ok(id)) {
    http_respond_error(r, AGD_ENOT_FOUND, "run not found", NULL);
    return;
  }
  run_get_job_t *j = job_new(sizeof(*j));
  j->mode = 1;
  j->after_seq = after;
  j->limit = (int)limit;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", id);
  job_run(r, j, run_get_work, run_get_done);
}

static void h_thread_runs(http_req_t *r, route_ctx_t *ctx) {
  const char *id = route_param(ctx, "id");
  if (!id_ok(id)) {
    http_respond_error(r, AGD_ENOT_FOUND, "thread not found", NULL);
    return;
  }
  run_get_job_t *j = job_new(sizeof(*j));
  j->mode = 3;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", id);
  job_run(r, j, run_get_work, run_get_done);
}

/* ---- events over REST and SSE ---- */

static int filter_param(http_req_t *r, const char *name, char *out, size_t cap) {
  const char *v;
  out[0] = 0;
  if (!http_req_query(r, name, &v) || !v[0]) return 0;
  if (strlen(v) >= cap) {
    char msg[96];
    snprintf(msg, sizeof(msg), "%s: not a valid id", name);
    http_respond_error(r, AGD_EBAD_REQUEST, msg, NULL);
    return -1;
  }
  snprintf(out, cap, "%s", v);
  return 0;
}

static void h_events(http_req_t *r, route_ctx_t *ctx) {
  long long after, limit;
  run_get_job_t *j = job_new(sizeof(*j));
  if (query_int(r, "after_seq", 0, INT64_MAX, 0, &after) || query_int(r, "limit", 1, EVENTS_PAGE_MAX, 100, &limit) ||
      filter_param(r, "run_id", j->run_id, sizeof(j->run_id)) ||
      filter_param(r, "thread_id", j->thread_id, sizeof(j->thread_id))) {
    run_get_free(j);
    job_discard(j);
    return;
  }
  j->mode = 5;
  j->after_seq = after;
  j->limit = (int)limit;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  job_run(r, j, run_get_work, run_get_done);
}

static void h_event_types(http_req_t *r, route_ctx_t *ctx) {
  json_t *a = json_array();
  for (int t = 0; t < EV__COUNT; t++) json_array_append_new(a, json_string(event_type_name((event_type_t)t)));
  http_respond_json(r, 200, json_pack("{s:o}", "event_types", a));
}

static void h_events_stream(http_req_t *r, route_ctx_t *ctx) {
  char run_id[ID_MAX], thread_id[ID_MAX];
  long long after = -1;
  if (filter_param(r, "run_id", run_id, sizeof(run_id)) || filter_param(r, "thread_id", thread_id, sizeof(thread_id)))
    return;
  /* SPEC §4: Last-Event-ID or ?after_seq= replays stored events first. */
  slice_t last;
  if (http_req_header(r, "last-event-id", &last) && last.n > 0 && last.n < 20) {
    char tmp[24];
    memcpy(tmp, last.p, last.n);
    tmp[last.n] = 0;
    long long v;
    if (query_parse_int(tmp, 0, INT64_MAX, &v) != 0) {
      http_respond_error(r, AGD_EBAD_REQUEST, "Last-Event-ID: must be an event seq", NULL);
      return;
    }
    after = v;
  } else if (query_int(r, "after_seq", 0, INT64_MAX, -1, &after)) {
    return;
  }
  conn_t *c = http_req_conn(r);
  char uid[ID_MAX];
  snprintf(uid, sizeof(uid), "%s", ctx->user_id); /* ctx lives in the request, which sse_start may free */
  conn_set_user_id(c, uid);
  api_sse_auth_watch(r, ctx); /* the stream ends with its token (revoked, expired) */
  sse_start(r);
  events_subscribe(c, uid, run_id[0] ? run_id : NULL, thread_id[0] ? thread_id : NULL, after, 0);
}

/* ---- WebSocket frames ---- */

static void ws_start_done(http_req_t *unused, void *arg, int rc) {
  start_job_t *j = arg;
  conn_t *c = server_conn_lookup(g_app->srv, j->conn_id);
  if (rc != 0) {
    if (c) api_ws_send_error(c, agd_err_code(rc), rc == AGD_ENOT_FOUND ? "thread not found" : "could not start the run",
                             j->reply_to);
    start_job_free(j);
    return;
  }
  json_t *ctx = j->context_json ? json_loads(j->context_json, 0, NULL) : NULL;
  run_request_t req = {.run_id = j->run_id, .user_id = j->user_id, .thread_id = j->thread_id, .agent = j->agent,
                       .input = j->message, .context = ctx};
  int src = runs_submit(j->slot, &req, NULL, NULL);
  j->slot = NULL;
  json_decref(ctx);
  if (c) {
    if (src != 0) {
      api_ws_send_error(c, agd_err_code(src), src == AGD_ERATE_LIMITED ? "too many runs: wait for one to finish"
                                                                       : "could not start the run",
                        j->reply_to);
    } else {
      api_ws_remember_run(c, j->run_id);
      json_t *o = json_pack("{s:s,s:{s:s,s:s,s:s},s:f}", "type", "message_received", "data", "message_id",
                            j->message_id, "thread_id", j->thread_id, "run_id", j->run_id, "timestamp", time_now());
      if (j->reply_to) json_object_set(o, "reply_to", j->reply_to);
      api_ws_send_json(c, o);
    }
  }
  start_job_free(j);
}

/* user_message and start_agent (and their aliases); arg is non-NULL for the
 * start_agent family, whose payload may choose the agent. */
static void ws_start_run(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  int agent_frame = arg != NULL;
  json_t *p = ws_frame_payload(frame);
  static const char *const user_keys[] = {"content", "text", "message", NULL};
  static const char *const agent_keys[] = {"user_request", "content", "message", "text", NULL};
  static const char *const agent_name_keys[] = {"agent", "agent_name", NULL};
  const char *text, *agent = NULL, *thread_id, *field;
  char m[160];
  int rc = first_cstr(p, agent_frame ? agent_keys : user_keys, 0, &text, &field);
  if (rc == 0 && agent_frame) rc = first_cstr(p, agent_name_keys, 0, &agent, &field);
  if (rc == 0) rc = first_cstr(p, (const char *const[]){"thread_id", NULL}, 0, &thread_id, &field);
  if (rc == 0 && jsonx_has_nul(json_object_get(p, "context"))) rc = JSONX_ENUL, field = "context";
  if (rc) { /* SPEC §6: a field error, not INVALID_JSON ("\u0000" is valid JSON) */
    snprintf(m, sizeof m, "%s: %s", field, jsonx_cstr_why(rc));
    api_ws_send_error(c, "VALIDATION_ERROR", m, id);
    return;
  }
  if (!text || !text[strspn(text, " \t\r\n")]) {
    api_ws_send_error(c, "VALIDATION_ERROR", "content: required", id);
    return;
  }
  /* No content cap of its own: the frame limit bounds it (SPEC conventions). */
  if (!agent) agent = "supervisor";
  if (!agent_find(agent)) {
    api_ws_send_error(c, "VALIDATION_ERROR", "agent: unknown agent", id);
    return;
  }
  if (thread_id && strlen(thread_id) >= ID_MAX) {
    api_ws_send_error(c, "NOT_FOUND", "thread not found", id);
    return;
  }
  run_slot_t *slot;
  rc = runs_reserve(conn_user_id(c), &slot);
  if (rc != 0) {
    api_ws_send_error(c, agd_err_code(rc),
                      rc == AGD_ERATE_LIMITED ? "too many runs: wait for one to finish" : "could not start the run", id);
    return;
  }
  start_job_t *j = job_new(sizeof(*j));
  j->slot = slot;
  j->mode = START_WS;
  j->conn_id = conn_id(c);
  j->reply_to = id ? json_incref(id) : NULL;
  snprintf(j->user_id, sizeof(j->user_id), "%s", conn_user_id(c));
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", thread_id ? thread_id : "");
  snprintf(j->agent, sizeof(j->agent), "%s", agent);
  j->message = strdup(text);
  json_t *cv = json_object_get(p, "context");
  if (json_is_object(cv)) j->context_json = jsonx_dumps(cv);
  threads_title_from(text, j->title, sizeof(j->title));
  start_job_run(NULL, j, ws_start_done);
}

static void ws_stop(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  json_t *p = ws_frame_payload(frame);
  const char *run_id, *field;
  char latest[ID_MAX];
  if (first_cstr(p, (const char *const[]){"run_id", NULL}, 0, &run_id, &field) != 0) {
    api_ws_send_error(c, "VALIDATION_ERROR", "run_id: must not contain NUL characters", id);
    return;
  }
  if (!run_id) run_id = api_ws_last_run(c); /* SPEC §6: default, the connection's latest */
  if (!run_id) {
    if (!runs_latest_active(conn_user_id(c), latest, sizeof(latest))) {
      api_ws_send_error(c, "NOT_FOUND", "no active run to stop", id);
      return;
    }
    run_id = latest;
  }
  if (strlen(run_id) >= ID_MAX || runs_cancel(conn_user_id(c), run_id) != 0) {
    api_ws_send_error(c, "NOT_FOUND", "run not found or already finished", id);
    return;
  }
  /* The run emits agent_stopped itself when it sees the flag. */
  json_t *o = json_pack("{s:s,s:{s:s,s:s},s:f}", "type", "stop_requested", "data", "run_id", run_id, "status",
                        "cancelling", "timestamp", time_now());
  if (id) json_object_set(o, "reply_to", id);
  api_ws_send_json(c, o);
}

static void ws_resume(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  json_t *p = ws_frame_payload(frame);
  json_t *v = json_object_get(p, "after_seq");
  if (!v) v = json_object_get(p, "last_seq");
  if (!json_is_integer(v) || json_integer_value(v) < 0) {
    api_ws_send_error(c, "VALIDATION_ERROR", "after_seq: required, an integer ≥ 0", id);
    return;
  }
  events_sub_t *s = api_ws_events_sub(c);
  if (!s) {
    api_ws_send_error(c, "UNAVAILABLE", "event stream not available", id);
    return;
  }
  json_t *o = json_pack("{s:s,s:{s:I},s:f}", "type", "resume_started", "data", "after_seq",
                        (json_int_t)json_integer_value(v), "timestamp", time_now());
  if (id) json_object_set(o, "reply_to", id);
  api_ws_send_json(c, o);
  events_resume(s, (int64_t)json_integer_value(v));
}

/* SPEC §6 run frames, each with its aliases. */
static void runs_register_ws_frames(void) {
  static const char *const user_types[] = {"user_message", "message", "user", "chat", "chat_message", "stream_request",
                                           NULL};
  static const char *const agent_types[] = {"start_agent", "execute_agent", "agent_request", NULL};
  static const char *const stop_types[] = {"stop_agent", "cancel_agent", NULL};
  static const char *const resume_types[] = {"resume", "session_restore", NULL};
  static const int agent_frame = 1;
  if (ws_frames_add_all(user_types, ws_start_run, NULL) || ws_frames_add_all(agent_types, ws_start_run, &agent_frame) ||
      ws_frames_add_all(stop_types, ws_stop, NULL) || ws_frames_add_all(resume_types, ws_resume, NULL))
    abort(); /* a type claimed twice: a bug caught at start */
}

void api_runs_register(void) {
  threads_run_starter = thread_message_run;
  runs_register_ws_frames();
  router_add("/api/agents/execute", HTTP_M_POST, h_execute, 0);
  router_add("/api/agents/start", HTTP_M_POST, h_start, 0);
  router_add("/api/agents/stop", HTTP_M_POST, h_stop, 0);
  router_add("/api/agents/cancel", HTTP_M_POST, h_stop, 0);
  router_add("/api/agents/status", HTTP_M_GET, h_status, 0);
  router_add("/api/agents/stream", HTTP_M_POST, h_stream, 0);
  router_add("/api/agents/{name}", HTTP_M_POST, h_execute_named, 0);
  router_add("/api/chat/stream", HTTP_M_POST, h_stream, 0);
  router_add("/api/runs/{id}", HTTP_M_GET, h_run_get, 0);
  router_add("/api/runs/{id}/events", HTTP_M_GET, h_run_events, 0);
  router_add("/api/threads/{id}/runs", HTTP_M_GET, h_thread_runs, 0);
  router_add("/api/events", HTTP_M_GET, h_events, 0);
  router_add("/api/events/types", HTTP_M_GET, h_event_types, 0);
  router_add("/api/events/stream", HTTP_M_GET, h_events_stream, 0);
}
