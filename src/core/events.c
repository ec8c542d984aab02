/* core/events.c — see events.h for the contract.
 *
 * The emit side and the wiring of the event path.  Emit (run threads, workers):
 * 64 lock stripes keyed by user, the user's *order lock*; under it the event takes
 * the user's next seq from the allocator (core/event_seq.h) and joins the event
 * writer's queue (core/event_writer.h), so each user's events are queued in seq
 * order, write-behinds and run ends in order with them.  The writer stores the
 * queue in group commits and publishes each committed batch to the broker
 * (broker/broker.h), which hands it to the fan-out (core/fanout.h) on the loop.
 * A batch the writer gives up is never delivered, and its runs are marked lost
 * here, so their later emits fail.
 */
#include "core/events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "core/event_item.h"
#include "core/event_seq.h"
#include "core/event_writer.h"
#include "core/fanout.h"
#include "core/metrics.h"
#include "store/store.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

#define STRIPES 64

static const char *const event_names[EV__COUNT] = {
    [EV_AGENT_STARTED] = "agent_started",     [EV_AGENT_THINKING] = "agent_thinking",
    [EV_TOOL_EXECUTING] = "tool_executing",   [EV_TOOL_COMPLETED] = "tool_completed",
    [EV_PARTIAL_RESULT] = "partial_result",   [EV_AGENT_COMPLETED] = "agent_completed",
    [EV_AGENT_RESPONSE] = "agent_response",   [EV_AGENT_ERROR] = "agent_error",
    [EV_AGENT_STOPPED] = "agent_stopped",     [EV_APPROVAL_REQUIRED] = "approval_required",
};

const char *event_type_name(event_type_t t) {
  if ((int)t < 0 || t >= EV__COUNT) return NULL;
  return event_names[t];
}

/* The order locks: a user's seq and its place in the writer's queue are taken
 * together under the user's stripe (the allocator has its own lock: it does not
 * rely on this one). */
static pthread_mutex_t stripes[STRIPES];
static store_t *g_store;
static event_seq_t *g_seq;
static event_writer_t *g_writer;
static broker_t *g_broker;
static int initialised;
static atomic_uint_fast64_t emitted_total;

static pthread_mutex_t *order_lock(const char *user_id) { return &stripes[hash_fnv1a_str(user_id, 0) % STRIPES]; }

/* ---- runs that lost a batch of their events ---- */

/* A batch given up after EVENTS_RETRY_S was never delivered; its runs must not go
 * on as if it had been (a client would see a hole it can never fill), so their
 * later emits fail and they end failed.  A run leaves the set at its end
 * (events_post_run_end).  Bounded: beyond LOST_MAX the oldest is forgotten. */
#define LOST_MAX 1024
static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;
static char lost_runs[LOST_MAX][ID_MAX];
static size_t lost_n;
static atomic_int lost_any; /* lost_n != 0: emits only take lost_mu then */

static size_t lost_find_locked(const char *run_id) {
  for (size_t i = 0; i < lost_n; i++)
    if (strcmp(lost_runs[i], run_id) == 0) return i;
  return lost_n;
}

static void lost_mark(const char *run_id) {
  if (!run_id[0]) return;
  pthread_mutex_lock(&lost_mu);
  if (lost_find_locked(run_id) == lost_n) {
    if (lost_n == LOST_MAX) {
      memmove(lost_runs[0], lost_runs[1], (LOST_MAX - 1) * sizeof lost_runs[0]);
      lost_n--;
    }
    snprintf(lost_runs[lost_n++], ID_MAX, "%s", run_id);
  }
  atomic_store(&lost_any, 1);
  pthread_mutex_unlock(&lost_mu);
}

static int lost_has(const char *run_id) {
  if (!atomic_load(&lost_any) || !run_id || !run_id[0]) return 0;
  pthread_mutex_lock(&lost_mu);
  int has = lost_find_locked(run_id) < lost_n;
  pthread_mutex_unlock(&lost_mu);
  return has;
}

static void lost_forget(const char *run_id) {
  if (!atomic_load(&lost_any)) return;
  pthread_mutex_lock(&lost_mu);
  size_t i = lost_find_locked(run_id);
  if (i < lost_n) {
    memmove(lost_runs[i], lost_runs[i + 1], (lost_n - i - 1) * sizeof lost_runs[0]);
    lost_n--;
  }
  atomic_store(&lost_any, lost_n > 0);
  pthread_mutex_unlock(&lost_mu);
}


/* ---- emit ---- */

char *events_encode(int64_t seq, const char *type, const char *run_id, const char *thread_id, const char *agent_name,
                    double timestamp, const json_t *data) {
  json_t *o = json_object();
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "seq", json_integer(seq));
  json_object_set_new(o, "run_id", run_id && run_id[0] ? json_string(run_id) : json_null());
  json_object_set_new(o, "thread_id", thread_id && thread_id[0] ? json_string(thread_id) : json_null());
  json_object_set_new(o, "agent_name", agent_name && agent_name[0] ? json_string(agent_name) : json_null());
  json_object_set_new(o, "timestamp", json_real(timestamp));
  json_object_set_new(o, "data", data ? json_incref((json_t *)data) : json_object());
  char *s = jsonx_dumps(o);
  json_decref(o);
  return s;
}


int64_t events_emit(const char *user_id, const char *run_id, const char *thread_id, const char *agent_name,
                    event_type_t type, json_t *data) {
  const char *tname = event_type_name(type);
  if (!initialised || !user_id || !user_id[0] || !tname) {
    json_decref(data);
    return AGD_EINTERNAL;
  }
  if (lost_has(run_id)) { /* a batch of this run's events was given up */
    json_decref(data);
    return AGD_EUNAVAILABLE;
  }
  pthread_mutex_t *mu = order_lock(user_id);
  double now = time_now();
  pthread_mutex_lock(mu);
  int64_t seq;
  int rc = event_seq_next(g_seq, user_id, &seq);
  if (rc != 0) {
    pthread_mutex_unlock(mu);
    json_decref(data);
    return rc;
  }
  event_rec_t *e = event_rec_new(user_id, events_encode(seq, tname, run_id, thread_id, agent_name, now, data));
  e->seq = seq;
  e->created_at = now;
  e->emitted_ns = time_mono_ns();
  snprintf(e->type, sizeof(e->type), "%s", tname);
  snprintf(e->run_id, sizeof(e->run_id), "%s", run_id ? run_id : "");
  snprintf(e->thread_id, sizeof(e->thread_id), "%s", thread_id ? thread_id : "");
  snprintf(e->agent_name, sizeof(e->agent_name), "%s", agent_name ? agent_name : "");
  event_writer_push(g_writer, &e->hdr);
  pthread_mutex_unlock(mu);
  atomic_fetch_add(&emitted_total, 1);
  json_decref(data);
  return seq;
}

/* ---- write-behind and run ends: through the writer, in order ---- */

/* Queue an item to the writer under the user's order lock: ordered after that
 * user's events already emitted, and (through the writer) handled after they are
 * stored. */
static void push_in_user_order(const char *user_id, event_item_t *item) {
  pthread_mutex_t *mu = order_lock(user_id);
  pthread_mutex_lock(mu);
  event_writer_push(g_writer, item);
  pthread_mutex_unlock(mu);
}

static void store_behind(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                         void (*release)(void *arg), void *arg) {
  if (!initialised) { /* after events_shutdown: no writer, so here and now */
    int rc = fn(g_store, arg);
    if (release) release(arg);
    if (done) done(arg, rc);
    return;
  }
  event_write_behind_t *wb = event_write_behind_new(user_id);
  wb->fn = fn;
  wb->done = done;
  wb->release = release;
  wb->arg = arg;
  push_in_user_order(user_id, &wb->hdr);
}

void events_store_later(const char *user_id, int (*fn)(store_t *st, void *arg), void (*release)(void *arg),
                        void *arg) {
  store_behind(user_id, fn, NULL, release, arg);
}

void events_store_then(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                       void *arg) {
  store_behind(user_id, fn, done, NULL, arg);
}

void events_post_run_end(const char *user_id, const char *run_id, void (*fn)(void *arg), void *arg) {
  lost_forget(run_id); /* the run emits nothing more */
  if (!initialised) return; /* after events_shutdown: nothing is delivered any more */
  event_run_end_t *r = event_run_end_new(user_id, run_id);
  r->fn = fn;
  r->arg = arg;
  push_in_user_order(user_id, &r->hdr);
}

/* ---- lifecycle ---- */

static double gauge_emitted(void *arg) { return (double)atomic_load(&emitted_total); }

static void on_lost(void *arg, const char *run_id) { lost_mark(run_id); }

int events_init(uv_loop_t *loop, store_t *store) {
  g_store = store;
  for (int i = 0; i < STRIPES; i++) pthread_mutex_init(&stripes[i], NULL);
  int rc = fanout_init(loop, store);
  if (rc != 0) return rc;
  metrics_gauge_fn_register("agentd_events_emitted_total", NULL, "Events emitted", gauge_emitted, NULL);
  g_seq = event_seq_local_new(store);
  g_broker = broker_local_new(fanout_sink());
  event_writer_opts_t o = {.store = store, .sink = broker_sink(g_broker), .on_lost = on_lost};
  rc = event_writer_start(&g_writer, &o);
  if (rc != 0) return rc;
  initialised = 1;
  return 0;
}

void events_shutdown(void) {
  if (!initialised) return;
  /* Store what is still queued, then deliver it. */
  event_writer_stop(g_writer);
  fanout_drain();
  initialised = 0;
  event_writer_free(g_writer); /* a late item: stored, then dropped with the fan-out below */
  g_writer = NULL;
  fanout_shutdown();
  broker_free(g_broker);
  g_broker = NULL;
  event_seq_free(g_seq);
  g_seq = NULL;
  for (int i = 0; i < STRIPES; i++) pthread_mutex_destroy(&stripes[i]);
}
