/* core/auth.c — token claims (issue, verify, the one access-token verifier
 * and its cache), argon2id passwords, e-mail normalisation (SPEC §2).
 *
 * Config is written by auth_init() before threads start and read-only after.
 * The JWS envelope is core/jwt_hs256, the revocation set core/revocation, the
 * secret file core/secret.
 */
#include "core/auth.h"

#include <argon2.h>
#include <jansson.h>
#include <limits.h>
#include <math.h> /* isfinite (a macro: no libm needed) */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/jwt_hs256.h"
#include "core/revocation.h"
#include "core/secret.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/xalloc.h"


/* argon2id parameters (OWASP's minimum for argon2id). */
#define PW_T_COST 2
#define PW_M_COST 19456
#define PW_LANES 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32

static struct {
  unsigned char *secret;
  size_t secret_len;
  char issuer[256];
  int enforce_issuer;
  double access_ttl, refresh_ttl, leeway;
} g_auth = {.leeway = AUTH_DEFAULT_LEEWAY};

/* ---------------------------------------------------------------- config */

void auth_config_defaults(auth_config_t *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->issuer = AUTH_DEFAULT_ISSUER;
  cfg->access_ttl = AUTH_DEFAULT_ACCESS_TTL;
  cfg->refresh_ttl = AUTH_DEFAULT_REFRESH_TTL;
  cfg->leeway = AUTH_DEFAULT_LEEWAY;
}

static void toks_clear(void);

int auth_init(const auth_config_t *cfg)
{
  if (!cfg || !cfg->secret || cfg->secret_len < AUTH_SECRET_MIN || cfg->secret_len > INT_MAX)
    return ERR(AGD_EBAD_REQUEST);
  const char *iss = cfg->issuer && *cfg->issuer ? cfg->issuer : AUTH_DEFAULT_ISSUER;
  if (strlen(iss) >= sizeof g_auth.issuer) return ERR(AGD_EBAD_REQUEST);
  if (cfg->access_ttl > 1e10 || cfg->refresh_ttl > 1e10) return ERR(AGD_EBAD_REQUEST);

  if (g_auth.secret) {
    OPENSSL_cleanse(g_auth.secret, g_auth.secret_len);
    free(g_auth.secret);
  }
  g_auth.secret = xmalloc(cfg->secret_len);
  memcpy(g_auth.secret, cfg->secret, cfg->secret_len);
  g_auth.secret_len = cfg->secret_len;
  snprintf(g_auth.issuer, sizeof g_auth.issuer, "%s", iss);
  g_auth.enforce_issuer = cfg->enforce_issuer != 0;
  g_auth.access_ttl = cfg->access_ttl > 0 ? cfg->access_ttl : AUTH_DEFAULT_ACCESS_TTL;
  g_auth.refresh_ttl = cfg->refresh_ttl > 0 ? cfg->refresh_ttl : AUTH_DEFAULT_REFRESH_TTL;
  g_auth.leeway = cfg->leeway >= 0 ? cfg->leeway : AUTH_DEFAULT_LEEWAY;
  toks_clear(); /* verified under the previous configuration */
  return 0;
}

void auth_shutdown(void)
{
  if (g_auth.secret) {
    OPENSSL_cleanse(g_auth.secret, g_auth.secret_len);
    free(g_auth.secret);
  }
  g_auth.secret = NULL;
  g_auth.secret_len = 0;
  g_auth.leeway = AUTH_DEFAULT_LEEWAY;
  revocation_clear();
  toks_clear();
}

/* ---------------------------------------------------------------- issue */

static const char *kind_name(auth_kind_t k) { return k == AUTH_REFRESH ? "refresh" : "access"; }

static int issue(auth_kind_t kind, const char *user_id, const char *email, const char *perms,
                 const char *family, double now, auth_token_t *out)
{
  if (!out) return ERR(AGD_EBAD_REQUEST);
  out->token[0] = '\0';
  out->jti[0] = '\0';
  out->exp = 0;
  if (!g_auth.secret) return ERR(AGD_EINTERNAL);
  if (!user_id || !*user_id || !isfinite(now) || now < 0 || now > 1e12) return ERR(AGD_EBAD_REQUEST);
  if (kind == AUTH_REFRESH && (!family || !*family)) return ERR(AGD_EBAD_REQUEST);

  json_t *perm_arr = NULL;
  if (kind == AUTH_ACCESS) {
    if (perms) {
      perm_arr = json_loads(perms, JSON_REJECT_DUPLICATES, NULL);
      if (!perm_arr || !json_is_array(perm_arr)) {
        json_decref(perm_arr);
        return ERR(AGD_EBAD_REQUEST);
      }
    } else {
      perm_arr = json_array();
    }
  }

  double ttl = kind == AUTH_REFRESH ? g_auth.refresh_ttl : g_auth.access_ttl;
  json_int_t iat = (json_int_t)now; /* now ≥ 0: truncation is floor */
  json_int_t ttl_s = (json_int_t)ttl;
  if ((double)ttl_s < ttl) ttl_s++;
  json_int_t exp = iat + ttl_s;
  id_new(out->jti, "jti");

  json_t *c = json_object();
  json_object_set_new(c, "sub", json_string(user_id));
  if (email) json_object_set_new(c, "email", json_string(email));
  if (perm_arr) json_object_set_new(c, "permissions", perm_arr);
  json_object_set_new(c, "iat", json_integer(iat));
  json_object_set_new(c, "exp", json_integer(exp));
  json_object_set_new(c, "jti", json_string(out->jti));
  json_object_set_new(c, "iss", json_string(g_auth.issuer));
  json_object_set_new(c, "type", json_string(kind_name(kind)));
  json_object_set_new(c, "token_type", json_string(kind_name(kind)));
  int has_fam = family && *family;
  if (has_fam) json_object_set_new(c, "fam", json_string(family));
  /* json_string() answers NULL for invalid UTF-8; set_new then fails and the
   * claim is missing — refuse rather than issue a token without it. */
  size_t want = 7 + (email ? 1 : 0) + (perm_arr ? 1 : 0) + (has_fam ? 1 : 0);
  if (json_object_size(c) != want) {
    json_decref(c);
    out->jti[0] = '\0';
    return ERR(AGD_EBAD_REQUEST);
  }
  char *claims = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  if (!claims) abort();

  int rc = jwt_hs256_sign(g_auth.secret, g_auth.secret_len, claims, out->token, sizeof out->token);
  free(claims);
  if (rc != 0) {
    out->token[0] = '\0';
    out->jti[0] = '\0';
    return rc;
  }
  out->exp = (double)exp;
  return 0;
}

int auth_issue_access(const char *user_id, const char *email, const char *permissions_json,
                      const char *family_id, double now, auth_token_t *out)
{
  return issue(AUTH_ACCESS, user_id, email, permissions_json, family_id, now, out);
}

int auth_issue_refresh(const char *user_id, const char *email, const char *family_id, double now,
                       auth_token_t *out)
{
  return issue(AUTH_REFRESH, user_id, email, NULL, family_id, now, out);
}

/* ---------------------------------------------------------------- verify */

/* Copy an optional string claim. 0 ok (absent or non-string → ""), -1 too long. */
static int claim_str(json_t *payload, const char *name, char *dst, size_t cap)
{
  dst[0] = '\0';
  json_t *v = json_object_get(payload, name);
  if (!json_is_string(v)) return 0;
  size_t n = json_string_length(v);
  if (n >= cap) return -1;
  memcpy(dst, json_string_value(v), n + 1);
  return 0;
}

static int claim_num(json_t *payload, const char *name, double *out)
{
  json_t *v = json_object_get(payload, name);
  if (!json_is_number(v)) return -1;
  double d = json_number_value(v);
  if (!isfinite(d)) return -1;
  *out = d;
  return 0;
}

static int reject(auth_claims_t *out, const char *why)
{
  out->error = why;
  return AGD_EAUTH_INVALID;
}

int auth_verify(const char *token, size_t len, auth_kind_t expected, double now, auth_claims_t *out)
{
  out->user_id[0] = out->email[0] = out->jti[0] = out->family[0] = out->issuer[0] = '\0';
  out->iat = out->exp = 0;
  memcpy(out->permissions_json, "[]", 3);
  out->error = NULL;
  if (!g_auth.secret) {
    out->error = "not configured";
    return ERR(AGD_EINTERNAL);
  }

  /* Envelope: shape, HS256 only, signature (core/jwt_hs256). */
  json_t *payload = NULL;
  const char *why = NULL;
  if (jwt_hs256_verify(g_auth.secret, g_auth.secret_len, token, len, &payload, &why) != 0)
    return reject(out, why ? why : "malformed");
  int rc = 0;

  /* Required claims. */
  json_t *sub = json_object_get(payload, "sub");
  if (json_is_string(sub) && json_string_length(sub) > 0 && json_string_length(sub) < sizeof out->user_id) {
    memcpy(out->user_id, json_string_value(sub), json_string_length(sub) + 1);
  } else if (json_is_integer(sub)) {
    snprintf(out->user_id, sizeof out->user_id, "%" JSON_INTEGER_FORMAT, json_integer_value(sub));
  } else {
    rc = reject(out, "missing claim sub");
    goto done;
  }
  if (claim_num(payload, "exp", &out->exp) != 0) {
    rc = reject(out, "missing claim exp");
    goto done;
  }
  if (claim_num(payload, "iat", &out->iat) != 0) {
    rc = reject(out, "missing claim iat");
    goto done;
  }

  /* SPEC §2: type/token_type, when present, must name the expected kind. */
  static const char *const type_claims[] = {"type", "token_type"};
  for (size_t i = 0; i < 2; i++) {
    json_t *t = json_object_get(payload, type_claims[i]);
    if (t && !(json_is_string(t) && strcmp(json_string_value(t), kind_name(expected)) == 0)) {
      rc = reject(out, "wrong token type");
      goto done;
    }
  }

  if (claim_str(payload, "iss", out->issuer, sizeof out->issuer) != 0) {
    rc = reject(out, g_auth.enforce_issuer ? "issuer mismatch" : "malformed");
    goto done;
  }
  if (g_auth.enforce_issuer && strcmp(out->issuer, g_auth.issuer) != 0) {
    rc = reject(out, "issuer mismatch");
    goto done;
  }

  double lw = g_auth.leeway;
  if (out->exp < now - lw) {
    rc = reject(out, "expired");
    goto done;
  }
  if (out->iat > now + lw) {
    rc = reject(out, "not yet valid");
    goto done;
  }
  json_t *nbf = json_object_get(payload, "nbf");
  if (nbf) {
    double v;
    if (claim_num(payload, "nbf", &v) != 0) {
      rc = reject(out, "malformed");
      goto done;
    }
    if (v > now + lw) {
      rc = reject(out, "not yet valid");
      goto done;
    }
  }

  if (claim_str(payload, "email", out->email, sizeof out->email) != 0 ||
      claim_str(payload, "jti", out->jti, sizeof out->jti) != 0 ||
      claim_str(payload, "fam", out->family, sizeof out->family) != 0) {
    rc = reject(out, "malformed");
    goto done;
  }
  json_t *perms = json_object_get(payload, "permissions");
  if (json_is_array(perms)) {
    char *s = json_dumps(perms, JSON_COMPACT);
    if (!s) abort();
    size_t n = strlen(s);
    if (n >= sizeof out->permissions_json) {
      free(s);
      rc = reject(out, "malformed");
      goto done;
    }
    memcpy(out->permissions_json, s, n + 1);
    free(s);
  }

  if ((out->jti[0] && auth_is_revoked(out->jti, now)) || (out->family[0] && auth_is_revoked(out->family, now))) {
    rc = reject(out, "revoked");
    goto done;
  }

done:
  json_decref(payload);
  return rc;
}

/* ---------------------------------------------------------------- access tokens: one verifier */

/* auth_verify() costs ~13 µs (two JSON parses, libjwt's own decode and parse,
 * the HMAC): more than a whole GET /health.  auth_verify_access() keeps what
 * the callers need of the access tokens it verified, keyed by the exact token
 * text.  A hit needs the same bytes (constant-time compare), exp not yet
 * reached, and neither the jti nor the fam revoked at that moment (logout takes
 * effect at once); anything else goes through auth_verify(), which also gives
 * the precise reason.  auth_init() empties it (a new secret or issuer rule).
 * Direct-mapped: TOKS_SLOTS entries, a colliding insert replaces the old one;
 * tokens over TOK_CACHE_MAX bytes are verified every time.  A mutex, not a
 * rwlock: every hit is a few hundred ns and the callers are one loop thread. */
#define TOKS_SLOTS 8192
#define TOK_CACHE_MAX 2048

typedef struct tok_entry {
  auth_identity_t id; /* error = NULL */
  size_t len;
  char text[]; /* the token */
} tok_entry_t;

static struct {
  pthread_mutex_t lock;
  tok_entry_t **slots; /* NULL until the first insert */
  uint64_t seed;
} g_toks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t toks_slot(const char *p, size_t n)
{
  size_t tail = n < 48 ? n : 48; /* the signature: HMAC output, well spread */
  return (size_t)(hash_mix64(hash_fnv1a(p + n - tail, tail, g_toks.seed)) ^ n) & (TOKS_SLOTS - 1);
}

/* 1 and *out filled when token[0..n) is cached and still good at now. */
static int toks_get(const char *p, size_t n, double now, auth_identity_t *out)
{
  if (n > TOK_CACHE_MAX) return 0;
  int hit = 0;
  pthread_mutex_lock(&g_toks.lock);
  const tok_entry_t *e = g_toks.slots ? g_toks.slots[toks_slot(p, n)] : NULL;
  if (e && e->len == n && auth_ct_equal(e->text, n, p, n) && now <= e->id.exp) {
    *out = e->id;
    hit = 1;
  }
  pthread_mutex_unlock(&g_toks.lock);
  /* Revocation outside the lock: the set has its own, and may be shared. */
  return hit && !auth_identity_ended(out, now);
}

static void toks_put(const char *p, size_t n, const auth_identity_t *id)
{
  if (n > TOK_CACHE_MAX) return;
  tok_entry_t *e = xmalloc(sizeof *e + n);
  e->id = *id;
  e->id.error = NULL;
  e->len = n;
  memcpy(e->text, p, n);
  pthread_mutex_lock(&g_toks.lock);
  if (!g_toks.slots) {
    g_toks.slots = xcalloc(TOKS_SLOTS, sizeof *g_toks.slots);
    id_random_bytes(&g_toks.seed, sizeof g_toks.seed);
  }
  size_t i = toks_slot(p, n);
  tok_entry_t *old = g_toks.slots[i];
  g_toks.slots[i] = e;
  pthread_mutex_unlock(&g_toks.lock);
  free(old);
}

static void toks_clear(void)
{
  pthread_mutex_lock(&g_toks.lock);
  for (size_t i = 0; g_toks.slots && i < TOKS_SLOTS; i++) free(g_toks.slots[i]);
  free(g_toks.slots);
  g_toks.slots = NULL;
  pthread_mutex_unlock(&g_toks.lock);
}

static void identity_reset(auth_identity_t *out)
{
  out->user_id[0] = out->email[0] = out->jti[0] = out->family[0] = '\0';
  out->exp = 0;
  out->error = NULL;
}

int auth_verify_access(const char *token, size_t len, double now, auth_identity_t *out)
{
  identity_reset(out);
  if (!token || len == 0 || len > AUTH_TOKEN_MAX) {
    out->error = "malformed";
    return AGD_EAUTH_INVALID;
  }
  if (toks_get(token, len, now, out)) return 0;
  identity_reset(out);
  auth_claims_t *c = xmalloc(sizeof *c); /* ~7 KiB: kept off the loop's stack */
  int rc = auth_verify(token, len, AUTH_ACCESS, now, c);
  if (rc == 0 && strlen(c->user_id) >= sizeof out->user_id) {
    c->error = "sub too long";
    rc = AGD_EAUTH_INVALID;
  }
  if (rc != 0) {
    out->error = c->error ? c->error : "malformed";
    free(c);
    return rc;
  }
  memcpy(out->user_id, c->user_id, strlen(c->user_id) + 1);
  memcpy(out->email, c->email, strlen(c->email) + 1); /* both AUTH_EMAIL_MAX */
  memcpy(out->jti, c->jti, strlen(c->jti) + 1);       /* both 128 */
  memcpy(out->family, c->family, strlen(c->family) + 1);
  out->exp = c->exp;
  free(c);
  toks_put(token, len, out);
  return 0;
}

const char *auth_token_ended(const char *jti, const char *family, double exp, double now)
{
  if ((jti && jti[0] && auth_is_revoked(jti, now)) || (family && family[0] && auth_is_revoked(family, now)))
    return "token revoked";
  if (exp > 0 && now > exp + g_auth.leeway) return "token expired";
  return NULL;
}

const char *auth_identity_ended(const auth_identity_t *id, double now)
{
  return auth_token_ended(id->jti, id->family, id->exp, now);
}

/* ---------------------------------------------------------------- revocation set */

/* The set itself is core/revocation; these apply auth's leeway and keep the
 * callers' vocabulary (a jti or a family id, and the token's exp). */
void auth_revoke(const char *key, double exp)
{
  if (!key || !*key || !isfinite(exp)) return;
  revocation_add(key, exp + (g_auth.leeway >= 0 ? g_auth.leeway : AUTH_DEFAULT_LEEWAY));
}

int auth_is_revoked(const char *key, double now) { return revocation_contains(key, now); }

size_t auth_revocations_purge(double now) { return revocation_purge(now); }

size_t auth_revocations_count(void) { return revocation_count(); }

/* ---------------------------------------------------------------- passwords */

/* A real argon2id hash with our parameters, of a random password nobody knows:
 * verifying against it costs what a real verify costs. */
static const char DUMMY_HASH[] =
    "$argon2id$v=19$m=19456,t=2,p=1$XuaNwsyU5U2jHHW6rGMm2g$EIeYThymCwxZmd/Ws/ZUL0xFFFeQ8iaaAVK+TuvDJ2U";

int auth_password_hash(const char *pw, char out[AUTH_HASH_MAX])
{
  out[0] = '\0';
  if (!pw) return ERR(AGD_EBAD_REQUEST);
  size_t n = strlen(pw);
  if (n > AUTH_PASSWORD_MAX) return ERR(AGD_EBAD_REQUEST);
  unsigned char salt[PW_SALT_LEN];
  id_random_bytes(salt, sizeof salt);
  int r = argon2id_hash_encoded(PW_T_COST, PW_M_COST, PW_LANES, pw, n, salt, sizeof salt, PW_HASH_LEN,
                                out, AUTH_HASH_MAX);
  if (r != ARGON2_OK) {
    out[0] = '\0';
    return ERR(AGD_EINTERNAL);
  }
  return 0;
}

int auth_password_verify(const char *encoded, const char *pw)
{
  if (!pw || strlen(pw) > AUTH_PASSWORD_MAX || !encoded || strnlen(encoded, AUTH_HASH_MAX) >= AUTH_HASH_MAX ||
      strncmp(encoded, "$argon2id$", 10) != 0) {
    auth_password_dummy_verify("");
    return 0;
  }
  return argon2id_verify(encoded, pw, strlen(pw)) == ARGON2_OK;
}

void auth_password_dummy_verify(const char *pw)
{
  if (!pw) pw = "";
  size_t n = strnlen(pw, AUTH_PASSWORD_MAX + 1);
  (void)argon2id_verify(DUMMY_HASH, pw, n);
}

const char *auth_password_check(const char *pw)
{
  if (!pw) return "password must be at least 8 characters";
  size_t bytes = strnlen(pw, AUTH_PASSWORD_MAX + 1);
  if (bytes > AUTH_PASSWORD_MAX) return "password too long";
  size_t cps = 0;
  for (size_t i = 0; i < bytes; i++)
    if (((unsigned char)pw[i] & 0xC0) != 0x80) cps++; /* not a UTF-8 continuation byte */
  if (cps < 8) return "password must be at least 8 characters";
  return NULL;
}

/* ---------------------------------------------------------------- e-mail */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* RFC 5322 atext. */
static int is_atext(unsigned char c)
{
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int domain_ok(const char *d, size_t n)
{
  if (n == 0 || n > 253) return 0;
  size_t labels = 0, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && d[i] != '.') {
      char c = d[i];
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return 0;
      continue;
    }
    size_t ln = i - start;
    if (ln == 0 || ln > 63 || d[start] == '-' || d[i - 1] == '-') return 0;
    labels++;
    start = i + 1;
  }
  return labels >= 2;
}

int auth_email_normalize(const char *in, char out[AUTH_EMAIL_MAX])
{
  out[0] = '\0';
  if (!in) return -1;
  size_t n = strnlen(in, 4096);
  size_t b = 0, e = n;
  while (b < e && is_ws(in[b])) b++;
  while (e > b && is_ws(in[e - 1])) e--;
  size_t len = e - b;
  if (len == 0 || len > 254) return -1;

  char tmp[AUTH_EMAIL_MAX];
  size_t at = SIZE_MAX;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[b + i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    if (c == '@') {
      if (at != SIZE_MAX) return -1;
      at = i;
    }
    tmp[i] = (char)c;
  }
  tmp[len] = '\0';
  if (at == SIZE_MAX || at == 0 || at > 64) return -1;

  /* local part: dot-atom */
  for (size_t i = 0; i < at; i++) {
    unsigned char c = (unsigned char)tmp[i];
    if (c == '.') {
      if (i == 0 || i == at - 1 || tmp[i - 1] == '.') return -1;
    } else if (!is_atext(c)) {
      return -1;
    }
  }
  if (!domain_ok(tmp + at + 1, len - at - 1)) return -1;
  memcpy(out, tmp, len + 1);
  return 0;
}

int auth_ct_equal(const void *a, size_t an, const void *b, size_t bn)
{
  if (an != bn) return 0;
  if (an == 0) return 1;
  return CRYPTO_memcmp(a, b, an) == 0;
}

int auth_secret_load_or_create(const char *data_dir, char **secret_out, size_t *len_out, char *err, size_t cap)
{
  return secret_load_or_create(data_dir, secret_out, len_out, err, cap);
}
