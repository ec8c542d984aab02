/* store/sqlite_approvals.c — approvals of tool calls on SQLite (SPEC §11; store.h
 * "approvals", migration 0007).
 *
 * A decision is one conditional UPDATE (… WHERE status = 'pending'), so of two racing
 * decisions exactly one changes the row; the loser reads the row to say why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"

enum { Q_AP_INSERT, Q_AP_RUN_OWNED, Q_AP_GET, Q_AP_LIST, Q_AP_DECIDE, Q_AP_PENDING, Q__COUNT };

#define AP_COLS                                                                                             \
  "run_id, user_id, call_id, tool_name, parameters, checkpoint, created_at, expires_at, status, reason," \
  " coalesce(decided_at, 0)"

static const char *const sql[Q__COUNT] = {
  /* The run must be the caller's; parameters a JSON object, the checkpoint JSON (CASE is
   * lazy: json_type never sees text that is not JSON). */
  [Q_AP_INSERT] = "INSERT INTO approvals(run_id, call_id, user_id, tool_name, parameters, checkpoint, created_at,"
                  " expires_at, status) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending'"
                  " WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND user_id = ?3)"
                  " AND CASE WHEN json_valid(?5) THEN json_type(?5) = 'object' ELSE 0 END"
                  " AND (?6 IS NULL OR json_valid(?6))",
  [Q_AP_RUN_OWNED] = "SELECT 1 FROM runs WHERE id = ?1 AND user_id = ?2",
  [Q_AP_GET] = "SELECT " AP_COLS " FROM approvals WHERE run_id = ?1 AND call_id = ?2 AND user_id = ?3",
  [Q_AP_LIST] = "SELECT " AP_COLS " FROM approvals WHERE run_id = ?1 AND user_id = ?2"
                " ORDER BY created_at, call_id",
  [Q_AP_DECIDE] = "UPDATE approvals SET status = ?4, reason = ?5, decided_at = ?6"
                  " WHERE run_id = ?1 AND call_id = ?2 AND user_id = ?3 AND status = 'pending'"
                  " AND (?4 = 'expired' OR expires_at > ?6)",
  [Q_AP_PENDING] = "SELECT a.run_id, a.user_id, a.call_id, a.tool_name, a.parameters, a.checkpoint, a.created_at,"
                   " a.expires_at, a.status, a.reason, coalesce(a.decided_at, 0)"
                   " FROM approvals a INDEXED BY approvals_pending JOIN runs r ON r.id = a.run_id"
                   " WHERE a.status = 'pending' AND r.status = 'running' ORDER BY a.created_at",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_APPROVALS, sql, id); }

static void row_approval(sqlite3_stmt *st, store_approval_t *a) {
  memset(a, 0, sizeof *a);
  sq_col_copy(st, 0, a->run_id, sizeof a->run_id);
  sq_col_copy(st, 1, a->user_id, sizeof a->user_id);
  sq_col_copy(st, 2, a->call_id, sizeof a->call_id);
  sq_col_copy(st, 3, a->tool_name, sizeof a->tool_name);
  a->parameters = sq_col_dup(st, 4);
  if (!a->parameters) a->parameters = xstrdup("{}");
  a->checkpoint = sq_col_dup(st, 5);
  a->created_at = sqlite3_column_double(st, 6);
  a->expires_at = sqlite3_column_double(st, 7);
  sq_col_copy(st, 8, a->status, sizeof a->status);
  a->reason = sq_col_dup(st, 9);
  a->decided_at = sqlite3_column_double(st, 10);
}

static int run_owned(sq_conn_t *c, const char *user_id, const char *run_id) {
  sqlite3_stmt *st = q(c, Q_AP_RUN_OWNED);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? AGD_ENOT_FOUND : SQ_FAIL(c, rc, "approval run");
  sq_done(st);
  return e;
}

int sq_approval_create(store_t *s, const store_approval_t *a) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_AP_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, a->run_id);
  sq_bind_text(st, 2, a->call_id);
  sq_bind_text(st, 3, a->user_id);
  sq_bind_text(st, 4, a->tool_name);
  sq_bind_text(st, 5, a->parameters);
  if (a->checkpoint) sq_bind_text(st, 6, a->checkpoint);
  else sqlite3_bind_null(st, 6);
  sqlite3_bind_double(st, 7, a->created_at);
  sqlite3_bind_double(st, 8, a->expires_at);
  int e = sq_do(c, st, "approval insert");
  if (!e && sqlite3_changes(c->db) == 0) {
    /* Not inserted: the run is not the caller's, or a JSON text is bad. */
    e = run_owned(c, a->user_id, a->run_id);
    if (e == 0) e = AGD_EBAD_REQUEST;
  }
  return e;
}

int sq_approval_get(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                    store_approval_t *out) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_AP_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, call_id);
  sq_bind_text(st, 3, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_approval(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "approval get");
  sq_done(st);
  return e;
}

int sq_approval_list(store_t *s, const char *user_id, const char *run_id, store_approval_list_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c); /* the run's check and its rows from one snapshot */
  if (e) return e;
  e = run_owned(c, user_id, run_id);
  sqlite3_stmt *st = e ? NULL : q(c, Q_AP_LIST);
  if (!e && !st) e = ERR(AGD_EINTERNAL);
  if (!e) {
    sq_bind_text(st, 1, run_id);
    sq_bind_text(st, 2, user_id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (out->n == cap) {
        cap = cap ? cap * 2 : 4;
        out->items = realloc(out->items, cap * sizeof *out->items);
        if (!out->items) abort();
      }
      row_approval(st, &out->items[out->n++]);
    }
    if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "approval list");
    sq_done(st);
  }
  e = sq_tx_end(c, e);
  if (e) store_approval_list_dispose(out);
  return e;
}

int sq_approval_decide(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                       const char *status, const char *reason, double now, store_approval_t *out) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_AP_DECIDE);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, call_id);
  sq_bind_text(st, 3, user_id);
  sq_bind_text(st, 4, status);
  if (reason) sq_bind_text(st, 5, reason);
  else sqlite3_bind_null(st, 5);
  sqlite3_bind_double(st, 6, now);
  int e = sq_do(c, st, "approval decide");
  if (e) return e;
  int changed = sqlite3_changes(c->db) > 0;
  /* Either way the row as it is now: the decision made, or why there was none. */
  store_approval_t row;
  e = sq_approval_get(s, user_id, run_id, call_id, &row);
  if (e) return e; /* AGD_ENOT_FOUND: no such call of the caller */
  if (!changed) e = AGD_ECONFLICT; /* decided before, or expired */
  if (out) *out = row;
  else store_approval_dispose(&row);
  return e;
}

int sq_approvals_pending(store_t *s, store_approval_cb cb, void *arg) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_AP_PENDING);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc, e = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_approval_t a;
    row_approval(st, &a);
    cb(&a, arg);
    store_approval_dispose(&a);
  }
  if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "approvals pending");
  sq_done(st);
  return e;
}
