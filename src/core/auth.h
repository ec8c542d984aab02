/* core/auth.h — tokens (issue, the one access-token verifier), revocation,
 * passwords, e-mail normalisation (SPEC §2).
 *
 * Pure building blocks, no HTTP: api/auth_api.c, the WebSocket handshake and
 * the upload route call these.  Built on three modules with their own
 * contracts: core/jwt_hs256.h (the JWS envelope: HS256 sign/verify via libjwt),
 * core/revocation.h (the revoked-key set, behind a backend interface a shared
 * store can implement) and core/secret.h (the secret file in the data dir).
 * Every entry point that takes an access token (REST hook, WebSocket
 * handshake, upload) calls auth_verify_access(): signature, claims, the
 * verified-token cache and the revocation set, in one place.
 * Threads: auth_init()/auth_shutdown() once, before/after every other thread;
 * everything else may be called from any thread at any time.  Token issue and
 * verify are cheap and run on the loop; auth_password_hash/verify/dummy_verify
 * cost ~tens of ms and 19 MiB each and must run on a worker (STYLE §7).
 * The module owns a copy of the secret and the revocation set; callers own
 * every buffer they pass in.  Errors: 0 or a negative AGD_E* (util/err.h).
 */
#ifndef AGD_CORE_AUTH_H
#define AGD_CORE_AUTH_H

#include <stddef.h>

#include "util/ids.h"

#define AUTH_DEFAULT_ISSUER "netra-auth-service"
#define AUTH_DEFAULT_ACCESS_TTL 1800.0     /* SPEC §10 --access-ttl */
#define AUTH_DEFAULT_REFRESH_TTL 1209600.0 /* SPEC §10 --refresh-ttl */
#define AUTH_DEFAULT_LEEWAY 30.0
#define AUTH_SECRET_MIN 32          /* SPEC §2: at least 32 bytes */
#define AUTH_TOKEN_MAX 8192         /* longest token auth_verify() looks at (= JWT_HS256_TOKEN_MAX) */
#define AUTH_TOKEN_BUF 2048         /* room for a token we issue (NUL included) */
#define AUTH_PERMS_MAX 6144         /* compact permissions JSON (NUL included) */
#define AUTH_PASSWORD_MAX 1024      /* bytes */
#define AUTH_HASH_MAX 160           /* argon2id encoded string (NUL included) */
#define AUTH_EMAIL_MAX 320          /* normalised e-mail buffer (≤ 254 chars used) */

typedef enum { AUTH_ACCESS = 1, AUTH_REFRESH = 2 } auth_kind_t;

/* Everything auth_init() needs.  Borrowed for the call (auth_init copies it). */
typedef struct auth_config {
  const unsigned char *secret; /* HS256 key, secret_len ≥ AUTH_SECRET_MIN bytes */
  size_t secret_len;
  const char *issuer;          /* "iss" we put in tokens; NULL or "" → AUTH_DEFAULT_ISSUER */
  int enforce_issuer;          /* 1: tokens whose iss differs (or lacks) are rejected */
  double access_ttl;           /* seconds; ≤ 0 → AUTH_DEFAULT_ACCESS_TTL */
  double refresh_ttl;          /* seconds; ≤ 0 → AUTH_DEFAULT_REFRESH_TTL */
  double leeway;               /* clock skew allowed on exp/iat/nbf, seconds; < 0 → 30 */
} auth_config_t;

/* A token we issued.  Caller-owned (usually on the stack). */
typedef struct auth_token {
  char token[AUTH_TOKEN_BUF]; /* compact JWS, NUL-terminated */
  char jti[ID_MAX];           /* "jti_…" */
  double exp;                 /* epoch seconds (whole) */
} auth_token_t;

/* What auth_verify() found.  Caller-owned; every string is NUL-terminated
 * ("" when the claim is absent). */
typedef struct auth_claims {
  char user_id[256];                     /* sub */
  char email[AUTH_EMAIL_MAX];            /* email, may be "" */
  char jti[128];                         /* jti, may be "" */
  char family[128];                      /* fam (refresh tokens; access tokens we issue), may be "" */
  char issuer[256];                      /* iss, may be "" */
  double iat, exp;                       /* epoch seconds */
  char permissions_json[AUTH_PERMS_MAX]; /* compact JSON array; "[]" when absent or not an array */
  const char *error;                     /* on failure: short static reason, else NULL */
} auth_claims_t;

/* Fill cfg with the defaults above (no secret). */
void auth_config_defaults(auth_config_t *cfg);

/* Set the module up from cfg (copied).  0, or AGD_EBAD_REQUEST when the secret
 * is missing or shorter than AUTH_SECRET_MIN.  Calling it again replaces the
 * configuration (tests); not while other threads use the module. */
int auth_init(const auth_config_t *cfg);
/* Free the secret copy and the revocation set.  Safe to call twice. */
void auth_shutdown(void);

/* SPEC §2/§10: the generated secret — secret_load_or_create() of core/secret.h
 * (kept under this name for its callers).  Reads <data_dir>/jwt.secret, or creates it
 * (64 random bytes, hex: 128 chars, mode 0600, data_dir created 0700 if
 * missing, written to a temp file then linked/renamed into place so a racing
 * process never sees half a file and both end with the same secret).
 * On success *secret_out is a malloc'ed NUL-terminated string (caller frees)
 * and *len_out its length; 0.  On failure a negative AGD_E* and a message in
 * err (cap bytes, may be NULL).  A file holding fewer than AUTH_SECRET_MIN
 * bytes (after trimming trailing whitespace) or more than 4 KiB is an error. */
int auth_secret_load_or_create(const char *data_dir, char **secret_out, size_t *len_out,
                               char *err, size_t cap);

/* Issue an access token for user_id (required) / email (may be NULL: no claim)
 * with permissions_json, a JSON array string (NULL → []).  family_id: the
 * refresh family (login session) the token belongs to, put in a "fam" claim so
 * logout can end just that session (SPEC §2); NULL or "" → no "fam" claim.
 * now: epoch seconds.
 * Claims: sub, email, permissions, iat, exp = now + access_ttl, jti, iss,
 * type = token_type = "access", fam.  0; AGD_EBAD_REQUEST for a missing user_id or a
 * permissions string that is not a JSON array; AGD_ETOO_LARGE if the token
 * would not fit out->token; AGD_EINTERNAL if libjwt fails. */
int auth_issue_access(const char *user_id, const char *email, const char *permissions_json,
                      const char *family_id, double now, auth_token_t *out);
/* Same for a refresh token: exp = now + refresh_ttl, type = token_type =
 * "refresh", plus "fam": family_id (required: the single-use chain it belongs to). */
int auth_issue_refresh(const char *user_id, const char *email, const char *family_id,
                       double now, auth_token_t *out);

/* Verify token[0..len) as a token of the expected kind at time now.
 * 0 and *out filled, or AGD_EAUTH_INVALID with out->error one of: "malformed",
 * "bad signature", "algorithm not allowed", "expired", "not yet valid",
 * "missing claim sub", "missing claim exp", "missing claim iat",
 * "wrong token type", "issuer mismatch", "revoked".
 * SPEC §2: only HS256 (header checked before and after libjwt's decode);
 * at most AUTH_TOKEN_MAX bytes and exactly 3 segments; exp, sub, iat required;
 * nbf checked when present; type/token_type, when present, must name `expected`;
 * aud is ignored; iss compared only with enforce_issuer.  A token (access or
 * refresh) whose jti or fam is in the revocation set is "revoked": revoking a
 * family ends the whole login session, its access tokens included.
 * Does not allocate beyond libjwt/jansson's parse of this one token. */
int auth_verify(const char *token, size_t len, auth_kind_t expected, double now,
                auth_claims_t *out);

/* What an access token proves (auth_verify_access).  Caller-owned; strings
 * NUL-terminated ("" when the claim is absent). */
typedef struct auth_identity {
  char user_id[ID_MAX];       /* sub (longer subs are refused: they cannot be our user ids) */
  char email[AUTH_EMAIL_MAX]; /* email, may be "" */
  char jti[128];              /* jti, may be "" */
  char family[128];           /* fam: the login session, may be "" */
  double exp;                 /* epoch seconds */
  const char *error;          /* on failure: short static reason, else NULL */
} auth_identity_t;

/* THE access-token check of every entry point (REST hook, WebSocket handshake,
 * upload).  0 and *out filled, or AGD_EAUTH_INVALID with out->error: one of
 * auth_verify()'s reasons (AUTH_ACCESS expected: signature by libjwt, HS256
 * only, exp/iat/sub, type/token_type, iss when enforced, revoked jti or fam),
 * or "sub too long"; AGD_EINTERNAL before auth_init().  A token verified
 * before is answered from a bounded cache of verified tokens (exact bytes,
 * constant-time compare) — still refused once its jti or fam is revoked or its
 * exp has passed.  Any thread (the cache has a mutex). */
int auth_verify_access(const char *token, size_t len, double now, auth_identity_t *out);

/* Has a token that was valid when a long-lived stream opened (WebSocket, SSE)
 * ended at now?  "token revoked" (its jti or fam is in the revocation set),
 * "token expired" (now > exp + leeway, the same leeway verify allows), else
 * NULL.  exp ≤ 0: no expiry check.  Streams call this periodically, so a
 * revocation made anywhere (logout, refresh reuse, another instance sharing
 * the revocation backend) ends them. */
const char *auth_token_ended(const char *jti, const char *family, double exp, double now);
const char *auth_identity_ended(const auth_identity_t *id, double now);

/* Revocation set (core/revocation.h's current backend): remember key (a jti,
 * or a refresh family id) as revoked until exp + leeway (after that the token
 * is expired anyway and the entry is purged).  Keys longer than 127 bytes are
 * ignored.  Works before auth_init() too. */
void auth_revoke(const char *key, double exp);
/* 1 if key is revoked at time now, else 0.  O(1), read lock, no allocation. */
int auth_is_revoked(const char *key, double now);
/* Drop entries that expired before now; returns how many.  Also run
 * opportunistically by auth_revoke() as the set grows. */
size_t auth_revocations_purge(double now);
/* Number of entries held (tests, metrics). */
size_t auth_revocations_count(void);

/* argon2id (m = 19456 KiB, t = 2, p = 1, 16-byte random salt, 32-byte tag) of
 * pw into out as the standard encoded string.  0, or AGD_EBAD_REQUEST when pw
 * is longer than AUTH_PASSWORD_MAX, AGD_EINTERNAL if argon2 fails.  Worker thread. */
int auth_password_hash(const char *pw, char out[AUTH_HASH_MAX]);
/* 1 if pw matches encoded (argon2id_verify, constant time), else 0 (also for
 * a malformed encoding or pw over AUTH_PASSWORD_MAX).  Worker thread. */
int auth_password_verify(const char *encoded, const char *pw);
/* Spend the same time as auth_password_verify() on a real hash, for unknown
 * e-mails (SPEC §2: same answer for unknown email and wrong password). */
void auth_password_dummy_verify(const char *pw);
/* Password policy: NULL if pw is acceptable, else a static reason:
 * "password must be at least 8 characters" (UTF-8 code points) or
 * "password too long" (over AUTH_PASSWORD_MAX bytes). */
const char *auth_password_check(const char *pw);

/* Normalise an e-mail address: trim ASCII whitespace, lowercase, validate
 * (one '@'; local part 1–64 chars of RFC 5322 atext and non-leading,
 * non-trailing, non-doubled dots; domain ≤ 253 chars, ≥ 2 labels of 1–63
 * [a-z0-9-] not starting or ending with '-'; total ≤ 254).  0 and out filled,
 * or -1 (out then holds ""). */
int auth_email_normalize(const char *in, char out[AUTH_EMAIL_MAX]);

/* Constant-time equality of two byte strings (lengths may leak). 1 equal, 0 not. */
int auth_ct_equal(const void *a, size_t an, const void *b, size_t bn);

#endif
