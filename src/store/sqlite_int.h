/* store/sqlite_int.h — PRIVATE to src/store/sqlite_*.c: what the files of the SQLite backend share.
 *
 * The backend is one store_ops_t (filled in sqlite_db.c) spread over files by concern:
 *   sqlite_db.c         open/close, one connection per calling thread, pragmas, the statement
 *                       cache, transactions and savepoints, the write mutex, the checkpointer;
 *   sqlite_migrate.c    the schema_migrations table and applying one migration (the runner
 *                       itself is engine-neutral: migrate.c);
 *   sqlite_auth.c       users, refresh tokens and their families, revoked access tokens;
 *   sqlite_threads.c    threads and messages;
 *   sqlite_runs.c       runs and events;
 *   sqlite_workloads.c  workload records;
 *   sqlite_approvals.c  approvals of tool calls (SPEC §11).
 * Each entity file keeps its SQL in a table of its own (its `enum { Q_… }` indexes it) beside
 * the functions that use it, and reaches its cached statements through sq_stmt() under its
 * own module id: adding a statement touches that file only.
 *
 * Thread rules as store.h: a connection (sq_conn_t) is used by one thread at a time — the
 * thread that opened it, or a borrower thread that took it from the store's pool for one
 * store call (sq_conn_get, sq_release) — so SQLITE_OPEN_NOMUTEX suffices; the functions
 * below take the calling thread's connection (SQ_CONN) and are safe on any thread except
 * the event loop.
 */
#ifndef AGD_STORE_SQLITE_INT_H
#define AGD_STORE_SQLITE_INT_H

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/metrics.h"
#include "store/store_int.h"
#include "util/xalloc.h"

/* Whose statements a cache slot holds: one row of sq_conn_t.stmt per file. */
enum sq_module {
  SQ_MOD_DB,        /* transaction control (sqlite_db.c) */
  SQ_MOD_MIGRATE,   /* schema_migrations (sqlite_migrate.c) */
  SQ_MOD_AUTH,      /* sqlite_auth.c */
  SQ_MOD_THREADS,   /* sqlite_threads.c */
  SQ_MOD_RUNS,      /* sqlite_runs.c */
  SQ_MOD_WORKLOADS, /* sqlite_workloads.c */
  SQ_MOD_APPROVALS, /* sqlite_approvals.c */
  SQ_MOD__COUNT
};
/* Statements per module at most (each file checks its count with a static assertion). */
#define SQ_MOD_STMTS_MAX 24

typedef struct sq_store sq_store_t;

typedef struct sq_conn {
  sq_store_t *st;              /* owner */
  struct sq_conn *prev, *next; /* on st->conns, under st->mu */
  sqlite3 *db;
  sqlite3_stmt *stmt[SQ_MOD__COUNT][SQ_MOD_STMTS_MAX]; /* prepared on first use */
  int holds_wmu;               /* this connection holds st->wmu (a write transaction is open) */
  int tx_depth;                /* 0: no transaction; 1: BEGIN; > 1: that many - 1 savepoints */
  int group_cache;             /* the page cache was enlarged for group commits (sq_tx) */
  long long cache_bytes;       /* its page cache as last counted in agentd_db_cache_bytes */
  int pooled;                  /* one of st's pool: lent to borrowers, never a thread's own */
  struct sq_conn *pool_next;   /* on st->pool_free, under st->pool_mu */
} sq_conn_t;

struct sq_store {
  store_t super;      /* first: a store_t* is a sq_store_t* */
  pthread_key_t key;  /* this thread's sq_conn_t* */
  pthread_mutex_t mu; /* guards conns */
  sq_conn_t *conns;   /* every open connection of this store */
  /* Writers of this process queue here before taking SQLite's write lock.  SQLite
   * only offers polling (a busy handler that sleeps 1, 2, 5, 10… ms), which turns
   * every brief overlap with the event writer's group commit into milliseconds of
   * latency; a mutex hands the lock over as soon as the holder commits.  Other
   * processes (`agentd migrate`, `agentd user add`) still meet the busy handler. */
  pthread_mutex_t wmu;
  metrics_hist_t *wmu_wait; /* agentd_db_write_wait_seconds, looked up once at open */
  metrics_hist_t *ckpt_passive, *ckpt_hold; /* the checkpointer's (sqlite_db.c) */
  /* Checkpoints run on their own thread (see checkpointer_main in sqlite_db.c), never
   * inside a writer's COMMIT while it holds wmu. */
  pthread_t ckpt_thread;
  pthread_mutex_t ckpt_mu;
  pthread_cond_t ckpt_cv;
  int ckpt_running, ckpt_wanted, ckpt_stop;
  /* The connections lent to borrower threads (store_thread_borrow) for one store call
   * at a time: opened on demand up to pool_size, then kept (on conns too). */
  pthread_mutex_t pool_mu;
  pthread_cond_t pool_cv;  /* a connection came back */
  sq_conn_t *pool_free;    /* idle, most recently returned first (its pages are warm) */
  int pool_size;           /* at most this many opened */
  int pool_open;           /* opened (or being opened) */
  int pool_out;            /* lent now */
  int pool_peak;           /* most lent at once */
  int pool_wait_ms;        /* a borrower waits at most this long: then AGD_EUNAVAILABLE */
  long pool_timeouts;      /* borrowers that gave up */
  char path[PATH_MAX];
};

static inline sq_store_t *sq(store_t *s) { return (sq_store_t *)s; }

/* ---- connections and statements (sqlite_db.c) ------------------------------------------ */

/* SQLite result → AGD_E* (store.h); logs what is not an expected outcome. */
int sq_fail(sq_conn_t *c, int rc, const char *what, const char *file, int line);
#define SQ_FAIL(c, rc, what) sq_fail((c), (rc), (what), __FILE__, __LINE__)

/* This thread's connection of st: its own, opened on first use, or for a borrower the
 * one it holds or one taken from the pool (waiting up to pool_wait_ms for one).  0 or
 * AGD_E* (err filled). */
int sq_conn_get(sq_store_t *st, sq_conn_t **out, char *err, size_t cap);
/* Declare `c`, the calling thread's connection of store s, or return the error. */
#define SQ_CONN(s, c)                                         \
  sq_conn_t *c;                                               \
  do {                                                        \
    int e__ = sq_conn_get(sq(s), &c, NULL, 0);                \
    if (e__) return e__;                                      \
  } while (0)

/* The end of a borrower's outermost store call (store_ops_t.release): its connection
 * back to the pool. */
void sq_release(store_t *s);

/* The pool's figures (tests, docs/performance.md).  Any pointer may be NULL. */
typedef struct sq_pool_stats {
  int size, open, out, peak;
  long timeouts;
} sq_pool_stats_t;
void sq_pool_stats(store_t *s, sq_pool_stats_t *out);
/* Resize the pool (size >= 1; it never closes what it opened) and set the borrowers'
 * wait (ms >= 0): for tests; the defaults suit agentd. */
void sq_pool_config(store_t *s, int size, int wait_ms);

/* Run one SQL text with no results expected (PRAGMAs, DDL, a migration).  0 or AGD_E*. */
int sq_exec(sq_conn_t *c, const char *sql, const char *what);

/* Compile sql into slot [mod][id] of c (the slow path of sq_stmt); NULL (logged) on failure. */
sqlite3_stmt *sq_prepare(sq_conn_t *c, int mod, int id, const char *sql);

/* Cached statement sql[id] of module mod, reset and unbound, or NULL (logged) if it
 * cannot compile.  Each file wraps it as its own q(c, id). */
static inline sqlite3_stmt *sq_stmt(sq_conn_t *c, int mod, const char *const *sql, int id) {
  sqlite3_stmt *st = c->stmt[mod][id];
  return st ? st : sq_prepare(c, mod, id, sql[id]);
}

/* Finish with a statement: end its read, drop bindings (keeps no snapshot open). */
static inline void sq_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Step a statement that returns no row and finish it (a write outside a transaction
 * queues for the write mutex).  0 or AGD_E*. */
int sq_do(sq_conn_t *c, sqlite3_stmt *st, const char *what);

static inline void sq_bind_text(sqlite3_stmt *st, int i, const char *s) {
  sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC); /* borrowed until sq_done */
}

/* Transactions nest: inside one (store_tx), a store call's own sq_tx_begin … sq_tx_end
 * becomes a savepoint, so its failure undoes only its own writes. */
/* BEGIN IMMEDIATE, after this process's other writers (wmu, held until sq_tx_end). */
int sq_tx_begin(sq_conn_t *c);
/* A read transaction (one snapshot for several statements); ends with sq_tx_end. */
int sq_tx_begin_read(sq_conn_t *c);
/* Commit when e == 0, else roll back; returns the first error. */
int sq_tx_end(sq_conn_t *c, int e);
/* Undo the innermost level: back to its savepoint, or the whole transaction. */
void sq_tx_rollback(sq_conn_t *c);

/* Copy a text column into a fixed array, truncating (the write path keeps rows fitting). */
static inline void sq_col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  const unsigned char *p = sqlite3_column_text(st, i);
  size_t n = p ? (size_t)sqlite3_column_bytes(st, i) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, p, n);
  dst[n] = '\0';
}
/* malloc'd copy of a text column; NULL for SQL NULL. */
char *sq_col_dup(sqlite3_stmt *st, int i);

/* ---- migrations (sqlite_migrate.c) ------------------------------------------------------ */

int sq_migrate(store_t *s, int *version_out, char *err, size_t cap);
/* The highest recorded migration version (0 on a new database). */
int sq_schema_version(sq_conn_t *c, int *v);

/* ---- the entity files: their store_ops_t entries (see store_int.h for the contracts) ---- */

/* sqlite_auth.c */
int sq_user_create(store_t *s, const store_user_t *u);
int sq_user_by_email(store_t *s, const char *email, store_user_t *out);
int sq_user_get(store_t *s, const char *user_id, store_user_t *out);
int sq_user_ensure(store_t *s, const char *user_id, const char *email, store_user_t *out);
int sq_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out);
int sq_user_count(store_t *s, long *n);
int sq_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id, double expires_at);
int sq_refresh_consume(store_t *s, const char *jti, const char *user_id, double now, char family_out[ID_MAX]);
int sq_refresh_revoke_family(store_t *s, const char *family_id);
int sq_refresh_revoke_user(store_t *s, const char *user_id);
int sq_revoke_access(store_t *s, const char *jti, double expires_at);
int sq_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg);
int sq_revoked_purge(store_t *s, double now);

/* sqlite_threads.c */
int sq_thread_create(store_t *s, const char *user_id, const char *title, const char *metadata,
                     store_thread_t *out);
int sq_thread_get(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out);
int sq_thread_list(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                   store_thread_list_t *out);
int sq_thread_update(store_t *s, const char *user_id, const char *thread_id, int set_title, const char *title,
                     const char *metadata, store_thread_t *out);
int sq_thread_archive(store_t *s, const char *user_id, const char *thread_id);
int sq_thread_delete(store_t *s, const char *user_id, const char *thread_id);
int sq_message_add(store_t *s, const char *user_id, const store_message_new_t *in, store_message_t *out);
int sq_message_get(store_t *s, const char *user_id, const char *message_id, store_message_t *out);
int sq_message_delete(store_t *s, const char *user_id, const char *message_id);
int sq_message_list(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                    store_message_list_t *out);
int sq_message_history(store_t *s, const char *user_id, const char *thread_id, const char *before_id, int limit,
                       store_message_list_t *out);
int sq_message_list_user(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                         store_message_list_t *out);

/* sqlite_runs.c */
int sq_run_create(store_t *s, const char *user_id, const char *run_id, const char *thread_id, const char *agent,
                  const char *input, double created_at);
int sq_run_set_status(store_t *s, const char *user_id, const char *run_id, const char *status, double started_at,
                      double completed_at, const char *result_json, const char *error_json);
int sq_run_get(store_t *s, const char *user_id, const char *run_id, store_run_t *out);
int sq_run_set_usage(store_t *s, const char *user_id, const char *run_id, const char *usage_json);
int sq_run_list(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit, long offset,
                store_run_list_t *out);
int sq_runs_fail_inflight(store_t *s, double now, long *n);
int sq_event_append(store_t *s, const store_event_t *ev);
int sq_event_append_batch(store_t *s, const store_event_t *evs, size_t n);
int sq_event_last_seq(store_t *s, const char *user_id, int64_t *out);
int sq_event_list(store_t *s, const char *user_id, int64_t after_seq, const char *run_id, const char *thread_id,
                  int limit, store_event_list_t *out);

/* sqlite_approvals.c */
int sq_approval_create(store_t *s, const store_approval_t *a);
int sq_approval_get(store_t *s, const char *user_id, const char *run_id, const char *call_id, store_approval_t *out);
int sq_approval_list(store_t *s, const char *user_id, const char *run_id, store_approval_list_t *out);
int sq_approval_decide(store_t *s, const char *user_id, const char *run_id, const char *call_id, const char *status,
                       const char *reason, double now, store_approval_t *out);
int sq_approvals_pending(store_t *s, store_approval_cb cb, void *arg);

/* sqlite_workloads.c */
int sq_workload_insert(store_t *s, const char *user_id, const store_workload_t *recs, size_t n, int64_t *first_seq,
                       int64_t *gen);
int sq_workload_state(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen);
int sq_workload_scan(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                     int64_t *next_seq, int64_t *gen);
int sq_workload_delete(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen);

#endif
