/* tests/unit/test_messages.c — the one message path (core/messages.h).
 *
 * messages_write queues through a test queue (messages_set_queue) into a real event
 * writer (core/event_writer.h) on a real SQLite file (store_harness.h), the same
 * write-behind items the server queues through core/events.  The writer's sink plays
 * the fan-out: it calls each write's done after the commit (here on the writer
 * thread; the server's fan-out does it on the loop).  A failing database is the
 * writer's tx seam rolling every transaction back.  No timing assertions: waits are
 * on conditions, with generous limits.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/event_item.h"
#include "core/event_writer.h"
#include "core/messages.h"
#include "store/store.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"

#include "store_harness.h"

static store_t *S;
static event_writer_t *W;

/* ---- the queue and the sink: a writer of the test's own ---- */

static void q_then(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                   void *arg) {
  event_write_behind_t *wb = event_write_behind_new(user_id);
  wb->fn = fn;
  wb->done = done;
  wb->arg = arg;
  event_writer_push(W, &wb->hdr);
}

static void q_later(const char *user_id, int (*fn)(store_t *st, void *arg), void (*release)(void *arg), void *arg) {
  event_write_behind_t *wb = event_write_behind_new(user_id);
  wb->fn = fn;
  wb->release = release;
  wb->arg = arg;
  event_writer_push(W, &wb->hdr);
}

static const messages_queue_t test_queue = {.then = q_then, .later = q_later};

/* What the fan-out does with a committed batch: each write's done, in order. */
static void sink_publish(void *arg, event_item_t *batch) {
  for (event_item_t *it = batch, *next; it; it = next) {
    next = it->next;
    if (it->kind == EVENT_ITEM_WRITE_BEHIND) {
      event_write_behind_t *wb = event_item_wb(it);
      if (wb->done) wb->done(wb->arg, wb->rc);
    }
    event_item_free(it);
  }
}

/* The writer's tx seam: every transaction runs its batch, then is rolled back. */
static int tx_then_fail(store_t *st, void *arg) {
  void **f = arg;
  int rc = ((int (*)(store_t *, void *))f[0])(st, f[1]);
  return rc != 0 ? rc : AGD_EUNAVAILABLE;
}

static int failing_tx(store_t *st, int (*fn)(store_t *st, void *arg), void *arg) {
  void *f[2] = {(void *)fn, arg};
  return store_tx(st, tx_then_fail, f);
}

static void start_writer(event_writer_tx_fn tx, double retry_s) {
  event_writer_opts_t o = {.store = S, .sink = {.publish = sink_publish}, .tx = tx, .retry_s = retry_s};
  cr_assert_eq(event_writer_start(&W, &o), 0);
  messages_set_queue(&test_queue);
}

static void setup(void) {
  log_init(LOG_OFF, LOG_FMT_TEXT); /* the failing database logs on purpose */
  store_h_setup("agentd.db");
  char err[256] = "";
  cr_assert_eq(store_open(&S, store_h_url, err, sizeof err), 0, "%s", err);
  store_h_user(S, "usr_a", NULL, NULL, NULL);
  store_h_user(S, "usr_b", NULL, NULL, NULL);
}

static void teardown(void) {
  if (W) event_writer_free(W); /* stores and hands on what is left */
  W = NULL;
  messages_set_queue(NULL);
  if (S) store_close(S);
  S = NULL;
  store_h_teardown();
}

static void new_thread(const char *user, char id[ID_MAX]) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, user, "t", NULL, &t), 0);
  snprintf(id, ID_MAX, "%s", t.id);
  store_thread_dispose(&t);
}

/* All of a thread's messages, oldest first (by sequence). */
static void all_messages(const char *user, const char *thread, store_message_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  for (long off = 0;; off += 100) {
    store_message_list_t l;
    cr_assert_eq(store_message_list(S, user, thread, 100, off, &l), 0);
    *out = realloc(*out, (*n + l.n + 1) * sizeof **out);
    for (size_t i = 0; i < l.n; i++) {
      (*out)[(*n)++] = l.items[i];
      memset(&l.items[i], 0, sizeof l.items[i]); /* moved */
    }
    int more = l.has_more;
    store_message_list_dispose(&l);
    if (!more) break;
  }
}

static void free_messages(store_message_t *m, size_t n) {
  for (size_t i = 0; i < n; i++) store_message_dispose(&m[i]);
  free(m);
}

/* ---- a done that counts, and waiting for it ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  int rc;                /* the last call's */
  int had_row;           /* the last call's m was non-NULL */
  char id[ID_MAX];       /* the last stored row's id */
  char thread_id[ID_MAX];
} waiter_t;

static void waiter_init(waiter_t *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
}

static void on_done(void *arg, int rc, const store_message_t *m) {
  waiter_t *w = arg;
  pthread_mutex_lock(&w->mu);
  w->calls++;
  w->rc = rc;
  w->had_row = m != NULL;
  if (m) {
    snprintf(w->id, sizeof w->id, "%s", m->id);
    snprintf(w->thread_id, sizeof w->thread_id, "%s", m->thread_id);
  }
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* Wait until w was called n times (60 s at most: a loaded machine); the count. */
static int waiter_wait(waiter_t *w, int n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 60;
  pthread_mutex_lock(&w->mu);
  while (w->calls < n && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
  }
  int got = w->calls;
  pthread_mutex_unlock(&w->mu);
  return got;
}

static int write_msg(const char *user, const char *thread, const char *content, waiter_t *w) {
  messages_write_t m = {.user_id = user,
                        .msg = {.thread_id = thread, .role = "user", .content = content},
                        .done = w ? on_done : NULL,
                        .arg = w};
  return messages_write(&m);
}

TestSuite(messages, .init = setup, .fini = teardown);

/* ---- order ---- */

#define WRITERS 4
#define PER_WRITER 300

typedef struct writer_arg {
  const char *thread;
  int index;
  waiter_t done;
  int rc;
} writer_arg_t;

static void *writer_main(void *arg) {
  writer_arg_t *a = arg;
  for (int i = 0; i < PER_WRITER && a->rc == 0; i++) {
    char content[64];
    snprintf(content, sizeof content, "w%d-%04d", a->index, i);
    a->rc = write_msg("usr_a", a->thread, content, &a->done);
  }
  return NULL;
}

Test(messages, writes_from_several_threads_keep_each_writers_order) {
  start_writer(NULL, 0);
  char thread[ID_MAX];
  new_thread("usr_a", thread);
  writer_arg_t args[WRITERS];
  pthread_t th[WRITERS];
  for (int k = 0; k < WRITERS; k++) {
    args[k] = (writer_arg_t){.thread = thread, .index = k};
    waiter_init(&args[k].done);
    cr_assert_eq(pthread_create(&th[k], NULL, writer_main, &args[k]), 0);
  }
  for (int k = 0; k < WRITERS; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < WRITERS; k++) {
    cr_assert_eq(args[k].rc, 0, "writer %d refused", k);
    cr_assert_eq(waiter_wait(&args[k].done, PER_WRITER), PER_WRITER, "writer %d: every done called", k);
    cr_expect_eq(args[k].done.rc, 0);
  }

  store_message_t *m;
  size_t n;
  all_messages("usr_a", thread, &m, &n);
  cr_assert_eq(n, (size_t)WRITERS * PER_WRITER, "every message stored once: %zu", n);
  int next[WRITERS] = {0};
  for (size_t i = 0; i < n; i++) {
    if (i) cr_assert_gt(m[i].seq, m[i - 1].seq, "sequence strictly increasing at %zu", i);
    int k, j;
    cr_assert_eq(sscanf(m[i].content, "w%d-%d", &k, &j), 2, "%s", m[i].content);
    cr_assert(k >= 0 && k < WRITERS);
    cr_assert_eq(j, next[k], "writer %d: message %d came back where %d was due", k, j, next[k]);
    next[k]++;
  }
  free_messages(m, n);
}

/* A write the store refuses in the transaction is undone alone; its neighbours in
 * the same group commit are stored, in order. */
Test(messages, a_refused_write_is_undone_alone) {
  start_writer(NULL, 0);
  char mine[ID_MAX], theirs[ID_MAX];
  new_thread("usr_a", mine);
  new_thread("usr_b", theirs);
  waiter_t ok, refused;
  waiter_init(&ok);
  waiter_init(&refused);
  cr_assert_eq(write_msg("usr_a", mine, "first", &ok), 0);
  cr_assert_eq(write_msg("usr_a", theirs, "into another user's thread", &refused), 0);
  cr_assert_eq(write_msg("usr_a", mine, "second", &ok), 0);
  cr_assert_eq(waiter_wait(&ok, 2), 2);
  cr_assert_eq(waiter_wait(&refused, 1), 1);
  cr_expect_eq(refused.rc, AGD_ENOT_FOUND);
  cr_expect_not(refused.had_row);
  cr_expect_eq(ok.rc, 0);
  store_message_t *m;
  size_t n;
  all_messages("usr_a", mine, &m, &n);
  cr_assert_eq(n, 2);
  cr_expect_str_eq(m[0].content, "first");
  cr_expect_str_eq(m[1].content, "second");
  free_messages(m, n);
  all_messages("usr_b", theirs, &m, &n);
  cr_expect_eq(n, 0, "nothing in the other user's thread");
  free_messages(m, n);
}

Test(messages, what_the_store_would_refuse_is_refused_before_queueing) {
  start_writer(NULL, 0);
  char thread[ID_MAX];
  new_thread("usr_a", thread);
  char *big = malloc(STORE_CONTENT_MAX + 2);
  memset(big, 'x', STORE_CONTENT_MAX + 1);
  big[STORE_CONTENT_MAX + 1] = '\0';
  waiter_t w;
  waiter_init(&w);
  cr_expect_eq(write_msg("usr_a", thread, big, &w), AGD_EBAD_REQUEST);
  free(big);
  messages_write_t bad_role = {.user_id = "usr_a",
                               .msg = {.thread_id = thread, .role = "a role far too long", .content = "x"},
                               .done = on_done,
                               .arg = &w};
  cr_expect_eq(messages_write(&bad_role), AGD_EVALIDATION);
  /* A write behind them comes out alone: the refused ones never reached the writer. */
  cr_assert_eq(write_msg("usr_a", thread, "fine", &w), 0);
  cr_assert_eq(waiter_wait(&w, 1), 1);
  event_writer_free(W); /* anything else queued would be handed on here */
  W = NULL;
  cr_expect_eq(w.calls, 1, "done only for the write that was queued");
  cr_expect_eq(w.rc, 0);
}

/* ---- failure ---- */

Test(messages, a_failed_transaction_answers_every_waiter_and_stores_nothing) {
  start_writer(failing_tx, 0.2);
  char thread[ID_MAX];
  new_thread("usr_a", thread);
  store_thread_list_t before;
  cr_assert_eq(store_thread_list(S, "usr_a", 1, 100, 0, &before), 0);
  waiter_t w;
  waiter_init(&w);
  const int N = 20;
  for (int i = 0; i < N; i++) {
    char content[32];
    snprintf(content, sizeof content, "lost %d", i);
    /* Every third one into a new thread: the thread must not be left either. */
    cr_assert_eq(write_msg("usr_a", i % 3 == 0 ? NULL : thread, content, &w), 0);
  }
  cr_assert_eq(waiter_wait(&w, N), N, "every waiter answered");
  cr_expect_eq(w.rc, AGD_EUNAVAILABLE);
  cr_expect_not(w.had_row);
  event_writer_free(W);
  W = NULL;
  cr_expect_eq(w.calls, N, "each answered once");

  store_message_t *m;
  size_t n;
  all_messages("usr_a", thread, &m, &n);
  cr_expect_eq(n, 0, "nothing of the batch stored: %zu message(s)", n);
  free_messages(m, n);
  store_thread_list_t after;
  cr_assert_eq(store_thread_list(S, "usr_a", 1, 100, 0, &after), 0);
  cr_expect_eq(after.total, before.total, "no thread created");
  store_thread_list_dispose(&before);
  store_thread_list_dispose(&after);
}

/* `also` (a run start's run row) is in the message's transaction: stored with it,
 * or undone with it. */
typedef struct run_write {
  char run_id[ID_MAX];
  int fail;
  atomic_int calls;
  waiter_t w;
} run_write_t;

static int also_run(store_t *st, const store_message_t *m, void *arg) {
  run_write_t *r = arg;
  atomic_fetch_add(&r->calls, 1);
  int rc = store_run_create(st, "usr_a", r->run_id, m->thread_id, "supervisor", m->content, 1.0);
  return rc != 0 ? rc : r->fail ? AGD_ECONFLICT : 0;
}

static void on_run_done(void *arg, int rc, const store_message_t *m) { on_done(&((run_write_t *)arg)->w, rc, m); }

Test(messages, also_shares_the_message_transaction) {
  start_writer(NULL, 0);
  run_write_t good = {.fail = 0}, bad = {.fail = 1};
  id_new(good.run_id, "run");
  id_new(bad.run_id, "run");
  waiter_init(&good.w);
  waiter_init(&bad.w);
  messages_write_t m = {.user_id = "usr_a",
                        .msg = {.role = "user", .content = "start a run", .new_thread_title = "t"},
                        .also = also_run,
                        .done = on_run_done,
                        .arg = &good};
  cr_assert_eq(messages_write(&m), 0);
  m.arg = &bad; /* its run row is written, then also fails */
  cr_assert_eq(messages_write(&m), 0);
  cr_assert_eq(waiter_wait(&good.w, 1), 1);
  cr_assert_eq(waiter_wait(&bad.w, 1), 1);
  cr_expect_eq(good.w.rc, 0);
  cr_expect_eq(bad.w.rc, AGD_ECONFLICT, "also's failure is the write's");
  cr_expect_not(bad.w.had_row);
  cr_expect_geq(atomic_load(&bad.calls), 1);

  store_run_t run;
  cr_assert_eq(store_run_get(S, "usr_a", good.run_id, &run), 0, "the good run row is stored");
  cr_expect_str_eq(run.thread_id, good.w.thread_id, "in the thread its message created");
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, "usr_a", run.thread_id, 10, 0, &l), 0);
  cr_expect_eq(l.n, 1, "its message in its new thread");
  if (l.n) cr_expect_str_eq(l.items[0].id, good.w.id);
  store_message_list_dispose(&l);
  store_run_dispose(&run);
  cr_expect_eq(store_run_get(S, "usr_a", bad.run_id, &run), AGD_ENOT_FOUND, "the failed one left no run");
  store_thread_list_t tl;
  cr_assert_eq(store_thread_list(S, "usr_a", 1, 100, 0, &tl), 0);
  cr_expect_eq(tl.total, 1, "nor a thread: only the good one's (%ld)", tl.total);
  store_thread_list_dispose(&tl);
}

/* ---- read your writes ---- */

/* done is called only after the commit: another connection (this test's main
 * thread) can read the message while done is still running. */
typedef struct probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char id[ID_MAX];
  int asked, answered, visible;
} probe_t;

static void on_done_probe(void *arg, int rc, const store_message_t *m) {
  probe_t *p = arg;
  pthread_mutex_lock(&p->mu);
  snprintf(p->id, sizeof p->id, "%s", rc == 0 && m ? m->id : "");
  p->asked = 1;
  pthread_cond_broadcast(&p->cv);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 60;
  while (!p->answered && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
  }
  pthread_mutex_unlock(&p->mu);
}

Test(messages, the_message_is_readable_before_done_returns) {
  start_writer(NULL, 0);
  char thread[ID_MAX];
  new_thread("usr_a", thread);
  for (int i = 0; i < 5; i++) {
    probe_t p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    /* A few writes ahead of it, so it is not alone in its batch. */
    for (int k = 0; k < i; k++) cr_assert_eq(write_msg("usr_a", thread, "ahead", NULL), 0);
    messages_write_t m = {.user_id = "usr_a",
                          .msg = {.thread_id = thread, .role = "user", .content = "read me"},
                          .done = on_done_probe,
                          .arg = &p};
    cr_assert_eq(messages_write(&m), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&p.mu);
    while (!p.asked && pthread_cond_timedwait(&p.cv, &p.mu, &until) == 0) {
    }
    cr_assert(p.asked, "done called");
    cr_assert(p.id[0], "done with the row");
    store_message_t got;
    p.visible = store_message_get(S, "usr_a", p.id, &got) == 0; /* while the writer waits in done */
    if (p.visible) cr_expect_str_eq(got.content, "read me");
    store_message_dispose(&got);
    p.answered = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    cr_expect(p.visible, "write %d: the message was not readable when its done ran", i);
    /* The writer may still be in done: wait for the next write to be answered. */
    waiter_t w;
    waiter_init(&w);
    cr_assert_eq(write_msg("usr_a", thread, "sync", &w), 0);
    cr_assert_eq(waiter_wait(&w, 1), 1);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
  }
}

/* A write nobody waits for (the run's answer) is still stored in order: ahead of
 * whatever is queued after it (here a waited write; in the server, the run's
 * agent_response event). */
Test(messages, a_write_nobody_waits_for_is_stored_ahead_of_what_follows) {
  start_writer(NULL, 0);
  char thread[ID_MAX], id[ID_MAX];
  new_thread("usr_a", thread);
  id_new(id, "msg");
  messages_write_t answer = {.user_id = "usr_a",
                             .msg = {.thread_id = thread, .role = "assistant", .content = "the answer", .id = id}};
  cr_assert_eq(messages_write(&answer), 0);
  waiter_t w;
  waiter_init(&w);
  cr_assert_eq(write_msg("usr_a", thread, "next", &w), 0);
  cr_assert_eq(waiter_wait(&w, 1), 1);
  store_message_t got;
  cr_assert_eq(store_message_get(S, "usr_a", id, &got), 0, "the answer, with the id it was given");
  cr_expect_str_eq(got.role, "assistant");
  cr_expect_str_eq(got.content, "the answer");
  store_message_dispose(&got);
}
