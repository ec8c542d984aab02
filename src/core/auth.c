/* core/auth.c — JWT issue/verify (libjwt + jansson), revocation set, argon2id
 * passwords, e-mail normalisation (SPEC §2).
 *
 * Config is written by auth_init() before threads start and read-only after.
 * The revocation set is a chained hash under a rwlock: lookups (every request,
 * on the loop) take the read lock and never allocate.
 */
#include "core/auth.h"

#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <math.h> /* isfinite (a macro: no libm needed) */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/b64url.h"
#include "util/err.h"
#include "util/hash.h"

#define SECRET_FILE_MAX 4096
#define REV_KEY_MAX 128 /* bytes, NUL included */

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

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) abort(); /* STYLE §4: out of memory aborts */
  return p;
}

static void *xcalloc(size_t n, size_t sz)
{
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) abort();
  return p;
}

/* ---------------------------------------------------------------- config */

void auth_config_defaults(auth_config_t *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->issuer = AUTH_DEFAULT_ISSUER;
  cfg->access_ttl = AUTH_DEFAULT_ACCESS_TTL;
  cfg->refresh_ttl = AUTH_DEFAULT_REFRESH_TTL;
  cfg->leeway = AUTH_DEFAULT_LEEWAY;
}

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
  return 0;
}

static void rev_clear(void);

void auth_shutdown(void)
{
  if (g_auth.secret) {
    OPENSSL_cleanse(g_auth.secret, g_auth.secret_len);
    free(g_auth.secret);
  }
  g_auth.secret = NULL;
  g_auth.secret_len = 0;
  g_auth.leeway = AUTH_DEFAULT_LEEWAY;
  rev_clear();
}

/* ---------------------------------------------------------------- secret file */

static int fail_msg(char *err, size_t cap, int code, const char *fmt, const char *a, const char *b)
{
  if (err && cap) snprintf(err, cap, fmt, a, b);
  return code;
}

/* Create dir and its parents (0700 for the ones we make). */
static int mkdir_p(const char *dir)
{
  char tmp[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] != '/' && tmp[i] != '\0') continue;
    char c = tmp[i];
    tmp[i] = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    tmp[i] = c;
  }
  struct stat st;
  return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* 1 read, 0 absent, -1 error (message written). */
static int secret_read(const char *path, char **out, size_t *len_out, char *err, size_t cap)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    fail_msg(err, cap, 0, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  char *buf = xmalloc(SECRET_FILE_MAX + 2);
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      fail_msg(err, cap, 0, "cannot read %s: %s", path, strerror(errno));
      close(fd);
      free(buf);
      return -1;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n > SECRET_FILE_MAX) break;
  }
  close(fd);
  const char *why = NULL;
  if (n > SECRET_FILE_MAX) why = "is larger than 4 KiB";
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    n--;
  if (!why && memchr(buf, '\0', n)) why = "contains a NUL byte";
  if (!why && n < AUTH_SECRET_MIN) why = "holds fewer than 32 bytes";
  if (why) {
    fail_msg(err, cap, 0, "%s %s", path, why);
    OPENSSL_cleanse(buf, SECRET_FILE_MAX + 2);
    free(buf);
    return -1;
  }
  buf[n] = '\0';
  *out = buf;
  *len_out = n;
  return 1;
}

int auth_secret_load_or_create(const char *data_dir, char **secret_out, size_t *len_out,
                               char *err, size_t cap)
{
  if (!data_dir || !*data_dir || !secret_out || !len_out)
    return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "no data directory", "");
  char path[PATH_MAX], tmp[PATH_MAX];
  int pn = snprintf(path, sizeof path, "%s/jwt.secret", data_dir);
  if (pn < 0 || (size_t)pn >= sizeof path)
    return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "data directory path too long", "");

  for (int attempt = 0; attempt < 3; attempt++) {
    int r = secret_read(path, secret_out, len_out, err, cap);
    if (r == 1) return 0;
    if (r < 0) return ERR(AGD_EINTERNAL);

    if (mkdir_p(data_dir) != 0)
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create data directory %s: %s", data_dir,
                      strerror(errno));
    unsigned char raw[64];
    id_random_bytes(raw, sizeof raw);
    char hex[2 * sizeof raw + 2];
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
      hex[2 * i] = digits[raw[i] >> 4];
      hex[2 * i + 1] = digits[raw[i] & 15];
    }
    OPENSSL_cleanse(raw, sizeof raw);
    hex[2 * sizeof raw] = '\n';
    hex[2 * sizeof raw + 1] = '\0';

    unsigned char rnd[4];
    id_random_bytes(rnd, sizeof rnd);
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%02x%02x%02x%02x", path, (long)getpid(), rnd[0],
                      rnd[1], rnd[2], rnd[3]);
    if (tn < 0 || (size_t)tn >= sizeof tmp)
      return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "data directory path too long", "");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create %s: %s", tmp, strerror(errno));
    size_t want = 2 * sizeof raw + 1, done = 0;
    int werr = 0;
    while (done < want) {
      ssize_t w = write(fd, hex + done, want - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        werr = errno ? errno : EIO;
        break;
      }
      done += (size_t)w;
    }
    if (!werr && fsync(fd) != 0) werr = errno;
    if (close(fd) != 0 && !werr) werr = errno;
    if (werr) {
      unlink(tmp);
      OPENSSL_cleanse(hex, sizeof hex);
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot write %s: %s", tmp, strerror(werr));
    }
    /* link() never replaces: when another process won the race, both end up
     * with its secret.  Filesystems without hard links fall back to rename(). */
    int placed = 0;
    if (link(tmp, path) == 0) {
      placed = 1;
      unlink(tmp);
    } else if (errno == EEXIST) {
      unlink(tmp);
    } else if (rename(tmp, path) == 0) {
      placed = 1;
    } else {
      int e = errno;
      unlink(tmp);
      OPENSSL_cleanse(hex, sizeof hex);
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create %s: %s", path, strerror(e));
    }
    if (placed) {
      int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
      }
      size_t n = 2 * sizeof raw;
      char *s = xmalloc(n + 1);
      memcpy(s, hex, n);
      s[n] = '\0';
      OPENSSL_cleanse(hex, sizeof hex);
      *secret_out = s;
      *len_out = n;
      return 0;
    }
    OPENSSL_cleanse(hex, sizeof hex);
    /* lost the race: read the winner's file on the next round */
  }
  return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot settle %s%s", path, "");
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

  int rc = 0;
  jwt_t *jwt = NULL;
  char *tok = NULL;
  if (jwt_new(&jwt) != 0 || jwt_set_alg(jwt, JWT_ALG_HS256, g_auth.secret, (int)g_auth.secret_len) != 0 ||
      jwt_add_grants_json(jwt, claims) != 0 || !(tok = jwt_encode_str(jwt))) {
    rc = ERR(AGD_EINTERNAL);
  } else if (strlen(tok) >= sizeof out->token) {
    rc = ERR(AGD_ETOO_LARGE);
  } else {
    memcpy(out->token, tok, strlen(tok) + 1);
    out->exp = (double)exp;
  }
  free(tok);
  jwt_free(jwt);
  free(claims);
  if (rc != 0) out->jti[0] = '\0';
  return rc;
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

/* Decode one segment and parse it as a JSON object (duplicate keys refused). */
static json_t *segment_json(const char *p, size_t n)
{
  unsigned char raw[AUTH_TOKEN_MAX];
  size_t rn = 0;
  if (b64url_decode(p, n, raw, sizeof raw, &rn) != 0) return NULL;
  json_t *j = json_loadb((const char *)raw, rn, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

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

  /* Shape first: bounded length, exactly three segments, no NUL. */
  if (!token || len == 0 || len > AUTH_TOKEN_MAX || memchr(token, '\0', len))
    return reject(out, "malformed");
  const char *d1 = memchr(token, '.', len);
  if (!d1) return reject(out, "malformed");
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return reject(out, "malformed");
  size_t hn = (size_t)(d1 - token), pn = (size_t)(d2 - d1 - 1), sn = len - (size_t)(d2 + 1 - token);

  /* SPEC §2: HS256 only, judged on the header we parse ourselves — libjwt's
   * decode picks its algorithm from the header. */
  json_t *hdr = segment_json(token, hn);
  if (!hdr) return reject(out, "malformed");
  json_t *alg = json_object_get(hdr, "alg");
  int alg_ok = json_is_string(alg) && json_string_length(alg) == 5 &&
               strcmp(json_string_value(alg), "HS256") == 0;
  int has_crit = json_object_get(hdr, "crit") != NULL;
  /* libjwt 1.10 refuses any typ but "JWT"; say so rather than "bad signature". */
  json_t *typ = json_object_get(hdr, "typ");
  int typ_ok = !typ || (json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0);
  json_decref(hdr);
  if (!alg_ok) return reject(out, "algorithm not allowed");
  if (has_crit || !typ_ok) return reject(out, "malformed"); /* RFC 7515 §4.1.11: no extension understood */
  if (sn == 0) return reject(out, "bad signature");

  json_t *payload = segment_json(d1 + 1, pn);
  if (!payload) return reject(out, "malformed");

  /* Signature, by libjwt, then its own idea of the algorithm. */
  char buf[AUTH_TOKEN_MAX + 1];
  memcpy(buf, token, len);
  buf[len] = '\0';
  jwt_t *jwt = NULL;
  int drc = jwt_decode(&jwt, buf, g_auth.secret, (int)g_auth.secret_len);
  jwt_alg_t jalg = drc == 0 && jwt ? jwt_get_alg(jwt) : JWT_ALG_INVAL;
  jwt_free(jwt);
  int rc = 0;
  if (drc != 0) {
    rc = reject(out, "bad signature");
    goto done;
  }
  if (jalg != JWT_ALG_HS256) {
    rc = reject(out, "algorithm not allowed");
    goto done;
  }

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

/* ---------------------------------------------------------------- revocation set */

typedef struct rev_entry {
  struct rev_entry *next;
  uint64_t h;
  double until; /* epoch seconds after which the entry is dropped */
  char key[];
} rev_entry_t;

static struct {
  pthread_rwlock_t lock;
  rev_entry_t **tab; /* NULL until the first revoke */
  size_t cap;        /* power of two */
  size_t count;
  size_t purge_at;   /* opportunistic purge when count reaches this */
  uint64_t seed;
} g_rev = {.lock = PTHREAD_RWLOCK_INITIALIZER};

/* FNV-1a, seeded, then a 64-bit finaliser. */
static uint64_t rev_hash(const char *s, uint64_t seed)
{
  return hash_mix64(hash_fnv1a_str(s, seed));
}

static double wall_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Caller holds the write lock. */
static size_t rev_purge_locked(double now)
{
  size_t dropped = 0;
  for (size_t i = 0; g_rev.tab && i < g_rev.cap; i++) {
    rev_entry_t **pp = &g_rev.tab[i];
    while (*pp) {
      rev_entry_t *e = *pp;
      if (e->until < now) {
        *pp = e->next;
        free(e);
        dropped++;
      } else {
        pp = &e->next;
      }
    }
  }
  g_rev.count -= dropped;
  g_rev.purge_at = g_rev.count * 2 > 1024 ? g_rev.count * 2 : 1024;
  return dropped;
}

static void rev_grow_locked(void)
{
  size_t ncap = g_rev.cap * 2;
  rev_entry_t **nt = xcalloc(ncap, sizeof *nt);
  for (size_t i = 0; i < g_rev.cap; i++) {
    rev_entry_t *e = g_rev.tab[i];
    while (e) {
      rev_entry_t *next = e->next;
      size_t b = e->h & (ncap - 1);
      e->next = nt[b];
      nt[b] = e;
      e = next;
    }
  }
  free(g_rev.tab);
  g_rev.tab = nt;
  g_rev.cap = ncap;
}

void auth_revoke(const char *key, double exp)
{
  if (!key || !*key || !isfinite(exp)) return;
  size_t kn = strlen(key);
  if (kn >= REV_KEY_MAX) return;
  double until = exp + (g_auth.leeway >= 0 ? g_auth.leeway : AUTH_DEFAULT_LEEWAY);

  pthread_rwlock_wrlock(&g_rev.lock);
  if (!g_rev.tab) {
    id_random_bytes(&g_rev.seed, sizeof g_rev.seed);
    g_rev.cap = 256;
    g_rev.tab = xcalloc(g_rev.cap, sizeof *g_rev.tab);
    g_rev.count = 0;
    g_rev.purge_at = 1024;
  }
  uint64_t h = rev_hash(key, g_rev.seed);
  rev_entry_t *e = g_rev.tab[h & (g_rev.cap - 1)];
  for (; e; e = e->next)
    if (e->h == h && strcmp(e->key, key) == 0) break;
  if (e) {
    if (until > e->until) e->until = until;
  } else {
    if (g_rev.count >= g_rev.purge_at) rev_purge_locked(wall_now());
    if (g_rev.count >= g_rev.cap) rev_grow_locked();
    e = xmalloc(sizeof *e + kn + 1);
    e->h = h;
    e->until = until;
    memcpy(e->key, key, kn + 1);
    size_t b = h & (g_rev.cap - 1);
    e->next = g_rev.tab[b];
    g_rev.tab[b] = e;
    g_rev.count++;
  }
  pthread_rwlock_unlock(&g_rev.lock);
}

int auth_is_revoked(const char *key, double now)
{
  if (!key || !*key) return 0;
  int found = 0;
  pthread_rwlock_rdlock(&g_rev.lock);
  if (g_rev.tab) {
    uint64_t h = rev_hash(key, g_rev.seed);
    for (rev_entry_t *e = g_rev.tab[h & (g_rev.cap - 1)]; e; e = e->next) {
      if (e->h == h && strcmp(e->key, key) == 0) {
        found = e->until >= now;
        break;
      }
    }
  }
  pthread_rwlock_unlock(&g_rev.lock);
  return found;
}

size_t auth_revocations_purge(double now)
{
  pthread_rwlock_wrlock(&g_rev.lock);
  size_t n = rev_purge_locked(now);
  pthread_rwlock_unlock(&g_rev.lock);
  return n;
}

size_t auth_revocations_count(void)
{
  pthread_rwlock_rdlock(&g_rev.lock);
  size_t n = g_rev.count;
  pthread_rwlock_unlock(&g_rev.lock);
  return n;
}

static void rev_clear(void)
{
  pthread_rwlock_wrlock(&g_rev.lock);
  for (size_t i = 0; g_rev.tab && i < g_rev.cap; i++) {
    rev_entry_t *e = g_rev.tab[i];
    while (e) {
      rev_entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(g_rev.tab);
  g_rev.tab = NULL;
  g_rev.cap = g_rev.count = 0;
  pthread_rwlock_unlock(&g_rev.lock);
}

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
