/* store/sqlite_migrate.c — the SQLite side of the migration runner (migrate.c, store_int.h).
 *
 * The runner decides what to apply; this file keeps schema_migrations in SQLite's dialect
 * and applies one migration (store_migrations_sqlite[], embedded from
 * migrations/sqlite/NNNN_name.sql) under BEGIN IMMEDIATE, so two processes opening the same
 * database (the server and `agentd migrate`) apply it once.  Runs at open on the opening
 * thread's connection.
 */
#include <stdio.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

/* ---- SQL ------------------------------------------------------------------------------ */

/* The record of applied migrations: the columns every engine has (store_int.h).  A table
 * made by an agentd before checksums lacks the last one; mig_prepare adds it. */
static const char mig_table[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL,"
                                " checksum TEXT)";
static const char mig_add_checksum[] = "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT";

enum {
  Q_SCHEMA_VERSION,
  Q_MIG_HAS_CHECKSUM,
  Q_MIG_LIST,
  Q_MIG_APPLIED,
  Q_MIG_RECORD,
  Q_MIG_SET_CHECKSUM,
  Q__COUNT
};

static const char *const sql[Q__COUNT] = {
  [Q_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
  [Q_MIG_HAS_CHECKSUM] = "SELECT count(*) FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'",
  [Q_MIG_LIST] = "SELECT version, name, coalesce(checksum, '') FROM schema_migrations ORDER BY version",
  [Q_MIG_APPLIED] = "SELECT 1 FROM schema_migrations WHERE version = ?1",
  [Q_MIG_RECORD] = "INSERT INTO schema_migrations(version, name, applied_at, checksum) VALUES (?1, ?2, ?3, ?4)",
  [Q_MIG_SET_CHECKSUM] = "UPDATE schema_migrations SET checksum = ?2 WHERE version = ?1 AND checksum IS NULL",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_MIGRATE, sql, id); }

/* ---- the runner's hooks (store_mig_ops_t) ----------------------------------------------- */

int sq_schema_version(sq_conn_t *c, int *v) {
  sqlite3_stmt *st = q(c, Q_SCHEMA_VERSION);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *v = sqlite3_column_int(st, 0);
  else e = SQ_FAIL(c, rc, "schema version");
  sq_done(st);
  return e;
}

/* *has: schema_migrations exists with its checksum column. */
static int mig_has_checksum(sq_conn_t *c, int *has) {
  sqlite3_stmt *st = q(c, Q_MIG_HAS_CHECKSUM);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *has = sqlite3_column_int(st, 0) > 0;
  else e = SQ_FAIL(c, rc, "schema_migrations columns");
  sq_done(st);
  return e;
}

/* Read first, so an up-to-date database is not write-locked at every open; the change,
 * when one is needed, is checked again under the write lock (another process may have
 * made it meanwhile). */
static int mig_prepare(void *db, char *err, size_t cap) {
  sq_conn_t *c = db;
  int has = 0;
  int e = mig_has_checksum(c, &has);
  if (!e && has) return 0;
  if (!e) e = sq_tx_begin(c);
  if (!e) {
    e = sq_exec(c, mig_table, "schema_migrations");
    if (!e) e = mig_has_checksum(c, &has);
    if (!e && !has) e = sq_exec(c, mig_add_checksum, "schema_migrations checksum");
    e = sq_tx_end(c, e);
  }
  if (e) store__errf(err, cap, "cannot read the schema version of %s: %s", c->st->path, sqlite3_errmsg(c->db));
  return e;
}

static int mig_each_applied(void *db, int (*cb)(void *arg, const store_mig_row_t *row), void *arg, char *err,
                            size_t cap) {
  sq_conn_t *c = db;
  sqlite3_stmt *st = q(c, Q_MIG_LIST);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc, e = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_mig_row_t row;
    row.version = sqlite3_column_int(st, 0);
    sq_col_copy(st, 1, row.name, sizeof row.name);
    sq_col_copy(st, 2, row.checksum, sizeof row.checksum);
    e = cb(arg, &row);
    if (e) break;
  }
  if (!e && rc != SQLITE_DONE) {
    e = SQ_FAIL(c, rc, "schema_migrations");
    store__errf(err, cap, "cannot read the schema version of %s: %s", c->st->path, sqlite3_errmsg(c->db));
  }
  sq_done(st);
  return e;
}

/* Apply one migration in its own transaction unless some process already did. */
static int mig_apply(void *db, const embedded_file_t *m, int version, const char *checksum, char *err,
                     size_t cap) {
  sq_conn_t *c = db;
  int e = sq_tx_begin(c);
  if (e) {
    store__errf(err, cap, "migration %s: cannot lock the database: %s", m->name, sqlite3_errmsg(c->db));
    return e;
  }
  sqlite3_stmt *st = q(c, Q_MIG_APPLIED);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int(st, 1, version);
  int rc = sqlite3_step(st);
  sq_done(st);
  if (rc == SQLITE_ROW) return sq_tx_end(c, 0); /* applied meanwhile by another process */
  if (rc != SQLITE_DONE) {
    e = SQ_FAIL(c, rc, "migration check");
  } else {
    e = sq_exec(c, m->data, m->name);
    if (e) store__errf(err, cap, "migration %s failed: %s", m->name, sqlite3_errmsg(c->db));
  }
  if (!e) {
    st = q(c, Q_MIG_RECORD);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int(st, 1, version);
    sq_bind_text(st, 2, m->name);
    sqlite3_bind_double(st, 3, time_now());
    sq_bind_text(st, 4, checksum);
    e = sq_do(c, st, "migration record");
  }
  e = sq_tx_end(c, e);
  if (e && err && cap && !err[0])
    store__errf(err, cap, "migration %s failed: %s", m->name, sqlite3_errmsg(c->db));
  if (!e) log_info("store: applied migration %s", m->name);
  return e;
}

static int mig_set_checksum(void *db, int version, const char *checksum, char *err, size_t cap) {
  sq_conn_t *c = db;
  sqlite3_stmt *st = q(c, Q_MIG_SET_CHECKSUM);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_int(st, 1, version);
  sq_bind_text(st, 2, checksum);
  int e = sq_do(c, st, "migration checksum");
  if (e) store__errf(err, cap, "cannot record migration checksums in %s: %s", c->st->path, sqlite3_errmsg(c->db));
  return e;
}

static const store_mig_ops_t mig_ops = {
  .prepare = mig_prepare,
  .each_applied = mig_each_applied,
  .apply = mig_apply,
  .set_checksum = mig_set_checksum,
};

int sq_migrate(store_t *s, int *version_out, char *err, size_t cap) {
  sq_conn_t *c;
  int e = sq_conn_get(sq(s), &c, err, cap);
  if (e) return e;
  return store__migrate(store_migrations_sqlite, &mig_ops, c, version_out, err, cap);
}
