/* api/auth_api.c — SPEC §2 auth: register, login, refresh, logout, me, verify,
 * dev login, auth config (under /auth, /api/auth and /api/v1/auth), the
 * router's authentication hook (Authorization: Bearer only), and
 * `agentd user add` (SPEC §10).
 *
 * Loop thread, except the *_work functions (libuv worker pool via api/job.h:
 * every store call and every argon2 hash/verify runs there) and
 * api_cmd_user_add (main thread, no loop).  Owns one bounded loop-thread
 * table: users (known to exist + the cached /me answer, short TTL); verified
 * access tokens are cached by core/auth (auth_verify_access).  Passwords are
 * copied into a job, hashed or verified on a worker and wiped there.
 *
 * Logout (SPEC §2 "the access token and its refresh family stop working at
 * once"): every pair we issue (register, login, refresh, dev login) shares one
 * refresh family, named in both tokens' "fam" claim.  Logout revokes the access
 * token's jti (memory + store; open sockets of it close 1008) and its family:
 * the family's refresh tokens in the store, and the family id in the
 * revocation set (memory + the store's revoked list, so it survives a
 * restart), which auth_verify() applies to access tokens of the family too.
 * The user's other sessions keep working.  A token without "fam" (external
 * issuers) revokes every refresh token of the user instead.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/ws_api.h"
#include "api/auth_api.h"
#include "api/limits.h"
#include "api/job.h"
#include "api/router.h"
#include "api/sse_auth.h"
#include "core/auth.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define DEV_EMAIL "dev@agentd.local"
#define DEV_NAME "Dev User"

static const char *const AUTH_PREFIXES[] = {"/auth", "/api/auth", "/api/v1/auth", NULL};

/* ---- users (loop thread) ---------------------------------------------------
 * One table keyed by user id serves two purposes:
 *  - users known to exist: a valid token for an unknown sub creates the row on
 *    first use (SPEC §2, REST hook and WebSocket handshake); remembering the ids
 *    seen keeps the common path free of store calls;
 *  - the answer of GET /api/me: the row rendered by user_json() (so the bytes
 *    are exactly what a fresh read would give), filled on the first read and by
 *    register, login, refresh, dev login, first use and PATCH /api/users/me.  It
 *    is served for USER_TTL_MS after it was read, so changes made by other
 *    instances sharing the database show up; after that a read on a worker
 *    refreshes it.  A read never replaces a row with a newer updated_at (a GET
 *    that raced a PATCH).
 * Open addressing (seeded hash) at load ≤ 1/2, no deletion; everything is
 * dropped when USERS_MAX ids are held. */
#define USERS_MAX 65536
#define USERS_SLOTS (2 * USERS_MAX)
#define USER_TTL_MS 30000

typedef struct user_entry {
  char *body;         /* malloc'd /me JSON; NULL: only known to exist */
  size_t body_n;
  uint64_t loaded_ms; /* uv_now() when body was read */
  double updated_at;  /* of the row in body */
  char id[];
} user_entry_t;

static user_entry_t **users;
static size_t users_n;
static uint64_t users_seed;

static uint64_t hash_bytes(const char *p, size_t n, uint64_t seed) {
  uint64_t h = hash_fnv1a(p, n, seed);
  return h ^ (h >> 29);
}

static size_t users_slot(const char *id) {
  size_t i = (size_t)hash_bytes(id, strlen(id), users_seed) & (USERS_SLOTS - 1);
  while (users[i] && strcmp(users[i]->id, id) != 0) i = (i + 1) & (USERS_SLOTS - 1);
  return i;
}

static user_entry_t *users_get(const char *id) { return users ? users[users_slot(id)] : NULL; }

static void users_clear(void) {
  if (!users) return;
  for (size_t i = 0; i < USERS_SLOTS; i++) {
    if (users[i]) free(users[i]->body);
    free(users[i]);
    users[i] = NULL;
  }
  users_n = 0;
}

/* The entry of id, added (known to exist, no body) when absent. */
static user_entry_t *users_add(const char *id) {
  if (!users) {
    users = calloc(USERS_SLOTS, sizeof(*users));
    if (!users) abort();
    id_random_bytes(&users_seed, sizeof users_seed);
  }
  size_t i = users_slot(id);
  if (users[i]) return users[i];
  if (users_n >= USERS_MAX) {
    users_clear();
    i = users_slot(id);
  }
  size_t n = strlen(id);
  user_entry_t *e = calloc(1, sizeof(*e) + n + 1);
  if (!e) abort();
  memcpy(e->id, id, n + 1);
  users[i] = e;
  users_n++;
  return e;
}

static json_t *user_json(const store_user_t *u);

/* Remember row u (just read or written by the store) as the /me answer. */
static void users_put(const store_user_t *u) {
  if (!u->id[0]) return;
  user_entry_t *e = users_add(u->id);
  if (e->body && e->updated_at > u->updated_at) return; /* a newer row is already here */
  json_t *o = user_json(u);
  char *body = jsonx_dumps(o);
  json_decref(o);
  if (!body) abort();
  free(e->body);
  e->body = body;
  e->body_n = strlen(body);
  e->loaded_ms = uv_now(g_app->loop);
  e->updated_at = u->updated_at;
}

/* The cached /me answer of id when fresh, else NULL. */
static const user_entry_t *users_fresh(const char *id) {
  const user_entry_t *e = users_get(id);
  if (!e || !e->body || uv_now(g_app->loop) - e->loaded_ms >= USER_TTL_MS) return NULL;
  return e;
}

/* What the hook leaves in ctx->auth_extra (request pool). */
typedef struct auth_extra {
  const char *family; /* the access token's fam, "" when none */
  int ensured;        /* the WebSocket handshake's user row exists (api_auth_ensure_user) */
} auth_extra_t;

static auth_extra_t *extra_of(http_req_t *r, route_ctx_t *ctx) {
  if (!ctx->auth_extra) {
    auth_extra_t *x = pool_alloc(http_req_pool(r), sizeof(*x));
    x->family = "";
    x->ensured = 0;
    ctx->auth_extra = x;
  }
  return ctx->auth_extra;
}

const char *api_auth_token_family(const route_ctx_t *ctx) {
  const auth_extra_t *x = ctx ? ctx->auth_extra : NULL;
  return x && x->family ? x->family : "";
}

/* ---- shared helpers ---------------------------------------------------------- */

int api_bearer_token(http_req_t *r, slice_t *tok) {
  slice_t v;
  if (!http_req_header(r, "authorization", &v)) return 0;
  size_t i = 0, e = v.n;
  while (i < e && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  if (e - i < 6 || strncasecmp(v.p + i, "Bearer", 6) != 0) return 0;
  i += 6;
  if (i < e && v.p[i] != ' ' && v.p[i] != '\t') return 0; /* "Bearerx" */
  while (i < e && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  while (e > i && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) e--;
  tok->p = v.p + i;
  tok->n = e - i;
  return 1;
}

/* A string member of a request body: 0 and *out (NULL when absent/null and
 * optional; borrowed from body), or -1 after answering 422 with the field. */
static int body_str(http_req_t *r, json_t *body, const char *field, int required, const char **out) {
  int rc = jsonx_get_cstr(body, field, out); /* a NUL character is refused, never cut short */
  if (rc) {
    router_respond_validation(r, field, jsonx_cstr_why(rc));
    return -1;
  }
  if (!*out && required) {
    router_respond_validation(r, field, "field required");
    return -1;
  }
  return 0;
}

/* A display name: NULL when it fits the store's user row (STORE_NAME_MAX - 1 bytes of
 * UTF-8), else the reason.  SPEC conventions want no cap below the body limit; the API's
 * own 200-character cap is gone (issue 13, defect 13), but the row keeps the name in a
 * fixed array until the store holds it on the heap (docs/protocol.md). */
static const char *name_check(const char *name) {
  if (strlen(name) >= STORE_NAME_MAX) return "must be at most 255 bytes of UTF-8 (the server's user record)";
  return NULL;
}

static json_t *name_json(const store_user_t *u) { return u->name[0] ? json_string(u->name) : json_null(); }

/* SPEC §2 me: {"id","email","name","created_at","permissions":[…],"plan_tier"}. */
static json_t *user_json(const store_user_t *u) {
  json_t *perms = json_loads(u->permissions_json, 0, NULL);
  if (!json_is_array(perms)) {
    json_decref(perms);
    perms = json_array();
  }
  return json_pack("{s:s,s:s,s:o,s:f,s:f,s:o,s:s}", "id", u->id, "email", u->email, "name", name_json(u),
                   "created_at", u->created_at, "updated_at", u->updated_at, "permissions", perms, "plan_tier",
                   u->plan_tier[0] ? u->plan_tier : "free");
}

/* What every auth job may carry.  Copies only (api/job.h). */
typedef struct auth_job {
  char email[AUTH_EMAIL_MAX];          /* normalised; "" = not a valid address (login) */
  char password[AUTH_PASSWORD_MAX + 1]; /* wiped on the worker after use */
  char name[STORE_NAME_MAX];
  int has_name;
  char sub[ID_MAX];   /* the caller / token subject */
  char jti[128];      /* token id (refresh, logout) */
  double exp;         /* its expiry */
  char family[128];   /* logout: the access token's refresh family, "" = none */
  double family_exp;  /* logout: how long the family must stay revoked */
  char login_key[RATELIMIT_KEY_MAX];
  int reuse;          /* refresh: a spent token came back, its family is revoked */
  store_user_t user;  /* result */
  auth_token_t access, refresh; /* result */
} auth_job_t;

static void wipe_password(auth_job_t *j) { explicit_bzero(j->password, sizeof j->password); }

/* Worker: issue an access + refresh pair for j->user in `family` (NULL: a new
 * one; both tokens name it in "fam") and record the refresh token in the store. */
static int issue_pair(auth_job_t *j, const char *family) {
  char fam[ID_MAX];
  if (family && family[0]) snprintf(fam, sizeof fam, "%s", family);
  else id_new(fam, "fam");
  double now = time_now();
  const char *email = j->user.email[0] ? j->user.email : NULL;
  int rc = auth_issue_access(j->user.id, email, j->user.permissions_json[0] ? j->user.permissions_json : NULL, fam,
                             now, &j->access);
  if (rc != 0) return rc;
  rc = auth_issue_refresh(j->user.id, email, fam, now, &j->refresh);
  if (rc != 0) return rc;
  return store_refresh_add(g_app->store, j->refresh.jti, fam, j->user.id, j->refresh.exp);
}

/* SPEC §2 token answer. */
static void respond_tokens(http_req_t *r, int status, const auth_job_t *j) {
  users_put(&j->user);
  json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:f,s:{s:s,s:s,s:o}}", "access_token", j->access.token, "refresh_token",
                        j->refresh.token, "token_type", "Bearer", "expires_in", g_app->cfg->access_ttl, "expires_at",
                        j->access.exp, "user", "id", j->user.id, "email", j->user.email, "name",
                        name_json(&j->user));
  http_resp_header(r, "Cache-Control", "no-store");
  http_respond_json(r, status, o);
}

/* ---- the router's authentication hook ------------------------------------- */

typedef struct ensure_job {
  char user_id[ID_MAX];
  char email[AUTH_EMAIL_MAX]; /* "" = none usable */
  store_user_t user;          /* result */
} ensure_job_t;

static int ensure_work(void *p) {
  ensure_job_t *j = p;
  return store_user_ensure(g_app->store, j->user_id, j->email[0] ? j->email : NULL, &j->user);
}

/* The user row exists now: the request goes on (router_continue runs the rate
 * limit and the route's handler — for the WebSocket handshake, h_ws again). */
static void ensure_done(http_req_t *r, void *p, int rc) {
  ensure_job_t *j = p;
  if (rc == 0) {
    users_put(&j->user);
    if (!http_req_alive(r)) { /* the client left: just free the request */
      http_respond_error(r, AGD_ECANCELLED, "client went away", NULL);
      return;
    }
    route_ctx_t *ctx = http_req_data(r);
    extra_of(r, ctx)->ensured = 1;
    router_continue(r);
    return;
  }
  if (rc == AGD_EBAD_REQUEST) http_respond_error(r, AGD_EAUTH_INVALID, "invalid token: unusable sub", NULL);
  else http_respond_error(r, rc, NULL, NULL);
}

/* Create the row of user_id on a worker unless it is known to exist. */
static int ensure_user(http_req_t *r, const char *user_id, const char *email) {
  if (users_get(user_id)) return 0;
  ensure_job_t *j = job_new(sizeof *j);
  snprintf(j->user_id, sizeof j->user_id, "%.*s", ID_MAX - 1, user_id);
  if (email && email[0] && auth_email_normalize(email, j->email) != 0) j->email[0] = 0;
  job_run(r, j, ensure_work, ensure_done);
  return ROUTER_AUTH_PENDING;
}

int api_auth_ensure_user(http_req_t *r, route_ctx_t *ctx, const char *user_id, const char *email) {
  const auth_extra_t *x = ctx->auth_extra;
  if (x && x->ensured) return 0;
  return ensure_user(r, user_id, email);
}

/* SPEC conventions: REST credentials come from Authorization: Bearer only
 * (never ?token=, never X-User-ID).  A valid token of an unknown sub creates
 * the user first (on a worker), then the request continues. */
static int auth_hook(http_req_t *r, route_ctx_t *ctx, const char **why) {
  slice_t tok;
  if (!api_bearer_token(r, &tok)) return AGD_EAUTH_REQUIRED;
  pool_t *pool = http_req_pool(r);
  auth_identity_t id; /* core/auth: the one verifier (signature, claims, cache, revocation) */
  if (auth_verify_access(tok.p, tok.n, time_now(), &id) != 0) {
    *why = pool_sprintf(pool, "invalid token: %s", id.error ? id.error : "malformed");
    return AGD_EAUTH_INVALID;
  }
  ctx->user_id = pool_strdup(pool, id.user_id);
  ctx->email = pool_strdup(pool, id.email);
  ctx->token_jti = pool_strdup(pool, id.jti);
  ctx->token_exp = id.exp;
  if (id.family[0]) extra_of(r, ctx)->family = pool_strdup(pool, id.family);
  return ensure_user(r, ctx->user_id, ctx->email);
}

/* ---- POST /auth/register ------------------------------------------------- */

static int register_work(void *p) {
  auth_job_t *j = p;
  store_t *s = g_app->store;
  store_user_t *u = &j->user;
  int rc = store_user_by_email(s, j->email, u);
  if (rc == 0) rc = AGD_ECONFLICT;
  else if (rc == AGD_ENOT_FOUND) rc = 0;
  if (rc == 0) {
    memset(u, 0, sizeof(*u));
    rc = auth_password_hash(j->password, u->password_hash);
  }
  wipe_password(j);
  if (rc != 0) return rc;
  id_new(u->id, "usr");
  snprintf(u->email, sizeof u->email, "%s", j->email);
  snprintf(u->name, sizeof u->name, "%s", j->name);
  rc = store_user_create(s, u);
  if (rc == 0) rc = store_user_get(s, u->id, u); /* defaults: plan, permissions, times */
  if (rc != 0) return rc;
  return issue_pair(j, NULL);
}

static void register_done(http_req_t *r, void *p, int rc) {
  auth_job_t *j = p;
  if (rc == 0) respond_tokens(r, 201, j);
  else if (rc == AGD_ECONFLICT) http_respond_error(r, rc, "email already registered", NULL);
  else http_respond_error(r, rc, NULL, NULL);
}

static void h_register(http_req_t *r, route_ctx_t *ctx) {
  if (!g_app->cfg->registration) {
    http_respond_error(r, AGD_EFORBIDDEN, "registration is disabled on this server", NULL);
    return;
  }
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  const char *email, *pw, *name;
  char norm[AUTH_EMAIL_MAX];
  const char *why;
  if (body_str(r, body, "email", 1, &email) != 0 || body_str(r, body, "password", 1, &pw) != 0 ||
      body_str(r, body, "name", 0, &name) != 0)
    goto out;
  if (auth_email_normalize(email, norm) != 0) {
    router_respond_validation(r, "email", "not a valid email address");
    goto out;
  }
  if ((why = auth_password_check(pw)) != NULL) {
    router_respond_validation(r, "password", why);
    goto out;
  }
  if (name && (why = name_check(name)) != NULL) {
    router_respond_validation(r, "name", why);
    goto out;
  }
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->email, sizeof j->email, "%s", norm);
  snprintf(j->password, sizeof j->password, "%s", pw);
  snprintf(j->name, sizeof j->name, "%s", name ? name : "");
  job_run(r, j, register_work, register_done);
out:
  json_decref(body);
}

/* ---- POST /auth/login ------------------------------------------------------ */

static int login_work(void *p) {
  auth_job_t *j = p;
  int rc = AGD_ENOT_FOUND;
  if (j->email[0]) rc = store_user_by_email(g_app->store, j->email, &j->user);
  if (rc == AGD_ENOT_FOUND || (rc == 0 && !j->user.password_hash[0])) {
    auth_password_dummy_verify(j->password); /* SPEC §2: same answer, same time */
    rc = AGD_EAUTH_INVALID;
  } else if (rc == 0 && !auth_password_verify(j->user.password_hash, j->password)) {
    rc = AGD_EAUTH_INVALID;
  }
  wipe_password(j);
  if (rc != 0) return rc;
  return issue_pair(j, NULL);
}

static void login_done(http_req_t *r, void *p, int rc) {
  auth_job_t *j = p;
  if (rc != AGD_EAUTH_INVALID) api_login_refund(j->login_key); /* only failed logins count */
  if (rc == 0) respond_tokens(r, 200, j);
  else if (rc == AGD_EAUTH_INVALID) http_respond_error(r, rc, "invalid email or password", NULL);
  else http_respond_error(r, rc, NULL, NULL);
}

static void h_login(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  const char *email, *pw;
  if (body_str(r, body, "email", 1, &email) != 0 || body_str(r, body, "password", 1, &pw) != 0) goto out;
  if (strlen(pw) > AUTH_PASSWORD_MAX) {
    router_respond_validation(r, "password", "password too long");
    goto out;
  }
  char norm[AUTH_EMAIL_MAX];
  int valid = auth_email_normalize(email, norm) == 0;
  char key[RATELIMIT_KEY_MAX];
  snprintf(key, sizeof key, "login:%.254s|%s", valid ? norm : email, http_req_peer_ip(r));
  ratelimit_info_t info;
  if (!api_login_reserve(key, &info)) {
    api_limits_set_headers(r, &info, 1);
    http_respond_error(r, AGD_ERATE_LIMITED, "too many failed logins: try again later", NULL);
    goto out;
  }
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->email, sizeof j->email, "%s", valid ? norm : "");
  snprintf(j->password, sizeof j->password, "%s", pw);
  snprintf(j->login_key, sizeof j->login_key, "%s", key);
  job_run(r, j, login_work, login_done);
out:
  json_decref(body);
}

/* ---- POST /auth/refresh ---------------------------------------------------- */

static int refresh_work(void *p) {
  auth_job_t *j = p;
  store_t *s = g_app->store;
  char fam[ID_MAX] = "";
  int rc = store_refresh_consume(s, j->jti, j->sub, time_now(), fam);
  if (rc == 0) {
    rc = store_user_get(s, j->sub, &j->user);
    if (rc == AGD_ENOT_FOUND) return AGD_EAUTH_INVALID;
    if (rc != 0) return rc;
    return issue_pair(j, fam);
  }
  if (rc == AGD_EAUTH_INVALID) {
    if (fam[0]) { /* SPEC §2: reuse revokes the whole family */
      double until = time_now() + g_app->cfg->refresh_ttl;
      int r2 = store_refresh_revoke_family(s, fam);
      if (r2 == 0) r2 = store_revoke_access(s, fam, until); /* its access tokens too, across restarts */
      if (r2 != 0) log_warn("auth: revoking refresh family %s: %s", fam, agd_err_code(r2));
      auth_revoke(fam, until);
      j->reuse = 1;
    }
    return AGD_EAUTH_INVALID;
  }
  if (rc == AGD_ENOT_FOUND || rc == AGD_EBAD_REQUEST) return AGD_EAUTH_INVALID;
  return rc;
}

static void refresh_done(http_req_t *r, void *p, int rc) {
  auth_job_t *j = p;
  if (rc == 0) respond_tokens(r, 200, j);
  else if (rc == AGD_EAUTH_INVALID)
    http_respond_error(r, rc,
                       j->reuse ? "refresh token already used: its session has been revoked"
                                : "invalid refresh token",
                       NULL);
  else http_respond_error(r, rc, NULL, NULL);
}

static void h_refresh(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  const char *tok;
  if (body_str(r, body, "refresh_token", 1, &tok) != 0) goto out;
  size_t n = strlen(tok);
  auth_claims_t c;
  if (n == 0 || n > AUTH_TOKEN_MAX) {
    http_respond_error(r, AGD_EAUTH_INVALID, "invalid refresh token: malformed", NULL);
    goto out;
  }
  if (auth_verify(tok, n, AUTH_REFRESH, time_now(), &c) != 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "invalid refresh token: %s", c.error ? c.error : "malformed");
    http_respond_error(r, AGD_EAUTH_INVALID, msg, NULL);
    goto out;
  }
  if (strlen(c.user_id) >= ID_MAX || !c.jti[0]) {
    http_respond_error(r, AGD_EAUTH_INVALID, "invalid refresh token", NULL);
    goto out;
  }
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->sub, sizeof j->sub, "%.*s", ID_MAX - 1, c.user_id);
  snprintf(j->jti, sizeof j->jti, "%s", c.jti);
  job_run(r, j, refresh_work, refresh_done);
out:
  json_decref(body);
}

/* ---- POST /auth/logout ----------------------------------------------------- */

static int logout_work(void *p) {
  auth_job_t *j = p;
  store_t *s = g_app->store;
  int rc = 0;
  if (j->jti[0]) rc = store_revoke_access(s, j->jti, j->exp);
  int r2;
  if (j->family[0]) { /* this session only: its refresh tokens, and its family id (access tokens) */
    r2 = store_refresh_revoke_family(s, j->family);
    if (r2 == 0) r2 = store_revoke_access(s, j->family, j->family_exp);
  } else { /* no fam (another issuer's token): every refresh token of the user */
    r2 = store_refresh_revoke_user(s, j->sub);
  }
  return rc != 0 ? rc : r2;
}

static void logout_done(http_req_t *r, void *p, int rc) {
  if (rc != 0) {
    http_respond_error(r, rc, NULL, NULL);
    return;
  }
  http_respond_json(r, 200, json_pack("{s:s,s:s}", "status", "success", "message", "logged out"));
}

static void h_logout(http_req_t *r, route_ctx_t *ctx) {
  double exp = ctx->token_exp > 0 ? ctx->token_exp : time_now() + g_app->cfg->access_ttl;
  const char *jti = ctx->token_jti ? ctx->token_jti : "";
  const auth_extra_t *x = ctx->auth_extra;
  const char *fam = x ? x->family : "";
  double fam_exp = time_now() + g_app->cfg->refresh_ttl; /* no token of the family outlives it */
  if (jti[0]) {
    auth_revoke(jti, exp);     /* REST and new WebSockets refuse it from now on */
    api_ws_revoke_token(jti);  /* open sockets of it close with 1008 */
  }
  api_sse_auth_revoke(jti, fam); /* its SSE streams, and the session's, end now (issue 13, defect 10) */
  if (fam[0]) auth_revoke(fam, fam_exp); /* the session's refresh and access tokens, at once */
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->sub, sizeof j->sub, "%s", ctx->user_id);
  snprintf(j->jti, sizeof j->jti, "%s", jti);
  j->exp = exp;
  snprintf(j->family, sizeof j->family, "%s", fam);
  j->family_exp = fam_exp;
  job_run(r, j, logout_work, logout_done);
}

/* ---- GET /auth/me, /api/me, /api/users/me; PATCH /api/users/me ------------- */

static int me_work(void *p) {
  auth_job_t *j = p;
  if (j->has_name) return store_user_set_name(g_app->store, j->sub, j->name, &j->user);
  return store_user_get(g_app->store, j->sub, &j->user);
}

static void me_done(http_req_t *r, void *p, int rc) {
  auth_job_t *j = p;
  if (rc == AGD_ENOT_FOUND) http_respond_error(r, rc, "user not found", NULL);
  else if (rc != 0) http_respond_error(r, rc, NULL, NULL);
  else {
    users_put(&j->user);
    http_respond_json(r, 200, user_json(&j->user));
  }
}

/* Answered from the users table while fresh (no worker round trip), else read. */
static void h_me(http_req_t *r, route_ctx_t *ctx) {
  const user_entry_t *e = users_fresh(ctx->user_id);
  if (e) {
    http_respond(r, 200, "application/json", e->body, e->body_n);
    return;
  }
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->sub, sizeof j->sub, "%s", ctx->user_id);
  job_run(r, j, me_work, me_done);
}

static void h_patch_me(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  json_t *v = json_object_get(body, "name");
  const char *name = NULL;
  int has = v != NULL;
  if (v && !json_is_null(v)) {
    if (body_str(r, body, "name", 0, &name) != 0) goto out;
    const char *why = name_check(name);
    if (why) {
      router_respond_validation(r, "name", why);
      goto out;
    }
  }
  auth_job_t *j = job_new(sizeof *j);
  snprintf(j->sub, sizeof j->sub, "%s", ctx->user_id);
  j->has_name = has;
  snprintf(j->name, sizeof j->name, "%s", name ? name : "");
  job_run(r, j, me_work, me_done);
out:
  json_decref(body);
}

/* ---- GET|POST /auth/verify, /auth/validate ------------------------------------ */

static void h_verify(http_req_t *r, route_ctx_t *ctx) {
  slice_t bt;
  const char *tok = NULL;
  size_t n = 0;
  json_t *body = NULL;
  if (api_bearer_token(r, &bt)) {
    tok = bt.p;
    n = bt.n;
  } else if (http_req_body(r).n > 0) {
    body = router_json_body(r, 0);
    if (!body) return;
    if (body_str(r, body, "token", 0, &tok) != 0) goto out;
    if (tok) n = strlen(tok);
  }
  json_t *o;
  auth_claims_t c;
  if (!tok) {
    o = json_pack("{s:b,s:s}", "valid", 0, "error", "no token");
  } else if (n == 0 || n > AUTH_TOKEN_MAX) {
    o = json_pack("{s:b,s:s}", "valid", 0, "error", "malformed");
  } else if (auth_verify(tok, n, AUTH_ACCESS, time_now(), &c) != 0) {
    o = json_pack("{s:b,s:s}", "valid", 0, "error", c.error ? c.error : "malformed");
  } else {
    json_t *perms = json_loads(c.permissions_json, 0, NULL);
    if (!json_is_array(perms)) {
      json_decref(perms);
      perms = json_array();
    }
    o = json_pack("{s:b,s:s,s:s,s:f,s:o}", "valid", 1, "user_id", c.user_id, "email", c.email, "exp", c.exp,
                  "permissions", perms);
  }
  http_resp_header(r, "Cache-Control", "no-store");
  http_respond_json(r, 200, o);
out:
  json_decref(body);
}

/* ---- POST /auth/dev/login ---------------------------------------------------- */

int api_auth_dev_user(store_t *s, store_user_t *out) {
  int rc = store_user_by_email(s, DEV_EMAIL, out);
  if (rc == AGD_ENOT_FOUND) {
    store_user_t u;
    memset(&u, 0, sizeof u);
    id_new(u.id, "usr");
    snprintf(u.email, sizeof u.email, "%s", DEV_EMAIL);
    snprintf(u.name, sizeof u.name, "%s", DEV_NAME);
    rc = store_user_create(s, &u);
    if (rc == 0 || rc == AGD_ECONFLICT) rc = store_user_by_email(s, DEV_EMAIL, out);
  }
  return rc;
}

static int dev_login_work(void *p) {
  auth_job_t *j = p;
  int rc = api_auth_dev_user(g_app->store, &j->user);
  if (rc != 0) return rc;
  return issue_pair(j, NULL);
}

static void dev_login_done(http_req_t *r, void *p, int rc) {
  if (rc == 0) respond_tokens(r, 200, p);
  else http_respond_error(r, rc, NULL, NULL);
}

static void h_dev_login(http_req_t *r, route_ctx_t *ctx) {
  if (!g_app->cfg->dev_login) {
    http_respond_error(r, AGD_EFORBIDDEN, "dev login is disabled on this server", NULL);
    return;
  }
  auth_job_t *j = job_new(sizeof *j);
  job_run(r, j, dev_login_work, dev_login_done);
}

/* ---- GET /auth/config --------------------------------------------------------- */

static void h_auth_config(http_req_t *r, route_ctx_t *ctx) {
  const config_t *cfg = g_app->cfg;
  http_respond_json(r, 200,
                    json_pack("{s:b,s:b,s:i,s:i}", "registration", cfg->registration, "dev_login", cfg->dev_login,
                              "token_lifetime_s", cfg->access_ttl, "refresh_token_lifetime_s", cfg->refresh_ttl));
}

/* ---- registration and lifecycle -------------------------------------------- */

void api_auth_register(void) {
  router_set_auth(auth_hook);
  api_limits_register();
  const char *const *P = AUTH_PREFIXES;
  router_add_prefixed(P, "/register", HTTP_M_POST, h_register, ROUTE_PUBLIC);
  router_add_prefixed(P, "/login", HTTP_M_POST, h_login, ROUTE_PUBLIC);
  router_add_prefixed(P, "/refresh", HTTP_M_POST, h_refresh, ROUTE_PUBLIC);
  router_add_prefixed(P, "/logout", HTTP_M_POST, h_logout, 0);
  router_add_prefixed(P, "/me", HTTP_M_GET, h_me, 0);
  router_add_prefixed(P, "/verify", HTTP_M_GET | HTTP_M_POST, h_verify, ROUTE_PUBLIC);
  router_add_prefixed(P, "/validate", HTTP_M_GET | HTTP_M_POST, h_verify, ROUTE_PUBLIC);
  router_add_prefixed(P, "/dev/login", HTTP_M_POST, h_dev_login, ROUTE_PUBLIC);
  router_add_prefixed(P, "/config", HTTP_M_GET, h_auth_config, ROUTE_PUBLIC);
  router_add("/api/me", HTTP_M_GET, h_me, 0);
  router_add("/api/users/me", HTTP_M_GET, h_me, 0);
  router_add("/api/users/me", HTTP_M_PATCH, h_patch_me, 0);
}

void api_auth_start(uv_loop_t *loop) {
  api_limits_start(loop);
  api_sse_auth_start(loop);
}

void api_auth_stop(void) {
  api_limits_stop();
  api_sse_auth_stop();
  users_clear();
  free(users);
  users = NULL;
}

/* ---- agentd user add EMAIL (SPEC §10) ------------------------------------------ */

int api_cmd_user_add(const config_t *cfg, const char *email) {
  char norm[AUTH_EMAIL_MAX];
  if (!email || auth_email_normalize(email, norm) != 0) {
    fprintf(stderr, "agentd: user add: '%s' is not a valid email address\n", email ? email : "");
    return 1;
  }
  char pw[AUTH_PASSWORD_MAX + 3];
  if (!fgets(pw, sizeof pw, stdin)) {
    fprintf(stderr, "agentd: user add: expected the password on stdin (one line)\n");
    return 1;
  }
  size_t n = strlen(pw);
  int whole_line = n > 0 && pw[n - 1] == '\n';
  while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r')) pw[--n] = 0;
  const char *why = (!whole_line && !feof(stdin)) ? "password too long" : auth_password_check(pw);
  if (why) {
    fprintf(stderr, "agentd: user add: %s\n", why);
    explicit_bzero(pw, sizeof pw);
    return 1;
  }
  char err[512] = "";
  store_t *st = NULL;
  if (store_open(&st, cfg->database_url, err, sizeof err) != 0) {
    fprintf(stderr, "agentd: --database: %s\n", err);
    explicit_bzero(pw, sizeof pw);
    return 1;
  }
  store_user_t u;
  memset(&u, 0, sizeof u);
  int rc = store_user_by_email(st, norm, &u);
  if (rc == 0) rc = AGD_ECONFLICT;
  else if (rc == AGD_ENOT_FOUND) {
    memset(&u, 0, sizeof u);
    rc = auth_password_hash(pw, u.password_hash);
    if (rc == 0) {
      id_new(u.id, "usr");
      snprintf(u.email, sizeof u.email, "%s", norm);
      rc = store_user_create(st, &u);
    }
  }
  explicit_bzero(pw, sizeof pw);
  explicit_bzero(u.password_hash, sizeof u.password_hash);
  store_close(st);
  if (rc == AGD_ECONFLICT) {
    fprintf(stderr, "agentd: user add: a user with email %s already exists\n", norm);
    return 1;
  }
  if (rc != 0) {
    fprintf(stderr, "agentd: user add: cannot create the user: %s\n", agd_err_code(rc));
    return 1;
  }
  printf("%s\n", u.id);
  return 0;
}
