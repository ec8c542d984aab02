/* core/runs.c — see runs.h.
 *
 * State shared with run threads lives under `mu`: the FIFO queue, the list of
 * active runs (queued or running), per-user counts.  A run's end is announced
 * to the loop through core/events (events_post_run_end), so it arrives after
 * the run's last event; watchers (waiting HTTP requests) are called there and
 * the run is freed there.
 */
#include "core/runs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agents/agent.h"
#include "core/approvals.h"
#include "core/events.h"
#include "core/messages.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "util/err.h"
#include "util/xalloc.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "llm/llm.h"
#include "store/store.h"

/* Run threads' nice value, relative to the loop and the event writer (0).  Agents
 * compute in bursts; at nice 5 an event's writer and loop still queued behind them
 * for a core (emit → receipt p50 0.9 ms at 50 runs/s); at 15 they preempt at once
 * (p50 0.15 ms) and runs/s does not drop: the CPU they leave is used. */
#define RUN_THREAD_NICE 15

typedef struct watcher {
  struct watcher *next;
  run_done_cb cb;
  void *arg;
} watcher_t;

typedef struct run {
  struct run *qnext;            /* FIFO queue link (mu) */
  struct run *prev, *next;      /* active list (mu) */
  char id[ID_MAX], user_id[ID_MAX], thread_id[ID_MAX], agent[32];
  char *input;
  json_t *context;
  atomic_int cancel;
  double deadline;
  double submitted_at;
  int started;                  /* mu */
  watcher_t *watchers;          /* loop thread only */
  /* outcome, written by the run thread before the end is posted */
  char status[16];
  int end_recorded;             /* the status row of the end is queued (run_record_end) */
  char *response;
  /* approvals (SPEC §11) */
  json_t *resume;               /* checkpoint to continue from after a restart (NULL: from the start) */
  atomic_int waiting;           /* waiting for the user's decision on a tool call */
  int parked;                   /* stopped by a shutdown while waiting: it resumes at the next start, so
                                   nothing of its end is emitted or stored (run thread only) */
  agent_run_params_t params;    /* what the agent runs with (its deadline moves past the waits) */
  agent_usage_t usage;          /* the run's model usage (agent_run_top keeps it up to date) */
  store_workload_t *calls;      /* --record-usage: each model call as a workload record (SPEC §8) */
  size_t n_calls, cap_calls;
} run_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;      /* queue not empty / shutting down */
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER; /* a run ended */
static run_t *q_head, *q_tail;
static run_t active = {.prev = &active, .next = &active};
/* Slots taken by runs_reserve whose run is not submitted yet: they count
 * against the user's limits while the message and the run row are stored. */
static run_t reserved = {.prev = &reserved, .next = &reserved};
static size_t n_active, n_threads, n_idle;
static pthread_t *threads;
static size_t threads_cap;
static int shutting_down;
static int initialised;

static store_t *g_store;
static llm_t *g_llm;
static const config_t *g_cfg;
static ratelimit_t *start_rate; /* SPEC §9: 3 runs started per second per user */

/* ---- per-user counts (mu) ---- */

static size_t user_active_locked(const char *user_id) {
  size_t n = 0;
  for (run_t *r = active.next; r != &active; r = r->next)
    if (strcmp(r->user_id, user_id) == 0) n++;
  for (run_t *r = reserved.next; r != &reserved; r = r->next)
    if (strcmp(r->user_id, user_id) == 0) n++;
  return n;
}

static void list_unlink(run_t *r) {
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void list_append(run_t *list, run_t *r) {
  r->prev = list->prev;
  r->next = list;
  list->prev->next = r;
  list->prev = r;
}

int runs_reserve(const char *user_id, run_slot_t **slot_out) {
  *slot_out = NULL;
  if (!initialised || shutting_down) return AGD_EUNAVAILABLE;
  run_t *r = calloc(1, sizeof(*r));
  if (!r) abort();
  snprintf(r->user_id, sizeof(r->user_id), "%s", user_id);
  pthread_mutex_lock(&mu);
  int ok = 1;
  if (g_cfg->rate_per_s > 0) {
    /* concurrency first: a refused start must not spend a start-rate token */
    ok = user_active_locked(user_id) < RUNS_PER_USER_DEFAULT;
    ratelimit_info_t info;
    if (ok) ok = ratelimit_try_take(start_rate, user_id, time_now(), &info);
  }
  if (ok) list_append(&reserved, r);
  pthread_mutex_unlock(&mu);
  if (!ok) {
    free(r);
    return AGD_ERATE_LIMITED;
  }
  *slot_out = r;
  return 0;
}

void runs_release(run_slot_t *slot) {
  if (!slot) return;
  pthread_mutex_lock(&mu);
  list_unlink(slot);
  pthread_mutex_unlock(&mu);
  free(slot);
}

/* ---- the emitter the agents use ---- */

static int run_emit(void *arg, event_type_t type, const char *agent_name, json_t *data) {
  run_t *r = arg;
  if (r->parked) { /* it goes on after the restart: no end now */
    json_decref(data);
    return 0;
  }
  int64_t seq = events_emit(r->user_id, r->id, r->thread_id, agent_name, type, data);
  return seq > 0 ? 0 : (int)seq;
}

/* ---- the run's status row, written behind its events (events_store_later) ---- */

typedef struct status_write {
  char user_id[ID_MAX], run_id[ID_MAX], status[16];
  double started_at, completed_at;
  char *result, *error; /* JSON texts or NULL */
  char *usage;          /* the end only: the usage JSON text */
  store_workload_t *calls; /* the end only, --record-usage: the run's model calls */
  size_t n_calls;
} status_write_t;

static int write_status(store_t *st, void *arg) {
  status_write_t *w = arg;
  int rc = store_run_set_status(st, w->user_id, w->run_id, w->status, w->started_at, w->completed_at, w->result,
                                w->error);
  if (rc == 0 && w->usage) rc = store_run_set_usage(st, w->user_id, w->run_id, w->usage);
  if (rc != 0) log_warn("runs: cannot store status %s of %s: %s", w->status, w->run_id, agd_err_code(rc));
  /* The store's insert, not workloads_insert: that one holds the user's cache entry
   * while it writes, and an upload of the same user holding the entry while it waits
   * for the write lock this transaction holds would wait forever.  The cache sees the
   * new rows by their seq on its next use (workloads/cache.c entry_sync). */
  if (rc == 0 && w->n_calls > 0) {
    int wrc = store_workload_insert(st, w->user_id, w->calls, w->n_calls, NULL, NULL);
    if (wrc != 0) log_warn("runs: cannot record the model calls of %s: %s", w->run_id, agd_err_code(wrc));
  }
  return rc;
}

static void free_status(void *arg) {
  status_write_t *w = arg;
  free(w->result);
  free(w->error);
  free(w->usage);
  free(w->calls);
  free(w);
}

/* Queue the run's status row; result/error (malloc'd JSON texts or NULL) are taken. */
static status_write_t *status_write_new(run_t *r, const char *status, double started_at, double completed_at,
                                        char *result, char *error) {
  status_write_t *w = calloc(1, sizeof(*w));
  if (!w) abort();
  snprintf(w->user_id, sizeof(w->user_id), "%s", r->user_id);
  snprintf(w->run_id, sizeof(w->run_id), "%s", r->id);
  snprintf(w->status, sizeof(w->status), "%s", status);
  w->started_at = started_at;
  w->completed_at = completed_at;
  w->result = result;
  w->error = error;
  return w;
}

static void run_store_status(run_t *r, const char *status, double started_at, double completed_at, char *result,
                             char *error) {
  events_store_later(r->user_id, write_status, free_status,
                     status_write_new(r, status, started_at, completed_at, result, error));
}

/* The Run's "usage" object (SPEC §11; docs/protocol.md). */
static json_t *usage_json(const agent_usage_t *u) {
  return json_pack("{s:I,s:I,s:I,s:f,s:I}", "prompt_tokens", (json_int_t)u->prompt_tokens, "completion_tokens",
                   (json_int_t)u->completion_tokens, "total_tokens",
                   (json_int_t)(u->prompt_tokens + u->completion_tokens), "cost_usd",
                   (double)(long long)(u->cost_usd * 1e8 + 0.5) / 1e8, "llm_calls", (json_int_t)u->llm_calls);
}

/* agent_llm_call_fn (--record-usage): keep the call as one of the user's workload
 * records; they are written with the run's end. */
static void run_on_llm_call(void *arg, const llm_call_usage_t *u, double cost_usd) {
  run_t *r = arg;
  r->calls = xgrow(r->calls, r->n_calls, &r->cap_calls, sizeof(*r->calls));
  store_workload_t *w = &r->calls[r->n_calls++];
  memset(w, 0, sizeof(*w));
  w->timestamp = u->started_at;
  snprintf(w->model, sizeof(w->model), "%s", u->model ? u->model : "");
  snprintf(w->provider, sizeof(w->provider), "%s", u->provider ? u->provider : "");
  w->prompt_tokens = u->prompt_tokens > 0 ? u->prompt_tokens : 0;
  w->completion_tokens = u->completion_tokens > 0 ? u->completion_tokens : 0;
  w->latency_ms = u->latency_ms > 0 ? u->latency_ms : 0;
  w->cost_usd = cost_usd > 0 ? cost_usd : 0;
  w->is_error = u->finish == LLM_FINISH_ERROR;
  snprintf(w->feature, sizeof(w->feature), "agentd");
}

/* The answer becomes the thread's assistant message: its id now, its row through
 * the one message path (core/messages.h) behind the events already emitted, so
 * before agent_response reaches anyone.  What the store would refuse is refused
 * here, while the run can still say so. */
static int run_persist(void *arg, const char *content, char *message_id) {
  run_t *r = arg;
  char id[ID_MAX];
  id_new(id, "msg");
  messages_write_t w = {.user_id = r->user_id,
                        .msg = {.thread_id = r->thread_id,
                                .role = "assistant",
                                .content = content,
                                .run_id = r->id,
                                .id = id}};
  int rc = messages_write(&w);
  if (rc == 0) snprintf(message_id, ID_MAX, "%s", id);
  return rc;
}

/* ---- approvals of tool calls (SPEC §11; core/approvals.h) ---- */

static int run_needs_approval(void *arg, const char *tool_name) {
  return approvals_tool_needs(g_cfg->approve_tools, tool_name);
}

/* The pending approval's row, written in the event writer's group commit before
 * approval_required: a client that sees the event can decide at once. */
static int write_approval(store_t *st, void *arg) {
  const store_approval_t *a = arg;
  int rc = store_approval_create(st, a);
  if (rc != 0) log_warn("runs: cannot store the approval %s of %s: %s", a->call_id, a->run_id, agd_err_code(rc));
  return rc;
}

static void free_approval(void *arg) {
  store_approval_t *a = arg;
  store_approval_dispose(a);
  free(a);
}

/* A stored approval's outcome as the agent sees it: 1 decided (out set), 0 pending. */
static int stored_outcome(const store_approval_t *a, agent_approval_t *out, char *reason, size_t cap) {
  if (strcmp(a->status, "pending") == 0) return 0;
  *out = strcmp(a->status, "approved") == 0 ? AGENT_APPROVAL_APPROVED
         : strcmp(a->status, "denied") == 0 ? AGENT_APPROVAL_DENIED
                                             : AGENT_APPROVAL_TIMED_OUT;
  if (reason && cap) snprintf(reason, cap, "%s", a->reason ? a->reason : "");
  return 1;
}

/* The waiter's end of a wait that expired or was cancelled: the approval becomes
 * expired, unless a decision was stored first (then that decision holds: the user
 * was told 200).  1 when a decision was found (out set), 0 when it expired now. */
static int expire_or_decided(run_t *r, const char *call_id, const char *why, agent_approval_t *out, char *reason,
                             size_t cap) {
  store_approval_t a;
  int rc = store_approval_decide(g_store, r->user_id, r->id, call_id, "expired", why, time_now(), &a);
  int decided = rc == AGD_ECONFLICT && stored_outcome(&a, out, reason, cap);
  if (rc != 0 && rc != AGD_ECONFLICT)
    log_warn("runs: cannot expire the approval %s of %s: %s", call_id, r->id, agd_err_code(rc));
  store_approval_dispose(&a);
  return decided;
}

static int run_await_approval(void *arg, const agent_approval_req_t *req, agent_approval_t *out, char *reason,
                              size_t cap) {
  run_t *r = arg;
  if (reason && cap) reason[0] = 0;
  if (!req || !req->call_id || !req->tool_name || !req->call_id[0] || strlen(req->call_id) >= STORE_CALL_ID_MAX ||
      strlen(req->tool_name) >= STORE_TOOL_NAME_MAX)
    return AGD_EVALIDATION;
  double t0 = time_now(), expires_at;
  /* Registered before the approval can be decided (its row is not written yet, or
   * is read below), so no decision slips between. */
  approval_wait_t *w = approvals_register(r->id, req->call_id);
  if (!req->resumed) {
    store_approval_t *a = calloc(1, sizeof(*a));
    if (!a) abort();
    snprintf(a->run_id, sizeof(a->run_id), "%s", r->id);
    snprintf(a->user_id, sizeof(a->user_id), "%s", r->user_id);
    snprintf(a->call_id, sizeof(a->call_id), "%s", req->call_id);
    snprintf(a->tool_name, sizeof(a->tool_name), "%s", req->tool_name);
    a->parameters = json_is_object(req->parameters) ? jsonx_dumps(req->parameters) : strdup("{}");
    a->checkpoint = req->checkpoint ? jsonx_dumps(req->checkpoint) : NULL;
    if (!a->parameters) abort();
    a->created_at = t0;
    a->expires_at = expires_at = t0 + g_cfg->approval_timeout;
    atomic_store(&r->waiting, 1);
    events_store_later(r->user_id, write_approval, free_approval, a);
    json_t *params = json_is_object(req->parameters) ? json_deep_copy(req->parameters) : json_object();
    json_t *data = json_pack("{s:s,s:s,s:o}", "call_id", req->call_id, "tool_name", req->tool_name, "parameters",
                             params);
    int rc = run_emit(r, EV_APPROVAL_REQUIRED, req->agent_name ? req->agent_name : r->agent, data);
    if (rc != 0) {
      atomic_store(&r->waiting, 0);
      approvals_unregister(w);
      return rc;
    }
  } else {
    /* Resumed after a restart: the row was stored and the event sent before it. */
    store_approval_t a;
    int rc = store_approval_get(g_store, r->user_id, r->id, req->call_id, &a);
    if (rc != 0) {
      approvals_unregister(w);
      return rc;
    }
    expires_at = a.expires_at;
    int decided = stored_outcome(&a, out, reason, cap);
    if (decided) approvals_preset(w, *out == AGENT_APPROVAL_APPROVED, a.reason);
    store_approval_dispose(&a);
    if (decided && *out == AGENT_APPROVAL_TIMED_OUT) {
      approvals_unregister(w);
      return 0;
    }
    atomic_store(&r->waiting, 1);
  }
  int approved = 0, cancel_value = 0;
  approval_wait_end_t end = approvals_wait(w, expires_at, &r->cancel, &approved, reason, cap, &cancel_value);
  approvals_unregister(w);
  atomic_store(&r->waiting, 0);
  int rc = 0;
  if (end == APPROVAL_WAIT_DECIDED) {
    *out = approved ? AGENT_APPROVAL_APPROVED : AGENT_APPROVAL_DENIED;
  } else if (end == APPROVAL_WAIT_EXPIRED) {
    if (!expire_or_decided(r, req->call_id, "approval_timeout", out, reason, cap)) *out = AGENT_APPROVAL_TIMED_OUT;
  } else if (cancel_value == 2) {
    /* A shutdown: the approval stays pending and the run resumes at the next start. */
    r->parked = 1;
    rc = AGD_ECANCELLED;
  } else {
    expire_or_decided(r, req->call_id, "cancelled", out, reason, cap);
    rc = AGD_ECANCELLED;
  }
  /* The time spent waiting for a person does not count against the run's deadline. */
  if (r->params.deadline > 0) r->params.deadline += time_now() - t0;
  return rc;
}

/* ---- the end of a run, on the loop ---- */

static void on_run_end(void *arg) {
  run_t *r = arg;
  for (watcher_t *w = r->watchers, *n; w; w = n) {
    n = w->next;
    w->cb(w->arg, r->id, r->status, r->response);
    free(w);
  }
  free(r->input);
  free(r->response);
  free(r->calls);
  json_decref(r->context);
  json_decref(r->resume);
  free(r);
}

static char *json_text(json_t *v) {
  if (!v) return NULL;
  char *s = jsonx_dumps(v);
  return s;
}

/* The run's status for outcome rc (SPEC §4), filling *error when it says why. */
static const char *run_outcome(run_t *r, int rc, json_t **error) {
  /* Cut short by a shutdown: like a run found in flight at start, it failed. */
  int interrupted = rc == AGD_ECANCELLED && atomic_load(&r->cancel) == 2;
  if (interrupted && !*error)
    *error = json_pack("{s:s,s:s}", "error_message", "the server stopped while this run was in flight", "error_code",
                       "INTERRUPTED");
  if (rc == AGD_ETIMEOUT && !*error)
    *error = json_pack("{s:s,s:s}", "error_message", "run exceeded its deadline", "error_code", "TIMEOUT");
  if (rc != 0 && rc != AGD_ECANCELLED && rc != AGD_ETIMEOUT && !*error)
    *error = json_pack("{s:s,s:s}", "error_message", "agent failed", "error_code", agd_err_code(rc));
  return rc == 0 ? "completed"
         : interrupted ? "failed"
         : (rc == AGD_ECANCELLED || rc == AGD_ETIMEOUT) ? "cancelled"
                                                           : "failed";
}

/* Record the run's end (status row queued behind its events); error is taken. */
static void run_record_end(run_t *r, int rc, const json_t *result, json_t *error) {
  if (r->parked) { /* its row stays running, its approval pending: resumed at the next start */
    snprintf(r->status, sizeof(r->status), "failed");
    r->end_recorded = 1;
    json_decref(error);
    return;
  }
  const char *status = run_outcome(r, rc, &error);
  snprintf(r->status, sizeof(r->status), "%s", status);
  r->end_recorded = 1;
  status_write_t *w = status_write_new(r, status, 0, time_now(), json_text((json_t *)result), json_text(error));
  json_t *u = usage_json(&r->usage);
  w->usage = json_text(u);
  json_decref(u);
  /* the calls go with the end's row, in its transaction (events_store_later) */
  w->calls = r->calls;
  w->n_calls = r->n_calls;
  r->calls = NULL;
  r->n_calls = r->cap_calls = 0;
  events_store_later(r->user_id, write_status, free_status, w);
  json_decref(error);
}

/* agent_final_fn: the run's last event is about to be emitted; its end goes to
 * the store first, so a client that sees that event finds the run ended. */
static void run_on_final(void *arg, event_type_t type, const json_t *data) {
  run_t *r = arg;
  int rc = 0;
  json_t *error = NULL;
  if (type == EV_AGENT_ERROR) {
    rc = AGD_EINTERNAL;
    error = json_pack("{s:O?,s:O?}", "error_message", json_object_get(data, "error_message"), "error_code",
                      json_object_get(data, "error_code"));
  } else if (type == EV_AGENT_STOPPED) {
    const char *reason = jsonx_get_str(data, "reason");
    rc = reason && strcmp(reason, "timeout") == 0 ? AGD_ETIMEOUT : AGD_ECANCELLED;
  }
  run_record_end(r, rc, type == EV_AGENT_COMPLETED ? json_object_get(data, "result") : NULL, error);
}

/* Emit one of the run's possible last events outside agent_run_top (which tells
 * run_on_final itself): the same record of the end, then the event. */
static void run_emit_final(run_t *r, event_type_t type, json_t *data) {
  if (data) run_on_final(r, type, data);
  run_emit(r, type, r->agent, data);
}

static void run_execute(run_t *r) {
  const agent_ops_t *ops = agent_find(r->agent);
  double now = time_now();
  json_t *result = NULL, *error = NULL;
  char *response = NULL;
  int rc;
  if (!ops) {
    rc = AGD_EVALIDATION;
    run_emit_final(r, EV_AGENT_ERROR, json_pack("{s:s,s:s,s:s}", "agent_name", r->agent, "error_message",
                                                "unknown agent", "error_code", "VALIDATION_ERROR"));
  } else if (atomic_load(&r->cancel)) {
    rc = AGD_ECANCELLED;
    run_emit_final(r, EV_AGENT_STOPPED, json_pack("{s:s}", "reason", "cancelled"));
  } else {
    /* A resumed run keeps its first start time. */
    run_store_status(r, "running", r->resume ? 0 : now, 0, NULL, NULL);
    r->params = (agent_run_params_t){
        .run_id = r->id,
        .user_id = r->user_id,
        .thread_id = r->thread_id,
        .input = r->input,
        .context = r->context,
        .cancel = &r->cancel,
        .deadline = r->deadline,
        .llm = g_llm,
        .store = g_store,
        .step_latency_ms = strcmp(g_cfg->llm_provider, "builtin") == 0 ? g_cfg->llm_latency_ms : 0,
        .emit = run_emit,
        .persist = run_persist,
        .on_final = run_on_final,
        .needs_approval = run_needs_approval,
        .await_approval = run_await_approval,
        .resume = r->resume,
        .max_steps = g_cfg->llm_max_steps,
        .usage = &r->usage,
        .on_llm_call = g_cfg->record_usage ? run_on_llm_call : NULL,
        .emit_arg = r,
    };
    rc = agent_run_top(ops, &r->params, &result, &response, &error);
  }
  /* Normally recorded at the final event; this covers a run that could not emit it. */
  if (!r->end_recorded) run_record_end(r, rc, result, error);
  else json_decref(error);
  json_decref(result);
  r->response = response;
  if (r->parked) return;
  metrics_add("agentd_runs_total", rc == 0 ? "state=\"completed\"" : rc == AGD_ECANCELLED || rc == AGD_ETIMEOUT ? "state=\"cancelled\"" : "state=\"failed\"", 1);
}

static void *run_thread(void *arg) {
  pthread_setname_np(pthread_self(), "agentd-run"); /* names threads in top -H and perf */
  /* Agents are throughput work; the loop and the event writer carry every event
   * to its sockets and must not wait behind them for a core (nice is per thread
   * on Linux, and raising it needs no privilege). */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), RUN_THREAD_NICE) != 0)
    log_debug("runs: cannot lower the priority of a run thread");
  /* Up to --max-runs of these threads, mostly waiting on a model: each store call takes
   * one of the store's few shared connections and gives it back (store.h), instead of
   * every thread keeping a connection of its own. */
  store_thread_borrow();
  pthread_mutex_lock(&mu);
  for (;;) {
    while (!q_head && !shutting_down) {
      n_idle++;
      pthread_cond_wait(&cv, &mu);
      n_idle--;
    }
    if (!q_head) break; /* shutting down and nothing left */
    run_t *r = q_head;
    q_head = r->qnext;
    if (!q_head) q_tail = NULL;
    r->started = 1;
    pthread_mutex_unlock(&mu);

    run_execute(r);

    pthread_mutex_lock(&mu);
    list_unlink(r);
    n_active--;
    pthread_cond_broadcast(&idle_cv);
    /* Announce the end after the run's events (same per-user order). */
    char uid[ID_MAX], rid[ID_MAX];
    snprintf(uid, sizeof(uid), "%s", r->user_id);
    snprintf(rid, sizeof(rid), "%s", r->id);
    pthread_mutex_unlock(&mu);
    events_post_run_end(uid, rid, on_run_end, r);
    pthread_mutex_lock(&mu);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* mu held. */
static void spawn_thread_locked(void) {
  if (n_threads >= (size_t)g_cfg->max_runs) return;
  if (n_threads == threads_cap) {
    threads_cap = threads_cap ? threads_cap * 2 : 16;
    threads = realloc(threads, threads_cap * sizeof(*threads));
    if (!threads) abort();
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1024 * 1024);
  if (pthread_create(&threads[n_threads], &attr, run_thread, NULL) == 0) n_threads++;
  else log_warn("runs: cannot start a run thread");
  pthread_attr_destroy(&attr);
}

/* Make r active and hand it to an idle run thread (one is started when none is idle).  mu held. */
static void enqueue_locked(run_t *r) {
  list_append(&active, r);
  n_active++;
  if (q_tail) q_tail->qnext = r;
  else q_head = r;
  q_tail = r;
  if (n_idle == 0) spawn_thread_locked();
  pthread_cond_signal(&cv);
}

int runs_submit(run_slot_t *slot, const run_request_t *req, run_done_cb done, void *done_arg) {
  if (!initialised || shutting_down) {
    runs_release(slot);
    return AGD_EUNAVAILABLE;
  }
  run_t *r = slot;
  double now = time_now();
  snprintf(r->id, sizeof(r->id), "%s", req->run_id);
  snprintf(r->thread_id, sizeof(r->thread_id), "%s", req->thread_id ? req->thread_id : "");
  snprintf(r->agent, sizeof(r->agent), "%s", req->agent ? req->agent : "supervisor");
  r->input = strdup(req->input ? req->input : "");
  r->context = req->context ? json_deep_copy(req->context) : NULL;
  r->submitted_at = now;
  r->deadline = g_cfg->run_timeout > 0 ? now + g_cfg->run_timeout : 0;
  if (done) {
    watcher_t *w = calloc(1, sizeof(*w));
    if (!w) abort();
    w->cb = done;
    w->arg = done_arg;
    r->watchers = w;
  }
  /* the limits were checked (and the start-rate token taken) by runs_reserve */
  pthread_mutex_lock(&mu);
  list_unlink(r);
  enqueue_locked(r);
  pthread_mutex_unlock(&mu);
  metrics_add("agentd_runs_started_total", NULL, 1);
  return 0;
}

static run_t *find_active_locked(const char *user_id, const char *run_id) {
  for (run_t *r = active.next; r != &active; r = r->next)
    if (strcmp(r->id, run_id) == 0 && strcmp(r->user_id, user_id) == 0) return r;
  return NULL;
}

int runs_cancel(const char *user_id, const char *run_id) {
  pthread_mutex_lock(&mu);
  run_t *r = find_active_locked(user_id, run_id);
  if (r) atomic_store(&r->cancel, 1);
  pthread_mutex_unlock(&mu);
  return r ? 0 : AGD_ENOT_FOUND;
}

int runs_watch(const char *user_id, const char *run_id, run_done_cb cb, void *arg) {
  /* Runs are freed on the loop thread (on_run_end), so a run found active here
   * stays valid for the rest of this call. */
  pthread_mutex_lock(&mu);
  run_t *r = find_active_locked(user_id, run_id);
  pthread_mutex_unlock(&mu);
  if (!r) {
    /* It may have ended but its end not yet reached the loop: look there too. */
    return AGD_ENOT_FOUND;
  }
  watcher_t *w = calloc(1, sizeof(*w));
  if (!w) abort();
  w->cb = cb;
  w->arg = arg;
  w->next = r->watchers;
  r->watchers = w;
  return 0;
}

int runs_latest_active(const char *user_id, char *run_id_out, size_t cap) {
  int found = 0;
  pthread_mutex_lock(&mu);
  for (run_t *r = active.prev; r != &active; r = r->prev)
    if (strcmp(r->user_id, user_id) == 0) {
      snprintf(run_id_out, cap, "%s", r->id);
      found = 1;
      break;
    }
  pthread_mutex_unlock(&mu);
  return found;
}

size_t runs_active_count(void) {
  pthread_mutex_lock(&mu);
  size_t n = n_active;
  pthread_mutex_unlock(&mu);
  return n;
}

static double gauge_active(void *arg) { return (double)runs_active_count(); }

/* ---- resuming the runs that waited for an approval at the last stop ---- */

typedef struct resumable {
  char user_id[ID_MAX], run_id[ID_MAX], call_id[STORE_CALL_ID_MAX];
  json_t *checkpoint; /* NULL: unreadable (the run is failed as interrupted) */
} resumable_t;

typedef struct resumables {
  resumable_t *items;
  size_t n, cap;
} resumables_t;

static void collect_pending(const store_approval_t *a, void *arg) {
  resumables_t *l = arg;
  l->items = xgrow(l->items, l->n, &l->cap, sizeof(*l->items));
  resumable_t *x = &l->items[l->n++];
  memset(x, 0, sizeof(*x));
  snprintf(x->user_id, sizeof(x->user_id), "%s", a->user_id);
  snprintf(x->run_id, sizeof(x->run_id), "%s", a->run_id);
  snprintf(x->call_id, sizeof(x->call_id), "%s", a->call_id);
  x->checkpoint = a->checkpoint ? json_loads(a->checkpoint, JSON_DECODE_ANY, NULL) : NULL;
}

/* Queue a run found waiting at start (mu held, before the first submit). */
static int resume_run_locked(const resumable_t *x) {
  store_run_t row;
  int rc = store_run_get(g_store, x->user_id, x->run_id, &row);
  if (rc != 0) return rc;
  run_t *r = calloc(1, sizeof(*r));
  if (!r) abort();
  double now = time_now();
  snprintf(r->id, sizeof(r->id), "%s", row.id);
  snprintf(r->user_id, sizeof(r->user_id), "%s", x->user_id);
  snprintf(r->thread_id, sizeof(r->thread_id), "%s", row.thread_id);
  snprintf(r->agent, sizeof(r->agent), "%s", row.agent);
  r->input = strdup(row.input ? row.input : "");
  if (!r->input) abort();
  store_run_dispose(&row);
  r->resume = json_incref(x->checkpoint);
  r->submitted_at = now;
  r->deadline = g_cfg->run_timeout > 0 ? now + g_cfg->run_timeout : 0;
  enqueue_locked(r);
  return 0;
}

/* SPEC §11: a run that waited for the user's decision when the server stopped goes on
 * waiting (its approval pending, its expiry unchanged); one whose checkpoint cannot be
 * read cannot continue and is failed as interrupted, like every other run that was in
 * flight (SPEC §4).  Runs found here start once the executor is up. */
static int resume_collect(resumables_t *l) {
  int rc = store_approvals_pending(g_store, collect_pending, l);
  if (rc != 0) return rc;
  for (size_t i = 0; i < l->n; i++) {
    resumable_t *x = &l->items[i];
    int later_same_run = 0; /* a run waits for one call at a time: the newest one stands */
    for (size_t k = i + 1; k < l->n; k++)
      if (strcmp(l->items[k].run_id, x->run_id) == 0) later_same_run = 1;
    if (x->checkpoint && !later_same_run) continue;
    if (!x->checkpoint)
      log_warn("runs: run %s waited for approval %s but its checkpoint is unreadable; failing it", x->run_id,
               x->call_id);
    store_approval_decide(g_store, x->user_id, x->run_id, x->call_id, "expired",
                          x->checkpoint ? "superseded" : "checkpoint unreadable", time_now(), NULL);
    json_decref(x->checkpoint);
    x->checkpoint = NULL;
  }
  return 0;
}

static void resume_start(resumables_t *l) {
  size_t n = 0;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < l->n; i++) {
    resumable_t *x = &l->items[i];
    if (!x->checkpoint) continue;
    int rc = resume_run_locked(x);
    if (rc == 0) n++;
    else log_warn("runs: cannot resume run %s: %s", x->run_id, agd_err_code(rc));
    json_decref(x->checkpoint);
  }
  pthread_mutex_unlock(&mu);
  free(l->items);
  if (n > 0) log_info("runs: %zu run(s) waiting for an approval resumed", n);
}

int runs_init(uv_loop_t *loop, store_t *store, llm_t *llm, const config_t *cfg) {
  g_store = store;
  g_llm = llm;
  g_cfg = cfg;
  start_rate = ratelimit_new(3, 3, 100000);
  resumables_t waiting = {0};
  int rc = resume_collect(&waiting);
  if (rc != 0) {
    for (size_t i = 0; i < waiting.n; i++) json_decref(waiting.items[i].checkpoint);
    free(waiting.items);
    return rc;
  }
  /* SPEC §4: runs in flight when the server stopped are failed, never left running
   * (those waiting for an approval excepted: the store leaves them running). */
  long n = 0;
  rc = store_runs_fail_inflight(store, time_now(), &n);
  if (rc != 0) {
    for (size_t i = 0; i < waiting.n; i++) json_decref(waiting.items[i].checkpoint);
    free(waiting.items);
    return rc;
  }
  if (n > 0) log_warn("runs: %ld run(s) were in flight at the last stop; marked failed", n);
  metrics_gauge_fn_register("agentd_runs_active", NULL, "Runs queued or running", gauge_active, NULL);
  shutting_down = 0;
  initialised = 1;
  resume_start(&waiting);
  return 0;
}

void runs_shutdown(double grace_s) {
  if (!initialised) return;
  pthread_mutex_lock(&mu);
  shutting_down = 1;
  pthread_cond_broadcast(&cv);
  /* A run waiting for the user's decision cannot finish within the grace: it is
   * parked at once (cancel 2; its approval stays pending) and resumes at the next
   * start.  Looked at again every 100 ms, for runs that start waiting meanwhile. */
  double until_s = time_now() + grace_s;
  while (n_active > 0 && time_now() < until_s) {
    for (run_t *r = active.next; r != &active; r = r->next)
      if (atomic_load(&r->waiting)) atomic_store(&r->cancel, 2);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double slice = until_s - time_now();
    if (slice > 0.1) slice = 0.1;
    if (slice < 0) slice = 0;
    long ns = until.tv_nsec + (long)(slice * 1e9);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&idle_cv, &mu, &until);
  }
  if (n_active > 0) {
    log_warn("runs: %zu run(s) still going after %.0fs: cancelling", n_active, grace_s);
    for (run_t *r = active.next; r != &active; r = r->next) atomic_store(&r->cancel, 2);
  }
  size_t nt = n_threads;
  pthread_mutex_unlock(&mu);
  for (size_t i = 0; i < nt; i++) pthread_join(threads[i], NULL);
  free(threads);
  threads = NULL;
  n_threads = threads_cap = 0;
  ratelimit_free(start_rate);
  start_rate = NULL;
  initialised = 0;
}
