/* store/sqlite_workloads.c — the callers' LLM workload records on SQLite (SPEC §8; store.h
 * "workload records", migration 0004).
 *
 * One owner row per user (a compact uid, the next seq, a generation bumped by each delete);
 * records are clustered by (uid, seq), so a user's insert, scan or delete is one range.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"

/* ---- SQL ------------------------------------------------------------------------------ */

enum {
  Q_WL_OWNER_ENSURE,
  Q_WL_OWNER_GET,
  Q_WL_STATE,
  Q_WL_INSERT,
  Q_WL_ADVANCE,
  Q_WL_SCAN,
  Q_WL_DELETE,
  Q_WL_BUMP,
  Q__COUNT
};

static const char *const sql[Q__COUNT] = {
  [Q_WL_OWNER_ENSURE] = "INSERT OR IGNORE INTO workload_owners(user_id) VALUES (?1)",
  [Q_WL_OWNER_GET] = "SELECT uid, next_seq, gen FROM workload_owners WHERE user_id = ?1",
  [Q_WL_STATE] = "SELECT next_seq, gen FROM workload_owners WHERE user_id = ?1",
  [Q_WL_INSERT] = "INSERT INTO workloads(uid, seq, ts, model, provider, prompt_tokens, completion_tokens,"
                  " latency_ms, cost_usd, is_error, feature, prompt_hash)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
  [Q_WL_ADVANCE] = "UPDATE workload_owners SET next_seq = ?2 WHERE uid = ?1",
  [Q_WL_SCAN] = "SELECT w.seq, w.ts, w.model, w.provider, w.prompt_tokens, w.completion_tokens, w.latency_ms,"
                " w.cost_usd, w.is_error, w.feature, w.prompt_hash FROM workload_owners o"
                " JOIN workloads w ON w.uid = o.uid WHERE o.user_id = ?1 AND w.seq > ?2 ORDER BY w.seq",
  [Q_WL_DELETE] = "DELETE FROM workloads WHERE uid = ?1",
  [Q_WL_BUMP] = "UPDATE workload_owners SET gen = gen + 1 WHERE uid = ?1",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

/* This file's cached statement id (sq_stmt). */
static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_WORKLOADS, sql, id); }

/* ---- workload records ----------------------------------------------------------------- */

/* The owner row of user_id (created when create): uid, next_seq, gen.  AGD_ENOT_FOUND when
 * absent and !create.  Inside the caller's transaction. */
static int wl_owner(sq_conn_t *c, const char *user_id, int create, int64_t *uid, int64_t *next_seq, int64_t *gen) {
  sqlite3_stmt *st;
  int e;
  if (create) {
    st = q(c, Q_WL_OWNER_ENSURE);
    if (!st) return ERR(AGD_EINTERNAL);
    sq_bind_text(st, 1, user_id);
    e = sq_do(c, st, "workload owner");
    if (e) return e;
  }
  st = q(c, Q_WL_OWNER_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  int rc = sqlite3_step(st);
  e = 0;
  if (rc == SQLITE_ROW) {
    *uid = sqlite3_column_int64(st, 0);
    *next_seq = sqlite3_column_int64(st, 1);
    *gen = sqlite3_column_int64(st, 2);
  } else if (rc == SQLITE_DONE) {
    e = AGD_ENOT_FOUND;
  } else {
    e = SQ_FAIL(c, rc, "workload owner get");
  }
  sq_done(st);
  return e;
}

int sq_workload_insert(store_t *s, const char *user_id, const store_workload_t *recs, size_t n,
                              int64_t *first_seq, int64_t *gen) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  int64_t uid = 0, next = 1;
  e = wl_owner(c, user_id, 1, &uid, &next, gen);
  if (e) return sq_tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_INSERT);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  for (size_t i = 0; i < n && !e; i++) {
    const store_workload_t *r = &recs[i];
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, next + (int64_t)i);
    sqlite3_bind_double(st, 3, r->timestamp);
    sq_bind_text(st, 4, r->model);
    sq_bind_text(st, 5, r->provider);
    sqlite3_bind_int64(st, 6, r->prompt_tokens);
    sqlite3_bind_int64(st, 7, r->completion_tokens);
    sqlite3_bind_double(st, 8, r->latency_ms);
    sqlite3_bind_double(st, 9, r->cost_usd);
    sqlite3_bind_int(st, 10, r->is_error ? 1 : 0);
    sq_bind_text(st, 11, r->feature);
    sq_bind_text(st, 12, r->prompt_hash);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "workload insert");
    sqlite3_reset(st); /* bindings are all rebound next row */
  }
  sqlite3_clear_bindings(st);
  if (!e) {
    st = q(c, Q_WL_ADVANCE);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, next + (int64_t)n);
    e = sq_do(c, st, "workload advance");
  }
  e = sq_tx_end(c, e);
  if (!e) *first_seq = next;
  return e;
}

int sq_workload_state(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_WL_STATE);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) {
    *next_seq = sqlite3_column_int64(st, 0);
    *gen = sqlite3_column_int64(st, 1);
  } else if (rc != SQLITE_DONE) {
    e = SQ_FAIL(c, rc, "workload state");
  }
  sq_done(st);
  return e;
}

/* Copy a text column into a fixed array (the write path keeps values fitting). */
static void wl_col(sqlite3_stmt *st, int i, char *dst, size_t cap) { sq_col_copy(st, i, dst, cap); }

int sq_workload_scan(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                            int64_t *next_seq, int64_t *gen) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c);
  if (e) return e;
  int64_t uid = 0;
  e = wl_owner(c, user_id, 0, &uid, next_seq, gen);
  if (e == AGD_ENOT_FOUND) return sq_tx_end(c, 0); /* never stored anything: state stays 1/0 */
  if (e) return sq_tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_SCAN);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, after_seq);
  store_workload_t r;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    r.timestamp = sqlite3_column_double(st, 1);
    wl_col(st, 2, r.model, sizeof r.model);
    wl_col(st, 3, r.provider, sizeof r.provider);
    r.prompt_tokens = sqlite3_column_int64(st, 4);
    r.completion_tokens = sqlite3_column_int64(st, 5);
    r.latency_ms = sqlite3_column_double(st, 6);
    r.cost_usd = sqlite3_column_double(st, 7);
    r.is_error = sqlite3_column_int(st, 8);
    wl_col(st, 9, r.feature, sizeof r.feature);
    wl_col(st, 10, r.prompt_hash, sizeof r.prompt_hash);
    e = cb(&r, seq, arg);
    if (e) break;
  }
  if (!e && rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "workload scan");
  sq_done(st);
  sq_tx_rollback(c); /* read only: nothing to commit */
  return e;
}

int sq_workload_delete(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  int64_t uid = 0;
  e = wl_owner(c, user_id, 0, &uid, next_seq, gen);
  if (e == AGD_ENOT_FOUND) return sq_tx_end(c, 0);
  if (e) return sq_tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_DELETE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int64(st, 1, uid);
  e = sq_do(c, st, "workload delete");
  if (!e) *deleted = (long)sqlite3_changes(c->db);
  if (!e) {
    st = q(c, Q_WL_BUMP);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int64(st, 1, uid);
    e = sq_do(c, st, "workload generation");
    if (!e) (*gen)++;
  }
  return sq_tx_end(c, e);
}
