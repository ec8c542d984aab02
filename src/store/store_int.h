/* store/store_int.h — PRIVATE to the .c files of src/store/: the seam between store.c and backends.
 *
 * store.c checks arguments (NULLs, lengths) and dispatches through s->ops; a backend
 * (sqlite_*.c now, postgres_*.c later: see sqlite_int.h for the file map) embeds `store_t`
 * as its first member and fills a const store_ops_t.  Backend functions may assume arguments were checked: non-NULL
 * strings that fit the store_user_t arrays and ID_MAX.  Same thread rules as store.h.
 */
#ifndef AGD_STORE_STORE_INT_H
#define AGD_STORE_STORE_INT_H

#include <stddef.h>

#include "store/embedded.h"
#include "store/store.h"

/* The SQLite migrations src/store/migrations/sqlite/NNNN_name.sql in order, ending with {0};
 * generated at build time by scripts/embed.py (meson custom_target).  Another engine's are
 * store_migrations_<engine>[], from migrations/<engine>/, numbered the same way. */
extern const embedded_file_t store_migrations_sqlite[];

typedef struct store_ops {
  const char *kind; /* "sqlite" */
  void (*close)(store_t *s);
  /* A borrower thread's outermost store call has returned (store.c calls this after
   * each one, never inside a nested call): give back the connection it borrowed, if
   * any.  Borrowers: store_thread_borrow, store__thread_borrows. */
  void (*release)(store_t *s);
  int (*migrate)(store_t *s, int *version_out, char *err, size_t cap);
  int (*ping)(store_t *s);
  int (*tx)(store_t *s, int (*fn)(store_t *s, void *arg), void *arg);

  int (*user_create)(store_t *s, const store_user_t *u);
  int (*user_by_email)(store_t *s, const char *email, store_user_t *out);
  int (*user_get)(store_t *s, const char *user_id, store_user_t *out);
  int (*user_ensure)(store_t *s, const char *user_id, const char *email, store_user_t *out);
  int (*user_set_name)(store_t *s, const char *user_id, const char *name, store_user_t *out);
  int (*user_count)(store_t *s, long *n);

  int (*refresh_add)(store_t *s, const char *jti, const char *family_id, const char *user_id,
                     double expires_at);
  int (*refresh_consume)(store_t *s, const char *jti, const char *user_id, double now,
                         char family_out[ID_MAX]);
  int (*refresh_revoke_family)(store_t *s, const char *family_id);
  int (*refresh_revoke_user)(store_t *s, const char *user_id);

  int (*revoke_access)(store_t *s, const char *jti, double expires_at);
  int (*revoked_load)(store_t *s, double now, store_revoked_cb cb, void *arg);
  int (*revoked_purge)(store_t *s, double now);

  /* threads and messages: arguments checked by store.c (ids fit ID_MAX, sizes within
   * the STORE_*_MAX caps, limit/offset in range, outputs non-NULL and zeroed) */
  int (*thread_create)(store_t *s, const char *user_id, const char *title, const char *metadata,
                       store_thread_t *out);
  int (*thread_get)(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out);
  int (*thread_list)(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                     store_thread_list_t *out);
  int (*thread_update)(store_t *s, const char *user_id, const char *thread_id, int set_title,
                       const char *title, const char *metadata, store_thread_t *out);
  int (*thread_archive)(store_t *s, const char *user_id, const char *thread_id);
  int (*thread_delete)(store_t *s, const char *user_id, const char *thread_id);
  int (*message_add)(store_t *s, const char *user_id, const store_message_new_t *in,
                     store_message_t *out);
  int (*message_get)(store_t *s, const char *user_id, const char *message_id, store_message_t *out);
  int (*message_delete)(store_t *s, const char *user_id, const char *message_id);
  int (*message_list)(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                      store_message_list_t *out);
  int (*message_history)(store_t *s, const char *user_id, const char *thread_id, const char *before_id,
                         int limit, store_message_list_t *out);
  int (*message_list_user)(store_t *s, const char *user_id, const char *thread_id, int limit,
                           long offset, store_message_list_t *out);

  /* runs and events (arguments checked by store.c) */
  int (*run_create)(store_t *s, const char *user_id, const char *run_id, const char *thread_id, const char *agent,
                    const char *input, double created_at);
  int (*run_set_status)(store_t *s, const char *user_id, const char *run_id, const char *status, double started_at,
                        double completed_at, const char *result_json, const char *error_json);
  int (*run_get)(store_t *s, const char *user_id, const char *run_id, store_run_t *out);
  int (*run_set_usage)(store_t *s, const char *user_id, const char *run_id, const char *usage_json);
  int (*run_list)(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit, long offset,
                  store_run_list_t *out);
  int (*runs_fail_inflight)(store_t *s, double now, long *n);
  int (*event_append)(store_t *s, const store_event_t *ev);
  int (*event_append_batch)(store_t *s, const store_event_t *evs, size_t n);
  int (*event_last_seq)(store_t *s, const char *user_id, int64_t *out);
  int (*event_list)(store_t *s, const char *user_id, int64_t after_seq, const char *run_id, const char *thread_id,
                    int limit, store_event_list_t *out);

  /* approvals (arguments checked by store.c: ids and names fit their arrays, JSON texts
   * parse, status one of the decisions, reason bounded) */
  int (*approval_create)(store_t *s, const store_approval_t *a);
  int (*approval_get)(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                      store_approval_t *out);
  int (*approval_list)(store_t *s, const char *user_id, const char *run_id, store_approval_list_t *out);
  int (*approval_decide)(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                         const char *status, const char *reason, double now, store_approval_t *out);
  int (*approvals_pending)(store_t *s, store_approval_cb cb, void *arg);

  /* workload records (arguments checked by store.c: user id fits ID_MAX, 1 <= n <=
   * STORE_WL_BATCH_MAX, record strings fit, numbers finite and >= 0) */
  int (*workload_insert)(store_t *s, const char *user_id, const store_workload_t *recs, size_t n,
                         int64_t *first_seq, int64_t *gen);
  int (*workload_state)(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen);
  int (*workload_scan)(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                       int64_t *next_seq, int64_t *gen);
  int (*workload_delete)(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen);
} store_ops_t;

/* The part every backend shares; backends embed it first (container-of by cast). */
struct store {
  const store_ops_t *ops;
};

/* 1 when the calling thread declared itself a borrower (store_thread_borrow, store.c). */
int store__thread_borrows(void);

/* sqlite_db.c: open "PATH" (scheme already stripped), migrate, fill *out. */
int store__sqlite_open(store_t **out, const char *path, char *err, size_t cap);

/* Write a printf-style one-line message into err (cap bytes; nothing when cap is 0). */
void store__errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- migrations (migrate.c: the runner every engine shares) ---------------------------
 *
 * Each engine records what it applied in a table schema_migrations with the same columns:
 *   version    INTEGER PRIMARY KEY  the NNNN of the file name
 *   name       TEXT NOT NULL        the file name, "NNNN_name.sql"
 *   applied_at REAL/DOUBLE NOT NULL epoch seconds
 *   checksum   TEXT                 lowercase hex SHA-256 of the file's bytes (NULL in rows
 *                                   written before agentd recorded checksums; filled at open)
 * The runner decides (order, refusal of a newer schema, checks of the recorded rows, what is
 * pending); the backend's store_mig_ops_t does what needs its dialect. */

#define STORE_MIG_NAME_MAX 128 /* a recorded name longer than this is compared truncated */
#define STORE_MIG_SUM_HEX 65   /* SHA-256 in hex, with its NUL */

typedef struct store_mig_row {
  int version;
  char name[STORE_MIG_NAME_MAX];
  char checksum[STORE_MIG_SUM_HEX]; /* "" when the row has none */
} store_mig_row_t;

typedef struct store_mig_ops {
  /* Make sure schema_migrations exists with the columns above (create it, or add `checksum`
   * to the table of an older agentd), safely against another process doing the same. */
  int (*prepare)(void *db, char *err, size_t cap);
  /* Call cb for each recorded row, in version order; stop at cb's first non-zero result. */
  int (*each_applied)(void *db, int (*cb)(void *arg, const store_mig_row_t *row), void *arg, char *err,
                      size_t cap);
  /* In one transaction: unless `version` was recorded meanwhile (by another process), run
   * m's SQL and record (version, m->name, now, checksum). */
  int (*apply)(void *db, const embedded_file_t *m, int version, const char *checksum, char *err, size_t cap);
  /* Record the checksum of applied `version` whose row has none. */
  int (*set_checksum)(void *db, int version, const char *checksum, char *err, size_t cap);
} store_mig_ops_t;

/* Bring the database behind ops/db up to the last of migs (an engine's embedded list):
 * check the list, prepare the table, refuse a schema newer than the list (AGD_ECONFLICT),
 * fill missing checksums, warn (log) about a recorded row whose name or checksum differs from
 * the binary's file (edited after release: the database keeps the schema it has), then apply
 * every migration above the highest recorded version, in order.  *version_out: the highest
 * recorded version afterwards.  0 or AGD_E*, with err filled. */
int store__migrate(const embedded_file_t *migs, const store_mig_ops_t *ops, void *db, int *version_out,
                   char *err, size_t cap);

/* The schema version of a migration file name "NNNN_name.sql"; -1 when malformed. */
int store__migration_version(const char *name);

/* The checksum recorded for migration m: lowercase hex SHA-256 of its bytes.  0, or -1 when
 * the digest cannot be computed (OpenSSL failure). */
int store__migration_checksum(const embedded_file_t *m, char out[STORE_MIG_SUM_HEX]);

#endif
