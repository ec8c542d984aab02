/* store/store_int.h — PRIVATE to the .c files of src/store/: the seam between store.c and backends.
 *
 * store.c checks arguments (NULLs, lengths) and dispatches through s->ops; a backend
 * (sqlite.c now, postgres.c later) embeds `store_t` as its first member and fills a
 * const store_ops_t.  Backend functions may assume arguments were checked: non-NULL
 * strings that fit the store_user_t arrays and ID_MAX.  Same thread rules as store.h.
 */
#ifndef AGD_STORE_STORE_INT_H
#define AGD_STORE_STORE_INT_H

#include <stddef.h>

#include "store/embedded.h"
#include "store/store.h"

/* SQLite migrations src/store/migrations/NNNN_name.sql in order, ending with {0};
 * generated at build time by scripts/embed.py (meson custom_target). */
extern const embedded_file_t store_migrations[];

typedef struct store_ops {
  const char *kind; /* "sqlite" */
  void (*close)(store_t *s);
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
  /* rcs[i] != 0 on entry: the item was refused by store.c, skip it */
  int (*message_add_batch)(store_t *s, size_t n, const char *const user_ids[], const store_message_new_t in[],
                           store_message_t out[], int rcs[]);
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
  int (*run_list)(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit, long offset,
                  store_run_list_t *out);
  int (*runs_fail_inflight)(store_t *s, double now, long *n);
  int (*event_append)(store_t *s, const store_event_t *ev);
  int (*event_append_batch)(store_t *s, const store_event_t *evs, size_t n);
  int (*event_last_seq)(store_t *s, const char *user_id, int64_t *out);
  int (*event_list)(store_t *s, const char *user_id, int64_t after_seq, const char *run_id, const char *thread_id,
                    int limit, store_event_list_t *out);

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

/* sqlite.c: open "PATH" (scheme already stripped), migrate, fill *out. */
int store__sqlite_open(store_t **out, const char *path, char *err, size_t cap);

/* Write a printf-style one-line message into err (cap bytes; nothing when cap is 0). */
void store__errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The schema version of a migration file name "NNNN_name.sql"; -1 when malformed. */
int store__migration_version(const char *name);

#endif
