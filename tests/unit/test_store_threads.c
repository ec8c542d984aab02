/* tests/unit/test_store_threads.c — threads and messages of store.h (SPEC §3) on real
 * SQLite files in a mkdtemp directory.
 *
 * Ordering of back-to-back messages, per-user isolation of every call, pagination and
 * totals, soft and hard delete (cascade), message counts, history paging, validation.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "util/err.h"
#include "util/log.h"

#include "store_harness.h"

static store_t *S;

static void make_user(const char *id) { store_h_user(S, id, NULL, NULL, NULL); }

static void setup(void) {
  store_h_setup("agentd.db");
  char err[256] = "";
  cr_assert_eq(store_open(&S, store_h_url, err, sizeof err), 0, "%s", err);
  make_user("usr_a");
  make_user("usr_b");
}

static void teardown(void) {
  store_close(S);
  S = NULL;
  store_h_teardown();
}

TestSuite(store_threads, .init = setup, .fini = teardown);

static void new_thread(const char *user, const char *title, char id[ID_MAX]) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, user, title, NULL, &t), 0);
  snprintf(id, ID_MAX, "%s", t.id);
  store_thread_dispose(&t);
}

static void add_msg(const char *user, const char *thread, const char *content, char id_out[ID_MAX]) {
  store_message_new_t in = {.thread_id = thread, .role = "user", .content = content};
  store_message_t m;
  cr_assert_eq(store_message_add(S, user, &in, &m), 0, "add %s", content);
  if (id_out) snprintf(id_out, ID_MAX, "%s", m.id);
  store_message_dispose(&m);
}

Test(store_threads, create_get_shape) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, "usr_a", "Hello", "{\"k\":1}", &t), 0);
  cr_assert_eq(strncmp(t.id, "thr_", 4), 0);
  cr_assert_str_eq(t.title, "Hello");
  cr_assert_str_eq(t.metadata, "{\"k\":1}");
  cr_assert_str_eq(t.status, "active");
  cr_assert_gt(t.created_at, 1e9);
  cr_assert_eq(t.message_count, 0);
  store_thread_t g;
  cr_assert_eq(store_thread_get(S, "usr_a", t.id, &g), 0);
  cr_assert_str_eq(g.id, t.id);
  cr_assert_str_eq(g.title, "Hello");
  cr_assert_str_eq(g.metadata, "{\"k\":1}");
  store_thread_dispose(&g);
  store_thread_dispose(&t);

  cr_assert_eq(store_thread_create(S, "usr_a", NULL, NULL, &t), 0);
  cr_assert_null(t.title);
  cr_assert_str_eq(t.metadata, "{}");
  cr_assert_eq(store_thread_get(S, "usr_a", t.id, &g), 0);
  cr_assert_null(g.title);
  cr_assert_str_eq(g.metadata, "{}");
  store_thread_dispose(&g);
  store_thread_dispose(&t);
  store_thread_dispose(&t); /* twice is harmless */
}

Test(store_threads, validation) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, "usr_a", NULL, "[1,2]", &t), AGD_EVALIDATION);
  cr_assert_eq(store_thread_create(S, "usr_a", NULL, "{bad", &t), AGD_EVALIDATION);
  cr_assert_eq(store_thread_create(S, "usr_nobody", NULL, NULL, &t), AGD_ENOT_FOUND);
  char *big = malloc(STORE_TITLE_MAX + 2);
  memset(big, 'x', STORE_TITLE_MAX + 1);
  big[STORE_TITLE_MAX + 1] = 0;
  cr_assert_eq(store_thread_create(S, "usr_a", big, NULL, &t), AGD_EBAD_REQUEST);
  free(big);

  char tid[ID_MAX];
  new_thread("usr_a", "t", tid);
  store_message_new_t in = {.thread_id = tid, .role = "robot", .content = "x"};
  store_message_t m;
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), AGD_EVALIDATION);
  in.role = "user";
  in.metadata = "\"str\"";
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), AGD_EVALIDATION);
  char *huge = malloc(STORE_CONTENT_MAX + 2);
  memset(huge, 'y', STORE_CONTENT_MAX + 1);
  huge[STORE_CONTENT_MAX + 1] = 0;
  in.metadata = NULL;
  in.content = huge;
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), AGD_EBAD_REQUEST);
  huge[STORE_CONTENT_MAX] = 0; /* exactly the cap fits */
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), 0);
  cr_assert_eq(strlen(m.content), STORE_CONTENT_MAX);
  store_message_dispose(&m);
  free(huge);
  /* Nothing half-written: the thread counts the one stored message only. */
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_eq(t.message_count, 1);
  store_thread_dispose(&t);

  store_thread_list_t l;
  cr_assert_eq(store_thread_list(S, "usr_a", 0, 0, 0, &l), AGD_EBAD_REQUEST);
  cr_assert_eq(store_thread_list(S, "usr_a", 0, 10, -1, &l), AGD_EBAD_REQUEST);
}

Test(store_threads, ten_messages_in_order) {
  char tid[ID_MAX];
  new_thread("usr_a", "order", tid);
  char ids[10][ID_MAX];
  for (int i = 0; i < 10; i++) {
    char c[16];
    snprintf(c, sizeof c, "m%d", i);
    add_msg("usr_a", tid, c, ids[i]);
  }
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, "usr_a", tid, 100, 0, &l), 0);
  cr_assert_eq(l.n, 10);
  cr_assert_eq(l.total, 10);
  cr_assert_eq(l.has_more, 0);
  for (int i = 0; i < 10; i++) {
    char c[16];
    snprintf(c, sizeof c, "m%d", i);
    cr_assert_str_eq(l.items[i].content, c);
    cr_assert_str_eq(l.items[i].id, ids[i]);
    cr_assert_str_eq(l.items[i].thread_id, tid);
    cr_assert_str_eq(l.items[i].role, "user");
    if (i) cr_assert_gt(l.items[i].seq, l.items[i - 1].seq);
  }
  store_message_list_dispose(&l);

  /* Newest first across the user's messages. */
  cr_assert_eq(store_message_list_user(S, "usr_a", NULL, 3, 0, &l), 0);
  cr_assert_eq(l.n, 3);
  cr_assert_eq(l.total, 10);
  cr_assert(l.has_more);
  cr_assert_str_eq(l.items[0].content, "m9");
  cr_assert_str_eq(l.items[2].content, "m7");
  store_message_list_dispose(&l);
  cr_assert_eq(store_message_list_user(S, "usr_a", tid, 5, 8, &l), 0);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.has_more, 0);
  cr_assert_str_eq(l.items[0].content, "m1");
  cr_assert_str_eq(l.items[1].content, "m0");
  store_message_list_dispose(&l);

  store_thread_t t;
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_eq(t.message_count, 10);
  cr_assert_geq(t.updated_at, t.created_at);
  store_thread_dispose(&t);
}

Test(store_threads, pagination) {
  char tid[ID_MAX];
  new_thread("usr_a", "p", tid);
  for (int i = 0; i < 25; i++) {
    char c[16];
    snprintf(c, sizeof c, "%d", i);
    add_msg("usr_a", tid, c, NULL);
  }
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, "usr_a", tid, 10, 20, &l), 0);
  cr_assert_eq(l.n, 5);
  cr_assert_eq(l.total, 25);
  cr_assert_eq(l.has_more, 0);
  cr_assert_str_eq(l.items[0].content, "20");
  store_message_list_dispose(&l);
  cr_assert_eq(store_message_list(S, "usr_a", tid, 10, 10, &l), 0);
  cr_assert_eq(l.n, 10);
  cr_assert(l.has_more);
  cr_assert_str_eq(l.items[0].content, "10");
  store_message_list_dispose(&l);
  cr_assert_eq(store_message_list(S, "usr_a", tid, 10, 100, &l), 0);
  cr_assert_eq(l.n, 0);
  cr_assert_eq(l.total, 25);
  store_message_list_dispose(&l);

  /* Threads: newest activity first, total, has_more via offset. */
  char t1[ID_MAX], t2[ID_MAX], t3[ID_MAX];
  new_thread("usr_b", "one", t1);
  new_thread("usr_b", "two", t2);
  new_thread("usr_b", "three", t3);
  add_msg("usr_b", t1, "bump", NULL); /* t1 becomes the most recent */
  store_thread_list_t tl;
  cr_assert_eq(store_thread_list(S, "usr_b", 0, 2, 0, &tl), 0);
  cr_assert_eq(tl.total, 3);
  cr_assert_eq(tl.n, 2);
  cr_assert_str_eq(tl.items[0].id, t1);
  cr_assert_str_eq(tl.items[1].id, t3);
  store_thread_list_dispose(&tl);
  cr_assert_eq(store_thread_list(S, "usr_b", 0, 2, 2, &tl), 0);
  cr_assert_eq(tl.n, 1);
  cr_assert_str_eq(tl.items[0].id, t2);
  store_thread_list_dispose(&tl);
}

Test(store_threads, history_before) {
  char tid[ID_MAX], other[ID_MAX];
  new_thread("usr_a", "h", tid);
  new_thread("usr_a", "o", other);
  char ids[7][ID_MAX];
  for (int i = 0; i < 7; i++) {
    char c[16];
    snprintf(c, sizeof c, "h%d", i);
    add_msg("usr_a", tid, c, ids[i]);
  }
  char oid[ID_MAX];
  add_msg("usr_a", other, "elsewhere", oid);
  store_message_list_t l;
  cr_assert_eq(store_message_history(S, "usr_a", tid, NULL, 3, &l), 0);
  cr_assert_eq(l.n, 3);
  cr_assert(l.has_more);
  cr_assert_str_eq(l.items[0].content, "h4");
  cr_assert_str_eq(l.items[2].content, "h6");
  store_message_list_dispose(&l);
  cr_assert_eq(store_message_history(S, "usr_a", tid, ids[4], 3, &l), 0);
  cr_assert_eq(l.n, 3);
  cr_assert(l.has_more);
  cr_assert_str_eq(l.items[0].content, "h1");
  store_message_list_dispose(&l);
  cr_assert_eq(store_message_history(S, "usr_a", tid, ids[1], 3, &l), 0);
  cr_assert_eq(l.n, 1);
  cr_assert_eq(l.has_more, 0);
  cr_assert_str_eq(l.items[0].content, "h0");
  store_message_list_dispose(&l);
  /* before must be a message of that thread, of that user. */
  cr_assert_eq(store_message_history(S, "usr_a", tid, oid, 3, &l), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_history(S, "usr_a", tid, "msg_nope", 3, &l), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_history(S, "usr_b", tid, NULL, 3, &l), AGD_ENOT_FOUND);
}

Test(store_threads, isolation) {
  char tid[ID_MAX], mid[ID_MAX];
  new_thread("usr_a", "secret", tid);
  add_msg("usr_a", tid, "private", mid);
  store_thread_t t;
  store_message_t m;
  store_message_list_t l;
  store_thread_list_t tl;
  cr_assert_eq(store_thread_get(S, "usr_b", tid, &t), AGD_ENOT_FOUND);
  cr_assert_eq(store_thread_update(S, "usr_b", tid, 1, "mine", NULL, &t), AGD_ENOT_FOUND);
  cr_assert_eq(store_thread_archive(S, "usr_b", tid), AGD_ENOT_FOUND);
  cr_assert_eq(store_thread_delete(S, "usr_b", tid), AGD_ENOT_FOUND);
  store_message_new_t in = {.thread_id = tid, .role = "user", .content = "intrude"};
  cr_assert_eq(store_message_add(S, "usr_b", &in, &m), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_get(S, "usr_b", mid, &m), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_delete(S, "usr_b", mid), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_list(S, "usr_b", tid, 10, 0, &l), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_list_user(S, "usr_b", tid, 10, 0, &l), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_list_user(S, "usr_b", NULL, 10, 0, &l), 0);
  cr_assert_eq(l.n, 0);
  cr_assert_eq(l.total, 0);
  store_message_list_dispose(&l);
  cr_assert_eq(store_thread_list(S, "usr_b", 1, 10, 0, &tl), 0);
  cr_assert_eq(tl.total, 0);
  store_thread_list_dispose(&tl);
  /* Untouched for its owner. */
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_str_eq(t.title, "secret");
  cr_assert_str_eq(t.status, "active");
  cr_assert_eq(t.message_count, 1);
  store_thread_dispose(&t);
  cr_assert_eq(store_message_get(S, "usr_a", mid, &m), 0);
  cr_assert_str_eq(m.content, "private");
  store_message_dispose(&m);
}

Test(store_threads, update_archive) {
  char tid[ID_MAX];
  new_thread("usr_a", "old", tid);
  store_thread_t t;
  cr_assert_eq(store_thread_update(S, "usr_a", tid, 1, "new", "{\"a\":[1]}", &t), 0);
  cr_assert_str_eq(t.title, "new");
  cr_assert_str_eq(t.metadata, "{\"a\":[1]}");
  store_thread_dispose(&t);
  cr_assert_eq(store_thread_update(S, "usr_a", tid, 0, NULL, NULL, &t), 0); /* no change */
  cr_assert_str_eq(t.title, "new");
  store_thread_dispose(&t);
  cr_assert_eq(store_thread_update(S, "usr_a", tid, 0, NULL, "7", &t), AGD_EVALIDATION);
  cr_assert_eq(store_thread_update(S, "usr_a", tid, 1, NULL, NULL, NULL), 0);
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_null(t.title);
  cr_assert_str_eq(t.metadata, "{\"a\":[1]}");
  store_thread_dispose(&t);

  char keep[ID_MAX];
  new_thread("usr_a", "keep", keep);
  cr_assert_eq(store_thread_archive(S, "usr_a", tid), 0);
  cr_assert_eq(store_thread_archive(S, "usr_a", tid), 0); /* idempotent */
  store_thread_list_t l;
  cr_assert_eq(store_thread_list(S, "usr_a", 0, 20, 0, &l), 0);
  cr_assert_eq(l.total, 1);
  cr_assert_str_eq(l.items[0].id, keep);
  store_thread_list_dispose(&l);
  cr_assert_eq(store_thread_list(S, "usr_a", 1, 20, 0, &l), 0);
  cr_assert_eq(l.total, 2);
  store_thread_list_dispose(&l);
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_str_eq(t.status, "archived");
  store_thread_dispose(&t);
}

Test(store_threads, hard_delete_cascades) {
  char tid[ID_MAX], keep[ID_MAX], mid[ID_MAX];
  new_thread("usr_a", "gone", tid);
  new_thread("usr_a", "keep", keep);
  for (int i = 0; i < 5; i++) add_msg("usr_a", tid, "x", i == 0 ? mid : NULL);
  add_msg("usr_a", keep, "stays", NULL);
  cr_assert_eq(store_thread_delete(S, "usr_a", tid), 0);
  store_thread_t t;
  store_message_t m;
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), AGD_ENOT_FOUND);
  cr_assert_eq(store_message_get(S, "usr_a", mid, &m), AGD_ENOT_FOUND);
  cr_assert_eq(store_thread_delete(S, "usr_a", tid), AGD_ENOT_FOUND);
  store_message_list_t l;
  cr_assert_eq(store_message_list_user(S, "usr_a", NULL, 100, 0, &l), 0);
  cr_assert_eq(l.total, 1);
  cr_assert_str_eq(l.items[0].content, "stays");
  store_message_list_dispose(&l);
}

Test(store_threads, message_delete_counts) {
  char tid[ID_MAX], a[ID_MAX], b[ID_MAX];
  new_thread("usr_a", "c", tid);
  add_msg("usr_a", tid, "a", a);
  add_msg("usr_a", tid, "b", b);
  store_thread_t t;
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  double upd = t.updated_at;
  store_thread_dispose(&t);
  cr_assert_eq(store_message_delete(S, "usr_a", a), 0);
  cr_assert_eq(store_message_delete(S, "usr_a", a), AGD_ENOT_FOUND);
  cr_assert_eq(store_thread_get(S, "usr_a", tid, &t), 0);
  cr_assert_eq(t.message_count, 1);
  cr_assert_eq(t.updated_at, upd);
  store_thread_dispose(&t);
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, "usr_a", tid, 20, 0, &l), 0);
  cr_assert_eq(l.total, 1);
  cr_assert_str_eq(l.items[0].id, b);
  store_message_list_dispose(&l);
  /* The sequence never goes back, even after deleting the newest message. */
  store_message_t m;
  cr_assert_eq(store_message_get(S, "usr_a", b, &m), 0);
  long long seq_b = m.seq;
  store_message_dispose(&m);
  cr_assert_eq(store_message_delete(S, "usr_a", b), 0);
  store_message_new_t in = {.thread_id = tid, .role = "assistant", .content = "c", .run_id = "run_x",
                            .metadata = "{\"m\":true}"};
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), 0);
  cr_assert_gt(m.seq, seq_b);
  store_message_dispose(&m);
  cr_assert_eq(store_message_list(S, "usr_a", tid, 20, 0, &l), 0);
  cr_assert_str_eq(l.items[0].run_id, "run_x");
  cr_assert_str_eq(l.items[0].role, "assistant");
  cr_assert_str_eq(l.items[0].metadata, "{\"m\":true}");
  store_message_list_dispose(&l);
}

Test(store_threads, add_creates_thread) {
  store_message_new_t in = {.new_thread_title = "From words", .role = "user", .content = "From words"};
  store_message_t m;
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), 0);
  store_thread_t t;
  cr_assert_eq(store_thread_get(S, "usr_a", m.thread_id, &t), 0);
  cr_assert_str_eq(t.title, "From words");
  cr_assert_eq(t.message_count, 1);
  store_thread_dispose(&t);
  store_message_dispose(&m);
  /* An unknown user creates nothing. */
  cr_assert_eq(store_message_add(S, "usr_ghost", &in, &m), AGD_ENOT_FOUND);
  store_thread_list_t l;
  cr_assert_eq(store_thread_list(S, "usr_a", 1, 20, 0, &l), 0);
  cr_assert_eq(l.total, 1);
  store_thread_list_dispose(&l);
}

/* Concurrent writers on one thread: every message stored, counts exact, order strict. */
static char conc_tid[ID_MAX];
static void *writer(void *arg) {
  for (int i = 0; i < 50; i++) {
    store_message_new_t in = {.thread_id = conc_tid, .role = "user", .content = (const char *)arg};
    store_message_t m;
    if (store_message_add(S, "usr_a", &in, &m) != 0) return (void *)1;
    store_message_dispose(&m);
  }
  return NULL;
}

Test(store_threads, concurrent_writers) {
  new_thread("usr_a", "busy", conc_tid);
  pthread_t th[4];
  const char *names[4] = {"w0", "w1", "w2", "w3"};
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, writer, (void *)names[i]);
  for (int i = 0; i < 4; i++) {
    void *rv;
    pthread_join(th[i], &rv);
    cr_assert_null(rv);
  }
  store_thread_t t;
  cr_assert_eq(store_thread_get(S, "usr_a", conc_tid, &t), 0);
  cr_assert_eq(t.message_count, 200);
  store_thread_dispose(&t);
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, "usr_a", conc_tid, 100, 100, &l), 0);
  cr_assert_eq(l.n, 100);
  for (size_t i = 1; i < l.n; i++) cr_assert_gt(l.items[i].seq, l.items[i - 1].seq);
  store_message_list_dispose(&l);
}
