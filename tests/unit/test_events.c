/* tests/unit/test_events.c — the parts of the event path (core/events.h):
 * the seq allocator (core/event_seq.h), the event writer (core/event_writer.h),
 * the local broker (broker/broker.h), and the event type names.
 *
 * Real SQLite files in a temporary directory (store_harness.h).  The writer hands
 * its batches to a recording sink (what the fan-out is in the server); a failing
 * database is a transaction runner (the writer's tx seam) that rolls back the
 * real transaction on purpose.  No timing assertions: waits are on conditions,
 * with generous limits.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/event_item.h"
#include "core/event_seq.h"
#include "core/event_writer.h"
#include "core/events.h"
#include "store/store.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"

#include "store_harness.h"

static store_t *S;

static void setup(void) {
  store_h_setup("agentd.db");
  char err[256] = "";
  cr_assert_eq(store_open(&S, store_h_url, err, sizeof err), 0, "%s", err);
}

static void teardown(void) {
  if (S) store_close(S);
  S = NULL;
  store_h_teardown();
}

/* A user with a thread and a run (events need a run that exists to be stored). */
typedef struct user_run {
  char user[ID_MAX], thread[ID_MAX], run[ID_MAX];
} user_run_t;

static void user_run(user_run_t *u, const char *user) {
  snprintf(u->user, sizeof u->user, "%s", user);
  store_h_user(S, user, NULL, NULL, NULL);
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, user, "t", NULL, &t), 0);
  snprintf(u->thread, sizeof u->thread, "%s", t.id);
  store_thread_dispose(&t);
  id_new(u->run, "run");
  cr_assert_eq(store_run_create(S, user, u->run, u->thread, "supervisor", "hello", 1.0), 0);
}

static long stored_count(const char *user) {
  store_event_list_t l;
  cr_assert_eq(store_event_list(S, user, 0, NULL, NULL, 1000, &l), 0);
  long n = (long)l.n;
  store_event_list_free(&l);
  return n;
}

/* ---- event type names ---- */

Test(event_types, names_follow_the_spec_table) {
  cr_expect_str_eq(event_type_name(EV_AGENT_STARTED), "agent_started");
  cr_expect_str_eq(event_type_name(EV_TOOL_COMPLETED), "tool_completed");
  cr_expect_str_eq(event_type_name(EV_AGENT_STOPPED), "agent_stopped");
  for (int t = 0; t < EV__COUNT; t++) cr_expect_not_null(event_type_name((event_type_t)t), "type %d", t);
  cr_expect_null(event_type_name(EV__COUNT));
  cr_expect_null(event_type_name((event_type_t)-1));
}

/* ---- the seq allocator ---- */

TestSuite(event_seq, .init = setup, .fini = teardown);

Test(event_seq, continues_from_the_stored_counter_per_user) {
  user_run_t a;
  user_run(&a, "usr_a");
  store_h_user(S, "usr_b", NULL, NULL, NULL);
  for (int64_t seq = 1; seq <= 5; seq++) {
    store_event_t e = {.user_id = "usr_a", .seq = seq, .run_id = a.run, .thread_id = a.thread,
                       .type = "agent_thinking", .agent_name = "x", .created_at = 1.0, .json = "{}"};
    cr_assert_eq(store_event_append(S, &e), 0);
  }
  event_seq_t *q = event_seq_local_new(S);
  int64_t seq = 0;
  cr_assert_eq(event_seq_next(q, "usr_a", &seq), 0);
  cr_expect_eq(seq, 6, "after the stored 5: %lld", (long long)seq);
  cr_assert_eq(event_seq_next(q, "usr_a", &seq), 0);
  cr_expect_eq(seq, 7);
  cr_assert_eq(event_seq_next(q, "usr_b", &seq), 0);
  cr_expect_eq(seq, 1, "another user has a counter of its own");
  cr_assert_eq(event_seq_next(q, "usr_a", &seq), 0);
  cr_expect_eq(seq, 8);
  event_seq_free(q);
}

#define SEQ_THREADS 8
#define SEQ_PER_THREAD 2000

typedef struct seq_worker {
  event_seq_t *q;
  const char *user;
  int64_t got[SEQ_PER_THREAD];
  int rc;
} seq_worker_t;

static void *seq_worker_main(void *arg) {
  seq_worker_t *w = arg;
  for (int i = 0; i < SEQ_PER_THREAD && w->rc == 0; i++) {
    /* Other users in between: the same stripes, other counters. */
    char other[32];
    snprintf(other, sizeof other, "usr_other_%d", i % 97);
    int64_t ignored;
    w->rc = event_seq_next(w->q, other, &ignored);
    if (w->rc == 0) w->rc = event_seq_next(w->q, w->user, &w->got[i]);
  }
  return NULL;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

Test(event_seq, monotonic_per_thread_and_no_repeats_across_threads) {
  store_h_user(S, "usr_shared", NULL, NULL, NULL);
  event_seq_t *q = event_seq_local_new(S);
  static seq_worker_t w[SEQ_THREADS];
  pthread_t th[SEQ_THREADS];
  for (int i = 0; i < SEQ_THREADS; i++) {
    w[i] = (seq_worker_t){.q = q, .user = "usr_shared"};
    cr_assert_eq(pthread_create(&th[i], NULL, seq_worker_main, &w[i]), 0);
  }
  for (int i = 0; i < SEQ_THREADS; i++) pthread_join(th[i], NULL);
  static int64_t all[SEQ_THREADS * SEQ_PER_THREAD];
  size_t n = 0;
  for (int i = 0; i < SEQ_THREADS; i++) {
    cr_assert_eq(w[i].rc, 0);
    for (int k = 0; k < SEQ_PER_THREAD; k++) {
      if (k > 0) cr_assert_gt(w[i].got[k], w[i].got[k - 1], "thread %d: seq went back at %d", i, k);
      all[n++] = w[i].got[k];
    }
  }
  qsort(all, n, sizeof all[0], cmp_i64);
  for (size_t k = 0; k < n; k++) cr_assert_eq(all[k], (int64_t)k + 1, "every seq once, none skipped: at %zu", k);
  event_seq_free(q);
}

/* ---- a recording sink (the fan-out's place) ---- */

typedef struct rec_sink {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  event_item_t *head, **tail;
  size_t items, events, batches;
  long unstored;        /* events handed over that the store did not have yet */
  int tx_at_first;      /* transactions begun when the first batch arrived */
} rec_sink_t;

static atomic_int tx_calls;     /* transactions begun by flaky_tx */
static atomic_int tx_fail_left; /* how many of the next ones fail */

static void rec_init(rec_sink_t *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->tail = &r->head;
  r->tx_at_first = -1;
}

static void rec_dispose(rec_sink_t *r) {
  for (event_item_t *it = r->head, *n; it; it = n) {
    n = it->next;
    event_item_free(it);
  }
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
}

/* On the writer thread: every event handed over must already be in the store. */
static void rec_publish(void *arg, event_item_t *batch) {
  rec_sink_t *r = arg;
  long unstored = 0;
  size_t items = 0, events = 0;
  event_item_t *last = NULL;
  for (event_item_t *it = batch; it; it = it->next) {
    items++;
    last = it;
    if (it->kind != EVENT_ITEM_EVENT) continue;
    events++;
    event_rec_t *e = event_item_rec(it);
    store_event_list_t l;
    if (store_event_list(S, e->hdr.user_id, e->seq - 1, NULL, NULL, 1, &l) != 0 || l.n != 1 ||
        l.items[0].seq != e->seq)
      unstored++;
    store_event_list_free(&l);
  }
  pthread_mutex_lock(&r->mu);
  if (r->tx_at_first < 0) r->tx_at_first = atomic_load(&tx_calls);
  *r->tail = batch;
  if (last) r->tail = &last->next;
  r->items += items;
  r->events += events;
  r->batches++;
  r->unstored += unstored;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Wait until the sink holds at least n items (60 s at most: a loaded machine). */
static size_t rec_wait(rec_sink_t *r, size_t n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 60;
  pthread_mutex_lock(&r->mu);
  while (r->items < n && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) {
  }
  size_t got = r->items;
  pthread_mutex_unlock(&r->mu);
  return got;
}

static event_sink_t rec_sink(rec_sink_t *r) { return (event_sink_t){.publish = rec_publish, .arg = r}; }

/* ---- items ---- */

static event_item_t *ev_item(const user_run_t *u, int64_t seq) {
  char json[64];
  snprintf(json, sizeof json, "{\"seq\":%lld}", (long long)seq);
  event_rec_t *e = event_rec_new(u->user, strdup(json));
  e->seq = seq;
  e->created_at = 1.0;
  snprintf(e->type, sizeof e->type, "agent_thinking");
  snprintf(e->run_id, sizeof e->run_id, "%s", u->run);
  snprintf(e->thread_id, sizeof e->thread_id, "%s", u->thread);
  snprintf(e->agent_name, sizeof e->agent_name, "supervisor");
  return &e->hdr;
}

typedef struct wb_probe {
  atomic_int runs, releases;
  const char *user;
} wb_probe_t;

static int wb_fn(store_t *st, void *arg) {
  wb_probe_t *p = arg;
  atomic_fetch_add(&p->runs, 1);
  /* A real write in the transaction: rolled back with it when it fails.  (No
   * cr_assert here: this is the writer thread.) */
  store_user_t u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "%s", p->user);
  snprintf(u.email, sizeof u.email, "%s@example.com", p->user);
  return store_user_create(st, &u);
}

static void wb_release(void *arg) { atomic_fetch_add(&((wb_probe_t *)arg)->releases, 1); }

static void wb_done(void *arg, int rc) {}

static event_item_t *wb_item(const char *user, wb_probe_t *p, int with_done) {
  event_write_behind_t *wb = event_write_behind_new(user);
  wb->fn = wb_fn;
  wb->release = wb_release;
  wb->done = with_done ? wb_done : NULL;
  wb->arg = p;
  return &wb->hdr;
}

static int user_exists(const char *id) {
  store_user_t u;
  return store_user_get(S, id, &u) == 0;
}

/* The writer's tx seam: the first tx_fail_left transactions run the batch, then
 * fail and are rolled back (a database that refuses the commit). */
typedef struct tx_wrap {
  int (*fn)(store_t *st, void *arg);
  void *arg;
} tx_wrap_t;

static int tx_then_fail(store_t *st, void *arg) {
  tx_wrap_t *w = arg;
  int rc = w->fn(st, w->arg);
  return rc != 0 ? rc : AGD_EUNAVAILABLE;
}

static int flaky_tx(store_t *st, int (*fn)(store_t *st, void *arg), void *arg) {
  atomic_fetch_add(&tx_calls, 1);
  if (atomic_load(&tx_fail_left) > 0) {
    atomic_fetch_sub(&tx_fail_left, 1);
    tx_wrap_t w = {fn, arg};
    return store_tx(st, tx_then_fail, &w);
  }
  return store_tx(st, fn, arg);
}

static int64_t item_seq(event_item_t *it) { return event_item_rec(it)->seq; }

/* ---- the writer ---- */

TestSuite(event_writer, .init = setup, .fini = teardown);

Test(event_writer, stores_a_batch_then_hands_it_on_in_order) {
  user_run_t a, b;
  user_run(&a, "usr_a");
  user_run(&b, "usr_b");
  rec_sink_t r;
  rec_init(&r);
  event_writer_t *w;
  event_writer_opts_t o = {.store = S, .sink = rec_sink(&r)};
  cr_assert_eq(event_writer_start(&w, &o), 0);
  wb_probe_t quiet = {.user = "usr_wb_later"}, waited = {.user = "usr_wb_then"};
  /* 2 users interleaved; a write-behind of a's with done, one of b's without. */
  const int N = 200;
  for (int i = 1; i <= N; i++) {
    event_writer_push(w, ev_item(&a, i));
    event_writer_push(w, ev_item(&b, i));
    if (i == 50) event_writer_push(w, wb_item("usr_a", &waited, 1));
    if (i == 120) event_writer_push(w, wb_item("usr_b", &quiet, 0));
  }
  event_run_end_t *end = event_run_end_new("usr_a", a.run);
  event_writer_push(w, &end->hdr);
  /* Everything but the write-behind without done comes out. */
  size_t want = 2 * (size_t)N + 1 + 1;
  cr_assert_eq(rec_wait(&r, want), want);
  event_writer_free(w);

  cr_expect_eq(r.unstored, 0, "%ld event(s) handed on before they were stored", r.unstored);
  cr_expect_eq(stored_count("usr_a"), N);
  cr_expect_eq(stored_count("usr_b"), N);
  cr_expect_eq(atomic_load(&waited.runs), 1);
  cr_expect_eq(atomic_load(&waited.releases), 1);
  cr_expect_eq(atomic_load(&quiet.runs), 1);
  cr_expect_eq(atomic_load(&quiet.releases), 1);
  cr_expect(user_exists("usr_wb_then") && user_exists("usr_wb_later"), "write-behinds committed");
  /* Each user's items in the order pushed: a's events, its write-behind after seq 50,
   * its run end last; b's events. */
  int64_t next_a = 1, next_b = 1;
  int saw_wb = 0, saw_end = 0;
  for (event_item_t *it = r.head; it; it = it->next) {
    if (it->kind == EVENT_ITEM_WRITE_BEHIND) {
      cr_expect_str_eq(it->user_id, "usr_a");
      cr_expect_eq(next_a, 51, "a's write-behind after its seq 50, came after %lld", (long long)next_a - 1);
      cr_expect_eq(event_item_wb(it)->rc, 0);
      saw_wb++;
    } else if (it->kind == EVENT_ITEM_RUN_END) {
      cr_expect_eq(next_a, N + 1, "the run end after all of a's events");
      saw_end++;
    } else if (strcmp(it->user_id, "usr_a") == 0) {
      cr_assert_eq(item_seq(it), next_a, "usr_a: %lld where %lld was due", (long long)item_seq(it),
                   (long long)next_a);
      next_a++;
    } else {
      cr_assert_eq(item_seq(it), next_b, "usr_b: %lld where %lld was due", (long long)item_seq(it),
                   (long long)next_b);
      next_b++;
    }
  }
  cr_expect_eq(saw_wb, 1);
  cr_expect_eq(saw_end, 1);
  rec_dispose(&r);
}

Test(event_writer, retries_a_failed_commit_and_hands_on_nothing_before_it_succeeds) {
  user_run_t a;
  user_run(&a, "usr_a");
  rec_sink_t r;
  rec_init(&r);
  atomic_store(&tx_calls, 0);
  atomic_store(&tx_fail_left, 2);
  event_writer_t *w;
  event_writer_opts_t o = {.store = S, .sink = rec_sink(&r), .tx = flaky_tx};
  cr_assert_eq(event_writer_start(&w, &o), 0);
  wb_probe_t probe = {.user = "usr_wb"};
  for (int i = 1; i <= 3; i++) event_writer_push(w, ev_item(&a, i));
  event_writer_push(w, wb_item("usr_a", &probe, 1));
  cr_assert_eq(rec_wait(&r, 4), 4);
  event_writer_free(w);

  /* The batch may have been taken in more than one piece, but the first thing the
   * sink ever saw came after the two failed transactions. */
  cr_expect_geq(r.tx_at_first, 3, "handed on after %d transaction(s): before the commit", r.tx_at_first);
  cr_expect_eq(r.unstored, 0);
  cr_expect_eq(stored_count("usr_a"), 3, "stored once, whatever the attempts");
  cr_expect_geq(atomic_load(&probe.runs), 1, "the write-behind runs in each attempt");
  cr_expect_eq(atomic_load(&probe.releases), 1, "released once, after the last attempt");
  for (event_item_t *it = r.head; it; it = it->next)
    if (it->kind == EVENT_ITEM_WRITE_BEHIND) cr_expect_eq(event_item_wb(it)->rc, 0);
  cr_expect(user_exists("usr_wb"));
  rec_dispose(&r);
}

static char lost_run[ID_MAX];
static atomic_int lost_calls;

static void on_lost(void *arg, const char *run_id) {
  snprintf(lost_run, sizeof lost_run, "%s", run_id);
  atomic_fetch_add(&lost_calls, 1);
}

Test(event_writer, a_batch_given_up_is_never_handed_on) {
  user_run_t a;
  user_run(&a, "usr_a");
  rec_sink_t r;
  rec_init(&r);
  atomic_store(&tx_calls, 0);
  atomic_store(&tx_fail_left, 1 << 30);
  atomic_store(&lost_calls, 0);
  event_writer_t *w;
  event_writer_opts_t o = {.store = S, .sink = rec_sink(&r), .tx = flaky_tx, .on_lost = on_lost, .retry_s = 0.2};
  cr_assert_eq(event_writer_start(&w, &o), 0);
  wb_probe_t probe = {.user = "usr_wb"};
  /* One push under the writer's lock at a time: write-behind first, so the
   * batch is one transaction whichever way the writer takes it. */
  event_writer_push(w, wb_item("usr_a", &probe, 1));
  for (int i = 1; i <= 3; i++) event_writer_push(w, ev_item(&a, i));
  event_run_end_t *end = event_run_end_new("usr_a", a.run);
  event_writer_push(w, &end->hdr);
  /* What comes out: the write-behind (with the error) and the run end, no event. */
  cr_assert_eq(rec_wait(&r, 2), 2);
  event_writer_free(w);

  cr_expect_eq(r.events, 0, "events of a batch given up are dropped");
  cr_expect_eq(r.items, 2);
  cr_expect_eq(stored_count("usr_a"), 0);
  cr_expect_eq(atomic_load(&lost_calls), 3, "on_lost once per dropped event");
  cr_expect_str_eq(lost_run, a.run);
  cr_expect_eq(atomic_load(&probe.releases), 1);
  cr_expect_not(user_exists("usr_wb"), "the write-behind was rolled back");
  for (event_item_t *it = r.head; it; it = it->next)
    if (it->kind == EVENT_ITEM_WRITE_BEHIND) cr_expect_eq(event_item_wb(it)->rc, AGD_EUNAVAILABLE);
  rec_dispose(&r);
}

/* ---- the local broker ---- */

TestSuite(broker, .init = setup, .fini = teardown);

Test(broker, local_passes_batches_through_in_order) {
  user_run_t a;
  user_run(&a, "usr_a");
  rec_sink_t r;
  rec_init(&r);
  broker_t *b = broker_local_new(rec_sink(&r));
  event_item_t *sent[100];
  for (int i = 0; i < 100; i++) {
    /* Batches of 1 and 2 items, not stored: the broker does not look inside. */
    event_item_t *first = ev_item(&a, 2 * i + 1);
    if (i % 2) first->next = ev_item(&a, 2 * i + 2);
    sent[i] = first;
    broker_publish(b, first);
  }
  cr_expect_eq(r.batches, 100);
  event_item_t *it = r.head;
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(it, sent[i], "batch %d: the same items, in publish order", i);
    it = it->next;
    if (i % 2) it = it->next;
  }
  cr_expect_null(it);
  broker_free(b);
  rec_dispose(&r);
}

Test(broker, sits_between_the_writer_and_the_sink) {
  user_run_t a;
  user_run(&a, "usr_a");
  rec_sink_t r;
  rec_init(&r);
  broker_t *b = broker_local_new(rec_sink(&r));
  event_writer_t *w;
  event_writer_opts_t o = {.store = S, .sink = broker_sink(b)};
  cr_assert_eq(event_writer_start(&w, &o), 0);
  for (int i = 1; i <= 500; i++) event_writer_push(w, ev_item(&a, i));
  cr_assert_eq(rec_wait(&r, 500), 500);
  event_writer_free(w);
  broker_free(b);
  int64_t next = 1;
  for (event_item_t *it = r.head; it; it = it->next) cr_assert_eq(item_seq(it), next++);
  cr_expect_eq(r.unstored, 0);
  rec_dispose(&r);
}
