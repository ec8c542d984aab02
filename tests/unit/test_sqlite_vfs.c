/* tests/unit/test_sqlite_vfs.c — store/sqlite_vfs.h: the WAL write-combining VFS.
 *
 * Real files in a mkdtemp directory.  What is written through the shim must be
 * the same WAL SQLite would write itself: readers on other connections (and
 * threads) see every commit as it lands, checkpoints and WAL restarts work, a
 * copy of the files taken without closing (a process killed right after its
 * commits) recovers every committed row with the default VFS, and the database
 * passes integrity_check.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_vfs.h"

#include "store_harness.h"

static void setup(void) { store_h_setup("vfs.db"); }
static void teardown(void) { store_h_teardown(); }

TestSuite(sqlite_vfs, .init = setup, .fini = teardown);

static sqlite3 *open_db(const char *path, const char *vfs) {
  sqlite3 *db = NULL;
  cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  cr_assert_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL), SQLITE_OK);
  return db;
}

static void exec_ok(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
}

static long long scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sql);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
  long long v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void check_integrity(sqlite3 *db) {
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_expect_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
}

/* Insert row i of `n` bytes (varied: small rows share pages, big ones overflow). */
static void insert_row(sqlite3 *db, int i) {
  static char blob[9000];
  memset(blob, 'a' + i % 26, sizeof blob);
  int n = 10 + (i * 7919) % 8000;
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO t(id, body) VALUES (?1, ?2)", -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int(st, 1, i);
  sqlite3_bind_text(st, 2, blob, n, SQLITE_STATIC);
  cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
}

Test(sqlite_vfs, registered_once_and_named) {
  const char *a = sqlite_vfs_name(), *b = sqlite_vfs_name();
  cr_assert_not_null(a);
  cr_expect_eq(a, b);
  cr_expect_not_null(sqlite3_vfs_find(a));
}

typedef struct reader {
  const char *path;
  atomic_int stop;
  long long max_seen;
  int went_back; /* a later read saw fewer committed rows: must never happen */
} reader_t;

static void *reader_main(void *arg) {
  reader_t *r = arg;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(r->path, &db, SQLITE_OPEN_READWRITE, sqlite_vfs_name()) != SQLITE_OK) return NULL;
  sqlite3_busy_timeout(db, 5000);
  while (!atomic_load(&r->stop)) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(length(body)), 0) FROM t", -1, &st, NULL) != SQLITE_OK)
      continue;
    if (sqlite3_step(st) == SQLITE_ROW) {
      long long n = sqlite3_column_int64(st, 0);
      if (n < r->max_seen) r->went_back = 1;
      if (n > r->max_seen) r->max_seen = n;
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return NULL;
}

Test(sqlite_vfs, commits_visible_checkpoints_and_integrity) {
  sqlite3 *w = open_db(store_h_path, sqlite_vfs_name());
  exec_ok(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  sqlite3 *r = open_db(store_h_path, sqlite_vfs_name());
  reader_t bg = {.path = store_h_path};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, reader_main, &bg), 0);
  int n = 0;
  for (int tx = 0; tx < 300; tx++) {
    exec_ok(w, "BEGIN IMMEDIATE");
    for (int k = 0; k < 1 + tx % 7; k++) insert_row(w, n++);
    exec_ok(w, "COMMIT");
    /* Another connection sees the commit at once, whole. */
    cr_assert_eq(scalar(r, "SELECT count(*) FROM t"), n);
    if (tx % 50 == 49) exec_ok(w, tx % 100 == 99 ? "PRAGMA wal_checkpoint(RESTART)" : "PRAGMA wal_checkpoint(PASSIVE)");
  }
  atomic_store(&bg.stop, 1);
  pthread_join(th, NULL);
  cr_expect_eq(bg.went_back, 0);
  cr_expect_leq(bg.max_seen, n);
  check_integrity(r);
  sqlite3_close(r);
  sqlite3_close(w);

  /* The files are plain SQLite: the default VFS reads them back. */
  sqlite3 *plain = open_db(store_h_path, NULL);
  cr_expect_eq(scalar(plain, "SELECT count(*) FROM t"), n);
  cr_expect_eq(scalar(plain, "SELECT sum(length(body)) FROM t WHERE id % 97 = 0"),
               scalar(plain, "SELECT sum(10 + (id * 7919) % 8000) FROM t WHERE id % 97 = 0"));
  check_integrity(plain);
  sqlite3_close(plain);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (!in) return; /* e.g. no -wal yet */
  FILE *out = fopen(to, "wb");
  cr_assert_not_null(out);
  char buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, in)) > 0) cr_assert_eq(fwrite(buf, 1, k, out), k);
  fclose(in);
  fclose(out);
}

Test(sqlite_vfs, committed_rows_survive_a_kill) {
  sqlite3 *w = open_db(store_h_path, sqlite_vfs_name());
  exec_ok(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  for (int i = 0; i < 120; i++) {
    exec_ok(w, "BEGIN IMMEDIATE");
    insert_row(w, i);
    exec_ok(w, "COMMIT");
  }
  /* Take the files as a killed process would leave them: database and WAL, open. */
  char db2[700], wal[700], wal2[720];
  snprintf(db2, sizeof db2, "%s/copy.db", store_h_dir);
  snprintf(wal, sizeof wal, "%s-wal", store_h_path);
  snprintf(wal2, sizeof wal2, "%s-wal", db2);
  copy_file(store_h_path, db2);
  copy_file(wal, wal2);
  sqlite3 *c = open_db(db2, NULL);
  cr_expect_eq(scalar(c, "SELECT count(*) FROM t"), 120, "every committed row is in the WAL");
  check_integrity(c);
  sqlite3_close(c);
  sqlite3_close(w);
}
