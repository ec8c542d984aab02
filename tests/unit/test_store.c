/* tests/unit/test_store.c — store.h on real SQLite files in a mkdtemp directory.
 *
 * Migrations and the newer-schema refusal, users, refresh-token rotation and reuse
 * detection (SPEC §2), access-token revocations, and threads: per-thread connections
 * under concurrent writers, racing consumers, and store_close with live threads.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/store.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#include "store_harness.h"

/* A missing parent directory is created by store_open. */
static void setup(void) { store_h_setup("data/sub/agentd.db"); }
static void teardown(void) { store_h_teardown(); }

TestSuite(store, .init = setup, .fini = teardown);

static store_t *open_ok(void) {
  store_t *s = NULL;
  char err[256] = "";
  int rc = store_open(&s, store_h_url, err, sizeof err);
  cr_assert_eq(rc, 0, "store_open: %d %s", rc, err);
  cr_assert_not_null(s);
  return s;
}

static int known_version(void) {
  int v = 0;
  for (const embedded_file_t *m = store_migrations_sqlite; m->name; m++) v = store__migration_version(m->name);
  return v;
}

static void make_user(store_t *s, const char *id, const char *email, const char *hash) {
  char name[64];
  snprintf(name, sizeof name, "Name %s", id);
  store_h_user(s, id, email, name, hash);
}

/* ---- lifecycle and migrations ---- */

Test(store, migrations_applied) {
  store_t *s = open_ok();
  struct stat sb;
  cr_assert_eq(stat(store_h_path, &sb), 0, "database file created with its parents");
  cr_assert_str_eq(store_kind(s), "sqlite");
  int v = -1;
  char err[256];
  cr_assert_eq(store_migrate(s, &v, err, sizeof err), 0);
  cr_assert_eq(v, known_version());
  double ms = -1;
  cr_assert_eq(store_ping(s, &ms), 0);
  cr_assert_geq(ms, 0);
  long n = -1;
  cr_assert_eq(store_user_count(s, &n), 0);
  cr_assert_eq(n, 0);
  store_close(s);

  /* The pragmas took: WAL journal on disk. */
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  cr_assert_eq(sqlite3_prepare_v2(db, "SELECT name FROM schema_migrations WHERE version = 1", -1,
                                  &st, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "0001_init.sql");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

Test(store, url_forms) {
  store_t *s = NULL;
  char err[256];
  snprintf(store_h_url, sizeof store_h_url, "sqlite://%s", store_h_path); /* sqlite:///abs/path */
  s = open_ok();
  store_close(s);
  store_close(NULL);

  const char *bad[] = {"", "sqlite:", "sqlite://", "mysql://x/y", "sqlite::memory:",
                       "postgresql://u@h/db"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    cr_assert_lt(store_open(&s, bad[i], err, sizeof err), 0, "url '%s'", bad[i]);
    cr_assert_null(s);
    cr_assert_neq(err[0], '\0', "a reason for '%s'", bad[i]);
  }
  /* A parent that is a file cannot become a directory. */
  char p[600];
  snprintf(p, sizeof p, "%s/file", store_h_dir);
  FILE *f = fopen(p, "w");
  fclose(f);
  snprintf(store_h_url, sizeof store_h_url, "sqlite:%s/file/x.db", store_h_dir);
  cr_assert_eq(store_open(&s, store_h_url, err, sizeof err), AGD_EUNAVAILABLE);
}

Test(store, reopen_keeps_data) {
  store_t *s = open_ok();
  make_user(s, "usr_a", "a@example.com", "$argon2id$hash");
  store_close(s);
  s = open_ok();
  store_user_t u;
  cr_assert_eq(store_user_get(s, "usr_a", &u), 0);
  cr_assert_str_eq(u.email, "a@example.com");
  cr_assert_str_eq(u.password_hash, "$argon2id$hash");
  int v = 0;
  cr_assert_eq(store_migrate(s, &v, NULL, 0), 0);
  cr_assert_eq(v, known_version());
  store_close(s);
}

Test(store, newer_schema_refused) {
  store_close(open_ok());
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(db, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (9999, '9999_future.sql', 0)",
                            NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  store_t *s = (store_t *)1;
  char err[256] = "", want[256];
  cr_assert_lt(store_open(&s, store_h_url, err, sizeof err), 0);
  cr_assert_null(s);
  snprintf(want, sizeof want,
           "database schema version 9999 is newer than this agentd (knows up to %d); upgrade agentd",
           known_version());
  cr_assert_str_eq(err, want);
}

/* The recorded checksum of each applied migration, "" when NULL; -1 when the version has
 * no row (or the table no checksum column: then the prepare fails). */
static int recorded_checksum(sqlite3 *db, int version, char out[STORE_MIG_SUM_HEX]) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT coalesce(checksum, '') FROM schema_migrations WHERE version = ?1", -1, &st,
                         NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int(st, 1, version);
  int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : -1;
  if (rc == 0) snprintf(out, STORE_MIG_SUM_HEX, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return rc;
}

static void exec_ok(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
}

Test(store, migrations_record_checksums) {
  store_close(open_ok());
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  for (const embedded_file_t *m = store_migrations_sqlite; m->name; m++) {
    char got[STORE_MIG_SUM_HEX], want[STORE_MIG_SUM_HEX];
    cr_assert_eq(recorded_checksum(db, store__migration_version(m->name), got), 0, "%s recorded", m->name);
    cr_assert_eq(store__migration_checksum(m, want), 0);
    cr_expect_str_eq(got, want, "%s", m->name);
  }
  sqlite3_close(db);
}

/* A database of an agentd before checksums: schema_migrations has three columns.  It
 * opens, gains the column, and its rows get the checksums of the files they name; a row
 * whose checksum does not match (an edited migration) is kept as it is. */
Test(store, older_migration_table_gains_checksums) {
  store_t *s = open_ok();
  make_user(s, "usr_a", "a@example.com", NULL);
  store_close(s);
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  exec_ok(db, "CREATE TABLE old_mig (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);"
              "INSERT INTO old_mig SELECT version, name, applied_at FROM schema_migrations;"
              "DROP TABLE schema_migrations; ALTER TABLE old_mig RENAME TO schema_migrations;");
  char sum[STORE_MIG_SUM_HEX];
  cr_assert_eq(recorded_checksum(db, 1, sum), -1, "no checksum column any more");
  sqlite3_close(db);

  s = open_ok();
  store_user_t u;
  cr_expect_eq(store_user_get(s, "usr_a", &u), 0, "the data stayed");
  store_close(s);
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  for (const embedded_file_t *m = store_migrations_sqlite; m->name; m++) {
    char want[STORE_MIG_SUM_HEX];
    cr_assert_eq(recorded_checksum(db, store__migration_version(m->name), sum), 0, "%s", m->name);
    cr_assert_eq(store__migration_checksum(m, want), 0);
    cr_expect_str_eq(sum, want, "%s", m->name);
  }
  exec_ok(db, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1");
  sqlite3_close(db);

  s = open_ok();
  int v = 0;
  cr_expect_eq(store_migrate(s, &v, NULL, 0), 0);
  cr_expect_eq(v, known_version());
  store_close(s);
  cr_assert_eq(sqlite3_open(store_h_path, &db), SQLITE_OK);
  cr_assert_eq(recorded_checksum(db, 1, sum), 0);
  cr_expect_str_eq(sum, "edited", "reported, not overwritten");
  sqlite3_close(db);
}

/* ---- users ---- */

Test(store, users) {
  store_t *s = open_ok();
  make_user(s, "usr_1", "one@example.com", "$argon2id$v=19$x");
  store_user_t u;
  memset(&u, 0, sizeof u);
  strcpy(u.id, "usr_2");
  strcpy(u.email, "one@example.com");
  cr_assert_eq(store_user_create(s, &u), AGD_ECONFLICT);
  strcpy(u.email, "ONE@example.com"); /* NOCASE guard */
  cr_assert_eq(store_user_create(s, &u), AGD_ECONFLICT);
  strcpy(u.id, "usr_1");
  strcpy(u.email, "other@example.com");
  cr_assert_eq(store_user_create(s, &u), AGD_ECONFLICT, "same id");
  strcpy(u.id, "usr_3");
  strcpy(u.permissions_json, "[not json");
  cr_assert_eq(store_user_create(s, &u), AGD_EVALIDATION);
  u.permissions_json[0] = '\0';
  u.email[0] = '\0';
  cr_assert_eq(store_user_create(s, &u), AGD_EBAD_REQUEST);

  store_user_t g;
  cr_assert_eq(store_user_get(s, "usr_1", &g), 0);
  cr_assert_str_eq(g.id, "usr_1");
  cr_assert_str_eq(g.email, "one@example.com");
  cr_assert_str_eq(g.name, "Name usr_1");
  cr_assert_str_eq(g.plan_tier, "free");
  cr_assert_str_eq(g.permissions_json, "[\"read\",\"write\"]");
  cr_assert_str_eq(g.password_hash, "$argon2id$v=19$x");
  cr_assert_gt(g.created_at, 1.7e9);
  cr_assert_eq(g.created_at, g.updated_at);

  store_user_t e;
  cr_assert_eq(store_user_by_email(s, "one@example.com", &e), 0);
  cr_assert_str_eq(e.id, "usr_1");
  cr_assert_eq(store_user_by_email(s, "nobody@example.com", &e), AGD_ENOT_FOUND);
  cr_assert_eq(store_user_get(s, "usr_nope", &e), AGD_ENOT_FOUND);
  cr_assert_eq(store_user_get(s, "", &e), AGD_ENOT_FOUND);

  /* set_name */
  cr_assert_eq(store_user_set_name(s, "usr_1", "Ada", &g), 0);
  cr_assert_str_eq(g.name, "Ada");
  cr_assert_geq(g.updated_at, g.created_at);
  cr_assert_eq(store_user_set_name(s, "usr_nope", "X", NULL), AGD_ENOT_FOUND);
  char longname[STORE_NAME_MAX + 1];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  cr_assert_eq(store_user_set_name(s, "usr_1", longname, NULL), AGD_EBAD_REQUEST);
  longname[STORE_NAME_MAX - 1] = '\0'; /* exactly the limit fits */
  cr_assert_eq(store_user_set_name(s, "usr_1", longname, &g), 0);
  cr_assert_str_eq(g.name, longname);

  long n = 0;
  cr_assert_eq(store_user_count(s, &n), 0);
  cr_assert_eq(n, 1);
  store_close(s);
}

Test(store, user_ensure) {
  store_t *s = open_ok();
  store_user_t a, b;
  cr_assert_eq(store_user_ensure(s, "ext_1", "ext1@corp.com", &a), 0);
  cr_assert_str_eq(a.email, "ext1@corp.com");
  cr_assert_str_eq(a.password_hash, "", "external users have no password");
  cr_assert_eq(store_user_ensure(s, "ext_1", "changed@corp.com", &b), 0);
  cr_assert_str_eq(b.id, "ext_1");
  cr_assert_str_eq(b.email, "ext1@corp.com", "the existing row is returned unchanged");
  cr_assert_eq(a.created_at, b.created_at);

  cr_assert_eq(store_user_ensure(s, "ext_2", NULL, &a), 0);
  cr_assert_str_eq(a.email, "ext_2@external.invalid");
  /* Email of another user → placeholder. */
  cr_assert_eq(store_user_ensure(s, "ext_3", "EXT1@corp.com", &a), 0);
  cr_assert_str_eq(a.email, "ext_3@external.invalid");
  /* Placeholder itself taken → random variant. */
  make_user(s, "usr_squat", "ext_4@external.invalid", "h");
  cr_assert_eq(store_user_ensure(s, "ext_4", NULL, &a), 0);
  cr_assert_str_eq(a.id, "ext_4");
  cr_assert_eq(strncmp(a.email, "ext_4.", 6), 0, "got %s", a.email);
  cr_assert_not_null(strstr(a.email, "@external.invalid"));
  cr_assert_eq(store_user_ensure(s, "ext_5", NULL, NULL), 0);

  char longid[ID_MAX + 1];
  memset(longid, 'i', ID_MAX);
  longid[ID_MAX] = '\0';
  cr_assert_eq(store_user_ensure(s, longid, NULL, &a), AGD_EBAD_REQUEST);
  cr_assert_eq(store_user_ensure(s, "", NULL, &a), AGD_EBAD_REQUEST);
  long n = 0;
  cr_assert_eq(store_user_count(s, &n), 0);
  cr_assert_eq(n, 6);
  store_close(s);
}

/* ---- refresh tokens ---- */

Test(store, refresh_rotation_and_reuse) {
  store_t *s = open_ok();
  make_user(s, "usr_a", "a@x.com", "h");
  make_user(s, "usr_b", "b@x.com", "h");
  double now = 1.8e9;
  cr_assert_eq(store_refresh_add(s, "rt_1", "fam_1", "usr_a", now + 100), 0);
  cr_assert_eq(store_refresh_add(s, "rt_1", "fam_1", "usr_a", now + 100), AGD_ECONFLICT);
  cr_assert_eq(store_refresh_add(s, "rt_x", "fam_x", "usr_nobody", now + 100), AGD_ENOT_FOUND);

  char fam[ID_MAX];
  /* Another user presenting a's jti learns nothing. */
  cr_assert_eq(store_refresh_consume(s, "rt_1", "usr_b", now, fam), AGD_ENOT_FOUND);
  cr_assert_str_eq(fam, "");
  cr_assert_eq(store_refresh_consume(s, "rt_unknown", "usr_a", now, fam), AGD_ENOT_FOUND);

  cr_assert_eq(store_refresh_consume(s, "rt_1", "usr_a", now, fam), 0);
  cr_assert_str_eq(fam, "fam_1");
  fam[0] = 'Z';
  cr_assert_eq(store_refresh_consume(s, "rt_1", "usr_a", now, fam), AGD_EAUTH_INVALID);
  cr_assert_str_eq(fam, "fam_1", "reuse reports the family");
  cr_assert_eq(store_refresh_consume(s, "rt_1", "usr_a", now, NULL), AGD_EAUTH_INVALID);

  /* Reuse → revoke the family: the sibling issued by the rotation stops working. */
  cr_assert_eq(store_refresh_add(s, "rt_2", "fam_1", "usr_a", now + 100), 0);
  cr_assert_eq(store_refresh_add(s, "rt_other", "fam_2", "usr_a", now + 100), 0);
  cr_assert_eq(store_refresh_revoke_family(s, "fam_1"), 0);
  cr_assert_eq(store_refresh_consume(s, "rt_2", "usr_a", now, fam), AGD_EAUTH_INVALID);
  cr_assert_str_eq(fam, "fam_1");
  cr_assert_eq(store_refresh_consume(s, "rt_other", "usr_a", now, fam), 0, "other family intact");
  cr_assert_str_eq(fam, "fam_2");
  cr_assert_eq(store_refresh_revoke_family(s, "fam_none"), 0);

  /* Expired and unused: invalid, but not reuse. */
  cr_assert_eq(store_refresh_add(s, "rt_old", "fam_3", "usr_a", now - 1), 0);
  cr_assert_eq(store_refresh_consume(s, "rt_old", "usr_a", now, fam), AGD_EAUTH_INVALID);
  cr_assert_str_eq(fam, "");
  cr_assert_eq(store_refresh_add(s, "rt_edge", "fam_3", "usr_a", now), 0);
  cr_assert_eq(store_refresh_consume(s, "rt_edge", "usr_a", now, fam), AGD_EAUTH_INVALID,
               "expires_at == now is expired");

  /* Revoke all of a user's tokens. */
  cr_assert_eq(store_refresh_add(s, "rt_b1", "fam_b", "usr_b", now + 100), 0);
  cr_assert_eq(store_refresh_add(s, "rt_a9", "fam_9", "usr_a", now + 100), 0);
  cr_assert_eq(store_refresh_revoke_user(s, "usr_a"), 0);
  cr_assert_eq(store_refresh_consume(s, "rt_a9", "usr_a", now, fam), AGD_EAUTH_INVALID);
  cr_assert_eq(store_refresh_consume(s, "rt_b1", "usr_b", now, fam), 0);

  /* Purge drops expired refresh tokens: they are unknown afterwards. */
  cr_assert_eq(store_revoked_purge(s, now + 1), 0);
  cr_assert_eq(store_refresh_consume(s, "rt_old", "usr_a", now, fam), AGD_ENOT_FOUND);
  store_close(s);
}

/* ---- revoked access tokens ---- */

static void collect(const char *jti, double exp, void *arg) {
  char *acc = arg;
  char one[80];
  snprintf(one, sizeof one, "%s=%.0f;", jti, exp);
  strcat(acc, one);
}

Test(store, revocations) {
  store_t *s = open_ok();
  cr_assert_eq(store_revoke_access(s, "at_1", 1000), 0);
  cr_assert_eq(store_revoke_access(s, "at_2", 2000), 0);
  cr_assert_eq(store_revoke_access(s, "at_3", 3000), 0);
  cr_assert_eq(store_revoke_access(s, "at_2", 1500), 0, "idempotent, keeps the later expiry");
  char big[STORE_JTI_MAX + 1];
  memset(big, 'j', STORE_JTI_MAX);
  big[STORE_JTI_MAX] = '\0';
  cr_assert_eq(store_revoke_access(s, big, 1), AGD_EBAD_REQUEST);
  big[STORE_JTI_MAX - 1] = '\0';
  cr_assert_eq(store_revoke_access(s, big, 1), 0);

  char acc[512] = "";
  cr_assert_eq(store_revoked_load(s, 1500, collect, acc), 0);
  cr_assert(strstr(acc, "at_2=2000;") && strstr(acc, "at_3=3000;") && !strstr(acc, "at_1"),
            "got %s", acc);
  cr_assert_eq(store_revoked_purge(s, 2000), 0);
  acc[0] = '\0';
  cr_assert_eq(store_revoked_load(s, 0, collect, acc), 0);
  cr_assert_str_eq(acc, "at_3=3000;");
  store_close(s);
}

/* ---- threads ---- */

#define NTHREADS 4
#define PER_THREAD 200

typedef struct {
  store_t *s;
  int idx;
  int errors;
  int wins;
} worker_t;

static void *create_users(void *p) {
  worker_t *w = p;
  for (int i = 0; i < PER_THREAD; i++) {
    store_user_t u;
    memset(&u, 0, sizeof u);
    snprintf(u.id, sizeof u.id, "usr_t%d_%d", w->idx, i);
    snprintf(u.email, sizeof u.email, "t%d_%d@example.com", w->idx, i);
    if (store_user_create(w->s, &u) != 0) w->errors++;
    store_user_t g;
    if (store_user_get(w->s, u.id, &g) != 0 || strcmp(g.email, u.email) != 0) w->errors++;
    /* Everyone also races on the same external user. */
    if (store_user_ensure(w->s, "ext_shared", NULL, &g) != 0 || strcmp(g.id, "ext_shared"))
      w->errors++;
  }
  return NULL;
}

Test(store, concurrent_writers) {
  store_t *s = open_ok();
  pthread_t th[NTHREADS];
  worker_t w[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    w[i] = (worker_t){.s = s, .idx = i};
    cr_assert_eq(pthread_create(&th[i], NULL, create_users, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(w[i].errors, 0, "thread %d had %d errors", i, w[i].errors);
  }
  long n = 0;
  cr_assert_eq(store_user_count(s, &n), 0);
  cr_assert_eq(n, NTHREADS * PER_THREAD + 1);
  store_close(s); /* exited threads closed their own connections; ASan checks the rest */
}

static void *consume_once(void *p) {
  worker_t *w = p;
  char fam[ID_MAX];
  int rc = store_refresh_consume(w->s, "rt_race", "usr_r", 1.8e9, fam);
  if (rc == 0) w->wins++;
  else if (rc != AGD_EAUTH_INVALID || strcmp(fam, "fam_r") != 0) w->errors++;
  return NULL;
}

Test(store, racing_consumers_one_wins) {
  store_t *s = open_ok();
  make_user(s, "usr_r", "r@x.com", "h");
  cr_assert_eq(store_refresh_add(s, "rt_race", "fam_r", "usr_r", 1.8e9 + 100), 0);
  pthread_t th[8];
  worker_t w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (worker_t){.s = s, .idx = i};
    cr_assert_eq(pthread_create(&th[i], NULL, consume_once, &w[i]), 0);
  }
  int wins = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(w[i].errors, 0);
    wins += w[i].wins;
  }
  cr_assert_eq(wins, 1, "exactly one consumer wins");
  store_close(s);
}

/* A thread still alive (idle) at store_close: its connection is closed by the close. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_used, gate_release;

static void *idle_user(void *p) {
  worker_t *w = p;
  long n;
  if (store_user_count(w->s, &n) != 0) w->errors++;
  pthread_mutex_lock(&gate_mu);
  gate_used = 1;
  pthread_cond_broadcast(&gate_cv);
  while (!gate_release) pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);
  return NULL; /* exits after store_close: no destructor may touch the freed store */
}

Test(store, close_with_live_threads) {
  store_t *s = open_ok();
  worker_t w = {.s = s};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, idle_user, &w), 0);
  pthread_mutex_lock(&gate_mu);
  while (!gate_used) pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);
  store_close(s);
  pthread_mutex_lock(&gate_mu);
  gate_release = 1;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
  pthread_join(th, NULL);
  cr_assert_eq(w.errors, 0);
}

Test(store, migration_version_names) {
  cr_assert_eq(store__migration_version("0001_init.sql"), 1);
  cr_assert_eq(store__migration_version("0042_x.sql"), 42);
  cr_assert_eq(store__migration_version("init.sql"), -1);
  cr_assert_eq(store__migration_version("0001init.sql"), -1);
  cr_assert_eq(store__migration_version("0000_zero.sql"), -1);
  cr_assert_eq(store__migration_version("99999999999_big.sql"), -1);
}

/* ---- agentd_db_cache_bytes: the page cache of a connection that runs transactions ---- */

static long long cache_metric(void) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(metrics_render(&b), 0);
  const char *p = b.base ? strstr(b.base, "\nagentd_db_cache_bytes ") : NULL;
  long long v = p ? strtoll(p + strlen("\nagentd_db_cache_bytes "), NULL, 10) : 0;
  buf_dispose(&b);
  return v;
}

static int add_users(store_t *s, void *arg) {
  for (int i = 0; i < *(int *)arg; i++) {
    char id[32], email[64];
    snprintf(id, sizeof id, "usr_cache_%d", i);
    snprintf(email, sizeof email, "cache%d@example.com", i);
    make_user(s, id, email, "h");
  }
  return 0;
}

Test(store, cache_bytes_follow_the_transactions_page_cache) {
  metrics_reset();
  store_t *s = open_ok();
  char err[256];
  int v;
  cr_assert_eq(store_migrate(s, &v, err, sizeof err), 0);
  cr_expect_eq(cache_metric(), 0, "nothing counted before a transaction");
  int n = 500;
  cr_assert_eq(store_tx(s, add_users, &n), 0);
  long long after = cache_metric();
  cr_expect_gt(after, 4096, "the pages the transaction touched are counted: %lld bytes", after);
  cr_assert_eq(store_tx(s, add_users, &(int){0}), 0);
  cr_expect_geq(cache_metric(), after, "a cache does not shrink while its connection is open");
  store_close(s);
  cr_expect_eq(cache_metric(), 0, "closing the connection takes its cache out");
}
