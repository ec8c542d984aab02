/* store/sqlite.c — the SQLite backend of store.h (DESIGN.md: WAL, busy_timeout, migrations).
 *
 * One sqlite3* per calling thread, opened on first use and kept in a pthread key of
 * this store (STYLE §7); every connection is also on the store's mutex-protected list
 * so store_close() can close them all.  A thread that exits closes its own connection
 * (key destructor).  Prepared statements are cached per connection (Q_* below).
 * Writes run in transactions: multi-statement ones under BEGIN IMMEDIATE, so the write
 * lock is taken up front and the busy handler (5 s) applies instead of a deadlock error.
 * Migrations (store_migrations[], embedded from migrations/NNNN_name.sql) run at open.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/sqlite_vfs.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/timeutil.h"

#define SQ_BUSY_TIMEOUT_MS 5000

/* ---- cached statements --------------------------------------------------------------- */

enum {
  Q_BEGIN,
  Q_COMMIT,
  Q_ROLLBACK,
  Q_SCHEMA_VERSION,
  Q_MIG_APPLIED,
  Q_MIG_RECORD,
  Q_USER_INSERT,
  Q_USER_BY_EMAIL,
  Q_USER_GET,
  Q_USER_ENSURE,
  Q_USER_ENSURE_RANDOM,
  Q_USER_SET_NAME,
  Q_USER_COUNT,
  Q_REFRESH_ADD,
  Q_REFRESH_USE,
  Q_REFRESH_STATE,
  Q_REFRESH_REVOKE_FAMILY,
  Q_REFRESH_REVOKE_USER,
  Q_REFRESH_PURGE,
  Q_REVOKE_ACCESS,
  Q_REVOKED_LOAD,
  Q_REVOKED_PURGE,
  Q_BEGIN_READ,
  Q_SAVEPOINT,
  Q_RELEASE,
  Q_ROLLBACK_TO,
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
  Q_RUN_INSERT,
  Q_RUN_STATUS,
  Q_RUN_GET,
  Q_RUN_LIST,
  Q_RUN_FAIL_INFLIGHT,
  Q_EV_INSERT,
  Q_EV_SEQ_SET,
  Q_EV_SEQ_GET,
  Q_EV_LIST,
  Q_EV_LIST_RUN,
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

#define USER_COLS \
  "id, email, name, coalesce(password_hash, ''), plan_tier, permissions, created_at, updated_at"

#define THREAD_COLS "id, title, metadata, status, created_at, updated_at, message_count"
#define MESSAGE_COLS "seq, id, thread_id, role, content, coalesce(run_id, ''), metadata, created_at"
/* ?N as metadata: kept only when it is a JSON object, else NULL (the NOT NULL constraint
 * turns that into AGD_EVALIDATION).  CASE evaluates lazily: json_type never sees bad JSON. */
#define META_OBJ(n) "CASE WHEN json_valid(" n ") THEN CASE WHEN json_type(" n ") = 'object' THEN " n " END END"

#define RUN_COLS                                                                                  \
  "r.id, coalesce(r.thread_id, ''), r.agent, r.status, r.created_at, coalesce(r.started_at, 0),"   \
  " coalesce(r.completed_at, 0), r.input, r.result, r.error,"                                      \
  " (SELECT count(*) FROM events e WHERE e.run_id = r.id)"

static const char *const sq_sql[Q__COUNT] = {
  [Q_BEGIN] = "BEGIN IMMEDIATE",
  [Q_COMMIT] = "COMMIT",
  [Q_ROLLBACK] = "ROLLBACK",
  [Q_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
  [Q_MIG_APPLIED] = "SELECT 1 FROM schema_migrations WHERE version = ?1",
  [Q_MIG_RECORD] = "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
  [Q_USER_INSERT] = "INSERT INTO users(id, email, name, password_hash, plan_tier, permissions,"
                    " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
  [Q_USER_BY_EMAIL] = "SELECT " USER_COLS " FROM users WHERE email = ?1",
  [Q_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
  [Q_USER_ENSURE] = "INSERT OR IGNORE INTO users(id, email, created_at, updated_at)"
                    " VALUES (?1, ?2, ?3, ?3)",
  [Q_USER_ENSURE_RANDOM] = "INSERT OR IGNORE INTO users(id, email, created_at, updated_at)"
                           " VALUES (?1, ?1 || '.' || lower(hex(randomblob(8))) ||"
                           " '@external.invalid', ?2, ?2)",
  [Q_USER_SET_NAME] = "UPDATE users SET name = ?2, updated_at = ?3 WHERE id = ?1",
  [Q_USER_COUNT] = "SELECT count(*) FROM users",
  [Q_REFRESH_ADD] = "INSERT INTO refresh_tokens(jti, family_id, user_id, expires_at, created_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)",
  [Q_REFRESH_USE] = "UPDATE refresh_tokens SET used_at = ?3 WHERE jti = ?1 AND user_id = ?2"
                    " AND used_at IS NULL AND revoked = 0 AND expires_at > ?3",
  [Q_REFRESH_STATE] = "SELECT family_id, used_at IS NOT NULL OR revoked <> 0 FROM refresh_tokens"
                      " WHERE jti = ?1 AND user_id = ?2",
  [Q_REFRESH_REVOKE_FAMILY] = "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1"
                              " AND revoked = 0",
  [Q_REFRESH_REVOKE_USER] = "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1"
                            " AND revoked = 0",
  [Q_REFRESH_PURGE] = "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
  [Q_REVOKE_ACCESS] = "INSERT INTO revoked_tokens(jti, expires_at) VALUES (?1, ?2)"
                      " ON CONFLICT(jti) DO UPDATE SET"
                      " expires_at = max(expires_at, excluded.expires_at)",
  [Q_REVOKED_LOAD] = "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?1",
  [Q_REVOKED_PURGE] = "DELETE FROM revoked_tokens WHERE expires_at <= ?1",
  [Q_BEGIN_READ] = "BEGIN",
  [Q_SAVEPOINT] = "SAVEPOINT item",
  [Q_RELEASE] = "RELEASE item",
  [Q_ROLLBACK_TO] = "ROLLBACK TO item",
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
  [Q_RUN_FAIL_INFLIGHT] = "UPDATE runs SET status = 'failed', completed_at = ?1, error ="
                          " '{\"error_code\":\"INTERRUPTED\",\"error_message\":"
                          "\"the server stopped while this run was in flight\"}'"
                          " WHERE status IN ('queued', 'running')",
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

/* ---- store and per-thread connections ------------------------------------------------ */

typedef struct sq_store sq_store_t;

typedef struct sq_conn {
  sq_store_t *st;           /* owner */
  struct sq_conn *prev, *next; /* on st->conns, under st->mu */
  sqlite3 *db;
  sqlite3_stmt *stmt[Q__COUNT]; /* prepared on first use */
  int holds_wmu;                /* this connection holds st->wmu (a write transaction is open) */
  int tx_depth;                 /* 0: no transaction; 1: BEGIN; > 1: that many - 1 savepoints */
  int group_cache;              /* the page cache was enlarged for group commits (sq_tx) */
} sq_conn_t;

struct sq_store {
  store_t super;        /* first: a store_t* is a sq_store_t* */
  pthread_key_t key;    /* this thread's sq_conn_t* */
  pthread_mutex_t mu;   /* guards conns */
  sq_conn_t *conns;     /* every open connection of this store */
  /* Writers of this process queue here before taking SQLite's write lock.  SQLite
   * only offers polling (a busy handler that sleeps 1, 2, 5, 10… ms), which turns
   * every brief overlap with the event writer's group commit into milliseconds of
   * latency; a mutex hands the lock over as soon as the holder commits.  Other
   * processes (`agentd migrate`, `agentd user add`) still meet the busy handler. */
  pthread_mutex_t wmu;
  metrics_hist_t *wmu_wait; /* agentd_db_write_wait_seconds, looked up once at open */
  /* Checkpoints run on their own thread (see checkpointer_main), never inside a
   * writer's COMMIT while it holds wmu. */
  pthread_t ckpt_thread;
  pthread_mutex_t ckpt_mu;
  pthread_cond_t ckpt_cv;
  int ckpt_running, ckpt_wanted, ckpt_stop;
  char path[PATH_MAX];
};

static const store_ops_t sq_ops;

static sq_store_t *sq(store_t *s) { return (sq_store_t *)s; }

/* SQLite result → AGD_E* (store.h); logs what is not an expected outcome. */
static int sq_fail(sq_conn_t *c, int rc, const char *what, const char *file, int line) {
  int e;
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_CANTOPEN:
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_PROTOCOL:
  case SQLITE_READONLY:
    e = AGD_EUNAVAILABLE;
    break;
  case SQLITE_CONSTRAINT:
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) e = AGD_ECONFLICT;
    else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) e = AGD_ENOT_FOUND;
    else e = AGD_EVALIDATION;
    break;
  default:
    e = AGD_EINTERNAL;
  }
  const char *msg = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
  if (e == AGD_EUNAVAILABLE || e == AGD_EINTERNAL) {
    log_error("store: sqlite %s: %s (code %d)", what, msg, rc);
    return agd_err_mark(e, file, line);
  }
  log_debug("store: sqlite %s: %s (code %d)", what, msg, rc);
  return e;
}
#define SQ_FAIL(c, rc, what) sq_fail((c), (rc), (what), __FILE__, __LINE__)

static void conn_free(sq_conn_t *c) {
  for (int i = 0; i < Q__COUNT; i++) sqlite3_finalize(c->stmt[i]);
  if (c->db) metrics_add("agentd_db_connections_open", NULL, -1);
  int rc = sqlite3_close(c->db); /* NULL is harmless */
  if (rc != SQLITE_OK) log_error("store: sqlite close: %s", sqlite3_errstr(rc));
  free(c);
}

/* Key destructor: the thread that owned c is exiting; close its connection. */
static void conn_on_thread_exit(void *p) {
  sq_conn_t *c = p;
  sq_store_t *st = c->st;
  pthread_mutex_lock(&st->mu);
  if (c->prev) c->prev->next = c->next;
  else st->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&st->mu);
  conn_free(c);
}

/* Run one SQL text with no results expected (PRAGMAs, DDL). */
static int conn_exec(sq_conn_t *c, const char *sql, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    int e = SQ_FAIL(c, rc, what);
    sqlite3_free(msg);
    return e;
  }
  return 0;
}

/* WAL pages after which a commit asks the checkpointer to run (SQLite's own default). */
#define SQ_CHECKPOINT_PAGES 1000
/* A WAL longer than this is restarted (see checkpointer_main): about 16 MiB. */
#define SQ_WAL_RESTART_PAGES 4096

/* After each commit: wake the checkpointer once the WAL is long enough.  Installing
 * this hook also turns off SQLite's automatic checkpoint, which would otherwise run
 * (and fsync) inside the COMMIT of whichever writer crossed the threshold — while
 * it holds wmu and every other writer waits. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages) {
  sq_store_t *st = arg;
  if (pages >= SQ_CHECKPOINT_PAGES && st->ckpt_running) {
    pthread_mutex_lock(&st->ckpt_mu);
    if (!st->ckpt_wanted) {
      st->ckpt_wanted = 1;
      pthread_cond_signal(&st->ckpt_cv);
    }
    pthread_mutex_unlock(&st->ckpt_mu);
  }
  return SQLITE_OK;
}

/* Open and configure a connection (not yet registered). */
static int conn_open(sq_store_t *st, sq_conn_t **out, char *err, size_t cap) {
  sq_conn_t *c = calloc(1, sizeof *c);
  if (!c) abort();
  c->st = st;
  /* NOMUTEX: a connection is only ever used by the thread that opened it. */
  int rc = sqlite3_open_v2(st->path, &c->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, sqlite_vfs_name());
  if (rc != SQLITE_OK) {
    store__errf(err, cap, "cannot open database %s: %s", st->path,
                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    int e = SQ_FAIL(c, rc, "open");
    conn_free(c);
    return e;
  }
  metrics_add("agentd_db_connections_open", NULL, 1);
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);
  /* WAL: readers never block the writer nor the writer them.  synchronous=NORMAL in
   * WAL mode: a committed transaction survives a crash or kill -9 of the process (the
   * WAL is in the OS before COMMIT returns); only power loss / an OS crash may lose
   * the last commits, never corrupting the database. */
  static const char pragmas[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                " PRAGMA foreign_keys=ON;";
  int e = conn_exec(c, pragmas, "pragmas");
  if (e) {
    store__errf(err, cap, "cannot configure database %s: %s", st->path, sqlite3_errmsg(c->db));
    conn_free(c);
    return e;
  }
  sqlite3_wal_hook(c->db, on_wal_commit, st);
  *out = c;
  return 0;
}

/* The checkpointer: PASSIVE checkpoints on a connection of its own, so they copy
 * pages without taking the write lock and pay the fsyncs off every request's path.
 * A passive checkpoint racing busy writers rarely reaches the end of the WAL, and
 * SQLite only rewinds a WAL that was checkpointed to its end, so the file would
 * grow without bound; once it is past SQ_WAL_RESTART_PAGES, the few frames the
 * passive pass left are checkpointed in RESTART mode with this process's writers
 * held back on wmu (a short pause: the bulk was copied already), and the next
 * write starts the WAL again from its beginning. */
static void *checkpointer_main(void *arg) {
  sq_store_t *st = arg;
  pthread_setname_np(pthread_self(), "agentd-ckpt");
  /* Background work: never ahead of the threads that carry requests and events. */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) log_debug("store: checkpointer keeps nice 0");
  sq_conn_t *c = NULL;
  pthread_mutex_lock(&st->ckpt_mu);
  for (;;) {
    while (!st->ckpt_wanted && !st->ckpt_stop) pthread_cond_wait(&st->ckpt_cv, &st->ckpt_mu);
    if (st->ckpt_stop) break;
    st->ckpt_wanted = 0;
    pthread_mutex_unlock(&st->ckpt_mu);
    if (!c && conn_open(st, &c, NULL, 0) != 0) c = NULL;
    if (c) {
      int log_pages = 0;
      int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, NULL);
      if (rc == SQLITE_OK && log_pages > SQ_WAL_RESTART_PAGES) {
        pthread_mutex_lock(&st->wmu);
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        pthread_mutex_unlock(&st->wmu);
      }
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) log_warn("store: checkpoint: %s", sqlite3_errmsg(c->db));
    }
    pthread_mutex_lock(&st->ckpt_mu);
  }
  pthread_mutex_unlock(&st->ckpt_mu);
  if (c) conn_free(c);
  return NULL;
}

static void checkpointer_start(sq_store_t *st) {
  pthread_mutex_init(&st->ckpt_mu, NULL);
  pthread_cond_init(&st->ckpt_cv, NULL);
  st->ckpt_running = pthread_create(&st->ckpt_thread, NULL, checkpointer_main, st) == 0;
  if (!st->ckpt_running) log_warn("store: no checkpointer thread; the WAL is checkpointed at close only");
}

static void checkpointer_stop(sq_store_t *st) {
  if (st->ckpt_running) {
    pthread_mutex_lock(&st->ckpt_mu);
    st->ckpt_stop = 1;
    pthread_cond_signal(&st->ckpt_cv);
    pthread_mutex_unlock(&st->ckpt_mu);
    pthread_join(st->ckpt_thread, NULL);
    st->ckpt_running = 0;
  }
  pthread_cond_destroy(&st->ckpt_cv);
  pthread_mutex_destroy(&st->ckpt_mu);
}

/* This thread's connection, opened on first use. */
static int conn_get(sq_store_t *st, sq_conn_t **out, char *err, size_t cap) {
  sq_conn_t *c = pthread_getspecific(st->key);
  if (!c) {
    int e = conn_open(st, &c, err, cap);
    if (e) return e;
    pthread_mutex_lock(&st->mu);
    c->next = st->conns;
    if (st->conns) st->conns->prev = c;
    st->conns = c;
    pthread_mutex_unlock(&st->mu);
    if (pthread_setspecific(st->key, c) != 0) abort(); /* ENOMEM */
  }
  *out = c;
  return 0;
}
#define CONN(s, c)                                            \
  sq_conn_t *c;                                               \
  do {                                                        \
    int e__ = conn_get(sq(s), &c, NULL, 0);                   \
    if (e__) return e__;                                      \
  } while (0)

/* Cached statement id of c, reset and unbound, or NULL (logged) if it cannot compile. */
static sqlite3_stmt *q(sq_conn_t *c, int id) {
  sqlite3_stmt *st = c->stmt[id];
  if (!st) {
    int rc = sqlite3_prepare_v3(c->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
      SQ_FAIL(c, rc, sq_sql[id]);
      return NULL;
    }
    c->stmt[id] = st;
  }
  return st;
}

/* Finish with a statement: end its read, drop bindings (keeps no snapshot open). */
static void q_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Queue for this process's write mutex.  How long writers wait for it (0 when it
 * was free) is agentd_db_write_wait_seconds on GET /metrics. */
static void wmu_lock(sq_store_t *st) {
  if (pthread_mutex_trylock(&st->wmu) == 0) {
    metrics_hist_observe(st->wmu_wait, 0);
    return;
  }
  uint64_t t0 = time_mono_ns();
  pthread_mutex_lock(&st->wmu);
  metrics_hist_observe(st->wmu_wait, (double)(time_mono_ns() - t0) / 1e9);
}

/* Step a statement that returns no row and finish it.  0 or AGD_E*. */
static int q_run(sq_conn_t *c, sqlite3_stmt *st, const char *what) {
  /* A write outside a transaction is a transaction of its own: queue for it. */
  int lock = !c->holds_wmu && !sqlite3_stmt_readonly(st);
  if (lock) wmu_lock(c->st);
  int rc = sqlite3_step(st);
  if (lock) pthread_mutex_unlock(&c->st->wmu);
  int e = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : SQ_FAIL(c, rc, what);
  q_done(st);
  return e;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
  sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC); /* borrowed until q_done */
}

static void wmu_release(sq_conn_t *c) {
  if (!c->holds_wmu) return;
  c->holds_wmu = 0;
  pthread_mutex_unlock(&c->st->wmu);
}

/* Transactions nest: inside one (store_tx), a store call's own tx_begin … tx_end
 * becomes a savepoint, so its failure undoes only its own writes. */
/* A cached statement with no result (transaction control: a group commit opens a
 * savepoint per item, so they are prepared once per connection like the rest). */
static int tx_run(sq_conn_t *c, int id, const char *what) {
  sqlite3_stmt *st = q(c, id);
  return st ? q_run(c, st, what) : ERR(AGD_EINTERNAL);
}

static int tx_savepoint(sq_conn_t *c) {
  int e = tx_run(c, Q_SAVEPOINT, "savepoint");
  if (e == 0) c->tx_depth++;
  return e;
}

/* BEGIN IMMEDIATE, after this process's other writers (wmu, held until tx_end). */
static int tx_begin(sq_conn_t *c) {
  if (c->tx_depth > 0) return tx_savepoint(c);
  sqlite3_stmt *st = q(c, Q_BEGIN);
  if (!st) return ERR(AGD_EINTERNAL);
  wmu_lock(c->st);
  c->holds_wmu = 1;
  int e = q_run(c, st, "begin");
  if (e) wmu_release(c);
  else c->tx_depth = 1;
  return e;
}
static int tx_commit(sq_conn_t *c) {
  sqlite3_stmt *st = q(c, Q_COMMIT);
  return st ? q_run(c, st, "commit") : ERR(AGD_EINTERNAL);
}
/* Undo the innermost level: back to its savepoint, or the whole transaction. */
static void tx_rollback(sq_conn_t *c) {
  if (c->tx_depth == 0) return;
  if (--c->tx_depth > 0) {
    /* When SQLite rolled the whole transaction back by itself (autocommit is on
     * again) there is no savepoint left: the outer levels' COMMIT will fail. */
    if (!sqlite3_get_autocommit(c->db) && tx_run(c, Q_ROLLBACK_TO, "rollback to savepoint") == 0)
      tx_run(c, Q_RELEASE, "release savepoint");
    return;
  }
  if (!sqlite3_get_autocommit(c->db)) { /* else SQLite already rolled back */
    sqlite3_stmt *st = q(c, Q_ROLLBACK);
    if (st) q_run(c, st, "rollback");
  }
  wmu_release(c);
}
/* Commit when e == 0, else roll back; returns the first error. */
static int tx_end(sq_conn_t *c, int e) {
  if (e == 0) {
    if (c->tx_depth > 1) {
      e = tx_run(c, Q_RELEASE, "release savepoint");
      if (e == 0) {
        c->tx_depth--;
        return 0;
      }
    } else {
      e = tx_commit(c);
      if (e == 0) {
        c->tx_depth = 0;
        wmu_release(c);
        return 0;
      }
    }
  }
  tx_rollback(c);
  return e;
}

/* Copy a text column into a fixed array, truncating (the write path keeps rows fitting). */
static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  const unsigned char *p = sqlite3_column_text(st, i);
  size_t n = p ? (size_t)sqlite3_column_bytes(st, i) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, p, n);
  dst[n] = '\0';
}

/* ---- migrations ---------------------------------------------------------------------- */

static int sq_schema_version(sq_conn_t *c, int *v) {
  sqlite3_stmt *st = q(c, Q_SCHEMA_VERSION);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *v = sqlite3_column_int(st, 0);
  else e = SQ_FAIL(c, rc, "schema version");
  q_done(st);
  return e;
}

/* Apply one migration in its own transaction unless some process already did. */
static int sq_apply(sq_conn_t *c, const embedded_file_t *m, int version, char *err, size_t cap) {
  int e = tx_begin(c);
  if (e) {
    store__errf(err, cap, "migration %s: cannot lock the database: %s", m->name,
                sqlite3_errmsg(c->db));
    return e;
  }
  sqlite3_stmt *st = q(c, Q_MIG_APPLIED);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int(st, 1, version);
  int rc = sqlite3_step(st);
  q_done(st);
  if (rc == SQLITE_ROW) return tx_end(c, 0); /* applied meanwhile by another process */
  if (rc != SQLITE_DONE) {
    e = SQ_FAIL(c, rc, "migration check");
  } else {
    e = conn_exec(c, m->data, m->name);
    if (e) store__errf(err, cap, "migration %s failed: %s", m->name, sqlite3_errmsg(c->db));
  }
  if (!e) {
    st = q(c, Q_MIG_RECORD);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int(st, 1, version);
    bind_text(st, 2, m->name);
    sqlite3_bind_double(st, 3, time_now());
    e = q_run(c, st, "migration record");
  }
  e = tx_end(c, e);
  if (e && err && cap && !err[0])
    store__errf(err, cap, "migration %s failed: %s", m->name, sqlite3_errmsg(c->db));
  if (!e) log_info("store: applied migration %s", m->name);
  return e;
}

static int sq_migrate_conn(sq_conn_t *c, int *version_out, char *err, size_t cap) {
  *version_out = 0;
  /* The binary's migrations must be well-named and strictly increasing (our bug if not). */
  int known = 0;
  for (const embedded_file_t *m = store_migrations; m->name; m++) {
    int v = store__migration_version(m->name);
    if (v <= known || strlen(m->data) != m->len) {
      store__errf(err, cap, "embedded migration %s is malformed or out of order", m->name);
      return ERR(AGD_EINTERNAL);
    }
    known = v;
  }
  int e = conn_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",
                    "schema_migrations");
  int cur = 0;
  if (!e) e = sq_schema_version(c, &cur);
  if (e) {
    store__errf(err, cap, "cannot read the schema version of %s: %s", c->st->path,
                sqlite3_errmsg(c->db));
    return e;
  }
  if (cur > known) {
    store__errf(err, cap,
                "database schema version %d is newer than this agentd (knows up to %d); "
                "upgrade agentd", cur, known);
    return AGD_ECONFLICT;
  }
  for (const embedded_file_t *m = store_migrations; m->name; m++) {
    int v = store__migration_version(m->name);
    if (v <= cur) continue;
    e = sq_apply(c, m, v, err, cap);
    if (e) return e;
  }
  e = sq_schema_version(c, version_out);
  if (e) store__errf(err, cap, "cannot read the schema version: %s", sqlite3_errmsg(c->db));
  return e;
}

static int sq_migrate(store_t *s, int *version_out, char *err, size_t cap) {
  sq_conn_t *c;
  int e = conn_get(sq(s), &c, err, cap);
  if (e) return e;
  return sq_migrate_conn(c, version_out, err, cap);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

/* mkdir -p of the directory part of path (0700: the data directory holds secrets). */
static int make_parent_dirs(const char *path, char *err, size_t cap) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char save = *p;
      *p = '\0';
      if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        store__errf(err, cap, "cannot create directory %s: %s", dir, strerror(errno));
        return AGD_EUNAVAILABLE;
      }
      *p = save;
      if (!save) break;
    }
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    store__errf(err, cap, "%s is not a directory", dir);
    return AGD_EUNAVAILABLE;
  }
  return 0;
}

int store__sqlite_open(store_t **out, const char *path, char *err, size_t cap) {
  *out = NULL;
  if (strnlen(path, PATH_MAX) >= PATH_MAX) {
    store__errf(err, cap, "database path is too long");
    return AGD_EBAD_REQUEST;
  }
  if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0) {
    store__errf(err, cap, "database path must be a file path (each thread opens its own "
                          "connection, so :memory: and URIs are not supported)");
    return AGD_EBAD_REQUEST;
  }
  if (!sqlite3_threadsafe()) {
    store__errf(err, cap, "the SQLite library was built without thread support");
    return ERR(AGD_EINTERNAL);
  }
  /* No global allocation statistics: they put one process-wide mutex on every SQLite
   * malloc, which the worker threads' connections would contend on.  Only possible
   * before SQLite initialises (SQLITE_MISUSE afterwards: harmless). */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  int e = make_parent_dirs(path, err, cap);
  if (e) return e;

  sq_store_t *st = calloc(1, sizeof *st);
  if (!st) abort();
  st->super.ops = &sq_ops;
  snprintf(st->path, sizeof st->path, "%s", path);
  if (pthread_key_create(&st->key, conn_on_thread_exit) != 0) {
    free(st);
    store__errf(err, cap, "out of thread-local keys");
    return ERR(AGD_EINTERNAL);
  }
  pthread_mutex_init(&st->mu, NULL);
  pthread_mutex_init(&st->wmu, NULL);
  st->wmu_wait = metrics_hist("agentd_db_write_wait_seconds",
                              "Database writers' wait for this process's write lock (0: it was free).");
  checkpointer_start(st);

  int version = 0;
  e = sq_migrate(&st->super, &version, err, cap);
  if (e) {
    sq_ops.close(&st->super);
    return e;
  }
  log_info("store: sqlite %s at schema version %d", path, version);
  *out = &st->super;
  return 0;
}

static void sq_close(store_t *s) {
  sq_store_t *st = sq(s);
  checkpointer_stop(st);
  /* After the delete no destructor runs: the connections below are ours to close. */
  pthread_key_delete(st->key);
  pthread_mutex_lock(&st->mu);
  sq_conn_t *c = st->conns;
  st->conns = NULL;
  pthread_mutex_unlock(&st->mu);
  while (c) {
    sq_conn_t *next = c->next;
    conn_free(c);
    c = next;
  }
  pthread_mutex_destroy(&st->mu);
  pthread_mutex_destroy(&st->wmu);
  free(st);
}

/* Page cache of a connection that runs group commits (KiB).  A batch touches
 * hundreds of pages; with SQLite's default 2 MiB cache they are spilled to the WAL
 * in the middle of the transaction and written again at commit, and read back
 * again in the next batch: several times the bytes and syscalls per event. */
#define SQ_GROUP_CACHE_KIB 65536

static int sq_tx(store_t *s, int (*fn)(store_t *s, void *arg), void *arg) {
  CONN(s, c);
  if (!c->group_cache) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", SQ_GROUP_CACHE_KIB);
    if (conn_exec(c, sql, "cache size") == 0) c->group_cache = 1;
  }
  int e = tx_begin(c);
  if (e) return e;
  return tx_end(c, fn(s, arg));
}

static int sq_ping(store_t *s) {
  CONN(s, c);
  int v;
  return sq_schema_version(c, &v);
}

/* ---- users --------------------------------------------------------------------------- */

static void row_user(sqlite3_stmt *st, store_user_t *u) {
  memset(u, 0, sizeof *u);
  col_copy(st, 0, u->id, sizeof u->id);
  col_copy(st, 1, u->email, sizeof u->email);
  col_copy(st, 2, u->name, sizeof u->name);
  col_copy(st, 3, u->password_hash, sizeof u->password_hash);
  col_copy(st, 4, u->plan_tier, sizeof u->plan_tier);
  col_copy(st, 5, u->permissions_json, sizeof u->permissions_json);
  u->created_at = sqlite3_column_double(st, 6);
  u->updated_at = sqlite3_column_double(st, 7);
}

/* One user by Q_USER_GET / Q_USER_BY_EMAIL. */
static int user_lookup(sq_conn_t *c, int qid, const char *key, store_user_t *out) {
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, key);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_user(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "user lookup");
  q_done(st);
  return e;
}

static int sq_user_create(store_t *s, const store_user_t *u) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_USER_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  double now = time_now();
  bind_text(st, 1, u->id);
  bind_text(st, 2, u->email);
  bind_text(st, 3, u->name);
  if (u->password_hash[0]) bind_text(st, 4, u->password_hash);
  else sqlite3_bind_null(st, 4);
  bind_text(st, 5, u->plan_tier[0] ? u->plan_tier : "free");
  bind_text(st, 6, u->permissions_json[0] ? u->permissions_json : "[\"read\",\"write\"]");
  sqlite3_bind_double(st, 7, u->created_at > 0 ? u->created_at : now);
  sqlite3_bind_double(st, 8, u->updated_at > 0 ? u->updated_at : now);
  return q_run(c, st, "user insert");
}

static int sq_user_by_email(store_t *s, const char *email, store_user_t *out) {
  CONN(s, c);
  return user_lookup(c, Q_USER_BY_EMAIL, email, out);
}

static int sq_user_get(store_t *s, const char *user_id, store_user_t *out) {
  CONN(s, c);
  return user_lookup(c, Q_USER_GET, user_id, out);
}

/* INSERT OR IGNORE of (id, email): 1 if a row was inserted, 0 if ignored, or AGD_E*. */
static int ensure_insert(sq_conn_t *c, const char *id, const char *email, double now) {
  sqlite3_stmt *st = q(c, email ? Q_USER_ENSURE : Q_USER_ENSURE_RANDOM);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, id);
  if (email) {
    bind_text(st, 2, email);
    sqlite3_bind_double(st, 3, now);
  } else {
    sqlite3_bind_double(st, 2, now);
  }
  int e = q_run(c, st, "user ensure");
  return e ? e : sqlite3_changes(c->db) > 0;
}

static int sq_user_ensure(store_t *s, const char *user_id, const char *email, store_user_t *out) {
  CONN(s, c);
  int e = user_lookup(c, Q_USER_GET, user_id, out); /* the usual case: it exists */
  if (e != AGD_ENOT_FOUND) return e;

  char placeholder[ID_MAX + sizeof "@external.invalid"];
  snprintf(placeholder, sizeof placeholder, "%s@external.invalid", user_id);
  double now = time_now();
  e = tx_begin(c);
  if (e) return e;
  /* Each insert is ignored when the id exists (a racing creator won: fine) or the email
   * belongs to someone else (then try the next email).  The last resort adds random
   * bytes, in case someone registered the placeholder address itself. */
  int r = ensure_insert(c, user_id, email ? email : placeholder, now);
  if (r == 0 && email) r = ensure_insert(c, user_id, placeholder, now);
  if (r == 0) r = ensure_insert(c, user_id, NULL, now);
  e = r < 0 ? r : user_lookup(c, Q_USER_GET, user_id, out);
  if (e == AGD_ENOT_FOUND) e = ERR(AGD_EINTERNAL); /* every insert ignored: cannot happen */
  e = tx_end(c, e);
  if (!e && r == 1) log_info("store: created external user %s", user_id);
  return e;
}

static int sq_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_USER_SET_NAME);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, user_id);
  bind_text(st, 2, name);
  sqlite3_bind_double(st, 3, time_now());
  e = q_run(c, st, "user set name");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (!e) e = user_lookup(c, Q_USER_GET, user_id, out);
  return tx_end(c, e);
}

static int sq_user_count(store_t *s, long *n) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_USER_COUNT);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *n = (long)sqlite3_column_int64(st, 0);
  else e = SQ_FAIL(c, rc, "user count");
  q_done(st);
  return e;
}

/* ---- refresh tokens ------------------------------------------------------------------ */

static int sq_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id,
                          double expires_at) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REFRESH_ADD);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, jti);
  bind_text(st, 2, family_id);
  bind_text(st, 3, user_id);
  sqlite3_bind_double(st, 4, expires_at);
  sqlite3_bind_double(st, 5, time_now());
  return q_run(c, st, "refresh add");
}

static int sq_refresh_consume(store_t *s, const char *jti, const char *user_id, double now,
                              char family_out[ID_MAX]) {
  CONN(s, c);
  family_out[0] = '\0';
  int e = tx_begin(c);
  if (e) return e;
  /* The conditional UPDATE is the atomic test-and-set: of two racing consumers only
   * one changes the row. */
  sqlite3_stmt *st = q(c, Q_REFRESH_USE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, jti);
  bind_text(st, 2, user_id);
  sqlite3_bind_double(st, 3, now);
  e = q_run(c, st, "refresh use");
  if (e) return tx_end(c, e);
  int spent = sqlite3_changes(c->db) == 1;

  st = q(c, Q_REFRESH_STATE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, jti);
  bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int reused = sqlite3_column_int(st, 1);
    if (spent || reused) col_copy(st, 0, family_out, ID_MAX);
    /* SPEC §2: used or revoked → reuse; unused but expired → plain invalid. */
    e = spent ? 0 : AGD_EAUTH_INVALID;
  } else if (rc == SQLITE_DONE) {
    e = AGD_ENOT_FOUND;
  } else {
    e = SQ_FAIL(c, rc, "refresh state");
  }
  q_done(st);
  int te = tx_end(c, spent ? e : 0); /* a failed consume changed nothing: commit is fine */
  return te ? te : e;
}

/* One UPDATE/DELETE with a single text or double parameter, autocommit (a transaction). */
static int run1(store_t *s, int qid, const char *text, double num, const char *what) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  if (text) bind_text(st, 1, text);
  else sqlite3_bind_double(st, 1, num);
  return q_run(c, st, what);
}

static int sq_refresh_revoke_family(store_t *s, const char *family_id) {
  return run1(s, Q_REFRESH_REVOKE_FAMILY, family_id, 0, "refresh revoke family");
}

static int sq_refresh_revoke_user(store_t *s, const char *user_id) {
  return run1(s, Q_REFRESH_REVOKE_USER, user_id, 0, "refresh revoke user");
}

/* ---- revoked access tokens ----------------------------------------------------------- */

static int sq_revoke_access(store_t *s, const char *jti, double expires_at) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REVOKE_ACCESS);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, jti);
  sqlite3_bind_double(st, 2, expires_at);
  return q_run(c, st, "revoke access");
}

static int sq_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REVOKED_LOAD);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_double(st, 1, now);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *jti = (const char *)sqlite3_column_text(st, 0);
    if (jti) cb(jti, sqlite3_column_double(st, 1), arg);
  }
  int e = rc == SQLITE_DONE ? 0 : SQ_FAIL(c, rc, "revoked load");
  q_done(st);
  return e;
}

static int sq_revoked_purge(store_t *s, double now) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_REVOKED_PURGE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_double(st, 1, now);
  e = q_run(c, st, "revoked purge");
  if (!e) {
    st = q(c, Q_REFRESH_PURGE);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_double(st, 1, now);
    e = q_run(c, st, "refresh purge");
  }
  return tx_end(c, e);
}

/* ---- threads and messages ------------------------------------------------------------ */

/* malloc'd copy of a text column; NULL for SQL NULL. */
static char *col_dup(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return NULL;
  const unsigned char *p = sqlite3_column_text(st, i);
  size_t n = (size_t)sqlite3_column_bytes(st, i);
  char *d = malloc(n + 1);
  if (!d) abort();
  if (n) memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

static char *xstrdup(const char *p) {
  char *d = strdup(p);
  if (!d) abort();
  return d;
}

static void row_thread(sqlite3_stmt *st, store_thread_t *t) {
  memset(t, 0, sizeof *t);
  col_copy(st, 0, t->id, sizeof t->id);
  t->title = col_dup(st, 1);
  t->metadata = col_dup(st, 2);
  if (!t->metadata) t->metadata = xstrdup("{}");
  col_copy(st, 3, t->status, sizeof t->status);
  t->created_at = sqlite3_column_double(st, 4);
  t->updated_at = sqlite3_column_double(st, 5);
  t->message_count = (long)sqlite3_column_int64(st, 6);
}

static void row_message(sqlite3_stmt *st, store_message_t *m) {
  memset(m, 0, sizeof *m);
  m->seq = sqlite3_column_int64(st, 0);
  col_copy(st, 1, m->id, sizeof m->id);
  col_copy(st, 2, m->thread_id, sizeof m->thread_id);
  col_copy(st, 3, m->role, sizeof m->role);
  m->content = col_dup(st, 4);
  if (!m->content) m->content = xstrdup("");
  col_copy(st, 5, m->run_id, sizeof m->run_id);
  m->metadata = col_dup(st, 6);
  if (!m->metadata) m->metadata = xstrdup("{}");
  m->created_at = sqlite3_column_double(st, 7);
}

/* A read transaction (one snapshot for several statements); ends with tx_end. */
static int tx_begin_read(sq_conn_t *c) {
  if (c->tx_depth > 0) return tx_savepoint(c);
  sqlite3_stmt *st = q(c, Q_BEGIN_READ);
  if (!st) return ERR(AGD_EINTERNAL);
  int e = q_run(c, st, "begin read");
  if (e == 0) c->tx_depth = 1;
  return e;
}

/* One thread of the user into out (Q_THR_GET). */
static int thread_lookup(sq_conn_t *c, const char *user_id, const char *thread_id, store_thread_t *out) {
  sqlite3_stmt *st = q(c, Q_THR_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, thread_id);
  bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_thread(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "thread get");
  q_done(st);
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
  q_done(st);
  return e;
}

static int count_query(sq_conn_t *c, sqlite3_stmt *st, long *n, const char *what) {
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *n = (long)sqlite3_column_int64(st, 0);
  else e = SQ_FAIL(c, rc, what);
  q_done(st);
  return e;
}

/* Insert a thread row with a fresh id (into id_out). */
static int thread_insert(sq_conn_t *c, const char *user_id, const char *title, const char *metadata,
                         double now, char id_out[ID_MAX]) {
  sqlite3_stmt *st = q(c, Q_THR_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  id_new(id_out, "thr");
  bind_text(st, 1, id_out);
  bind_text(st, 2, user_id);
  if (title) bind_text(st, 3, title);
  else sqlite3_bind_null(st, 3);
  bind_text(st, 4, metadata ? metadata : "{}");
  sqlite3_bind_double(st, 5, now);
  return q_run(c, st, "thread insert");
}

static int sq_thread_create(store_t *s, const char *user_id, const char *title, const char *metadata,
                            store_thread_t *out) {
  CONN(s, c);
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

static int sq_thread_get(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out) {
  CONN(s, c);
  return thread_lookup(c, user_id, thread_id, out);
}

static int sq_thread_list(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                          store_thread_list_t *out) {
  CONN(s, c);
  int e = tx_begin_read(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_THR_COUNT);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, user_id);
  sqlite3_bind_int(st, 2, include_archived);
  e = count_query(c, st, &out->total, "thread count");
  if (!e && offset < out->total) {
    st = q(c, Q_THR_LIST);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    bind_text(st, 1, user_id);
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
    q_done(st);
  }
  e = tx_end(c, e);
  if (e) store_thread_list_dispose(out);
  return e;
}

static int sq_thread_update(store_t *s, const char *user_id, const char *thread_id, int set_title,
                            const char *title, const char *metadata, store_thread_t *out) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_THR_UPDATE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, thread_id);
  bind_text(st, 2, user_id);
  sqlite3_bind_int(st, 3, set_title);
  if (title) bind_text(st, 4, title);
  else sqlite3_bind_null(st, 4);
  if (metadata) bind_text(st, 5, metadata);
  else sqlite3_bind_null(st, 5);
  sqlite3_bind_double(st, 6, time_now());
  e = q_run(c, st, "thread update");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (!e) e = thread_lookup(c, user_id, thread_id, out);
  e = tx_end(c, e);
  if (e) store_thread_dispose(out);
  return e;
}

/* One UPDATE/DELETE keyed by (thread id, user id); AGD_ENOT_FOUND when no row matched. */
static int thread_change(store_t *s, int qid, const char *user_id, const char *thread_id, const char *what) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, thread_id);
  bind_text(st, 2, user_id);
  if (qid == Q_THR_ARCHIVE) sqlite3_bind_double(st, 3, time_now());
  int e = q_run(c, st, what);
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  return e;
}

static int sq_thread_archive(store_t *s, const char *user_id, const char *thread_id) {
  return thread_change(s, Q_THR_ARCHIVE, user_id, thread_id, "thread archive");
}

static int sq_thread_delete(store_t *s, const char *user_id, const char *thread_id) {
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
  bind_text(st, 1, thread_id);
  bind_text(st, 2, user_id);
  sqlite3_bind_double(st, 3, now);
  e = q_run(c, st, "thread touch");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (e) return e;

  char id[ID_MAX];
  if (in->id) snprintf(id, sizeof id, "%s", in->id);
  else id_new(id, "msg");
  st = q(c, Q_MSG_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, id);
  bind_text(st, 2, thread_id);
  bind_text(st, 3, user_id);
  bind_text(st, 4, in->role);
  bind_text(st, 5, in->content);
  if (in->run_id && in->run_id[0]) bind_text(st, 6, in->run_id);
  else sqlite3_bind_null(st, 6);
  bind_text(st, 7, in->metadata ? in->metadata : "{}");
  sqlite3_bind_double(st, 8, now);
  e = q_run(c, st, "message insert");
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

static int sq_message_add(store_t *s, const char *user_id, const store_message_new_t *in,
                          store_message_t *out) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  e = tx_end(c, message_add_tx(c, user_id, in, time_now(), out));
  if (e) store_message_dispose(out);
  return e;
}

/* Group commit: the items share one write transaction; each is a nested level (a
 * savepoint) so a failed item leaves nothing behind while the others are kept. */
static int sq_message_add_batch(store_t *s, size_t n, const char *const user_ids[], const store_message_new_t in[],
                                store_message_t out[], int rcs[]) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  double now = time_now();
  for (size_t i = 0; i < n && !e; i++) {
    if (rcs[i]) continue; /* refused by store.c */
    e = tx_begin(c); /* a savepoint */
    if (e) break;
    rcs[i] = message_add_tx(c, user_ids[i], &in[i], now, &out[i]);
    int released = tx_end(c, rcs[i]); /* kept, or undone alone */
    if (rcs[i] == AGD_EUNAVAILABLE || rcs[i] == AGD_EINTERNAL) e = rcs[i]; /* the database, not the item */
    else if (rcs[i] == 0) e = released;
  }
  e = tx_end(c, e);
  if (e) {
    for (size_t i = 0; i < n; i++) {
      store_message_dispose(&out[i]);
      if (rcs[i] == 0) rcs[i] = e;
    }
  }
  return e;
}

static int sq_message_get(store_t *s, const char *user_id, const char *message_id, store_message_t *out) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_MSG_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, message_id);
  bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_message(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "message get");
  q_done(st);
  return e;
}

/* seq and thread of a message of the user. */
static int message_locate(sq_conn_t *c, const char *user_id, const char *message_id, long long *seq,
                          char thread_id[ID_MAX]) {
  sqlite3_stmt *st = q(c, Q_MSG_LOCATE);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, message_id);
  bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) {
    *seq = sqlite3_column_int64(st, 0);
    col_copy(st, 1, thread_id, ID_MAX);
  } else if (rc == SQLITE_DONE) {
    e = AGD_ENOT_FOUND;
  } else {
    e = SQ_FAIL(c, rc, "message locate");
  }
  q_done(st);
  return e;
}

static int sq_message_delete(store_t *s, const char *user_id, const char *message_id) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  long long seq = 0;
  char thread_id[ID_MAX];
  e = message_locate(c, user_id, message_id, &seq, thread_id);
  if (e) return tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_MSG_DELETE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int64(st, 1, seq);
  e = q_run(c, st, "message delete");
  if (!e) {
    st = q(c, Q_THR_UNCOUNT);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    bind_text(st, 1, thread_id);
    e = q_run(c, st, "thread uncount");
  }
  return tx_end(c, e);
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
  bind_text(st, 1, thread_id);
  bind_text(st, 2, user_id);
  sqlite3_bind_int(st, 3, limit);
  sqlite3_bind_int64(st, 4, offset);
  e = collect_messages(c, st, (size_t)limit, out, "message list");
  out->has_more = offset + (long)out->n < out->total;
  return e;
}

static int sq_message_list(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                           store_message_list_t *out) {
  CONN(s, c);
  int e = tx_begin_read(c);
  if (e) return e;
  e = tx_end(c, thread_page(c, user_id, thread_id, Q_MSG_LIST_THREAD, limit, offset, out));
  if (e) store_message_list_dispose(out);
  return e;
}

static int sq_message_history(store_t *s, const char *user_id, const char *thread_id, const char *before_id,
                              int limit, store_message_list_t *out) {
  CONN(s, c);
  int e = tx_begin_read(c);
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
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    bind_text(st, 1, thread_id);
    bind_text(st, 2, user_id);
    sqlite3_bind_int64(st, 3, before);
    sqlite3_bind_int(st, 4, limit + 1); /* one more tells whether older ones remain */
    e = collect_messages(c, st, (size_t)limit, out, "message history");
  }
  e = tx_end(c, e);
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

static int sq_message_list_user(store_t *s, const char *user_id, const char *thread_id, int limit,
                                long offset, store_message_list_t *out) {
  CONN(s, c);
  int e = tx_begin_read(c);
  if (e) return e;
  if (thread_id) {
    e = thread_page(c, user_id, thread_id, Q_MSG_LIST_THREAD_DESC, limit, offset, out);
  } else {
    sqlite3_stmt *st = q(c, Q_MSG_COUNT_USER);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    bind_text(st, 1, user_id);
    e = count_query(c, st, &out->total, "message count");
    if (!e && offset < out->total) {
      st = q(c, Q_MSG_LIST_USER);
      if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
      bind_text(st, 1, user_id);
      sqlite3_bind_int(st, 2, limit);
      sqlite3_bind_int64(st, 3, offset);
      e = collect_messages(c, st, (size_t)limit, out, "message list user");
    }
    out->has_more = offset + (long)out->n < out->total;
  }
  e = tx_end(c, e);
  if (e) store_message_list_dispose(out);
  return e;
}

/* ---- runs and events ------------------------------------------------------------------ */

static void row_run(sqlite3_stmt *st, store_run_t *r) {
  memset(r, 0, sizeof *r);
  col_copy(st, 0, r->id, sizeof r->id);
  col_copy(st, 1, r->thread_id, sizeof r->thread_id);
  col_copy(st, 2, r->agent, sizeof r->agent);
  col_copy(st, 3, r->status, sizeof r->status);
  r->created_at = sqlite3_column_double(st, 4);
  r->started_at = sqlite3_column_double(st, 5);
  r->completed_at = sqlite3_column_double(st, 6);
  r->input = col_dup(st, 7);
  if (!r->input) r->input = xstrdup("");
  r->result = col_dup(st, 8);
  r->error = col_dup(st, 9);
  r->event_count = (long)sqlite3_column_int64(st, 10);
}

static int sq_run_create(store_t *s, const char *user_id, const char *run_id, const char *thread_id,
                         const char *agent, const char *input, double created_at) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, run_id);
  bind_text(st, 2, user_id);
  bind_text(st, 3, thread_id);
  bind_text(st, 4, agent);
  bind_text(st, 5, input);
  sqlite3_bind_double(st, 6, created_at);
  int e = q_run(c, st, "run insert");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND; /* not the caller's thread */
  return e;
}

static int sq_run_set_status(store_t *s, const char *user_id, const char *run_id, const char *status,
                             double started_at, double completed_at, const char *result_json,
                             const char *error_json) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_STATUS);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, run_id);
  bind_text(st, 2, user_id);
  bind_text(st, 3, status);
  if (started_at > 0) sqlite3_bind_double(st, 4, started_at);
  else sqlite3_bind_null(st, 4);
  if (completed_at > 0) sqlite3_bind_double(st, 5, completed_at);
  else sqlite3_bind_null(st, 5);
  if (result_json) bind_text(st, 6, result_json);
  else sqlite3_bind_null(st, 6);
  if (error_json) bind_text(st, 7, error_json);
  else sqlite3_bind_null(st, 7);
  int e = q_run(c, st, "run status");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  return e;
}

static int sq_run_get(store_t *s, const char *user_id, const char *run_id, store_run_t *out) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, run_id);
  bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_run(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "run get");
  q_done(st);
  return e;
}

static int sq_run_list(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit,
                       long offset, store_run_list_t *out) {
  CONN(s, c);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = q(c, Q_RUN_LIST);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
  if (thread_id) bind_text(st, 2, thread_id);
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
    out->total = (long)sqlite3_column_int64(st, 11);
  }
  if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "run list");
  q_done(st);
  if (e) store_run_list_dispose(out);
  return e;
}

static int sq_runs_fail_inflight(store_t *s, double now, long *n) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_RUN_FAIL_INFLIGHT);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_double(st, 1, now);
  int e = q_run(c, st, "runs fail inflight");
  if (n) *n = e ? 0 : (long)sqlite3_changes(c->db);
  return e;
}

/* Insert one event row (inside the caller's transaction; event_seqs_set moves the counters). */
static int event_row_insert(sq_conn_t *c, const store_event_t *ev) {
  sqlite3_stmt *st = q(c, Q_EV_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, ev->user_id);
  sqlite3_bind_int64(st, 2, ev->seq);
  if (ev->run_id && ev->run_id[0]) bind_text(st, 3, ev->run_id);
  else sqlite3_bind_null(st, 3);
  if (ev->thread_id && ev->thread_id[0]) bind_text(st, 4, ev->thread_id);
  else sqlite3_bind_null(st, 4);
  bind_text(st, 5, ev->type);
  if (ev->agent_name && ev->agent_name[0]) bind_text(st, 6, ev->agent_name);
  else sqlite3_bind_null(st, 6);
  sqlite3_bind_double(st, 7, ev->created_at);
  bind_text(st, 8, ev->json);
  return q_run(c, st, "event insert");
}

static int event_seq_set(sq_conn_t *c, const char *user_id, int64_t seq) {
  sqlite3_stmt *st = q(c, Q_EV_SEQ_SET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, seq);
  return q_run(c, st, "event seq");
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

static int sq_event_append(store_t *s, const store_event_t *ev) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  e = event_row_insert(c, ev);
  if (e == 0) e = event_seq_set(c, ev->user_id, ev->seq);
  return tx_end(c, e);
}

/* Group commit: the whole batch in one transaction.  When a row fails (its run
 * was deleted meanwhile, with its thread) the batch is redone with a savepoint per row,
 * so one bad row does not cost the others. */
static int sq_event_append_batch(store_t *s, const store_event_t *evs, size_t n) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  for (size_t i = 0; i < n && !e; i++) e = event_row_insert(c, &evs[i]);
  if (e == 0) return tx_end(c, event_seqs_set(c, evs, n));
  tx_rollback(c);
  if (e == AGD_EUNAVAILABLE || e == AGD_EINTERNAL) return e;
  e = tx_begin(c);
  if (e) return e;
  size_t failed = 0;
  for (size_t i = 0; i < n && !e; i++) {
    e = tx_begin(c); /* a savepoint */
    if (e) break;
    if (tx_end(c, event_row_insert(c, &evs[i])) != 0) failed++;
  }
  if (e == 0) e = event_seqs_set(c, evs, n);
  e = tx_end(c, e);
  if (e) return e;
  return failed == n ? AGD_ENOT_FOUND : 0;
}

static int sq_event_last_seq(store_t *s, const char *user_id, int64_t *out) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_EV_SEQ_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  *out = 0;
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  else if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "event seq get");
  q_done(st);
  return e;
}

static int sq_event_list(store_t *s, const char *user_id, int64_t after_seq, const char *run_id,
                         const char *thread_id, int limit, store_event_list_t *out) {
  CONN(s, c);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = q(c, run_id ? Q_EV_LIST_RUN : Q_EV_LIST);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, after_seq);
  if (run_id) bind_text(st, 3, run_id);
  else sqlite3_bind_null(st, 3);
  if (thread_id) bind_text(st, 4, thread_id);
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
    col_copy(st, 1, row->type, sizeof row->type);
    row->json = col_dup(st, 2);
    if (!row->json) row->json = xstrdup("{}");
  }
  if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "event list");
  q_done(st);
  if (e) store_event_list_free(out);
  return e;
}

/* ---- workload records ----------------------------------------------------------------- */

/* The owner row of user_id (created when create): uid, next_seq, gen.  AGD_ENOT_FOUND when
 * absent and !create.  Inside the caller's transaction. */
static int wl_owner(sq_conn_t *c, const char *user_id, int create, int64_t *uid, int64_t *next_seq, int64_t *gen) {
  sqlite3_stmt *st;
  int e;
  if (create) {
    st = q(c, Q_WL_OWNER_ENSURE);
    if (!st) return ERR(AGD_EINTERNAL);
    bind_text(st, 1, user_id);
    e = q_run(c, st, "workload owner");
    if (e) return e;
  }
  st = q(c, Q_WL_OWNER_GET);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
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
  q_done(st);
  return e;
}

static int sq_workload_insert(store_t *s, const char *user_id, const store_workload_t *recs, size_t n,
                              int64_t *first_seq, int64_t *gen) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  int64_t uid = 0, next = 1;
  e = wl_owner(c, user_id, 1, &uid, &next, gen);
  if (e) return tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_INSERT);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  for (size_t i = 0; i < n && !e; i++) {
    const store_workload_t *r = &recs[i];
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, next + (int64_t)i);
    sqlite3_bind_double(st, 3, r->timestamp);
    bind_text(st, 4, r->model);
    bind_text(st, 5, r->provider);
    sqlite3_bind_int64(st, 6, r->prompt_tokens);
    sqlite3_bind_int64(st, 7, r->completion_tokens);
    sqlite3_bind_double(st, 8, r->latency_ms);
    sqlite3_bind_double(st, 9, r->cost_usd);
    sqlite3_bind_int(st, 10, r->is_error ? 1 : 0);
    bind_text(st, 11, r->feature);
    bind_text(st, 12, r->prompt_hash);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) e = SQ_FAIL(c, rc, "workload insert");
    sqlite3_reset(st); /* bindings are all rebound next row */
  }
  sqlite3_clear_bindings(st);
  if (!e) {
    st = q(c, Q_WL_ADVANCE);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, next + (int64_t)n);
    e = q_run(c, st, "workload advance");
  }
  e = tx_end(c, e);
  if (!e) *first_seq = next;
  return e;
}

static int sq_workload_state(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen) {
  CONN(s, c);
  sqlite3_stmt *st = q(c, Q_WL_STATE);
  if (!st) return ERR(AGD_EINTERNAL);
  bind_text(st, 1, user_id);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) {
    *next_seq = sqlite3_column_int64(st, 0);
    *gen = sqlite3_column_int64(st, 1);
  } else if (rc != SQLITE_DONE) {
    e = SQ_FAIL(c, rc, "workload state");
  }
  q_done(st);
  return e;
}

/* Copy a text column into a fixed array (the write path keeps values fitting). */
static void wl_col(sqlite3_stmt *st, int i, char *dst, size_t cap) { col_copy(st, i, dst, cap); }

static int sq_workload_scan(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                            int64_t *next_seq, int64_t *gen) {
  CONN(s, c);
  int e = tx_begin_read(c);
  if (e) return e;
  int64_t uid = 0;
  e = wl_owner(c, user_id, 0, &uid, next_seq, gen);
  if (e == AGD_ENOT_FOUND) return tx_end(c, 0); /* never stored anything: state stays 1/0 */
  if (e) return tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_SCAN);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  bind_text(st, 1, user_id);
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
  q_done(st);
  tx_rollback(c); /* read only: nothing to commit */
  return e;
}

static int sq_workload_delete(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen) {
  CONN(s, c);
  int e = tx_begin(c);
  if (e) return e;
  int64_t uid = 0;
  e = wl_owner(c, user_id, 0, &uid, next_seq, gen);
  if (e == AGD_ENOT_FOUND) return tx_end(c, 0);
  if (e) return tx_end(c, e);
  sqlite3_stmt *st = q(c, Q_WL_DELETE);
  if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_int64(st, 1, uid);
  e = q_run(c, st, "workload delete");
  if (!e) *deleted = (long)sqlite3_changes(c->db);
  if (!e) {
    st = q(c, Q_WL_BUMP);
    if (!st) return tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_int64(st, 1, uid);
    e = q_run(c, st, "workload generation");
    if (!e) (*gen)++;
  }
  return tx_end(c, e);
}

static const store_ops_t sq_ops = {
  .kind = "sqlite",
  .close = sq_close,
  .migrate = sq_migrate,
  .ping = sq_ping,
  .tx = sq_tx,
  .user_create = sq_user_create,
  .user_by_email = sq_user_by_email,
  .user_get = sq_user_get,
  .user_ensure = sq_user_ensure,
  .user_set_name = sq_user_set_name,
  .user_count = sq_user_count,
  .refresh_add = sq_refresh_add,
  .refresh_consume = sq_refresh_consume,
  .refresh_revoke_family = sq_refresh_revoke_family,
  .refresh_revoke_user = sq_refresh_revoke_user,
  .revoke_access = sq_revoke_access,
  .revoked_load = sq_revoked_load,
  .revoked_purge = sq_revoked_purge,
  .thread_create = sq_thread_create,
  .thread_get = sq_thread_get,
  .thread_list = sq_thread_list,
  .thread_update = sq_thread_update,
  .thread_archive = sq_thread_archive,
  .thread_delete = sq_thread_delete,
  .message_add = sq_message_add,
  .message_add_batch = sq_message_add_batch,
  .message_get = sq_message_get,
  .message_delete = sq_message_delete,
  .message_list = sq_message_list,
  .message_history = sq_message_history,
  .message_list_user = sq_message_list_user,
  .run_create = sq_run_create,
  .run_set_status = sq_run_set_status,
  .run_get = sq_run_get,
  .run_list = sq_run_list,
  .runs_fail_inflight = sq_runs_fail_inflight,
  .event_append = sq_event_append,
  .event_append_batch = sq_event_append_batch,
  .event_last_seq = sq_event_last_seq,
  .event_list = sq_event_list,
  .workload_insert = sq_workload_insert,
  .workload_state = sq_workload_state,
  .workload_scan = sq_workload_scan,
  .workload_delete = sq_workload_delete,
};
