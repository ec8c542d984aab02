/* store/sqlite_db.c — the SQLite backend of store.h: the database and its connections
 * (DESIGN.md: WAL, busy_timeout, migrations).
 *
 * One sqlite3* per calling thread, opened on first use and kept in a pthread key of
 * this store (STYLE §7); every connection is also on the store's mutex-protected list
 * so store_close() can close them all.  A thread that exits closes its own connection
 * (key destructor).  Borrower threads (store_thread_borrow: the run threads, up to
 * --max-runs of them, mostly waiting on a model) have none of their own: for each
 * store call they take one of a small pool (a few per core) into the same key, and
 * store.c's release hook (sq_release) puts it back when the call returns.  Prepared
 * statements are cached per connection, per file (sq_stmt, sqlite_int.h): a pooled
 * connection keeps them across borrowers, since each statement is the same SQL
 * whoever runs it.  Writes run in transactions: multi-statement ones under
 * BEGIN IMMEDIATE, so the write lock is taken up front and the busy handler (5 s)
 * applies instead of a deadlock error.  Migrations run at open (sqlite_migrate.c).
 * The entities' queries live in sqlite_auth.c, sqlite_threads.c, sqlite_runs.c and
 * sqlite_workloads.c; this file fills the store_ops_t with them.
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
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/sqlite_int.h"
#include "store/sqlite_vfs.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

#define SQ_BUSY_TIMEOUT_MS 5000

/* ---- transaction control: this file's cached statements ------------------------------- */

enum {
  Q_BEGIN,
  Q_COMMIT,
  Q_ROLLBACK,
  Q_BEGIN_READ,
  Q_SAVEPOINT,
  Q_RELEASE,
  Q_ROLLBACK_TO,
  Q__COUNT
};

static const char *const sql[Q__COUNT] = {
  [Q_BEGIN] = "BEGIN IMMEDIATE",
  [Q_COMMIT] = "COMMIT",
  [Q_ROLLBACK] = "ROLLBACK",
  [Q_BEGIN_READ] = "BEGIN",
  [Q_SAVEPOINT] = "SAVEPOINT item",
  [Q_RELEASE] = "RELEASE item",
  [Q_ROLLBACK_TO] = "ROLLBACK TO item",
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_DB, sql, id); }

/* ---- store and per-thread connections ------------------------------------------------ */

static const store_ops_t sq_ops;

int sq_fail(sq_conn_t *c, int rc, const char *what, const char *file, int line) {
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

static void conn_free(sq_conn_t *c) {
  for (int m = 0; m < SQ_MOD__COUNT; m++)
    for (int i = 0; i < SQ_MOD_STMTS_MAX; i++) sqlite3_finalize(c->stmt[m][i]); /* NULL is harmless */
  if (c->db) metrics_add("agentd_db_connections_open", NULL, -1);
  if (c->cache_bytes) metrics_add("agentd_db_cache_bytes", NULL, -c->cache_bytes);
  int rc = sqlite3_close(c->db); /* NULL is harmless */
  if (rc != SQLITE_OK) log_error("store: sqlite close: %s", sqlite3_errstr(rc));
  free(c);
}

static void pool_put(sq_conn_t *c);

/* Key destructor: the thread that owned c is exiting; close its connection (a pooled
 * one goes back: only a borrower that exits inside a store call still holds one). */
static void conn_on_thread_exit(void *p) {
  sq_conn_t *c = p;
  if (c->pooled) {
    pool_put(c);
    return;
  }
  sq_store_t *st = c->st;
  pthread_mutex_lock(&st->mu);
  if (c->prev) c->prev->next = c->next;
  else st->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&st->mu);
  conn_free(c);
}

int sq_exec(sq_conn_t *c, const char *text, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(c->db, text, NULL, NULL, &msg);
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
  /* NOMUTEX: a connection is used by one thread at a time — its own thread, or the
   * borrower it is lent to until that thread's store call returns; the hand-over
   * goes through pool_mu, which orders one borrower's use before the next one's.
   * SQLite's own mutex per call would only add cost (SQLite's "multi-thread" mode
   * allows a connection to move between threads that never use it at once). */
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
  int e = sq_exec(c, pragmas, "pragmas");
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
      uint64_t t0 = time_mono_ns();
      int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, NULL);
      metrics_hist_observe(st->ckpt_passive, (double)(time_mono_ns() - t0) / 1e9);
      if (rc == SQLITE_OK && log_pages > SQ_WAL_RESTART_PAGES) {
        pthread_mutex_lock(&st->wmu);
        uint64_t t1 = time_mono_ns(); /* from when the writers are held */
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        metrics_hist_observe(st->ckpt_hold, (double)(time_mono_ns() - t1) / 1e9);
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

/* Put c on the store's list of connections (store_close closes them all). */
static void conn_register(sq_store_t *st, sq_conn_t *c) {
  pthread_mutex_lock(&st->mu);
  c->next = st->conns;
  if (st->conns) st->conns->prev = c;
  st->conns = c;
  pthread_mutex_unlock(&st->mu);
}

/* ---- the borrowers' pool ----------------------------------------------------------------
 *
 * Run threads are many (one per concurrent run, up to --max-runs, kept for reuse) and
 * spend their time waiting on a model or an approval: a connection each (its schema,
 * statements and page cache: about 150 KiB) made memory grow with the runs in flight.
 * They borrow instead, one store call at a time, so the connections are bounded by the
 * pool, not by the runs.  A store call is short (no store call waits on anything but
 * the database: store.h) and a borrower holds nothing between calls, so a handful per
 * core keeps them all busy; waiting is bounded so a stuck database shows as
 * AGD_EUNAVAILABLE, not as run threads hanging for ever. */

/* Connections per core, and the bounds of the pool (a writer waiting for wmu holds
 * its connection, so even one core wants several). */
#define SQ_POOL_PER_CORE 2
#define SQ_POOL_MIN 4
#define SQ_POOL_MAX 8
/* A borrower's wait for a connection: longer than SQLite's busy timeout, so a call
 * that waits behind a writer which itself waits on the database fails there first. */
#define SQ_POOL_WAIT_MS 10000

static int pool_default_size(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN) * SQ_POOL_PER_CORE;
  return n < SQ_POOL_MIN ? SQ_POOL_MIN : n > SQ_POOL_MAX ? SQ_POOL_MAX : (int)n;
}

static void pool_init(sq_store_t *st) {
  pthread_mutex_init(&st->pool_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a wall-clock step does not cut the wait */
  pthread_cond_init(&st->pool_cv, &ca);
  pthread_condattr_destroy(&ca);
  st->pool_size = pool_default_size();
  st->pool_wait_ms = SQ_POOL_WAIT_MS;
}

/* Back to the idle list; wakes one waiting borrower. */
static void pool_put(sq_conn_t *c) {
  sq_store_t *st = c->st;
  pthread_mutex_lock(&st->pool_mu);
  c->pool_next = st->pool_free;
  st->pool_free = c;
  st->pool_out--;
  pthread_cond_signal(&st->pool_cv);
  pthread_mutex_unlock(&st->pool_mu);
}

/* Wait (pool_mu held) until a connection is idle or may be opened; 0, or
 * AGD_EUNAVAILABLE once pool_wait_ms have passed. */
static int pool_wait_locked(sq_store_t *st) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += st->pool_wait_ms / 1000;
  until.tv_nsec += (long)(st->pool_wait_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  while (!st->pool_free && st->pool_open >= st->pool_size) {
    int rc = pthread_cond_timedwait(&st->pool_cv, &st->pool_mu, &until);
    if (rc == ETIMEDOUT && !st->pool_free && st->pool_open >= st->pool_size) {
      st->pool_timeouts++;
      return AGD_EUNAVAILABLE;
    }
  }
  return 0;
}

/* A pooled connection for this borrower: an idle one, else a new one while the pool
 * is not full, else the first one given back. */
static int pool_take(sq_store_t *st, sq_conn_t **out, char *err, size_t cap) {
  pthread_mutex_lock(&st->pool_mu);
  int e = pool_wait_locked(st);
  if (e) {
    int size = st->pool_size;
    pthread_mutex_unlock(&st->pool_mu);
    metrics_add("agentd_db_pool_timeouts_total", NULL, 1);
    log_warn("store: all %d shared connections stayed busy for %d ms", size, st->pool_wait_ms);
    store__errf(err, cap, "no database connection free");
    return agd_err_mark(e, __FILE__, __LINE__);
  }
  sq_conn_t *c = st->pool_free;
  if (c) st->pool_free = c->pool_next;
  else st->pool_open++; /* this slot is ours while we open it unlocked */
  if (++st->pool_out > st->pool_peak) st->pool_peak = st->pool_out;
  pthread_mutex_unlock(&st->pool_mu);
  if (!c) {
    e = conn_open(st, &c, err, cap);
    if (e) {
      pthread_mutex_lock(&st->pool_mu);
      st->pool_open--;
      st->pool_out--;
      pthread_cond_signal(&st->pool_cv); /* the slot is free again */
      pthread_mutex_unlock(&st->pool_mu);
      return e;
    }
    c->pooled = 1;
    conn_register(st, c);
  }
  c->pool_next = NULL;
  *out = c;
  return 0;
}

void sq_release(store_t *s) {
  sq_store_t *st = sq(s);
  sq_conn_t *c = pthread_getspecific(st->key);
  if (!c || !c->pooled) return; /* a connection of its own (opened before it borrowed) */
  /* Every transaction ends inside the call that began it; one left open here would
   * hand the next borrower a connection inside someone else's transaction. */
  if (c->tx_depth > 0) {
    log_error("store: a store call returned inside its transaction; rolling it back");
    while (c->tx_depth > 0) sq_tx_rollback(c);
  }
  if (pthread_setspecific(st->key, NULL) != 0) abort();
  pool_put(c);
}

void sq_pool_stats(store_t *s, sq_pool_stats_t *out) {
  sq_store_t *st = sq(s);
  pthread_mutex_lock(&st->pool_mu);
  *out = (sq_pool_stats_t){st->pool_size, st->pool_open, st->pool_out, st->pool_peak, st->pool_timeouts};
  pthread_mutex_unlock(&st->pool_mu);
}

void sq_pool_config(store_t *s, int size, int wait_ms) {
  sq_store_t *st = sq(s);
  pthread_mutex_lock(&st->pool_mu);
  st->pool_size = size < 1 ? 1 : size;
  st->pool_wait_ms = wait_ms < 0 ? 0 : wait_ms;
  pthread_cond_broadcast(&st->pool_cv);
  pthread_mutex_unlock(&st->pool_mu);
}

int sq_conn_get(sq_store_t *st, sq_conn_t **out, char *err, size_t cap) {
  sq_conn_t *c = pthread_getspecific(st->key);
  if (!c) {
    if (store__thread_borrows()) {
      int e = pool_take(st, &c, err, cap);
      if (e) return e;
    } else {
      int e = conn_open(st, &c, err, cap);
      if (e) return e;
      conn_register(st, c);
    }
    if (pthread_setspecific(st->key, c) != 0) abort(); /* ENOMEM */
  }
  *out = c;
  return 0;
}

sqlite3_stmt *sq_prepare(sq_conn_t *c, int mod, int id, const char *text) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
  if (rc != SQLITE_OK) {
    SQ_FAIL(c, rc, text);
    return NULL;
  }
  c->stmt[mod][id] = st;
  return st;
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

int sq_do(sq_conn_t *c, sqlite3_stmt *st, const char *what) {
  /* A write outside a transaction is a transaction of its own: queue for it. */
  int lock = !c->holds_wmu && !sqlite3_stmt_readonly(st);
  if (lock) wmu_lock(c->st);
  int rc = sqlite3_step(st);
  if (lock) pthread_mutex_unlock(&c->st->wmu);
  int e = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : SQ_FAIL(c, rc, what);
  sq_done(st);
  return e;
}

static void wmu_release(sq_conn_t *c) {
  if (!c->holds_wmu) return;
  c->holds_wmu = 0;
  pthread_mutex_unlock(&c->st->wmu);
}

/* A cached statement with no result (transaction control: a group commit opens a
 * savepoint per item, so they are prepared once per connection like the rest). */
static int tx_run(sq_conn_t *c, int id, const char *what) {
  sqlite3_stmt *st = q(c, id);
  return st ? sq_do(c, st, what) : ERR(AGD_EINTERNAL);
}

static int tx_savepoint(sq_conn_t *c) {
  int e = tx_run(c, Q_SAVEPOINT, "savepoint");
  if (e == 0) c->tx_depth++;
  return e;
}

/* Transactions nest (sqlite_int.h): the outermost level is BEGIN IMMEDIATE, taken after
 * this process's other writers (wmu, held until sq_tx_end); an inner one a savepoint. */
int sq_tx_begin(sq_conn_t *c) {
  if (c->tx_depth > 0) return tx_savepoint(c);
  sqlite3_stmt *st = q(c, Q_BEGIN);
  if (!st) return ERR(AGD_EINTERNAL);
  wmu_lock(c->st);
  c->holds_wmu = 1;
  int e = sq_do(c, st, "begin");
  if (e) wmu_release(c);
  else c->tx_depth = 1;
  return e;
}

/* A read transaction: a plain BEGIN takes no write lock (nor wmu). */
int sq_tx_begin_read(sq_conn_t *c) {
  if (c->tx_depth > 0) return tx_savepoint(c);
  sqlite3_stmt *st = q(c, Q_BEGIN_READ);
  if (!st) return ERR(AGD_EINTERNAL);
  int e = sq_do(c, st, "begin read");
  if (e == 0) c->tx_depth = 1;
  return e;
}

static int tx_commit(sq_conn_t *c) {
  sqlite3_stmt *st = q(c, Q_COMMIT);
  return st ? sq_do(c, st, "commit") : ERR(AGD_EINTERNAL);
}

void sq_tx_rollback(sq_conn_t *c) {
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
    if (st) sq_do(c, st, "rollback");
  }
  wmu_release(c);
}
int sq_tx_end(sq_conn_t *c, int e) {
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
  sq_tx_rollback(c);
  return e;
}

/* ---- columns ------------------------------------------------------------------------- */

char *sq_col_dup(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return NULL;
  const unsigned char *p = sqlite3_column_text(st, i);
  size_t n = (size_t)sqlite3_column_bytes(st, i);
  char *d = malloc(n + 1);
  if (!d) abort();
  if (n) memcpy(d, p, n);
  d[n] = '\0';
  return d;
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
  pool_init(st);
  st->wmu_wait = metrics_hist("agentd_db_write_wait_seconds",
                              "Database writers' wait for this process's write lock (0: it was free).");
  st->ckpt_passive = metrics_hist("agentd_db_checkpoint_seconds",
                                  "PASSIVE checkpoints of the WAL (the checkpointer thread; writers go on).");
  st->ckpt_hold = metrics_hist("agentd_db_checkpoint_hold_seconds",
                               "RESTART checkpoints: how long the checkpointer held this process's writers.");
  checkpointer_start(st);

  int version = 0;
  e = sq_migrate(&st->super, &version, err, cap);
  sq_release(&st->super); /* a borrower that opens a store: not through store.c's OP() */
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
  pthread_cond_destroy(&st->pool_cv);
  pthread_mutex_destroy(&st->pool_mu);
  free(st);
}

/* Page cache of a connection that runs group commits (KiB).  A batch touches
 * hundreds of pages; with SQLite's default 2 MiB cache they are spilled to the WAL
 * in the middle of the transaction and written again at commit, and read back
 * again in the next batch: several times the bytes and syscalls per event. */
#define SQ_GROUP_CACHE_KIB 65536

/* agentd_db_cache_bytes follows the enlarged page caches (the event writer's
 * above all): it grows with the data up to SQ_GROUP_CACHE_KIB per connection,
 * and bench/llmstream.c sets it apart from what an in-flight call costs. */
static void cache_count(sq_conn_t *c) {
  int cur = 0, hi = 0;
  if (sqlite3_db_status(c->db, SQLITE_DBSTATUS_CACHE_USED, &cur, &hi, 0) != SQLITE_OK || cur == c->cache_bytes) return;
  metrics_add("agentd_db_cache_bytes", NULL, cur - c->cache_bytes);
  c->cache_bytes = cur;
}

static int sq_tx(store_t *s, int (*fn)(store_t *s, void *arg), void *arg) {
  SQ_CONN(s, c);
  /* Not a pooled connection: the pool is for short calls of many threads, and each of
   * its connections would keep the large cache for good. */
  if (!c->group_cache && !c->pooled) {
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%d", SQ_GROUP_CACHE_KIB);
    if (sq_exec(c, pragma, "cache size") == 0) c->group_cache = 1;
  }
  int e = sq_tx_begin(c);
  if (e) return e;
  e = sq_tx_end(c, fn(s, arg));
  if (c->group_cache) cache_count(c);
  return e;
}

static int sq_ping(store_t *s) {
  SQ_CONN(s, c);
  int v;
  return sq_schema_version(c, &v);
}

static const store_ops_t sq_ops = {
  .kind = "sqlite",
  .close = sq_close,
  .release = sq_release,
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
  .message_get = sq_message_get,
  .message_delete = sq_message_delete,
  .message_list = sq_message_list,
  .message_history = sq_message_history,
  .message_list_user = sq_message_list_user,
  .run_create = sq_run_create,
  .run_set_status = sq_run_set_status,
  .run_get = sq_run_get,
  .run_set_usage = sq_run_set_usage,
  .run_list = sq_run_list,
  .runs_fail_inflight = sq_runs_fail_inflight,
  .event_append = sq_event_append,
  .event_append_batch = sq_event_append_batch,
  .event_last_seq = sq_event_last_seq,
  .event_list = sq_event_list,
  .approval_create = sq_approval_create,
  .approval_get = sq_approval_get,
  .approval_list = sq_approval_list,
  .approval_decide = sq_approval_decide,
  .approvals_pending = sq_approvals_pending,
  .workload_insert = sq_workload_insert,
  .workload_state = sq_workload_state,
  .workload_scan = sq_workload_scan,
  .workload_delete = sq_workload_delete,
};
