/* store/sqlite_runs.c — agent runs and their events on SQLite (SPEC §4, §5; store.h "runs",
 * "events").
 *
 * Events are an append-only log (migration 0005) numbered per user; event_seq keeps each
 * user's last seq so a seq is never handed out twice, even after its events were deleted.
 * The event writer's batches are one transaction (a savepoint per row only when a row fails).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/timeutil.h"

/* ---- SQL ------------------------------------------------------------------------------ */

enum {
  Q_RUN_INSERT,
  Q_RUN_STATUS,
  Q_RUN_GET,
  Q_RUN_LIST,
  Q_RUN_FAIL_INFLIGHT,
  Q_RUN_END_APPROVALS,
  Q_ENDED_APPROVALS,
  Q_RUN_USAGE,
  Q_EV_INSERT,
  Q_EV_SEQ_SET,
  Q_EV_SEQ_GET,
  Q_EV_LIST,
  Q_EV_LIST_RUN,
  Q__COUNT
};

/* A running run with a pending approval reads "waiting" (migration 0007). */
#define RUN_COLS                                                                                  \
  "r.id, coalesce(r.thread_id, ''), r.agent,"                                                      \
  " CASE WHEN r.status = 'running' AND EXISTS (SELECT 1 FROM approvals a INDEXED BY approvals_pending" \
  " WHERE a.run_id = r.id AND a.status = 'pending') THEN 'waiting' ELSE r.status END,"            \
  " r.created_at, coalesce(r.started_at, 0),"                                                      \
  " coalesce(r.completed_at, 0), r.input, r.result, r.error,"                                      \
  " (SELECT count(*) FROM events e WHERE e.run_id = r.id), r.usage"

static const char *const sql[Q__COUNT] = {
  [Q_RUN_INSERT] = "INSERT INTO runs(id, user_id, thread_id, agent, status, input, created_at)"
                   " SELECT ?1, ?2, ?3, ?4, 'queued', ?5, ?6 WHERE EXISTS"
                   " (SELECT 1 FROM threads WHERE id = ?3 AND user_id = ?2)",
  [Q_RUN_STATUS] = "UPDATE runs SET status = ?3, started_at = coalesce(?4, started_at),"
                   " completed_at = coalesce(?5, completed_at), result = coalesce(?6, result),"
                   " error = coalesce(?7, error) WHERE id = ?1 AND user_id = ?2",
  [Q_RUN_GET] = "SELECT " RUN_COLS " FROM runs r WHERE r.id = ?1 AND r.user_id = ?2",
  [Q_RUN_LIST] = "SELECT " RUN_COLS ", count(*) OVER () FROM runs r WHERE r.user_id = ?1"
                 " AND (?2 IS NULL OR r.thread_id = ?2)"
                 " AND (?3 = 0 OR r.status IN ('queued', 'running'))"
                 " ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?4 OFFSET ?5",
  [Q_RUN_USAGE] = "UPDATE runs SET usage = ?3 WHERE id = ?1 AND user_id = ?2",
  [Q_RUN_FAIL_INFLIGHT] = "UPDATE runs SET status = 'failed', completed_at = ?1, error ="
                          " '{\"error_code\":\"INTERRUPTED\",\"error_message\":"
                          "\"the server stopped while this run was in flight\"}'"
                          " WHERE status IN ('queued', 'running') AND NOT (status = 'running' AND EXISTS"
                          " (SELECT 1 FROM approvals a WHERE a.run_id = runs.id AND a.status = 'pending'))",
  /* A run's end expires the approvals it still waited for (migration 0007): nobody can
   * act on a decision any more. */
  [Q_RUN_END_APPROVALS] = "UPDATE approvals SET status = 'expired', reason = 'run ended', decided_at = ?2"
                          " WHERE run_id = ?1 AND status = 'pending'",
  [Q_ENDED_APPROVALS] = "UPDATE approvals SET status = 'expired', reason = 'run ended', decided_at = ?1"
                        " WHERE status = 'pending' AND run_id IN (SELECT id FROM runs WHERE status NOT IN"
                        " ('queued', 'running'))",
  [Q_EV_INSERT] = "INSERT INTO events(user_id, seq, run_id, thread_id, type, agent_name, created_at, body)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
  [Q_EV_SEQ_SET] = "INSERT INTO event_seq(user_id, last_seq) VALUES (?1, ?2)"
                   " ON CONFLICT(user_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
  [Q_EV_SEQ_GET] = "SELECT last_seq FROM event_seq WHERE user_id = ?1",
  [Q_EV_LIST] = "SELECT seq, type, body FROM events WHERE user_id = ?1 AND seq > ?2"
                " AND (?4 IS NULL OR thread_id = ?4) ORDER BY seq LIMIT ?5",
  /* By the run's index (a run has few events), not the user's whole range. */
  [Q_EV_LIST_RUN] = "SELECT seq, type, body FROM events INDEXED BY events_by_run WHERE run_id = ?3"
                    " AND user_id = ?1 AND seq > ?2 AND (?4 IS NULL OR thread_id = ?4) ORDER BY seq LIMIT ?5",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

/* This file's cached statement id (sq_stmt). */
static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_RUNS, sql, id); }

/* ---- runs and events ------------------------------------------------------------------ */

static void row_run(sqlite3_stmt *st, store_run_t *r) {
  memset(r, 0, sizeof *r);
  sq_col_copy(st, 0, r->id, sizeof r->id);
  sq_col_copy(st, 1, r->thread_id, sizeof r->thread_id);
  sq_col_copy(st, 2, r->agent, sizeof r->agent);
  sq_col_copy(st, 3, r->status, sizeof r->status);
  r->created_at = sqlite3_column_double(st, 4);
  r->started_at = sqlite3_column_double(st, 5);
  r->completed_at = sqlite3_column_double(st, 6);
  r->input = sq_col_dup(st, 7);
  if (!r->input) r->input = xstrdup("");
  r->result = sq_col_dup(st, 8);
  r->error = sq_col_dup(st, 9);
  r->event_count = (long)sqlite3_column_int64(st, 10);
  r->usage = sq_col_dup(st, 11);
}

int sq_run_set_usage(store_t *s, const char *user_id, const char *run_id, const char *usage_json) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_USAGE);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, user_id);
  sq_bind_text(st, 3, usage_json);
  int e = sq_do(c, st, "run usage");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  return e;
}

int sq_run_create(store_t *s, const char *user_id, const char *run_id, const char *thread_id,
                         const char *agent, const char *input, double created_at) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, user_id);
  sq_bind_text(st, 3, thread_id);
  sq_bind_text(st, 4, agent);
  sq_bind_text(st, 5, input);
  sqlite3_bind_double(st, 6, created_at);
  int e = sq_do(c, st, "run insert");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND; /* not the caller's thread */
  return e;
}

int sq_run_set_status(store_t *s, const char *user_id, const char *run_id, const char *status,
                             double started_at, double completed_at, const char *result_json,
                             const char *error_json) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_STATUS);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, user_id);
  sq_bind_text(st, 3, status);
  if (started_at > 0) sqlite3_bind_double(st, 4, started_at);
  else sqlite3_bind_null(st, 4);
  if (completed_at > 0) sqlite3_bind_double(st, 5, completed_at);
  else sqlite3_bind_null(st, 5);
  if (result_json) sq_bind_text(st, 6, result_json);
  else sqlite3_bind_null(st, 6);
  if (error_json) sq_bind_text(st, 7, error_json);
  else sqlite3_bind_null(st, 7);
  /* A final status also expires the run's pending approvals, in one savepoint (inside
   * the group commit: the end and its approvals at once).  Other statuses: one statement. */
  int final = strcmp(status, "queued") != 0 && strcmp(status, "running") != 0;
  int e = final ? sq_tx_begin(c) : 0;
  if (e) {
    sq_done(st);
    return e;
  }
  e = sq_do(c, st, "run status");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (!final) return e;
  if (!e) {
    sqlite3_stmt *ap = q(c, Q_RUN_END_APPROVALS);
    if (!ap) e = ERR(AGD_EINTERNAL);
    else {
      sq_bind_text(ap, 1, run_id);
      sqlite3_bind_double(ap, 2, completed_at > 0 ? completed_at : time_now());
      e = sq_do(c, ap, "run end approvals");
    }
  }
  return sq_tx_end(c, e);
}

int sq_run_get(store_t *s, const char *user_id, const char *run_id, store_run_t *out) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, run_id);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_run(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "run get");
  sq_done(st);
  return e;
}

int sq_run_list(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit,
                       long offset, store_run_list_t *out) {
  SQ_CONN(s, c);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = q(c, Q_RUN_LIST);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  if (thread_id) sq_bind_text(st, 2, thread_id);
  else sqlite3_bind_null(st, 2);
  sqlite3_bind_int(st, 3, active_only);
  sqlite3_bind_int(st, 4, limit);
  sqlite3_bind_int64(st, 5, offset);
  size_t cap = 0;
  int rc, e = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->n == cap) {
      cap = cap ? cap * 2 : 16;
      out->items = realloc(out->items, cap * sizeof *out->items);
      if (!out->items) abort();
    }
    row_run(st, &out->items[out->n++]);
    out->total = (long)sqlite3_column_int64(st, 12);
  }
  if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "run list");
  sq_done(st);
  if (e) store_run_list_dispose(out);
  return e;
}

int sq_runs_fail_inflight(store_t *s, double now, long *n) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_FAIL_INFLIGHT);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_double(st, 1, now);
  int e = sq_do(c, st, "runs fail inflight");
  if (n) *n = e ? 0 : (long)sqlite3_changes(c->db);
  if (e) return e;
  /* …and the approvals of every run that ended are no longer pending */
  st = q(c, Q_ENDED_APPROVALS);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_double(st, 1, now);
  return sq_do(c, st, "ended runs' approvals");
}

/* Insert one event row (inside the caller's transaction; event_seqs_set moves the counters). */
static int event_row_insert(sq_conn_t *c, const store_event_t *ev) {
  sqlite3_stmt *st = q(c, Q_EV_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, ev->user_id);
  sqlite3_bind_int64(st, 2, ev->seq);
  if (ev->run_id && ev->run_id[0]) sq_bind_text(st, 3, ev->run_id);
  else sqlite3_bind_null(st, 3);
  if (ev->thread_id && ev->thread_id[0]) sq_bind_text(st, 4, ev->thread_id);
  else sqlite3_bind_null(st, 4);
  sq_bind_text(st, 5, ev->type);
  if (ev->agent_name && ev->agent_name[0]) sq_bind_text(st, 6, ev->agent_name);
  else sqlite3_bind_null(st, 6);
  sqlite3_bind_double(st, 7, ev->created_at);
  sq_bind_text(st, 8, ev->json);
  return sq_do(c, st, "event insert");
}

static int event_seq_set(sq_conn_t *c, const char *user_id, int64_t seq) {
  sqlite3_stmt *st = q(c, Q_EV_SEQ_SET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, seq);
  return sq_do(c, st, "event seq");
}

/* Move the seq counter of every user in evs[0..n) to its highest seq there: one
 * write per user, not per event (a batch holds many events of few users).  Also for
 * events whose row failed: their seq was handed out and must never come again. */
static int event_seqs_set(sq_conn_t *c, const store_event_t *evs, size_t n) {
  enum { CHUNK = 1024, SLOTS_MAX = 2048 };
  const char *seen[SLOTS_MAX];
  int64_t max_seq[SLOTS_MAX];
  for (size_t base = 0; base < n; base += CHUNK) {
    size_t m = n - base < CHUNK ? n - base : CHUNK;
    /* A table twice the chunk (so the probe always ends), no bigger: most
     * batches hold a few events, and this runs on every commit. */
    size_t slots = 16;
    while (slots < 2 * m) slots <<= 1;
    memset(seen, 0, slots * sizeof *seen);
    for (size_t i = base; i < base + m; i++) {
      size_t k = hash_fnv1a_str(evs[i].user_id, 0) & (slots - 1);
      while (seen[k] && strcmp(seen[k], evs[i].user_id) != 0) k = (k + 1) & (slots - 1);
      if (!seen[k]) {
        seen[k] = evs[i].user_id;
        max_seq[k] = evs[i].seq;
      } else if (evs[i].seq > max_seq[k]) {
        max_seq[k] = evs[i].seq;
      }
    }
    for (size_t k = 0; k < slots; k++) {
      if (!seen[k]) continue;
      int e = event_seq_set(c, seen[k], max_seq[k]);
      if (e) return e;
    }
  }
  return 0;
}

int sq_event_append(store_t *s, const store_event_t *ev) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  e = event_row_insert(c, ev);
  if (e == 0) e = event_seq_set(c, ev->user_id, ev->seq);
  return sq_tx_end(c, e);
}

/* Group commit: the whole batch in one transaction.  When a row fails (its run
 * was deleted meanwhile, with its thread) the batch is redone with a savepoint per row,
 * so one bad row does not cost the others. */
int sq_event_append_batch(store_t *s, const store_event_t *evs, size_t n) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  for (size_t i = 0; i < n && !e; i++) e = event_row_insert(c, &evs[i]);
  if (e == 0) return sq_tx_end(c, event_seqs_set(c, evs, n));
  sq_tx_rollback(c);
  if (e == AGD_EUNAVAILABLE || e == AGD_EINTERNAL) return e;
  e = sq_tx_begin(c);
  if (e) return e;
  size_t failed = 0;
  for (size_t i = 0; i < n && !e; i++) {
    e = sq_tx_begin(c); /* a savepoint */
    if (e) break;
    if (sq_tx_end(c, event_row_insert(c, &evs[i])) != 0) failed++;
  }
  if (e == 0) e = event_seqs_set(c, evs, n);
  e = sq_tx_end(c, e);
  if (e) return e;
  return failed == n ? AGD_ENOT_FOUND : 0;
}

int sq_event_last_seq(store_t *s, const char *user_id, int64_t *out) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_EV_SEQ_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  *out = 0;
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  else if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "event seq get");
  sq_done(st);
  return e;
}

int sq_event_list(store_t *s, const char *user_id, int64_t after_seq, const char *run_id,
                         const char *thread_id, int limit, store_event_list_t *out) {
  SQ_CONN(s, c);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = q(c, run_id ? Q_EV_LIST_RUN : Q_EV_LIST);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, after_seq);
  if (run_id) sq_bind_text(st, 3, run_id);
  else sqlite3_bind_null(st, 3);
  if (thread_id) sq_bind_text(st, 4, thread_id);
  else sqlite3_bind_null(st, 4);
  sqlite3_bind_int(st, 5, limit + 1);
  size_t cap = 0;
  int rc, e = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->n == (size_t)limit) {
      out->has_more = 1;
      continue;
    }
    if (out->n == cap) {
      cap = cap ? cap * 2 : 32;
      out->items = realloc(out->items, cap * sizeof *out->items);
      if (!out->items) abort();
    }
    store_event_row_t *row = &out->items[out->n++];
    row->seq = sqlite3_column_int64(st, 0);
    sq_col_copy(st, 1, row->type, sizeof row->type);
    row->json = sq_col_dup(st, 2);
    if (!row->json) row->json = xstrdup("{}");
  }
  if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "event list");
  sq_done(st);
  if (e) store_event_list_free(out);
  return e;
}
