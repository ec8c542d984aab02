/* store/sqlite_auth.c — users, refresh tokens (single-use, in families) and revoked access
 * tokens on SQLite (SPEC §2; store.h "users", "refresh tokens", "revocations").
 *
 * Every function runs on the calling thread's connection (sqlite_db.c); a multi-statement
 * change is one transaction (sq_tx_begin … sq_tx_end), a savepoint inside store_tx.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

/* ---- SQL ------------------------------------------------------------------------------ */

enum {
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
  Q__COUNT
};

#define USER_COLS \
  "id, email, name, coalesce(password_hash, ''), plan_tier, permissions, created_at, updated_at"

static const char *const sql[Q__COUNT] = {
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
};
_Static_assert(Q__COUNT <= SQ_MOD_STMTS_MAX, "raise SQ_MOD_STMTS_MAX");

/* This file's cached statement id (sq_stmt). */
static sqlite3_stmt *q(sq_conn_t *c, int id) { return sq_stmt(c, SQ_MOD_AUTH, sql, id); }

/* ---- users --------------------------------------------------------------------------- */

static void row_user(sqlite3_stmt *st, store_user_t *u) {
  memset(u, 0, sizeof *u);
  sq_col_copy(st, 0, u->id, sizeof u->id);
  sq_col_copy(st, 1, u->email, sizeof u->email);
  sq_col_copy(st, 2, u->name, sizeof u->name);
  sq_col_copy(st, 3, u->password_hash, sizeof u->password_hash);
  sq_col_copy(st, 4, u->plan_tier, sizeof u->plan_tier);
  sq_col_copy(st, 5, u->permissions_json, sizeof u->permissions_json);
  u->created_at = sqlite3_column_double(st, 6);
  u->updated_at = sqlite3_column_double(st, 7);
}

/* One user by Q_USER_GET / Q_USER_BY_EMAIL. */
static int user_lookup(sq_conn_t *c, int qid, const char *key, store_user_t *out) {
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, key);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) row_user(st, out);
  else if (rc == SQLITE_DONE) e = AGD_ENOT_FOUND;
  else e = SQ_FAIL(c, rc, "user lookup");
  sq_done(st);
  return e;
}

int sq_user_create(store_t *s, const store_user_t *u) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_USER_INSERT);
  if (!st) return ERR(AGD_EINTERNAL);
  double now = time_now();
  sq_bind_text(st, 1, u->id);
  sq_bind_text(st, 2, u->email);
  sq_bind_text(st, 3, u->name);
  if (u->password_hash[0]) sq_bind_text(st, 4, u->password_hash);
  else sqlite3_bind_null(st, 4);
  sq_bind_text(st, 5, u->plan_tier[0] ? u->plan_tier : "free");
  sq_bind_text(st, 6, u->permissions_json[0] ? u->permissions_json : "[\"read\",\"write\"]");
  sqlite3_bind_double(st, 7, u->created_at > 0 ? u->created_at : now);
  sqlite3_bind_double(st, 8, u->updated_at > 0 ? u->updated_at : now);
  return sq_do(c, st, "user insert");
}

int sq_user_by_email(store_t *s, const char *email, store_user_t *out) {
  SQ_CONN(s, c);
  return user_lookup(c, Q_USER_BY_EMAIL, email, out);
}

int sq_user_get(store_t *s, const char *user_id, store_user_t *out) {
  SQ_CONN(s, c);
  return user_lookup(c, Q_USER_GET, user_id, out);
}

/* INSERT OR IGNORE of (id, email): 1 if a row was inserted, 0 if ignored, or AGD_E*. */
static int ensure_insert(sq_conn_t *c, const char *id, const char *email, double now) {
  sqlite3_stmt *st = q(c, email ? Q_USER_ENSURE : Q_USER_ENSURE_RANDOM);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, id);
  if (email) {
    sq_bind_text(st, 2, email);
    sqlite3_bind_double(st, 3, now);
  } else {
    sqlite3_bind_double(st, 2, now);
  }
  int e = sq_do(c, st, "user ensure");
  return e ? e : sqlite3_changes(c->db) > 0;
}

int sq_user_ensure(store_t *s, const char *user_id, const char *email, store_user_t *out) {
  SQ_CONN(s, c);
  int e = user_lookup(c, Q_USER_GET, user_id, out); /* the usual case: it exists */
  if (e != AGD_ENOT_FOUND) return e;

  char placeholder[ID_MAX + sizeof "@external.invalid"];
  snprintf(placeholder, sizeof placeholder, "%s@external.invalid", user_id);
  double now = time_now();
  e = sq_tx_begin(c);
  if (e) return e;
  /* Each insert is ignored when the id exists (a racing creator won: fine) or the email
   * belongs to someone else (then try the next email).  The last resort adds random
   * bytes, in case someone registered the placeholder address itself. */
  int r = ensure_insert(c, user_id, email ? email : placeholder, now);
  if (r == 0 && email) r = ensure_insert(c, user_id, placeholder, now);
  if (r == 0) r = ensure_insert(c, user_id, NULL, now);
  e = r < 0 ? r : user_lookup(c, Q_USER_GET, user_id, out);
  if (e == AGD_ENOT_FOUND) e = ERR(AGD_EINTERNAL); /* every insert ignored: cannot happen */
  e = sq_tx_end(c, e);
  if (!e && r == 1) log_info("store: created external user %s", user_id);
  return e;
}

int sq_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_USER_SET_NAME);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, user_id);
  sq_bind_text(st, 2, name);
  sqlite3_bind_double(st, 3, time_now());
  e = sq_do(c, st, "user set name");
  if (!e && sqlite3_changes(c->db) == 0) e = AGD_ENOT_FOUND;
  if (!e) e = user_lookup(c, Q_USER_GET, user_id, out);
  return sq_tx_end(c, e);
}

int sq_user_count(store_t *s, long *n) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_USER_COUNT);
  if (!st) return ERR(AGD_EINTERNAL);
  int rc = sqlite3_step(st);
  int e = 0;
  if (rc == SQLITE_ROW) *n = (long)sqlite3_column_int64(st, 0);
  else e = SQ_FAIL(c, rc, "user count");
  sq_done(st);
  return e;
}

/* ---- refresh tokens ------------------------------------------------------------------ */

int sq_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id,
                          double expires_at) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REFRESH_ADD);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, jti);
  sq_bind_text(st, 2, family_id);
  sq_bind_text(st, 3, user_id);
  sqlite3_bind_double(st, 4, expires_at);
  sqlite3_bind_double(st, 5, time_now());
  return sq_do(c, st, "refresh add");
}

int sq_refresh_consume(store_t *s, const char *jti, const char *user_id, double now,
                              char family_out[ID_MAX]) {
  SQ_CONN(s, c);
  family_out[0] = '\0';
  int e = sq_tx_begin(c);
  if (e) return e;
  /* The conditional UPDATE is the atomic test-and-set: of two racing consumers only
   * one changes the row. */
  sqlite3_stmt *st = q(c, Q_REFRESH_USE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, jti);
  sq_bind_text(st, 2, user_id);
  sqlite3_bind_double(st, 3, now);
  e = sq_do(c, st, "refresh use");
  if (e) return sq_tx_end(c, e);
  int spent = sqlite3_changes(c->db) == 1;

  st = q(c, Q_REFRESH_STATE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sq_bind_text(st, 1, jti);
  sq_bind_text(st, 2, user_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int reused = sqlite3_column_int(st, 1);
    if (spent || reused) sq_col_copy(st, 0, family_out, ID_MAX);
    /* SPEC §2: used or revoked → reuse; unused but expired → plain invalid. */
    e = spent ? 0 : AGD_EAUTH_INVALID;
  } else if (rc == SQLITE_DONE) {
    e = AGD_ENOT_FOUND;
  } else {
    e = SQ_FAIL(c, rc, "refresh state");
  }
  sq_done(st);
  int te = sq_tx_end(c, spent ? e : 0); /* a failed consume changed nothing: commit is fine */
  return te ? te : e;
}

/* One UPDATE/DELETE with a single text or double parameter, autocommit (a transaction). */
static int run1(store_t *s, int qid, const char *text, double num, const char *what) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, qid);
  if (!st) return ERR(AGD_EINTERNAL);
  if (text) sq_bind_text(st, 1, text);
  else sqlite3_bind_double(st, 1, num);
  return sq_do(c, st, what);
}

int sq_refresh_revoke_family(store_t *s, const char *family_id) {
  return run1(s, Q_REFRESH_REVOKE_FAMILY, family_id, 0, "refresh revoke family");
}

int sq_refresh_revoke_user(store_t *s, const char *user_id) {
  return run1(s, Q_REFRESH_REVOKE_USER, user_id, 0, "refresh revoke user");
}

/* ---- revoked access tokens ----------------------------------------------------------- */

int sq_revoke_access(store_t *s, const char *jti, double expires_at) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REVOKE_ACCESS);
  if (!st) return ERR(AGD_EINTERNAL);
  sq_bind_text(st, 1, jti);
  sqlite3_bind_double(st, 2, expires_at);
  return sq_do(c, st, "revoke access");
}

int sq_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg) {
  SQ_CONN(s, c);
  sqlite3_stmt *st = q(c, Q_REVOKED_LOAD);
  if (!st) return ERR(AGD_EINTERNAL);
  sqlite3_bind_double(st, 1, now);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *jti = (const char *)sqlite3_column_text(st, 0);
    if (jti) cb(jti, sqlite3_column_double(st, 1), arg);
  }
  int e = rc == SQLITE_DONE ? 0 : SQ_FAIL(c, rc, "revoked load");
  sq_done(st);
  return e;
}

int sq_revoked_purge(store_t *s, double now) {
  SQ_CONN(s, c);
  int e = sq_tx_begin(c);
  if (e) return e;
  sqlite3_stmt *st = q(c, Q_REVOKED_PURGE);
  if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
  sqlite3_bind_double(st, 1, now);
  e = sq_do(c, st, "revoked purge");
  if (!e) {
    st = q(c, Q_REFRESH_PURGE);
    if (!st) return sq_tx_end(c, ERR(AGD_EINTERNAL));
    sqlite3_bind_double(st, 1, now);
    e = sq_do(c, st, "refresh purge");
  }
  return sq_tx_end(c, e);
}
