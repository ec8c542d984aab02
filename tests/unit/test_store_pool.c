/* tests/unit/test_store_pool.c — borrower threads (store_thread_borrow) and the store's
 * pool of shared connections (src/store/sqlite_db.c).
 *
 * Many borrowers at once never open more than the pool's connections (by the pool's own
 * figures and by agentd_db_connections_open, read while all of them are alive), and
 * their rows are right; a borrower holds no connection between calls nor after it
 * exits; calls nested in a call (store_tx's fn) use the connection of the outer call;
 * a borrower that finds every connection out waits and then fails AGD_EUNAVAILABLE;
 * threads that do not borrow keep connections of their own.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "store/sqlite_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

#include "store_harness.h"

static void setup(void) {
  store_h_setup("agentd.db");
  metrics_reset();
}
static void teardown(void) { store_h_teardown(); }

TestSuite(store_pool, .init = setup, .fini = teardown);

static store_t *open_ok(void) {
  store_t *s = NULL;
  char err[256] = "";
  int rc = store_open(&s, store_h_url, err, sizeof err);
  cr_assert_eq(rc, 0, "store_open: %d %s", rc, err);
  return s;
}

/* agentd_db_connections_open as GET /metrics renders it (0 when absent). */
static long conns_open(void) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(metrics_render(&b), 0);
  cr_assert_eq(buf_append(&b, "", 1), 0);
  long v = 0;
  const char *key = "\nagentd_db_connections_open ";
  const char *p = strstr(b.base, key);
  if (p) v = strtol(p + strlen(key), NULL, 10);
  buf_dispose(&b);
  return v;
}

static sq_pool_stats_t pool(store_t *s) {
  sq_pool_stats_t st;
  sq_pool_stats(s, &st);
  return st;
}

/* ---- many borrowers ---- */

#define BORROWERS 64
#define MSGS 12
#define POOL 4

typedef struct {
  store_t *s;
  int i;
  int rc;                 /* first failure, 0 when all went right */
  pthread_barrier_t *done; /* all have done their calls (main reads the gauge here) */
  pthread_barrier_t *go;   /* main has read it: exit */
} borrower_t;

/* A thread of its own user: MSGS messages, then the history back in order. */
static void *borrower_main(void *arg) {
  borrower_t *w = arg;
  store_thread_borrow();
  char uid[16], text[48];
  snprintf(uid, sizeof uid, "u%d", w->i);
  store_thread_t t;
  memset(&t, 0, sizeof t);
  w->rc = store_thread_create(w->s, uid, "pooled", NULL, &t);
  for (int m = 0; m < MSGS && w->rc == 0; m++) {
    snprintf(text, sizeof text, "%s-%d", uid, m);
    store_message_new_t in = {.thread_id = t.id, .role = "user", .content = text};
    store_message_t out;
    memset(&out, 0, sizeof out);
    w->rc = store_message_add(w->s, uid, &in, &out);
    store_message_dispose(&out);
  }
  if (w->rc == 0) {
    store_message_list_t l;
    memset(&l, 0, sizeof l);
    w->rc = store_message_history(w->s, uid, t.id, NULL, 100, &l);
    if (w->rc == 0 && l.n != MSGS) w->rc = -1000;
    for (size_t m = 0; w->rc == 0 && m < l.n; m++) {
      snprintf(text, sizeof text, "%s-%zu", uid, m);
      if (strcmp(l.items[m].content, text) != 0) w->rc = -1001;
    }
    store_message_list_dispose(&l);
  }
  store_thread_dispose(&t);
  pthread_barrier_wait(w->done);
  pthread_barrier_wait(w->go);
  return NULL;
}

Test(store_pool, many_borrowers_share_a_few_connections) {
  store_t *s = open_ok();
  sq_pool_config(s, POOL, 30000);
  for (int i = 0; i < BORROWERS; i++) {
    char uid[16];
    snprintf(uid, sizeof uid, "u%d", i);
    store_h_user(s, uid, NULL, NULL, NULL);
  }
  long before = conns_open(); /* this thread's (migrations and the users) */
  pthread_barrier_t done, go;
  pthread_barrier_init(&done, NULL, BORROWERS + 1);
  pthread_barrier_init(&go, NULL, BORROWERS + 1);
  pthread_t th[BORROWERS];
  borrower_t w[BORROWERS];
  for (int i = 0; i < BORROWERS; i++) {
    w[i] = (borrower_t){.s = s, .i = i, .done = &done, .go = &go};
    cr_assert_eq(pthread_create(&th[i], NULL, borrower_main, &w[i]), 0);
  }
  pthread_barrier_wait(&done);
  /* Every borrower is alive and has used the store: with a connection each there
   * would be BORROWERS more open now. */
  long during = conns_open();
  sq_pool_stats_t st = pool(s);
  pthread_barrier_wait(&go);
  for (int i = 0; i < BORROWERS; i++) {
    cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_eq(w[i].rc, 0, "borrower %d: %d", i, w[i].rc);
  }
  /* + 1: the checkpointer opens its own once the WAL is long enough. */
  cr_assert_leq(during - before, POOL + 1, "connections open: %ld before, %ld with %d borrowers", before, during,
                BORROWERS);
  cr_assert_leq(st.open, POOL);
  cr_assert_leq(st.peak, POOL);
  cr_assert_geq(st.open, 1);
  cr_assert_eq(st.out, 0, "no borrower keeps a connection between calls");
  cr_assert_eq(st.timeouts, 0);

  /* After they exit nothing more is open, and nothing is lent. */
  cr_assert_eq(conns_open(), during);
  cr_assert_eq(pool(s).out, 0);
  /* Every row is there, from this (non-borrowing) thread's own connection. */
  long n = 0;
  for (int i = 0; i < BORROWERS; i++) {
    char uid[32];
    snprintf(uid, sizeof uid, "u%d", i);
    store_thread_list_t l;
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_thread_list(s, uid, 0, 10, 0, &l), 0);
    cr_assert_eq(l.n, 1);
    n += l.items[0].message_count;
    store_thread_list_dispose(&l);
  }
  cr_assert_eq(n, (long)BORROWERS * MSGS);
  pthread_barrier_destroy(&done);
  pthread_barrier_destroy(&go);
  store_close(s);
  cr_assert_eq(conns_open(), 0, "store_close closed the pool's connections too");
}

/* ---- a non-borrower keeps its own; a borrower's store_tx nests on one connection ---- */

static void *own_thread(void *arg) {
  store_h_user(arg, "own", NULL, NULL, NULL);
  return NULL;
}

static int two_users(store_t *s, void *arg) {
  (void)arg;
  store_user_t u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "tx1");
  snprintf(u.email, sizeof u.email, "tx1@example.com");
  int rc = store_user_create(s, &u);
  if (rc) return rc;
  /* Inside the transaction: the same connection, still lent (not back in the pool). */
  if (pool(s).out != 1) return -2000;
  snprintf(u.id, sizeof u.id, "tx2");
  snprintf(u.email, sizeof u.email, "tx2@example.com");
  return store_user_create(s, &u);
}

static void *tx_borrower(void *arg) {
  store_thread_borrow();
  return (void *)(intptr_t)store_tx(arg, two_users, NULL);
}

Test(store_pool, nested_calls_and_own_connections) {
  store_t *s = open_ok();
  sq_pool_config(s, 1, 2000); /* a nested call that took a second connection would time out */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, own_thread, s), 0);
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_assert_eq(pool(s).open, 0, "a thread that does not borrow opens its own connection");

  void *rc = NULL;
  cr_assert_eq(pthread_create(&th, NULL, tx_borrower, s), 0);
  cr_assert_eq(pthread_join(th, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0, "store_tx on a borrower: %d", (int)(intptr_t)rc);
  sq_pool_stats_t st = pool(s);
  cr_assert_eq(st.open, 1);
  cr_assert_eq(st.out, 0);
  cr_assert_eq(st.peak, 1);
  long n = 0;
  cr_assert_eq(store_user_count(s, &n), 0);
  cr_assert_eq(n, 3, "own, tx1, tx2 committed");
  store_close(s);
}

/* ---- every connection out: the wait, the timeout, and the pool after it ---- */

typedef struct {
  store_t *s;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inside;  /* the holder is in its callback, with the pool's only connection */
  int release; /* the holder may return */
  int rc;
} holder_t;

static void hold_cb(const char *jti, double expires_at, void *arg) {
  (void)jti, (void)expires_at;
  holder_t *h = arg;
  pthread_mutex_lock(&h->mu);
  h->inside = 1;
  pthread_cond_broadcast(&h->cv);
  while (!h->release) pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
}

/* A borrower inside a store call (its callback blocks) for as long as the test wants. */
static void *holder_main(void *arg) {
  holder_t *h = arg;
  store_thread_borrow();
  h->rc = store_revoked_load(h->s, 0, hold_cb, h);
  return NULL;
}

/* Start a holder on s's pool and return once it is inside its store call, holding the
 * pool's connection. */
static void holder_enter(holder_t *h, store_t *s, pthread_t *t) {
  *h = (holder_t){.s = s};
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  cr_assert_eq(pthread_create(t, NULL, holder_main, h), 0);
  pthread_mutex_lock(&h->mu);
  while (!h->inside) pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
}

/* Let the holder's store call return (its connection goes back to the pool). */
static void holder_release(holder_t *h) {
  pthread_mutex_lock(&h->mu);
  h->release = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

static void holder_dispose(holder_t *h) {
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
}

static void *waiter_main(void *arg) {
  store_thread_borrow();
  long n = 0;
  return (void *)(intptr_t)store_user_count(arg, &n);
}

Test(store_pool, timeout_when_every_connection_is_out) {
  store_t *s = open_ok();
  cr_assert_eq(store_revoke_access(s, "jti-1", 4e9), 0); /* a row, so the callback runs */
  sq_pool_config(s, 1, 200);
  holder_t h;
  pthread_t holder, waiter;
  holder_enter(&h, s, &holder);

  void *rc = NULL;
  cr_assert_eq(pthread_create(&waiter, NULL, waiter_main, s), 0);
  cr_assert_eq(pthread_join(waiter, &rc), 0);
  cr_assert_eq((intptr_t)rc, AGD_EUNAVAILABLE, "got %d", (int)(intptr_t)rc);
  sq_pool_stats_t st = pool(s);
  cr_assert_eq(st.timeouts, 1);
  cr_assert_eq(st.open, 1);
  cr_assert_eq(st.out, 1);

  holder_release(&h);
  cr_assert_eq(pthread_join(holder, NULL), 0);
  cr_assert_eq(h.rc, 0);
  cr_assert_eq(pool(s).out, 0);

  /* The connection came back: a borrower gets it now. */
  cr_assert_eq(pthread_create(&waiter, NULL, waiter_main, s), 0);
  cr_assert_eq(pthread_join(waiter, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0);
  cr_assert_eq(pool(s).open, 1);
  holder_dispose(&h);
  store_close(s);
}

/* A borrower waiting for the pool gets the connection another one gives back. */
Test(store_pool, waiter_gets_the_returned_connection) {
  store_t *s = open_ok();
  cr_assert_eq(store_revoke_access(s, "jti-1", 4e9), 0);
  sq_pool_config(s, 1, 60000);
  holder_t h;
  pthread_t holder, waiter;
  holder_enter(&h, s, &holder);
  cr_assert_eq(pthread_create(&waiter, NULL, waiter_main, s), 0);
  holder_release(&h);
  void *rc = NULL;
  cr_assert_eq(pthread_join(waiter, &rc), 0);
  cr_assert_eq((intptr_t)rc, 0);
  cr_assert_eq(pthread_join(holder, NULL), 0);
  sq_pool_stats_t st = pool(s);
  cr_assert_eq(st.open, 1);
  cr_assert_eq(st.timeouts, 0);
  holder_dispose(&h);
  store_close(s);
}
