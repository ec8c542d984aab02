/* store/sqlite_threads.c — threads and their messages on SQLite (SPEC §3; store.h "threads",
 * "messages").
 *
 * A message's `seq` is its rowid (AUTOINCREMENT: never reused); a thread row carries its
 * message count, kept in step by every insert and delete.  Lists read under one snapshot
 * (sq_tx_begin_read).  Many message writes share one transaction through the event
 * writer's group commit (core/messages.h), each in a savepoint of its own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/timeutil.h"

/* ---- SQL ------------------------------------------------------------------------------ */

enum {
  Q_THR_INSERT,
  Q_THR_GET,
  Q_THR_LIST,
  Q_THR_COUNT,
  Q_THR_UPDATE,
  Q_THR_ARCHIVE,
  Q_THR_DELETE,
  Q_THR_TOUCH,
  Q_THR_UNCOUNT,
  Q_MSG_INSERT,
  Q_MSG_GET,
  Q_MSG_LOCATE,
  Q_MSG_DELETE,
  Q_MSG_LIST_THREAD,
  Q_MSG_LIST_THREAD_DESC,
  Q_MSG_LIST_BEFORE,
  Q_MSG_LIST_USER,
  Q_MSG_COUNT_USER,
  Q__COUNT
};

#define THREAD_COLS "id, title, metadata, status, created_at, updated_at, message_count"
#define MESSAGE_COLS "seq, id, thread_id, role, content, coalesce(run_id, ''), metadata, created_at"
/* ?N as metadata: kept only when it is a JSON object, else NULL (the NOT NULL constraint
 * turns that into AGD_EVALIDATION).  CASE evaluates lazily: json_type never sees bad JSON. */
#define META_OBJ(n) "CASE WHEN json_valid(" n ") THEN CASE WHEN json_type(" n ") = 'object' THEN " n " END END"

static const char *const sql[Q__COUNT] = {
  [Q_THR_INSERT] = "INSERT INTO threads(id, user_id, title, metadata, status, created_at, updated_at,"
                   " message_count) VALUES (?1, ?2, ?3, " META_OBJ("?4") ", 'active', ?5, ?5, 0)",
  [Q_THR_GET] = "SELECT " THREAD_COLS " FROM threads WHERE id = ?1 AND user_id = ?2",
  [Q_THR_LIST] = "SELECT " THREAD_COLS " FROM threads WHERE user_id = ?1 AND (?2 OR status = 'active')"
                 " ORDER BY updated_at DESC, rowid LIMIT ?3 OFFSET ?4", /* the index's order: no sort */
  [Q_THR_COUNT] = "SELECT count(*) FROM threads WHERE user_id = ?1 AND (?2 OR status = 'active')",
  [Q_THR_UPDATE] = "UPDATE threads SET title = CASE WHEN ?3 THEN ?4 ELSE title END,"
                   " metadata = CASE WHEN ?5 IS NULL THEN metadata ELSE " META_OBJ("?5") " END,"
                   " updated_at = ?6 WHERE id = ?1 AND user_id = ?2",
  [Q_THR_ARCHIVE] = "UPDATE threads SET status = 'archived',"
                    " updated_at = CASE WHEN status = 'archived' THEN updated_at ELSE ?3 END"
                    " WHERE id = ?1 AND user_id = ?2",
  [Q_THR_DELETE] = "DELETE FROM threads WHERE id = ?1 AND user_id = ?2",
  [Q_THR_TOUCH] = "UPDATE threads SET updated_at = max(updated_at, ?3), message_count = message_count + 1"
                  " WHERE id = ?1 AND user_id = ?2",
  [Q_THR_UNCOUNT] = "UPDATE threads SET message_count = max(message_count - 1, 0) WHERE id = ?1",
  [Q_MSG_INSERT] = "INSERT INTO messages(id, thread_id, user_id, role, content, run_id, metadata,"
                   " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, " META_OBJ("?7") ", ?8)",
  [Q_MSG_GET] = "SELECT " MESSAGE_COLS " FROM messages WHERE id = ?1 AND user_id = ?2",
  [Q_MSG_LOCATE] = "SELECT seq, thread_id FROM messages WHERE id = ?1 AND user_id = ?2",
  [Q_MSG_DELETE] = "DELETE FROM messages WHERE seq = ?1",
  [Q_MSG_LIST_THREAD] = "SELECT " MESSAGE_COLS " FROM messages WHERE thread_id = ?1 AND user_id = ?2"
                        " ORDER BY seq LIMIT ?3 OFFSET ?4",
  [Q_MSG_LIST_THREAD_DESC] = "SELECT " MESSAGE_COLS " FROM messages WHERE thread_id = ?1 AND user_id = ?2"
                             " ORDER BY seq DESC LIMIT ?3 OFFSET ?4",
  [Q_MSG_LIST_BEFORE] = "SELECT " MESSAGE_COLS " FROM messages WHERE thread_id = ?1 AND user_id = ?2"
                        " AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
  [Q_MSG_LIST_USER] = "SELECT " MESSAGE_COLS " FROM messages WHERE user_id = ?1"
                      " ORDER BY seq DESC LIMIT ?2 OFFSET ?3",
  [Q_MSG_COUNT_USER] = "SELECT count(*) FROM messages WHERE user_id = ?1",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

/* This file's cached statement id (sq_stmt). */
static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_THREADS, sql, id); }


static void row_thread(sqlite3_stmt *st, store_thread_t *t) {
  memset(t, 0, sizeof *t);
  sq_col_copy(st, 0, t->id, sizeof t->id);
  t->title = sq_col_dup(st, 1);
  t->metadata = sq_col_dup(st, 2);
  if (!t->metadata) t->metadata = xstrdup("{}");
  sq_col_copy(st, 3, t->status, sizeof t->status);
  t->created_at = sqlite3_column_double(st, 4);
  t->updated_at = sqlite3_column_double(st, 5);
  t->message_count = (long)sqlite3_column_int64(st, 6);
}

static void row_message(sqlite3_stmt *st, store_message_t *m) {
  memset(m, 0, sizeof *m);
  m->seq = sqlite3_column_int64(st, 0);
  sq_col_copy(st, 1, m->id, sizeof m->id);
  sq_col_copy(st, 2, m->thread_id, sizeof m->thread_id);
  sq_col_copy(st, 3, m->role, sizeof m->role);
  m->content = sq_col_dup(st, 4);
  if (!m->content) m->content = xstrdup("");
  sq_col_copy(st, 5, m->run_id, sizeof m->run_id);
  m->metadata = sq_col_dup(st, 6);
  if (!m->metadata) m->metadata = xstrdup("{}");
  m->created_at = sqlite3_column_double(st, 7);
}


/* One thread of the user into out (Q_THR_GET). */
static int thread_lookup(sq_conn_t *c, const char *user_id, const char *thread_id, store_thread_t *out) {
  sqlite3_stmt *st = q(c, Q_THR_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, thread_id);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_thread(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "thread get");
  sq_done(st);
  return e;
}

/* Step st (bound by the caller) to the end, appending at most max messages to out. */
static int collect_messages(sq_conn_t *c, sqlite3_stmt *st, size_t max, store_message_list_t *out,
                            const char *what) {
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->n == max) {
      out->has_more = 1;
      continue; /* the query fetched one row more than a page: there is more */
    }
    if (out->n == cap) {
      cap = cap ? cap * 2 : 16;
      store_message_t *p = realloc(out->items, cap * sizeof *p);
      if (!p) abort();
      out->items = p;
    }
    row_message(st, &out->items[out->n++]);
  }
  int e = rc == SQLITE_DONE ? 0 : SQ_FAIL(c, rc, what);
  sq_done(st);
  return e;
}

static int count_query(sq_conn_t *c, sqlite3_stmt *st, long *n, const char *what) {
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *n = (long)sqlite3_column_int64(st, 0);
  else e = SQ_FAIL(c, rc, what);
  sq_done(st);
  return e;
}

/* Insert a thread row with a fresh id (into id_out). */
static int thread_insert(sq_conn_t *c, const char *user_id, const char *title, const char *metadata,
                         double now, char id_out[ID_MAX]) {
  sqlite3_stmt *st = q(c, Q_THR_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  id_new(id_out, "thr");
  sq_bind_text(st, 1, id_out);
  sq_bind_text(st, 2, user_id);
  if (title) sq_bind_text(st, 3, title);
  else sqlite3_bind_null(st, 3);
  sq_bind_text(st, 4, metadata ? metadata : "{}");
  sqlite3_bind_double(st, 5, now);
  return sq_do(c, st, "thread insert");
}

int sq_thread_create(store_t *s, const char *user_id, const char *title, const char *metadata,
                            store_thread_t *out) {
  SQ_CONN(s, c);
  char id[ID_MAX];
  double now = time_now();
  int e = thread_insert(c, user_id, title, metadata, now, id);
  if (e) return e;
  memset(out, 0, sizeof *out);
  memcpy(out->id, id, sizeof id);
  out->title = title ? xstrdup(title) : NULL;
  out->metadata = xstrdup(metadata ? metadata : "{}");
  snprintf(out->status, sizeof out->status, "active");
  out->created_at = out->updated_at = now;
  return 0;
}

int sq_thread_get(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out) {
  SQ_CONN(s, c);
  return thread_lookup(c, user_id, thread_id, out);
}

int sq_thread_list(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                          store_thread_list_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_THR_COUNT);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, user_id);
  sqlite3_bind_int(st, 2, include_archived);
  e = count_query(c, st, &out->total, "thread count");
  if (!e && offset < out->total) {
    st = q(c, Q_THR_LIST);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sq_bind_text(st, 1, user_id);
    sqlite3_bind_int(st, 2, include_archived);
    sqlite3_bind_int(st, 3, limit);
    sqlite3_bind_int64(st, 4, offset);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (out->n == cap) {
        cap = cap ? cap * 2 : 16;
        store_thread_t *p = realloc(out->items, cap * sizeof *p);
        if (!p) abort();
        out->items = p;
      }
      row_thread(st, &out->items[out->n++]);
    }
    if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "thread list");
    sq_done(st);
  }
  e = sq_tx_end(c, e);
  if (e) store_thread_list_dispose(out);
  return e;
}

int sq_thread_update(store_t *s, const char *user_id, const char *thread_id, int set_title,
                            const char *title, const char *metadata, store_thread_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_THR_UPDATE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, thread_id);
  sq_bind_text(st, 2, user_id);
  sqlite3_bind_int(st, 3, set_title);
  if (title) sq_bind_text(st, 4, title);
  else sqlite3_bind_null(st, 4);
  if (metadata) sq_bind_text(st, 5, metadata);
  else sqlite3_bind_null(st, 5);
  sqlite3_bind_double(st, 6, time_now());
  e = sq_do(c, st, "thread update");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (!e) e = thread_lookup(c, user_id, thread_id, out);
  e = sq_tx_end(c, e);
  if (e) store_thread_dispose(out);
  return e;
}

/* One UPDATE/DELETE keyed by (thread id, user id); AGD_ENOT_FOUND when no row matched. */
static int thread_change(store_t *s, int qid, const char *user_id, const char *thread_id, const char *what) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, thread_id);
  sq_bind_text(st, 2, user_id);
  if (qid == Q_THR_ARCHIVE) sqlite3_bind_double(st, 3, time_now());
  int e = sq_do(c, st, what);
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  return e;
}

int sq_thread_archive(store_t *s, const char *user_id, const char *thread_id) {
  return thread_change(s, Q_THR_ARCHIVE, user_id, thread_id, "thread archive");
}

int sq_thread_delete(store_t *s, const char *user_id, const char *thread_id) {
  /* ON DELETE CASCADE removes the messages (and runs, events) with the thread. */
  return thread_change(s, Q_THR_DELETE, user_id, thread_id, "thread delete");
}

/* Store one message inside the caller's write transaction; out is filled on success. */
static int message_add_tx(sq_conn_t *c, const char *user_id, const store_message_new_t *in, double now,
                          store_message_t *out) {
  char thread_id[ID_MAX];
  int e;
  if (in->thread_id) {
    snprintf(thread_id, sizeof thread_id, "%s", in->thread_id);
  } else {
    e = thread_insert(c, user_id, in->new_thread_title, NULL, now, thread_id);
    if (e) return e;
  }
  /* The ownership check and the thread's bookkeeping in one statement. */
  sqlite3_stmt *st = q(c, Q_THR_TOUCH);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, thread_id);
  sq_bind_text(st, 2, user_id);
  sqlite3_bind_double(st, 3, now);
  e = sq_do(c, st, "thread touch");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (e) return e;

  char id[ID_MAX];
  if (in->id) snprintf(id, sizeof id, "%s", in->id);
  else id_new(id, "msg");
  st = q(c, Q_MSG_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, id);
  sq_bind_text(st, 2, thread_id);
  sq_bind_text(st, 3, user_id);
  sq_bind_text(st, 4, in->role);
  sq_bind_text(st, 5, in->content);
  if (in->run_id && in->run_id[0]) sq_bind_text(st, 6, in->run_id);
  else sqlite3_bind_null(st, 6);
  sq_bind_text(st, 7, in->metadata ? in->metadata : "{}");
  sqlite3_bind_double(st, 8, now);
  e = sq_do(c, st, "message insert");
  if (e) return e;
  memset(out, 0, sizeof *out);
  out->seq = sqlite3_last_insert_rowid(c->db);
  memcpy(out->id, id, sizeof id);
  memcpy(out->thread_id, thread_id, sizeof thread_id);
  snprintf(out->role, sizeof out->role, "%s", in->role);
  out->content = xstrdup(in->content);
  if (in->run_id) snprintf(out->run_id, sizeof out->run_id, "%s", in->run_id);
  out->metadata = xstrdup(in->metadata ? in->metadata : "{}");
  out->created_at = now;
  return 0;
}

int sq_message_add(store_t *s, const char *user_id, const store_message_new_t *in,
                          store_message_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  e = sq_tx_end(c, message_add_tx(c, user_id, in, time_now(), out));
  if (e) store_message_dispose(out);
  return e;
}

int sq_message_get(store_t *s, const char *user_id, const char *message_id, store_message_t *out) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_MSG_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, message_id);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_message(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "message get");
  sq_done(st);
  return e;
}

/* seq and thread of a message of the user. */
static int message_locate(sq_conn_t *c, const char *user_id, const char *message_id, long long *seq,
                          char thread_id[ID_MAX]) {
  sqlite3_stmt *st = q(c, Q_MSG_LOCATE);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, message_id);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) {
    *seq = sqlite3_column_int64(st, 0);
    sq_col_copy(st, 1, thread_id, ID_MAX);
  } else if (rc == SQLITE_DONE) {
    e = AGD_ENOT_FOUND;
  } else {
    e = SQ_FAIL(c, rc, "message locate");
  }
  sq_done(st);
  return e;
}

int sq_message_delete(store_t *s, const char *user_id, const char *message_id) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  long long seq = 0;
  char thread_id[ID_MAX];
  e = message_locate(c, user_id, message_id, &seq, thread_id);
  if (e) return sq_tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_MSG_DELETE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int64(st, 1, seq);
  e = sq_do(c, st, "message delete");
  if (!e) {
    st = q(c, Q_THR_UNCOUNT);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sq_bind_text(st, 1, thread_id);
    e = sq_do(c, st, "thread uncount");
  }
  return sq_tx_end(c, e);
}

/* Page of a thread's messages (ascending or descending); total from the thread row. */
static int thread_page(sq_conn_t *c, const char *user_id, const char *thread_id, int qid, int limit,
                       long offset, store_message_list_t *out) {
  store_thread_t t;
  int e = thread_lookup(c, user_id, thread_id, &t);
  if (e) return e;
  out->total = t.message_count;
  store_thread_dispose(&t);
  if (offset >= out->total) return 0;
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, thread_id);
  sq_bind_text(st, 2, user_id);
  sqlite3_bind_int(st, 3, limit);
  sqlite3_bind_int64(st, 4, offset);
  e = collect_messages(c, st, (size_t)limit, out, "message list");
  out->has_more = offset + (long)out->n < out->total;
  return e;
}

int sq_message_list(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                           store_message_list_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c);
  if (e) return e;
  e = sq_tx_end(c, thread_page(c, user_id, thread_id, Q_MSG_LIST_THREAD, limit, offset, out));
  if (e) store_message_list_dispose(out);
  return e;
}

int sq_message_history(store_t *s, const char *user_id, const char *thread_id, const char *before_id,
                              int limit, store_message_list_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c);
  if (e) return e;
  store_thread_t t;
  e = thread_lookup(c, user_id, thread_id, &t);
  if (!e) store_thread_dispose(&t);
  long long before = INT64_MAX;
  if (!e && before_id) {
    char tid[ID_MAX];
    e = message_locate(c, user_id, before_id, &before, tid);
    if (!e && strcmp(tid, thread_id) != 0) e = AGD_ENOT_FOUND; /* not a message of this thread */
  }
  if (!e) {
    sqlite3_stmt *st = q(c, Q_MSG_LIST_BEFORE);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sq_bind_text(st, 1, thread_id);
    sq_bind_text(st, 2, user_id);
    sqlite3_bind_int64(st, 3, before);
    sqlite3_bind_int(st, 4, limit + 1); /* one more tells whether older ones remain */
    e = collect_messages(c, st, (size_t)limit, out, "message history");
  }
  e = sq_tx_end(c, e);
  if (e) {
    store_message_list_dispose(out);
    return e;
  }
  for (size_t i = 0, j = out->n; i + 1 < j; i++, j--) { /* newest-first → oldest first */
    store_message_t tmp = out->items[i];
    out->items[i] = out->items[j - 1];
    out->items[j - 1] = tmp;
  }
  out->total = -1;
  return 0;
}

int sq_message_list_user(store_t *s, const char *user_id, const char *thread_id, int limit,
                                long offset, store_message_list_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin_read(c);
  if (e) return e;
  if (thread_id) {
    e = thread_page(c, user_id, thread_id, Q_MSG_LIST_THREAD_DESC, limit, offset, out);
  } else {
    sqlite3_stmt *st = q(c, Q_MSG_COUNT_USER);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sq_bind_text(st, 1, user_id);
    e = count_query(c, st, &out->total, "message count");
    if (!e && offset < out->total) {
      st = q(c, Q_MSG_LIST_USER);
      if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
      sq_bind_text(st, 1, user_id);
      sqlite3_bind_int(st, 2, limit);
      sqlite3_bind_int64(st, 3, offset);
      e = collect_messages(c, st, (size_t)limit, out, "message list user");
    }
    out->has_more = offset + (long)out->n < out->total;
  }
  e = sq_tx_end(c, e);
  if (e) store_message_list_dispose(out);
  return e;
}
