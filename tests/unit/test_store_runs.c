/* tests/unit/test_store_runs.c — store.h: runs, events and group commits (store_tx).
 *
 * Real SQLite files in a temporary directory.  Covers the nesting of store calls
 * inside store_tx (each a savepoint), caller-made message ids, the event batch
 * (seq counters once per user, a failing row alone undone, the counter still moved
 * past it), listing by run / thread, the cascade of a thread's delete to its runs'
 * events, and the 0005 migration of events stored under the 0003 layout.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"

#include "store_harness.h"

static store_t *S;

static void make_user(const char *id) { store_h_user(S, id, NULL, NULL, NULL); }

static void open_store(void) {
  char err[256] = "";
  cr_assert_eq(store_open(&S, store_h_url, err, sizeof err), 0, "%s", err);
}

static void setup(void) { store_h_setup("agentd.db"); }

static void teardown(void) {
  if (S) store_close(S);
  S = NULL;
  store_h_teardown();
}

TestSuite(store_runs, .init = setup, .fini = teardown);

static void new_thread(const char *user, char id[ID_MAX]) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, user, "t", NULL, &t), 0);
  snprintf(id, ID_MAX, "%s", t.id);
  store_thread_dispose(&t);
}

static void new_run(const char *user, const char *thread, char id[ID_MAX]) {
  id_new(id, "run");
  cr_assert_eq(store_run_create(S, user, id, thread, "supervisor", "hello", 1.0), 0);
}

static long count_messages(const char *user, const char *thread) {
  store_message_list_t l;
  cr_assert_eq(store_message_list(S, user, thread, 100, 0, &l), 0);
  long n = (long)l.n;
  store_message_list_dispose(&l);
  return n;
}

static store_event_t ev(const char *user, int64_t seq, const char *run, const char *thread, const char *json) {
  return (store_event_t){.user_id = user, .seq = seq, .run_id = run, .thread_id = thread, .type = "agent_thinking",
                         .agent_name = "supervisor", .created_at = 1.0, .json = json};
}

/* ---- store_tx ---- */

typedef struct tx_case {
  const char *thread_a, *thread_b;
  int rc_other, rc_own;
  int fail_at_end;
} tx_case_t;

static int two_messages(store_t *st, void *arg) {
  tx_case_t *k = arg;
  store_message_t m;
  /* usr_a writing into usr_b's thread: refused, and undone alone. */
  store_message_new_t other = {.thread_id = k->thread_b, .role = "user", .content = "not yours"};
  k->rc_other = store_message_add(st, "usr_a", &other, &m);
  store_message_dispose(&m);
  store_message_new_t own = {.thread_id = k->thread_a, .role = "user", .content = "mine"};
  k->rc_own = store_message_add(st, "usr_a", &own, &m);
  store_message_dispose(&m);
  return k->fail_at_end ? AGD_EVALIDATION : 0;
}

Test(store_runs, tx_nests_calls_as_savepoints) {
  open_store();
  make_user("usr_a");
  make_user("usr_b");
  char ta[ID_MAX], tb[ID_MAX];
  new_thread("usr_a", ta);
  new_thread("usr_b", tb);
  tx_case_t k = {.thread_a = ta, .thread_b = tb};
  cr_assert_eq(store_tx(S, two_messages, &k), 0);
  cr_expect_eq(k.rc_other, AGD_ENOT_FOUND);
  cr_expect_eq(k.rc_own, 0);
  cr_expect_eq(count_messages("usr_a", ta), 1);
  cr_expect_eq(count_messages("usr_b", tb), 0);

  /* fn fails: everything it did is rolled back. */
  tx_case_t k2 = {.thread_a = ta, .thread_b = tb, .fail_at_end = 1};
  cr_assert_eq(store_tx(S, two_messages, &k2), AGD_EVALIDATION);
  cr_expect_eq(k2.rc_own, 0);
  cr_expect_eq(count_messages("usr_a", ta), 1);

  /* And the connection is usable afterwards (no transaction left open). */
  store_thread_t t;
  cr_assert_eq(store_thread_get(S, "usr_a", ta, &t), 0);
  cr_expect_eq(t.message_count, 1);
  store_thread_dispose(&t);
}

Test(store_runs, message_with_caller_id) {
  open_store();
  make_user("usr_a");
  char ta[ID_MAX], mid[ID_MAX];
  new_thread("usr_a", ta);
  id_new(mid, "msg");
  store_message_new_t in = {.thread_id = ta, .role = "assistant", .content = "answer", .id = mid};
  store_message_t m;
  cr_assert_eq(store_message_add(S, "usr_a", &in, &m), 0);
  cr_expect_str_eq(m.id, mid);
  store_message_dispose(&m);
  cr_assert_eq(store_message_get(S, "usr_a", mid, &m), 0);
  cr_expect_str_eq(m.content, "answer");
  store_message_dispose(&m);
  /* The same id twice is a conflict, not a second row. */
  cr_expect_eq(store_message_add(S, "usr_a", &in, &m), AGD_ECONFLICT);
  store_message_dispose(&m);
}

/* ---- events ---- */

Test(store_runs, event_batch_counters_and_failed_rows) {
  open_store();
  make_user("usr_a");
  make_user("usr_b");
  char ta[ID_MAX], tb[ID_MAX], ra[ID_MAX], rb[ID_MAX];
  new_thread("usr_a", ta);
  new_thread("usr_b", tb);
  new_run("usr_a", ta, ra);
  new_run("usr_b", tb, rb);
  store_event_t evs[] = {
      ev("usr_a", 1, ra, ta, "{\"n\":1}"), ev("usr_b", 1, rb, tb, "{\"n\":1}"),
      ev("usr_a", 2, ra, ta, "{\"n\":2}"), ev("usr_a", 3, "run_gone", ta, "{\"n\":3}"), /* no such run */
      ev("usr_b", 2, rb, tb, "{\"n\":2}"),
  };
  cr_assert_eq(store_event_append_batch(S, evs, 5), 0);
  int64_t last = 0;
  cr_assert_eq(store_event_last_seq(S, "usr_a", &last), 0);
  cr_expect_eq(last, 3, "the failed row's seq is spent too: %lld", (long long)last);
  cr_assert_eq(store_event_last_seq(S, "usr_b", &last), 0);
  cr_expect_eq(last, 2);

  store_event_list_t l;
  cr_assert_eq(store_event_list(S, "usr_a", 0, NULL, NULL, 100, &l), 0);
  cr_assert_eq(l.n, 2);
  cr_expect_eq(l.items[0].seq, 1);
  cr_expect_eq(l.items[1].seq, 2);
  store_event_list_free(&l);

  /* A seq already used is refused, the counter never goes back. */
  store_event_t again = ev("usr_b", 1, rb, tb, "{}");
  cr_expect_neq(store_event_append(S, &again), 0);
  cr_assert_eq(store_event_last_seq(S, "usr_b", &last), 0);
  cr_expect_eq(last, 2);
}

Test(store_runs, event_lists_by_run_and_thread) {
  open_store();
  make_user("usr_a");
  make_user("usr_b");
  char t1[ID_MAX], t2[ID_MAX], r1[ID_MAX], r2[ID_MAX], rb[ID_MAX], tb[ID_MAX];
  new_thread("usr_a", t1);
  new_thread("usr_a", t2);
  new_thread("usr_b", tb);
  new_run("usr_a", t1, r1);
  new_run("usr_a", t2, r2);
  new_run("usr_b", tb, rb);
  store_event_t evs[12];
  int64_t seq = 0;
  for (int i = 0; i < 10; i++) evs[i] = ev("usr_a", ++seq, i % 2 ? r2 : r1, i % 2 ? t2 : t1, "{}");
  evs[10] = ev("usr_b", 1, rb, tb, "{}");
  evs[11] = ev("usr_b", 2, rb, tb, "{}");
  cr_assert_eq(store_event_append_batch(S, evs, 12), 0);

  store_event_list_t l;
  cr_assert_eq(store_event_list(S, "usr_a", 0, r1, NULL, 100, &l), 0);
  cr_assert_eq(l.n, 5);
  for (size_t i = 0; i < l.n; i++) cr_expect_eq(l.items[i].seq, (int64_t)(2 * i + 1));
  store_event_list_free(&l);

  cr_assert_eq(store_event_list(S, "usr_a", 5, r2, NULL, 2, &l), 0);
  cr_assert_eq(l.n, 2);
  cr_expect_eq(l.items[0].seq, 6);
  cr_expect_eq(l.items[1].seq, 8);
  cr_expect(l.has_more);
  store_event_list_free(&l);

  cr_assert_eq(store_event_list(S, "usr_a", 0, NULL, t2, 100, &l), 0);
  cr_expect_eq(l.n, 5);
  store_event_list_free(&l);

  /* Another user's run: nothing, even by its id. */
  cr_assert_eq(store_event_list(S, "usr_a", 0, rb, NULL, 100, &l), 0);
  cr_expect_eq(l.n, 0);
  store_event_list_free(&l);

  /* Deleting a thread takes its runs' events along, and only those. */
  cr_assert_eq(store_thread_delete(S, "usr_a", t1), 0);
  cr_assert_eq(store_event_list(S, "usr_a", 0, NULL, NULL, 100, &l), 0);
  cr_expect_eq(l.n, 5);
  for (size_t i = 0; i < l.n; i++) cr_expect_eq(l.items[i].seq % 2, 0);
  store_event_list_free(&l);
  int64_t last = 0;
  cr_assert_eq(store_event_last_seq(S, "usr_a", &last), 0);
  cr_expect_eq(last, 10, "seqs are never given again");
}

/* ---- migration 0005 ---- */

static void exec_ok(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
}

Test(store_runs, migration_keeps_events_of_the_old_layout) {
  /* A database as agentd at schema version 4 left it. */
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  exec_ok(db, "PRAGMA foreign_keys=ON; CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
              " name TEXT NOT NULL, applied_at REAL NOT NULL)");
  for (const embedded_file_t *m = store_migrations_sqlite; m->name; m++) {
    int v = store__migration_version(m->name);
    if (v > 4) continue;
    exec_ok(db, m->data);
    char rec[256];
    snprintf(rec, sizeof rec, "INSERT INTO schema_migrations VALUES (%d, '%s', 1)", v, m->name);
    exec_ok(db, rec);
  }
  exec_ok(db, "INSERT INTO users(id, email, created_at, updated_at) VALUES ('usr_a', 'a@x', 1, 1);"
              "INSERT INTO threads(id, user_id, created_at, updated_at) VALUES ('thr_1', 'usr_a', 1, 1);"
              "INSERT INTO runs(id, user_id, thread_id, agent, status, input, created_at)"
              "  VALUES ('run_1', 'usr_a', 'thr_1', 'supervisor', 'completed', 'hi', 1);"
              "INSERT INTO events VALUES ('usr_a', 2, 'run_1', 'thr_1', 'agent_thinking', 'x', 2, '{\"n\":2}');"
              "INSERT INTO events VALUES ('usr_a', 1, 'run_1', 'thr_1', 'agent_started', 'x', 1, '{\"n\":1}');"
              "INSERT INTO event_seq VALUES ('usr_a', 2);");
  sqlite3_close(db);

  open_store();
  store_event_list_t l;
  cr_assert_eq(store_event_list(S, "usr_a", 0, "run_1", NULL, 100, &l), 0);
  cr_assert_eq(l.n, 2);
  cr_expect_eq(l.items[0].seq, 1);
  cr_expect_str_eq(l.items[0].json, "{\"n\":1}");
  cr_expect_eq(l.items[1].seq, 2);
  store_event_list_free(&l);
  store_event_t next = ev("usr_a", 3, "run_1", "thr_1", "{\"n\":3}");
  cr_expect_eq(store_event_append(S, &next), 0);
  store_event_t dup = ev("usr_a", 2, "run_1", "thr_1", "{}");
  cr_expect_eq(store_event_append(S, &dup), AGD_ECONFLICT, "the unique (user, seq) index came along");
}

/* ---- checkpoints ---- */

static long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

typedef struct wal_reader {
  atomic_int stop;
  int reads;
} wal_reader_t;

/* Short read transactions all the time, as request workers do. */
static void *wal_reader_main(void *arg) {
  wal_reader_t *r = arg;
  while (!atomic_load(&r->stop)) {
    store_event_list_t l;
    if (store_event_list(S, "usr_a", 0, NULL, NULL, 5, &l) == 0) r->reads++;
    store_event_list_free(&l);
  }
  return NULL;
}

/* The WAL header's checkpoint sequence number: how many times the WAL was
 * started again from its beginning (SQLite file format, bytes 12..15). */
static uint32_t wal_restarts(const char *wal) {
  unsigned char h[16] = {0};
  FILE *f = fopen(wal, "rb");
  if (!f) return 0;
  size_t n = fread(h, 1, sizeof h, f);
  fclose(f);
  if (n < sizeof h) return 0;
  return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
}

Test(store_runs, checkpointer_copies_and_rewinds_the_wal) {
  /* SQLite's own checkpoint is off (it would run inside a writer's COMMIT): the
   * store's checkpointer thread must copy the WAL into the database and have it
   * start again, with readers and a writer busy, or the WAL grows forever. */
  open_store();
  make_user("usr_a");
  char t[ID_MAX], r[ID_MAX];
  new_thread("usr_a", t);
  new_run("usr_a", t, r);
  static char body[4001];
  memset(body, 'x', sizeof body - 1);
  wal_reader_t rd = {0};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, wal_reader_main, &rd), 0);
  char wal[700];
  snprintf(wal, sizeof wal, "%s-wal", store_h_path);
  store_event_t evs[100];
  int64_t seq = 0;
  long written = 0;
  for (int b = 0; b < 160; b++) { /* ~64 MiB of events, four times the restart mark */
    for (int i = 0; i < 100; i++) evs[i] = ev("usr_a", ++seq, r, t, body);
    cr_assert_eq(store_event_append_batch(S, evs, 100), 0);
    written += 100L * (long)sizeof body;
  }
  /* A rewind happens at the first write after a complete checkpoint; the
   * checkpointer runs at low priority, so give it time on a busy machine. */
  for (int tries = 0; tries < 200 && (wal_restarts(wal) == 0 || file_size(store_h_path) < written / 2); tries++) {
    evs[0] = ev("usr_a", ++seq, r, t, "{}");
    cr_assert_eq(store_event_append_batch(S, evs, 1), 0);
    struct timespec pause = {0, 50000000};
    nanosleep(&pause, NULL);
  }
  atomic_store(&rd.stop, 1);
  pthread_join(th, NULL);
  cr_expect_gt(rd.reads, 0);
  cr_expect_gt(wal_restarts(wal), 0, "the WAL was never started again");
  cr_expect_geq(file_size(store_h_path), written / 2, "the database holds %ld bytes of %ld written",
                file_size(store_h_path), written);
  cr_expect_lt(file_size(wal), written, "the WAL holds everything written: %ld bytes", file_size(wal));
  int64_t last = 0;
  cr_assert_eq(store_event_last_seq(S, "usr_a", &last), 0);
  cr_expect_eq(last, seq);
}

Test(store_runs, event_batch_counters_many_users_and_chunks) {
  /* 1,500 events of 300 users in one batch: past the 1,024-event chunk of the
   * counter update, and more users than its smallest table. */
  open_store();
  enum { USERS = 300, EACH = 5 };
  static char users[USERS][ID_MAX], threads[USERS][ID_MAX], runs[USERS][ID_MAX];
  for (int u = 0; u < USERS; u++) {
    snprintf(users[u], ID_MAX, "usr_many_%d", u);
    make_user(users[u]);
    new_thread(users[u], threads[u]);
    new_run(users[u], threads[u], runs[u]);
  }
  static store_event_t evs[USERS * EACH];
  size_t n = 0;
  for (int k = 1; k <= EACH; k++)
    for (int u = 0; u < USERS; u++) evs[n++] = ev(users[u], 10 * k + u % 7, runs[u], threads[u], "{}");
  cr_assert_eq(store_event_append_batch(S, evs, n), 0);
  for (int u = 0; u < USERS; u++) {
    int64_t last = 0;
    cr_assert_eq(store_event_last_seq(S, users[u], &last), 0);
    cr_expect_eq(last, 10 * EACH + u % 7, "%s", users[u]);
  }
}

/* ---- a run's model usage (migration 0006) ---- */

Test(store_runs, usage_is_stored_with_the_run_and_only_for_its_owner) {
  open_store();
  make_user("usr_a");
  make_user("usr_b");
  char thread[ID_MAX], run[ID_MAX];
  new_thread("usr_a", thread);
  new_run("usr_a", thread, run);
  store_run_t r;
  cr_assert_eq(store_run_get(S, "usr_a", run, &r), 0);
  cr_expect_null(r.usage); /* until the run's end */
  store_run_dispose(&r);
  const char *u = "{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12,\"cost_usd\":0.1,\"llm_calls\":1}";
  cr_expect_eq(store_run_set_usage(S, "usr_b", run, u), AGD_ENOT_FOUND);
  cr_assert_eq(store_run_set_usage(S, "usr_a", run, u), 0);
  cr_assert_eq(store_run_set_status(S, "usr_a", run, "completed", 0, 2.0, "{}", NULL), 0);
  cr_assert_eq(store_run_get(S, "usr_a", run, &r), 0);
  cr_expect_str_eq(r.usage, u);
  cr_expect_str_eq(r.status, "completed");
  store_run_dispose(&r);
  store_run_list_t l;
  cr_assert_eq(store_run_list(S, "usr_a", NULL, 0, 10, 0, &l), 0);
  cr_assert_eq(l.n, 1);
  cr_expect_str_eq(l.items[0].usage, u);
  cr_expect_eq(l.total, 1);
  store_run_list_dispose(&l);
}
