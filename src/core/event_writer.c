/* core/event_writer.c — the group-commit thread (see event_writer.h).
 *
 * Group commit without a timer: the writer takes whatever is queued the moment it
 * is free.  While one batch commits, the next piles up, so under load batches grow
 * by themselves (hundreds of items) and at low load an item waits for no window.
 */
#include "core/event_writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/events.h"
#include "core/metrics.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

#define WRITER_BATCH 1024
/* Below this many items a batch with write-behinds is split (writer_flush). */
#define SPLIT_MAX 64

struct event_writer {
  event_writer_opts_t o;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  event_item_t *head, *tail; /* the queue, under mu */
  atomic_int stop;           /* set under mu; read without it by a retrying commit */
  pthread_t thread;
  int running;
  /* Events from emit to the commit that stores them (GET /metrics). */
  metrics_hist_t *hist_store;
  /* Each group commit: its transaction's time, and its items (GET /metrics). */
  metrics_hist_t *hist_commit, *hist_batch;
};

/* Bounds of agentd_event_batch_items (items, not seconds). */
static const double BATCH_BOUNDS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

void event_writer_push(event_writer_t *w, event_item_t *it) {
  it->next = NULL;
  pthread_mutex_lock(&w->mu);
  if (w->tail) w->tail->next = it;
  else w->head = it;
  w->tail = it;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* ---- one transaction ---- */

static int store_events(store_t *st, store_event_t *evs, size_t n) {
  if (n == 0) return 0;
  int rc = store_event_append_batch(st, evs, n);
  if (rc != 0) log_error("events: cannot store %zu event(s): %s", n, agd_err_code(rc));
  return rc;
}

/* Inside the batch's transaction: its events, and between them the write-behinds
 * in the order they were queued.  An event that cannot be stored fails the whole
 * transaction (it is retried): nothing of the batch may go out unless it is stored. */
static int writer_store_batch(store_t *st, void *arg) {
  store_event_t evs[WRITER_BATCH];
  size_t n = 0;
  int rc = 0;
  for (event_item_t *it = arg; it && rc == 0; it = it->next) {
    if (it->kind == EVENT_ITEM_WRITE_BEHIND) {
      event_write_behind_t *wb = event_item_wb(it);
      rc = store_events(st, evs, n);
      n = 0;
      if (rc == 0) wb->rc = wb->fn(st, wb->arg);
      continue;
    }
    if (it->kind != EVENT_ITEM_EVENT) continue; /* a run-end marker */
    event_rec_t *e = event_item_rec(it);
    evs[n++] = (store_event_t){.user_id = e->hdr.user_id,
                               .seq = e->seq,
                               .run_id = e->run_id,
                               .thread_id = e->thread_id,
                               .type = e->type,
                               .agent_name = e->agent_name,
                               .created_at = e->created_at,
                               .json = e->json};
  }
  if (rc == 0) rc = store_events(st, evs, n);
  return rc;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* The batch's transaction, retried with backoff while it fails (a locked or full
 * database usually comes back): every later item waits behind it, which keeps
 * each user's order.  At shutdown only a couple of attempts.  0 or the last error. */
static int writer_commit_retrying(event_writer_t *w, event_item_t *batch) {
  uint64_t t0 = time_mono_ns();
  unsigned delay_ms = 50;
  for (int attempt = 1;; attempt++) {
    int rc = w->o.tx(w->o.store, writer_store_batch, batch);
    if (rc == 0) {
      if (attempt > 1) log_info("events: group commit stored after %d attempts", attempt);
      return 0;
    }
    metrics_add("agentd_events_commit_failures_total", NULL, 1);
    double waited = (double)(time_mono_ns() - t0) / 1e9 + delay_ms / 1000.0;
    if (waited > w->o.retry_s || (atomic_load(&w->stop) && attempt >= 2)) return rc;
    log_warn("events: group commit failed (%s): retrying in %u ms", agd_err_code(rc), delay_ms);
    sleep_ms(delay_ms);
    delay_ms = delay_ms * 2 > 2000 ? 2000 : delay_ms * 2;
  }
}

/* Store one batch in a transaction, then hand what the loop needs to the sink, in
 * order.  A batch that could not be stored is not delivered (on_lost per event). */
static void writer_commit(event_writer_t *w, event_item_t *batch) {
  uint64_t t0 = time_mono_ns();
  int rc = writer_commit_retrying(w, batch);
  if (rc != 0) log_error("events: giving up a group commit after %.0f s: %s", w->o.retry_s, agd_err_code(rc));
  uint64_t committed_ns = time_mono_ns();
  metrics_hist_observe(w->hist_commit, (double)(committed_ns - t0) / 1e9);
  event_item_t *head = NULL, **tail = &head;
  long long lost = 0, items = 0;
  for (event_item_t *it = batch, *next; it; it = next) {
    next = it->next;
    items++;
    if (it->kind == EVENT_ITEM_EVENT) {
      event_rec_t *e = event_item_rec(it);
      if (rc != 0) {
        if (w->o.on_lost) w->o.on_lost(w->o.lost_arg, e->run_id);
        lost++;
        event_item_free(it);
        continue;
      }
      metrics_hist_observe(w->hist_store, (double)(committed_ns - e->emitted_ns) / 1e9);
    } else if (it->kind == EVENT_ITEM_WRITE_BEHIND) {
      event_write_behind_t *wb = event_item_wb(it);
      if (rc != 0) wb->rc = rc; /* rolled back with the batch, or never ran */
      if (wb->release) wb->release(wb->arg);
      if (!wb->done) {
        event_item_free(it);
        continue;
      }
    }
    *tail = it;
    tail = &it->next;
  }
  *tail = NULL;
  metrics_hist_observe(w->hist_batch, (double)items);
  if (lost) metrics_add("agentd_events_store_failures_total", NULL, lost);
  if (head) w->o.sink.publish(w->o.sink.arg, head);
}

/* A small batch whose write-behinds (a run start, an answer message: a dozen pages
 * of rows and indexes) would make every event in it wait for their pages is
 * committed in two transactions: first the events of users with no write-behind
 * before them in this batch, then everything else in queue order.  Each user's
 * items keep their order (that is all delivery and replay rely on); other users'
 * events just stop waiting for rows that are not theirs.  Big batches (under load)
 * stay one transaction: there the pages per commit matter more than the wait. */
static void writer_flush(event_writer_t *w, event_item_t *batch) {
  size_t n = 0, wb = 0;
  for (event_item_t *it = batch; it; it = it->next, n++) wb += it->kind == EVENT_ITEM_WRITE_BEHIND;
  if (wb == 0 || n > SPLIT_MAX || wb == n) {
    writer_commit(w, batch);
    return;
  }
  const char *held[SPLIT_MAX]; /* users with a write-behind so far in this batch */
  size_t nheld = 0;
  event_item_t *first = NULL, **ft = &first, *rest = NULL, **rt = &rest;
  for (event_item_t *it = batch, *next; it; it = next) {
    next = it->next;
    it->next = NULL;
    int is_wb = it->kind == EVENT_ITEM_WRITE_BEHIND, is_held = 0;
    for (size_t i = 0; i < nheld && !is_held; i++) is_held = strcmp(held[i], it->user_id) == 0;
    if (is_wb && !is_held) held[nheld++] = it->user_id;
    if (is_wb || is_held) {
      *rt = it;
      rt = &it->next;
    } else {
      *ft = it;
      ft = &it->next;
    }
  }
  if (first) writer_commit(w, first);
  writer_commit(w, rest);
}

/* Up to WRITER_BATCH items off the queue (NULL when empty).  mu held. */
static event_item_t *writer_take_locked(event_writer_t *w) {
  if (!w->head) return NULL;
  event_item_t *batch = w->head, *it = w->head;
  size_t n = 1;
  while (it->next && n < WRITER_BATCH) {
    it = it->next;
    n++;
  }
  w->head = it->next;
  if (!w->head) w->tail = NULL;
  it->next = NULL;
  return batch;
}

static void *writer_main(void *arg) {
  event_writer_t *w = arg;
  pthread_setname_np(pthread_self(), "agentd-events");
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
    if (!w->head && w->stop) break;
    event_item_t *batch = writer_take_locked(w);
    pthread_mutex_unlock(&w->mu);
    writer_flush(w, batch);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* Store what is queued on the calling thread (after the thread ended). */
static void writer_drain_here(event_writer_t *w) {
  for (;;) {
    pthread_mutex_lock(&w->mu);
    event_item_t *batch = writer_take_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (!batch) break;
    writer_flush(w, batch);
  }
}

int event_writer_start(event_writer_t **out, const event_writer_opts_t *opts) {
  event_writer_t *w = calloc(1, sizeof(*w));
  if (!w) abort();
  w->o = *opts;
  if (!w->o.tx) w->o.tx = store_tx;
  if (w->o.retry_s <= 0) w->o.retry_s = EVENTS_RETRY_S;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->hist_store = metrics_hist("agentd_event_store_seconds",
                               "Events from emit to the commit of the transaction that stores them.");
  w->hist_commit = metrics_hist("agentd_event_commit_seconds", "The event writer's group commits: each transaction.");
  w->hist_batch = metrics_hist_bounds("agentd_event_batch_items", "Items per group commit (a count, not seconds).",
                                      BATCH_BOUNDS, sizeof BATCH_BOUNDS / sizeof BATCH_BOUNDS[0]);
  if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return AGD_EINTERNAL;
  }
  w->running = 1;
  *out = w;
  return 0;
}

void event_writer_stop(event_writer_t *w) {
  if (!w || !w->running) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  w->running = 0;
  /* Anything queued after the thread's last look is stored here (main.c's order
   * leaves nothing, but a late write-behind must not be lost or leak). */
  writer_drain_here(w);
}

void event_writer_free(event_writer_t *w) {
  if (!w) return;
  event_writer_stop(w);
  writer_drain_here(w);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
