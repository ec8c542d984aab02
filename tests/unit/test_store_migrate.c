/* tests/unit/test_store_migrate.c — the engine-neutral migration runner (store/migrate.c).
 *
 * The runner is driven here through a fake engine (an in-memory schema_migrations and a log
 * of what it was asked to do), which is the point of the seam: a second engine only has to
 * provide the four store_mig_ops_t hooks.  Also: checksums are SHA-256 of the file bytes, and
 * the released SQLite migrations keep the bytes they were released with.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/log.h"

/* ---- a fake engine ---- */

typedef struct fake_db {
  store_mig_row_t rows[16];
  int n;
  int prepared;
  char log[512];    /* "apply 3,set 1," … in call order */
  int fail_apply;   /* the version whose apply fails (0: none) */
} fake_db_t;

static void fake_log(fake_db_t *f, const char *what, int v) {
  size_t len = strlen(f->log);
  snprintf(f->log + len, sizeof f->log - len, "%s %d,", what, v);
}

static int fake_prepare(void *db, char *err, size_t cap) {
  ((fake_db_t *)db)->prepared++;
  return 0;
}

static int fake_each(void *db, int (*cb)(void *arg, const store_mig_row_t *row), void *arg, char *err, size_t cap) {
  fake_db_t *f = db;
  for (int i = 0; i < f->n; i++) {
    int e = cb(arg, &f->rows[i]);
    if (e) return e;
  }
  return 0;
}

static int fake_apply(void *db, const embedded_file_t *m, int version, const char *checksum, char *err,
                      size_t cap) {
  fake_db_t *f = db;
  fake_log(f, "apply", version);
  if (version == f->fail_apply) {
    store__errf(err, cap, "migration %s failed: boom", m->name);
    return AGD_EVALIDATION;
  }
  store_mig_row_t *r = &f->rows[f->n++];
  r->version = version;
  snprintf(r->name, sizeof r->name, "%s", m->name);
  snprintf(r->checksum, sizeof r->checksum, "%s", checksum);
  return 0;
}

static int fake_set_checksum(void *db, int version, const char *checksum, char *err, size_t cap) {
  fake_db_t *f = db;
  fake_log(f, "set", version);
  for (int i = 0; i < f->n; i++)
    if (f->rows[i].version == version) snprintf(f->rows[i].checksum, sizeof f->rows[i].checksum, "%s", checksum);
  return 0;
}

static const store_mig_ops_t fake_ops = {fake_prepare, fake_each, fake_apply, fake_set_checksum};

static const embedded_file_t migs[] = {
  {"0001_init.sql", "CREATE TABLE a(x);", 18},
  {"0003_more.sql", "CREATE TABLE b(x);", 18},
  {"0004_last.sql", "CREATE TABLE c(x);", 18},
  {0, 0, 0},
};

static void row(fake_db_t *f, int version, const char *name, const char *checksum) {
  store_mig_row_t *r = &f->rows[f->n++];
  r->version = version;
  snprintf(r->name, sizeof r->name, "%s", name);
  snprintf(r->checksum, sizeof r->checksum, "%s", checksum);
}

static const char *sum_of(int i) {
  static char s[4][STORE_MIG_SUM_HEX];
  cr_assert_eq(store__migration_checksum(&migs[i], s[i]), 0);
  return s[i];
}

static void setup(void) { log_init(LOG_OFF, LOG_FMT_TEXT); }
TestSuite(store_migrate, .init = setup);

/* ---- checksums ---- */

Test(store_migrate, checksum_is_sha256_hex_of_the_bytes) {
  embedded_file_t abc = {"0001_abc.sql", "abc", 3};
  char sum[STORE_MIG_SUM_HEX];
  cr_assert_eq(store__migration_checksum(&abc, sum), 0);
  cr_assert_str_eq(sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  embedded_file_t empty = {"0002_empty.sql", "", 0};
  cr_assert_eq(store__migration_checksum(&empty, sum), 0);
  cr_assert_str_eq(sum, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* A released migration is never edited (databases recorded its checksum): these are the
 * bytes they were released with.  A new migration is a new file, not a change here. */
Test(store_migrate, released_sqlite_migrations_are_unchanged) {
  static const struct {
    const char *name, *sum;
  } released[] = {
    {"0001_init.sql", "53807bbc52df3b28b51cb5d1d391b7418d9eae2195a7a10f86c4ab739e8d6440"},
    {"0003_runs_events.sql", "c069e66de4e98e3dbf9fb7728ae8430f894bf98b8270a933c6e5c2a5b2549911"},
    {"0004_workloads.sql", "828de2e87a22281001d3266dfa58bd19ecf108f5c4276859d0dc6ec3c6e2705c"},
    {"0005_events_append.sql", "979aa4a720ea45f85aff8f81407e71b2d9cc89552ca5173c66a32f783b4a8589"},
  };
  size_t i = 0;
  for (const embedded_file_t *m = store_migrations_sqlite; m->name && i < 4; m++, i++) {
    cr_assert_str_eq(m->name, released[i].name);
    char sum[STORE_MIG_SUM_HEX];
    cr_assert_eq(store__migration_checksum(m, sum), 0);
    cr_expect_str_eq(sum, released[i].sum, "%s was edited after its release", m->name);
  }
  cr_assert_eq(i, 4, "a released migration is missing");
}

/* ---- the runner ---- */

Test(store_migrate, new_database_gets_every_migration_in_order) {
  fake_db_t f = {0};
  int v = -1;
  char err[256] = "";
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, err, sizeof err), 0, "%s", err);
  cr_expect_eq(f.prepared, 1);
  cr_expect_str_eq(f.log, "apply 1,apply 3,apply 4,");
  cr_expect_eq(v, 4);
  cr_assert_eq(f.n, 3);
  for (int i = 0; i < 3; i++) {
    cr_expect_str_eq(f.rows[i].name, migs[i].name);
    cr_expect_str_eq(f.rows[i].checksum, sum_of(i));
  }
  /* Again: nothing to do. */
  f.log[0] = '\0';
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, err, sizeof err), 0, "%s", err);
  cr_expect_str_eq(f.log, "");
  cr_expect_eq(v, 4);
}

Test(store_migrate, only_versions_above_the_highest_recorded_are_applied) {
  fake_db_t f = {0};
  row(&f, 1, "0001_init.sql", sum_of(0));
  row(&f, 3, "0003_more.sql", sum_of(1));
  int v = 0;
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, NULL, 0), 0);
  cr_expect_str_eq(f.log, "apply 4,");
  cr_expect_eq(v, 4);
}

Test(store_migrate, rows_of_an_older_agentd_get_their_checksums) {
  /* Recorded before checksums existed: no checksum.  The row whose name is not the
   * binary's file is left alone (it was not this file that was applied). */
  fake_db_t f = {0};
  row(&f, 1, "0001_init.sql", "");
  row(&f, 3, "0003_other_name.sql", "");
  int v = 0;
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, NULL, 0), 0);
  cr_expect_str_eq(f.log, "set 1,apply 4,");
  cr_expect_str_eq(f.rows[0].checksum, sum_of(0));
  cr_expect_str_eq(f.rows[1].checksum, "");
  cr_expect_eq(v, 4);
}

Test(store_migrate, an_edited_migration_is_reported_not_reapplied) {
  fake_db_t f = {0};
  row(&f, 1, "0001_init.sql", "0000000000000000000000000000000000000000000000000000000000000000");
  row(&f, 3, "0003_more.sql", sum_of(1));
  row(&f, 4, "0004_last.sql", sum_of(2));
  int v = 0;
  char err[256] = "";
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, err, sizeof err), 0, "%s", err);
  cr_expect_str_eq(f.log, "", "neither re-applied nor overwritten");
  cr_expect_str_eq(f.rows[0].checksum, "0000000000000000000000000000000000000000000000000000000000000000");
  cr_expect_eq(v, 4);
}

Test(store_migrate, newer_schema_is_refused_untouched) {
  fake_db_t f = {0};
  row(&f, 1, "0001_init.sql", "");
  row(&f, 9, "0009_future.sql", "x");
  int v = -1;
  char err[256] = "";
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, err, sizeof err), AGD_ECONFLICT);
  cr_expect_str_eq(err, "database schema version 9 is newer than this agentd (knows up to 4); upgrade agentd");
  cr_expect_str_eq(f.log, "", "nothing written");
  cr_expect_eq(v, 0);
}

Test(store_migrate, a_failed_migration_stops_the_run) {
  fake_db_t f = {.fail_apply = 3};
  int v = -1;
  char err[256] = "";
  cr_assert_eq(store__migrate(migs, &fake_ops, &f, &v, err, sizeof err), AGD_EVALIDATION);
  cr_expect_str_eq(f.log, "apply 1,apply 3,", "0004 not attempted after 0003 failed");
  cr_expect_str_eq(err, "migration 0003_more.sql failed: boom");
}

Test(store_migrate, a_malformed_list_is_refused_before_the_database_is_touched) {
  static const embedded_file_t out_of_order[] = {
    {"0003_b.sql", "x", 1}, {"0001_a.sql", "x", 1}, {0, 0, 0}};
  static const embedded_file_t bad_name[] = {{"init.sql", "x", 1}, {0, 0, 0}};
  static const embedded_file_t bad_len[] = {{"0001_a.sql", "x", 5}, {0, 0, 0}};
  const embedded_file_t *lists[] = {out_of_order, bad_name, bad_len};
  for (size_t i = 0; i < 3; i++) {
    fake_db_t f = {0};
    int v = -1;
    char err[256] = "";
    cr_assert_eq(store__migrate(lists[i], &fake_ops, &f, &v, err, sizeof err), AGD_EINTERNAL, "list %zu", i);
    cr_expect_eq(f.prepared, 0);
    cr_expect_neq(strstr(err, "is malformed or out of order"), NULL, "%s", err);
  }
}
