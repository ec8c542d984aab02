/* store/store.h — persistence: the one interface every module uses (DESIGN.md "store/").
 *
 * A store_t is opened once from a URL ("sqlite:PATH"; PostgreSQL later, same calls)
 * and shared by all threads.  Every function is SYNCHRONOUS and BLOCKING: call it from
 * a libuv worker (uv_queue_work), a run thread, or the main thread at startup —
 * never from the event loop.  Thread-safe: each calling thread gets its own database
 * connection on first use (prepared statements cached per connection).
 * Ownership is checked here: every function that reads user data takes the caller's
 * user id and only ever sees that user's rows (SPEC §2 conventions).
 * Returns: 0, or a negative AGD_E* (util/err.h): AGD_ENOT_FOUND, AGD_ECONFLICT,
 * AGD_EBAD_REQUEST (argument too long/empty: callers validate first), AGD_EVALIDATION
 * (a value the schema rejects, e.g. permissions that are not JSON), AGD_EUNAVAILABLE
 * (database unreachable, or locked longer than the busy timeout), AGD_EINTERNAL.
 * Strings passed in are borrowed for the call; results are copied into caller memory.
 */
#ifndef AGD_STORE_STORE_H
#define AGD_STORE_STORE_H

#include <stddef.h>

#include "util/ids.h" /* ID_MAX */

typedef struct store store_t; /* opaque; backends in store/sqlite.c (postgres.c later) */

/* ---- lifecycle ---------------------------------------------------------------- */

/* Open the store named by url and apply pending migrations (main thread, at start).
 * "sqlite:PATH" or "sqlite://PATH" ("sqlite:///abs" = "/abs"); the parent directory is
 * created when missing.  A database migrated by a newer agentd is refused with
 * "database schema version N is newer than this agentd (knows up to M); upgrade agentd".
 * On failure *out is NULL, a one-line reason is written to err (cap bytes; err may be
 * NULL when cap is 0) and a negative code is returned: AGD_EBAD_REQUEST (bad url),
 * AGD_EUNAVAILABLE (cannot create the directory / open / lock the file), AGD_ECONFLICT
 * (schema newer than this binary), AGD_EINTERNAL (a migration failed). */
int store_open(store_t **out, const char *url, char *err, size_t cap);

/* Close every thread's connection and free the store.  NULL is a no-op.  No thread may
 * be inside a store call, or exiting, while this runs; afterwards threads that used the
 * store must not use it again (their connection is already closed). */
void store_close(store_t *s);

/* Apply pending migrations (store_open already did; this is for `agentd migrate`) and
 * set *version_out to the schema version the database is at.  Same refusal as
 * store_open for a newer database. */
int store_migrate(store_t *s, int *version_out, char *err, size_t cap);

/* Round trip to the database (for /health/ready); *latency_ms (may be NULL) gets the
 * time taken.  AGD_EUNAVAILABLE when the database cannot be reached. */
int store_ping(store_t *s, double *latency_ms);

/* "sqlite" (later "postgres"). Static storage. */
const char *store_kind(const store_t *s);

/* ---- users (SPEC §2) --------------------------------------------------------------- */

#define STORE_EMAIL_MAX 320
#define STORE_NAME_MAX 256
#define STORE_PLAN_MAX 32
#define STORE_PERMS_MAX 256
#define STORE_HASH_MAX 160

/* A user row, in caller memory.  Every string is NUL-terminated and fits its array. */
typedef struct store_user {
  char id[ID_MAX];
  char email[STORE_EMAIL_MAX];           /* lowercase (the caller normalises) */
  char name[STORE_NAME_MAX];             /* "" when unset */
  char plan_tier[STORE_PLAN_MAX];        /* "free" by default */
  char permissions_json[STORE_PERMS_MAX]; /* JSON array, '["read","write"]' by default */
  char password_hash[STORE_HASH_MAX];    /* argon2 encoded hash; "" for external users */
  double created_at, updated_at;         /* epoch seconds */
} store_user_t;

/* Insert u.  Empty plan_tier / permissions_json take the defaults, an empty
 * password_hash stores NULL (cannot log in with a password), created_at/updated_at
 * 0 mean now.  AGD_ECONFLICT when the email (or id) exists; AGD_EVALIDATION when
 * permissions_json is not valid JSON; AGD_EBAD_REQUEST for an empty id or email. */
int store_user_create(store_t *s, const store_user_t *u);

/* Look a user up by email (for login; the email is the caller's claim, no owner to
 * check).  AGD_ENOT_FOUND when absent. */
int store_user_by_email(store_t *s, const char *email, store_user_t *out);

/* The caller's own user row.  AGD_ENOT_FOUND when absent. */
int store_user_get(store_t *s, const char *user_id, store_user_t *out);

/* Create-on-first-use for a valid token of an unknown `sub` (SPEC §2): return the
 * user user_id, inserting it when absent with email = email_or_NULL, or the
 * placeholder "<user_id>@external.invalid" when NULL, too long, or already taken by a
 * different user.  Never fails because another thread created it at the same time.
 * out may be NULL.  AGD_EBAD_REQUEST when user_id is empty or ≥ ID_MAX bytes. */
int store_user_ensure(store_t *s, const char *user_id, const char *email_or_NULL,
                      store_user_t *out);

/* Set the caller's display name (≤ STORE_NAME_MAX-1 bytes, else AGD_EBAD_REQUEST) and
 * updated_at; out (may be NULL) gets the updated row.  AGD_ENOT_FOUND when absent. */
int store_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out);

/* Number of users. */
int store_user_count(store_t *s, long *n);

/* ---- refresh tokens (SPEC §2: single use, reuse revokes the family) ----------------- */

/* Record an issued refresh token.  AGD_ENOT_FOUND when user_id does not exist,
 * AGD_ECONFLICT when jti exists. */
int store_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id,
                      double expires_at);

/* Spend refresh token jti of user_id, atomically (one of two racing calls wins):
 *   0                 it was unused, unrevoked and unexpired at `now`; now marked used;
 *                     family_out gets its family (to issue the next token in it);
 *   AGD_EAUTH_INVALID it was already used or revoked — reuse: family_out is filled so
 *                     the caller can store_refresh_revoke_family(); or it expired
 *                     unused — family_out is "" (not reuse, nothing to revoke);
 *   AGD_ENOT_FOUND    no such jti for this user (unknown, purged, or another user's).
 * family_out (ID_MAX bytes) may be NULL. */
int store_refresh_consume(store_t *s, const char *jti, const char *user_id, double now,
                          char family_out[ID_MAX]);

/* Revoke every token of a family (reuse detected, logout).  0 even if none matched. */
int store_refresh_revoke_family(store_t *s, const char *family_id);

/* Revoke every refresh token of a user.  0 even if none matched. */
int store_refresh_revoke_user(store_t *s, const char *user_id);

/* ---- revoked access tokens (logout: SPEC §2) --------------------------------------- */

/* Longest access-token jti kept (external issuers choose their own jti format). */
#define STORE_JTI_MAX 128

/* Remember that access token jti (< STORE_JTI_MAX bytes, else AGD_EBAD_REQUEST) is
 * revoked until expires_at (idempotent). */
int store_revoke_access(store_t *s, const char *jti, double expires_at);

/* Call cb(jti, expires_at, arg) for every revoked access token still unexpired at now
 * (to fill the in-memory deny list at start).  cb runs on the calling thread; jti is
 * borrowed for the call; cb must not call into the store. */
typedef void (*store_revoked_cb)(const char *jti, double expires_at, void *arg);
int store_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg);

/* Delete revoked access tokens and refresh tokens that expired before now (they can no
 * longer be presented).  Housekeeping, e.g. hourly on a worker. */
int store_revoked_purge(store_t *s, double now);

#endif
