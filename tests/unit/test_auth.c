/* tests/unit/test_auth.c — core/auth (SPEC §2 JWT paragraph). */
#include <criterion/criterion.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/auth.h"
#include "util/err.h"

#define NOW 1700000000.0
static const char SECRET[] = "0123456789abcdef0123456789abcdef-test-secret";

static void setup(void)
{
  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)SECRET;
  cfg.secret_len = strlen(SECRET);
  cr_assert_eq(auth_init(&cfg), 0);
}

static void teardown(void) { auth_shutdown(); }

TestSuite(auth, .init = setup, .fini = teardown);

/* ---- helpers to craft tokens by hand */

static void b64url(const void *in, size_t n, char *out)
{
  unsigned char tmp[16384];
  int m = EVP_EncodeBlock(tmp, in, (int)n);
  int j = 0;
  for (int i = 0; i < m; i++) {
    char c = (char)tmp[i];
    if (c == '=') break;
    out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  out[j] = '\0';
}

/* header.payload.HMAC-<md>(secret) — or an empty signature when md is NULL. */
static void craft(char *out, const char *header, const char *payload, const EVP_MD *md)
{
  char h[4096], p[12000];
  b64url(header, strlen(header), h);
  b64url(payload, strlen(payload), p);
  sprintf(out, "%s.%s.", h, p);
  if (md) {
    unsigned char mac[64];
    unsigned int ml = 0;
    HMAC(md, SECRET, (int)strlen(SECRET), (unsigned char *)out, strlen(out) - 1, mac, &ml);
    b64url(mac, ml, out + strlen(out));
  }
}

static const char *HS256_HDR = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static int verify_str(const char *tok, auth_kind_t k, double now, auth_claims_t *c)
{
  return auth_verify(tok, strlen(tok), k, now, c);
}

static void payload_with(char *out, const char *extra)
{
  sprintf(out, "{\"sub\":\"usr_1\",\"iat\":%.0f,\"exp\":%.0f%s%s}", NOW, NOW + 600, extra[0] ? "," : "",
          extra);
}

/* ---- issue / verify */

Test(auth, round_trip_access)
{
  auth_token_t t;
  cr_assert_eq(auth_issue_access("usr_42", "a@b.co", "[\"read\",\"write\"]", NULL, NOW + 0.7, &t), 0);
  cr_assert_eq(strncmp(t.jti, "jti_", 4), 0);
  cr_assert_float_eq(t.exp, NOW + AUTH_DEFAULT_ACCESS_TTL, 1e-9);
  auth_claims_t c;
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW + 5, &c), 0, "%s", c.error);
  cr_assert_null(c.error);
  cr_assert_str_eq(c.user_id, "usr_42");
  cr_assert_str_eq(c.email, "a@b.co");
  cr_assert_str_eq(c.jti, t.jti);
  cr_assert_str_eq(c.issuer, AUTH_DEFAULT_ISSUER);
  cr_assert_str_eq(c.permissions_json, "[\"read\",\"write\"]");
  cr_assert_float_eq(c.iat, NOW, 1e-9);
  cr_assert_float_eq(c.exp, t.exp, 1e-9);
  cr_assert_str_eq(c.family, "");

  /* the claims SPEC §2 lists are all there, HS256 in the header */
  jwt_t *j = NULL;
  cr_assert_eq(jwt_decode(&j, t.token, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
  cr_assert_eq(jwt_get_alg(j), JWT_ALG_HS256);
  cr_assert_str_eq(jwt_get_grant(j, "type"), "access");
  cr_assert_str_eq(jwt_get_grant(j, "token_type"), "access");
  cr_assert_str_eq(jwt_get_grant(j, "iss"), "netra-auth-service");
  cr_assert_str_eq(jwt_get_grant(j, "sub"), "usr_42");
  char *perms = jwt_get_grants_json(j, "permissions");
  cr_assert_str_eq(perms, "[\"read\",\"write\"]");
  free(perms);
  jwt_free(j);
}

Test(auth, round_trip_refresh_and_defaults)
{
  auth_token_t t;
  cr_assert_eq(auth_issue_refresh("usr_1", NULL, "fam_abc", NOW, &t), 0);
  cr_assert_float_eq(t.exp, NOW + AUTH_DEFAULT_REFRESH_TTL, 1e-9);
  auth_claims_t c;
  cr_assert_eq(verify_str(t.token, AUTH_REFRESH, NOW, &c), 0, "%s", c.error);
  cr_assert_str_eq(c.family, "fam_abc");
  cr_assert_str_eq(c.email, "");
  cr_assert_str_eq(c.permissions_json, "[]");
  /* access token without permissions gets [] */
  cr_assert_eq(auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &t), 0);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), 0);
  cr_assert_str_eq(c.permissions_json, "[]");
}

/* SPEC §2 logout: access tokens carry their refresh family ("fam") */
Test(auth, access_token_family)
{
  auth_token_t t;
  auth_claims_t c;
  cr_assert_eq(auth_issue_access("usr_7", "s@e.ss", NULL, "fam_sess1", NOW, &t), 0);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  cr_assert_str_eq(c.family, "fam_sess1");
  jwt_t *j = NULL;
  cr_assert_eq(jwt_decode(&j, t.token, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
  cr_assert_str_eq(jwt_get_grant(j, "fam"), "fam_sess1");
  cr_assert_str_eq(jwt_get_grant(j, "type"), "access");
  jwt_free(j);
  /* NULL or "" family: no fam claim at all (as before) */
  const char *none[] = {NULL, ""};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(auth_issue_access("usr_7", NULL, NULL, none[i], NOW, &t), 0);
    cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), 0);
    cr_assert_str_eq(c.family, "");
    j = NULL;
    cr_assert_eq(jwt_decode(&j, t.token, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    cr_assert_null(jwt_get_grant(j, "fam"));
    jwt_free(j);
  }
  /* a family that is not valid UTF-8 is refused, never silently dropped */
  cr_assert_eq(auth_issue_access("usr_7", NULL, NULL, "fam_\xff", NOW, &t), AGD_EBAD_REQUEST);
  /* a refresh token still requires its family */
  cr_assert_eq(auth_issue_refresh("usr_7", NULL, "", NOW, &t), AGD_EBAD_REQUEST);
}

/* Revoking a family (logout, refresh reuse) ends that session's access and
 * refresh tokens, and only that session's. */
Test(auth, family_revocation_is_per_session)
{
  auth_token_t a1, r1, a1b, a2, r2, ext;
  auth_claims_t c;
  cr_assert_eq(auth_issue_access("usr_1", NULL, NULL, "fam_one", NOW, &a1), 0);
  cr_assert_eq(auth_issue_refresh("usr_1", NULL, "fam_one", NOW, &r1), 0);
  cr_assert_eq(auth_issue_access("usr_1", NULL, NULL, "fam_one", NOW + 1, &a1b), 0); /* after a refresh */
  cr_assert_eq(auth_issue_access("usr_1", NULL, NULL, "fam_two", NOW, &a2), 0);
  cr_assert_eq(auth_issue_refresh("usr_1", NULL, "fam_two", NOW, &r2), 0);
  cr_assert_eq(auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &ext), 0);
  auth_revoke("fam_one", NOW + AUTH_DEFAULT_REFRESH_TTL);
  cr_assert_eq(verify_str(a1.token, AUTH_ACCESS, NOW + 2, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");
  cr_assert_eq(verify_str(a1b.token, AUTH_ACCESS, NOW + 2, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");
  cr_assert_eq(verify_str(r1.token, AUTH_REFRESH, NOW + 2, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");
  /* the other session and a token without fam keep working */
  cr_assert_eq(verify_str(a2.token, AUTH_ACCESS, NOW + 2, &c), 0, "%s", c.error);
  cr_assert_str_eq(c.family, "fam_two");
  cr_assert_eq(verify_str(r2.token, AUTH_REFRESH, NOW + 2, &c), 0, "%s", c.error);
  cr_assert_eq(verify_str(ext.token, AUTH_ACCESS, NOW + 2, &c), 0, "%s", c.error);
  /* a crafted (external) access token with a revoked fam is refused too */
  char p[512], tok[2048];
  payload_with(p, "\"fam\":\"fam_one\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");
}

Test(auth, issue_rejects_bad_input)
{
  auth_token_t t;
  cr_assert_eq(auth_issue_access(NULL, NULL, NULL, NULL, NOW, &t), AGD_EBAD_REQUEST);
  cr_assert_eq(auth_issue_access("", NULL, NULL, NULL, NOW, &t), AGD_EBAD_REQUEST);
  cr_assert_eq(auth_issue_access("u", NULL, "{\"a\":1}", NULL, NOW, &t), AGD_EBAD_REQUEST);
  cr_assert_eq(auth_issue_access("u", NULL, "[", NULL, NOW, &t), AGD_EBAD_REQUEST);
  cr_assert_eq(auth_issue_refresh("u", NULL, NULL, NOW, &t), AGD_EBAD_REQUEST);
  cr_assert_eq(auth_issue_access("u\xff", NULL, NULL, NULL, NOW, &t), AGD_EBAD_REQUEST);
}

Test(auth, init_rejects_short_secret)
{
  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)"short";
  cfg.secret_len = 5;
  cr_assert_eq(auth_init(&cfg), AGD_EBAD_REQUEST);
  cfg.secret = (const unsigned char *)"0123456789abcdef0123456789abcde"; /* 31 */
  cfg.secret_len = 31;
  cr_assert_eq(auth_init(&cfg), AGD_EBAD_REQUEST);
  cfg.secret_len = 0;
  cfg.secret = NULL;
  cr_assert_eq(auth_init(&cfg), AGD_EBAD_REQUEST);
}

Test(auth, tampered_signature)
{
  auth_token_t t;
  auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &t);
  auth_claims_t c;
  size_t n = strlen(t.token);
  t.token[n - 2] = t.token[n - 2] == 'A' ? 'B' : 'A';
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "bad signature");

  /* tampered payload with the original signature */
  char tok[4096], p[512];
  payload_with(p, "");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  char *dot = strchr(tok, '.');
  dot[3] = dot[3] == 'x' ? 'y' : 'x';
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);

  /* a different secret */
  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)"another-secret-another-secret-another";
  cfg.secret_len = strlen((const char *)cfg.secret);
  cr_assert_eq(auth_init(&cfg), 0);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "bad signature");
}

Test(auth, alg_none_rejected)
{
  char tok[4096], p[512];
  payload_with(p, "");
  craft(tok, "{\"alg\":\"none\",\"typ\":\"JWT\"}", p, NULL);
  auth_claims_t c;
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
  /* with a (valid HS256) signature appended anyway */
  craft(tok, "{\"alg\":\"none\",\"typ\":\"JWT\"}", p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
  /* case games and missing alg */
  craft(tok, "{\"alg\":\"hs256\"}", p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
  craft(tok, "{\"typ\":\"JWT\"}", p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
  /* duplicate alg keys */
  craft(tok, "{\"alg\":\"HS256\",\"alg\":\"none\"}", p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
}

Test(auth, hs512_same_secret_rejected)
{
  char tok[4096], p[512];
  payload_with(p, "");
  craft(tok, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", p, EVP_sha512());
  auth_claims_t c;
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");

  /* and one made by libjwt itself */
  jwt_t *j = NULL;
  jwt_new(&j);
  jwt_set_alg(j, JWT_ALG_HS512, (const unsigned char *)SECRET, (int)strlen(SECRET));
  jwt_add_grant(j, "sub", "usr_1");
  jwt_add_grant_int(j, "iat", (long)NOW);
  jwt_add_grant_int(j, "exp", (long)NOW + 600);
  char *s = jwt_encode_str(j);
  cr_assert_eq(verify_str(s, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
  free(s);
  jwt_free(j);
}

Test(auth, rs256_header_rejected)
{
  char tok[4096], p[512];
  payload_with(p, "");
  craft(tok, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", p, EVP_sha256());
  auth_claims_t c;
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "algorithm not allowed");
}

Test(auth, shape_limits)
{
  auth_claims_t c;
  cr_assert_eq(verify_str("", AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  cr_assert_eq(verify_str("abc", AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_eq(verify_str("a.b", AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_eq(verify_str("a.b.c.d", AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  cr_assert_eq(verify_str("!!.??.xx", AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");

  auth_token_t t;
  auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &t);
  char tok[4096];
  snprintf(tok, sizeof tok, "%s.x", t.token); /* 4 segments */
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  /* length counted, not NUL: an embedded NUL is malformed */
  cr_assert_eq(auth_verify(t.token, strlen(t.token) + 1, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  /* a prefix of a good token (len shorter than the string) */
  cr_assert_eq(auth_verify(t.token, strlen(t.token) - 3, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);

  /* 8 KiB bound: = passes the size check, +1 does not */
  char *big = malloc(AUTH_TOKEN_MAX + 2);
  memset(big, 'A', AUTH_TOKEN_MAX + 1);
  big[AUTH_TOKEN_MAX + 1] = '\0';
  cr_assert_eq(auth_verify(big, AUTH_TOKEN_MAX + 1, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  /* a long but well-formed token with a large permissions array up to the limit */
  char payload[8000];
  int n = sprintf(payload, "{\"sub\":\"u\",\"iat\":%.0f,\"exp\":%.0f,\"permissions\":[\"", NOW, NOW + 60);
  memset(payload + n, 'p', 6500);
  strcpy(payload + n + 6500, "\"]}");
  char *tk = malloc(16384);
  craft(tk, HS256_HDR, payload, EVP_sha256());
  cr_assert_gt(strlen(tk), AUTH_TOKEN_MAX);
  cr_assert_eq(verify_str(tk, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  payload[n + 4000] = '\0';
  strcat(payload, "\"]}");
  craft(tk, HS256_HDR, payload, EVP_sha256());
  cr_assert_leq(strlen(tk), AUTH_TOKEN_MAX);
  cr_assert_eq(verify_str(tk, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  cr_assert_eq(strlen(c.permissions_json), 4004);
  free(tk);
  free(big);

  /* payload not an object, header not JSON */
  craft(tok, HS256_HDR, "[1,2]", EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  craft(tok, "not json", "{}", EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  /* a typ other than JWT, and crit extensions, are refused */
  char p0[512];
  payload_with(p0, "");
  craft(tok, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", p0, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  craft(tok, "{\"alg\":\"HS256\",\"typ\":\"jwt\"}", p0, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  craft(tok, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", p0, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "malformed");
  /* alg ok but no signature */
  char p[512];
  payload_with(p, "");
  craft(tok, HS256_HDR, p, NULL);
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "bad signature");
}

Test(auth, expiry_with_leeway)
{
  char tok[4096], p[512];
  auth_claims_t c;
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.0f,\"exp\":%.0f}", NOW - 1000, NOW - 31);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "expired");
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.0f,\"exp\":%.0f}", NOW - 1000, NOW - 29);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);

  /* issued tokens expire after their ttl + leeway */
  auth_token_t t;
  auth_issue_access("u", NULL, NULL, NULL, NOW, &t);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, t.exp + 29, &c), 0);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, t.exp + 31, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "expired");

  /* float exp from another issuer is fine */
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.3f,\"exp\":%.3f}", NOW - 0.5, NOW + 10.25);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  cr_assert_float_eq(c.exp, NOW + 10.25, 1e-6);
}

Test(auth, iat_and_nbf_in_future)
{
  char tok[4096], p[512];
  auth_claims_t c;
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.0f,\"exp\":%.0f}", NOW + 31, NOW + 600);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "not yet valid");
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.0f,\"exp\":%.0f}", NOW + 29, NOW + 600);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0);

  payload_with(p, "\"nbf\":1700000100");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "not yet valid");
  payload_with(p, "\"nbf\":1700000010");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0);
  payload_with(p, "\"nbf\":\"soon\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
}

Test(auth, required_claims)
{
  char tok[4096], p[512];
  auth_claims_t c;
  sprintf(p, "{\"iat\":%.0f,\"exp\":%.0f}", NOW, NOW + 600);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "missing claim sub");
  sprintf(p, "{\"sub\":\"\",\"iat\":%.0f,\"exp\":%.0f}", NOW, NOW + 600);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "missing claim sub");
  sprintf(p, "{\"sub\":\"u\",\"iat\":%.0f}", NOW);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "missing claim exp");
  sprintf(p, "{\"sub\":\"u\",\"exp\":\"%.0f\",\"iat\":%.0f}", NOW + 60, NOW);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "missing claim exp");
  sprintf(p, "{\"sub\":\"u\",\"exp\":%.0f}", NOW + 60);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "missing claim iat");
  /* numeric sub accepted as its decimal string; aud ignored; no type accepted */
  sprintf(p, "{\"sub\":12345,\"iat\":%.0f,\"exp\":%.0f,\"aud\":\"elsewhere\"}", NOW, NOW + 60);
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0, "%s", c.error);
  cr_assert_str_eq(c.user_id, "12345");
}

Test(auth, token_type)
{
  auth_token_t t;
  auth_claims_t c;
  auth_issue_refresh("usr_1", "x@y.zz", "fam_1", NOW, &t);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "wrong token type");
  auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &t);
  cr_assert_eq(verify_str(t.token, AUTH_REFRESH, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "wrong token type");

  char tok[4096], p[512];
  payload_with(p, "\"token_type\":\"refresh\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "wrong token type");
  payload_with(p, "\"type\":\"access\",\"token_type\":\"refresh\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  payload_with(p, "\"type\":1");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  payload_with(p, "\"type\":\"access\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0);
}

Test(auth, issuer_enforcement)
{
  char tok[4096], p[512];
  auth_claims_t c;
  payload_with(p, "\"iss\":\"someone-else\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0); /* not enforced by default */
  cr_assert_str_eq(c.issuer, "someone-else");

  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)SECRET;
  cfg.secret_len = strlen(SECRET);
  cfg.enforce_issuer = 1;
  cfg.issuer = "agentd-test";
  cr_assert_eq(auth_init(&cfg), 0);
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "issuer mismatch");
  payload_with(p, "");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "issuer mismatch");
  payload_with(p, "\"iss\":\"agentd-test\"");
  craft(tok, HS256_HDR, p, EVP_sha256());
  cr_assert_eq(verify_str(tok, AUTH_ACCESS, NOW, &c), 0);
  auth_token_t t;
  auth_issue_access("u", NULL, NULL, NULL, NOW, &t);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), 0);
  cr_assert_str_eq(c.issuer, "agentd-test");
}

Test(auth, revocation)
{
  auth_token_t t;
  auth_claims_t c;
  auth_issue_access("usr_1", NULL, NULL, NULL, NOW, &t);
  cr_assert_eq(auth_is_revoked(t.jti, NOW), 0);
  auth_revoke(t.jti, t.exp);
  cr_assert_eq(auth_is_revoked(t.jti, NOW), 1);
  cr_assert_eq(verify_str(t.token, AUTH_ACCESS, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");

  /* a revoked refresh family stops every refresh token of it */
  auth_token_t r;
  auth_issue_refresh("usr_1", NULL, "fam_zz", NOW, &r);
  cr_assert_eq(verify_str(r.token, AUTH_REFRESH, NOW, &c), 0);
  auth_revoke("fam_zz", r.exp);
  cr_assert_eq(verify_str(r.token, AUTH_REFRESH, NOW, &c), AGD_EAUTH_INVALID);
  cr_assert_str_eq(c.error, "revoked");

  /* purge drops entries past exp + leeway only */
  auth_revoke("old", NOW - 100);
  cr_assert_eq(auth_revocations_count(), 3);
  cr_assert_eq(auth_is_revoked("old", NOW), 0); /* expired entry no longer counts */
  cr_assert_eq(auth_revocations_purge(NOW), 1);
  cr_assert_eq(auth_revocations_count(), 2);
  cr_assert_eq(auth_is_revoked(t.jti, NOW), 1);
  cr_assert_eq(auth_revocations_purge(t.exp + 31), 1);
  cr_assert_eq(auth_is_revoked(t.jti, NOW), 0);
  cr_assert_eq(auth_revocations_purge(r.exp + 31), 1);
  cr_assert_eq(auth_revocations_count(), 0);

  /* revoking again keeps the later expiry; odd keys ignored */
  auth_revoke("k", NOW + 10);
  auth_revoke("k", NOW + 100);
  auth_revoke("k", NOW + 5);
  cr_assert_eq(auth_revocations_count(), 1);
  cr_assert_eq(auth_is_revoked("k", NOW + 120), 1);
  auth_revoke("", NOW + 10);
  auth_revoke(NULL, NOW + 10);
  char longkey[200];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  auth_revoke(longkey, NOW + 10);
  cr_assert_eq(auth_revocations_count(), 1);
  cr_assert_eq(auth_is_revoked(NULL, NOW), 0);
}

Test(auth, revocation_many_entries)
{
  /* grows past several table sizes; far-future entries survive opportunistic purges */
  char k[64];
  double far = 4e9;
  for (int i = 0; i < 5000; i++) {
    snprintf(k, sizeof k, "jti_%d", i);
    auth_revoke(k, i % 2 ? far : 1000.0);
  }
  /* odd ones always survive, even ones were purged opportunistically (wall clock ≫ 1000) */
  for (int i = 0; i < 5000; i += 7) {
    snprintf(k, sizeof k, "jti_%d", i);
    cr_assert_eq(auth_is_revoked(k, NOW), i % 2, "%s", k);
  }
  auth_revocations_purge(NOW);
  cr_assert_eq(auth_revocations_count(), 2500);
}

/* ---- the one access-token verifier (issue 13, defect 6) */

Test(auth, verify_access_identity_and_refusals)
{
  auth_token_t t, r;
  auth_identity_t id;
  cr_assert_eq(auth_issue_access("usr_va", "va@e.ss", NULL, "fam_va", NOW, &t), 0);
  for (int round = 0; round < 2; round++) { /* the second answer comes from the cache */
    cr_assert_eq(auth_verify_access(t.token, strlen(t.token), NOW, &id), 0, "%s", id.error);
    cr_assert_str_eq(id.user_id, "usr_va");
    cr_assert_str_eq(id.email, "va@e.ss");
    cr_assert_str_eq(id.jti, t.jti);
    cr_assert_str_eq(id.family, "fam_va");
    cr_assert_eq(id.exp, t.exp);
    cr_assert_null(id.error);
  }
  /* a refresh token is not an access token */
  cr_assert_eq(auth_issue_refresh("usr_va", NULL, "fam_va", NOW, &r), 0);
  cr_assert_eq(auth_verify_access(r.token, strlen(r.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "wrong token type");
  cr_assert_str_eq(id.user_id, "");
  /* empty, over-long, not a token */
  cr_assert_eq(auth_verify_access("", 0, NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "malformed");
  cr_assert_eq(auth_verify_access(t.token, AUTH_TOKEN_MAX + 1, NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "malformed");
  cr_assert_eq(auth_verify_access("a.b.c", 5, NOW, &id), AGD_EAUTH_INVALID);
  /* a prefix of a cached token is not a hit */
  cr_assert_eq(auth_verify_access(t.token, strlen(t.token) - 1, NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "bad signature");
  /* a sub that cannot be a user id */
  char sub[ID_MAX + 10];
  memset(sub, 'u', sizeof sub - 1);
  sub[sizeof sub - 1] = '\0';
  cr_assert_eq(auth_issue_access(sub, NULL, NULL, NULL, NOW, &t), 0);
  cr_assert_eq(auth_verify_access(t.token, strlen(t.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "sub too long");
}

/* A token answered from the cache is still refused once its jti or its
 * session is revoked, or it has expired (the cache never outlives them). */
Test(auth, verify_access_cache_honours_revocation_and_expiry)
{
  auth_token_t a, b, c;
  auth_identity_t id;
  cr_assert_eq(auth_issue_access("usr_vc", NULL, NULL, "fam_vc1", NOW, &a), 0);
  cr_assert_eq(auth_issue_access("usr_vc", NULL, NULL, "fam_vc2", NOW, &b), 0);
  cr_assert_eq(auth_issue_access("usr_vc", NULL, NULL, "fam_vc3", NOW, &c), 0);
  const auth_token_t *all[] = {&a, &b, &c};
  for (int i = 0; i < 3; i++)
    cr_assert_eq(auth_verify_access(all[i]->token, strlen(all[i]->token), NOW, &id), 0);
  auth_revoke(a.jti, a.exp);
  cr_assert_eq(auth_verify_access(a.token, strlen(a.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "revoked");
  auth_revoke("fam_vc2", b.exp);
  cr_assert_eq(auth_verify_access(b.token, strlen(b.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "revoked");
  cr_assert_eq(auth_verify_access(c.token, strlen(c.token), NOW, &id), 0);
  cr_assert_eq(auth_verify_access(c.token, strlen(c.token), c.exp + 31, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "expired");
  /* a new configuration (another secret) forgets what the old one verified */
  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)"another-secret-of-more-than-32-bytes!!";
  cfg.secret_len = strlen((const char *)cfg.secret);
  cr_assert_eq(auth_init(&cfg), 0);
  cr_assert_eq(auth_verify_access(c.token, strlen(c.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "bad signature");
}

Test(auth, token_ended)
{
  cr_assert_null(auth_token_ended("jti_te", "fam_te", NOW + 100, NOW));
  cr_assert_null(auth_token_ended("jti_te", "fam_te", NOW - 10, NOW)); /* within the leeway */
  cr_assert_str_eq(auth_token_ended("jti_te", "fam_te", NOW - 31, NOW), "token expired");
  cr_assert_null(auth_token_ended("", "", 0, NOW)); /* nothing to check */
  auth_revoke("fam_te", NOW + 100);
  cr_assert_str_eq(auth_token_ended("jti_te", "fam_te", NOW + 100, NOW), "token revoked");
  cr_assert_null(auth_token_ended("jti_te", "fam_other", NOW + 100, NOW));
  auth_revoke("jti_te", NOW + 100);
  cr_assert_str_eq(auth_token_ended("jti_te", NULL, NOW + 100, NOW), "token revoked");
  auth_identity_t id = {.exp = NOW + 100};
  snprintf(id.jti, sizeof id.jti, "jti_te");
  cr_assert_str_eq(auth_identity_ended(&id, NOW), "token revoked");
}

/* ---- secret file: tests/unit/test_secret.c; auth's name for it forwards */

Test(auth, secret_load_or_create_forwards)
{
  char base[] = "/tmp/agd_auth_XXXXXX";
  cr_assert_not_null(mkdtemp(base));
  char *s1 = NULL;
  size_t n1 = 0;
  char err[256];
  cr_assert_eq(auth_secret_load_or_create(base, &s1, &n1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n1, 128);
  free(s1);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", base);
  cr_assert_eq(system(cmd), 0);
}

/* ---- passwords */

Test(auth, password_hash_verify)
{
  char h[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
  cr_assert_eq(auth_password_hash("correct horse battery", h), 0);
  cr_assert_eq(strncmp(h, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0, "%s", h);
  cr_assert_eq(auth_password_verify(h, "correct horse battery"), 1);
  cr_assert_eq(auth_password_verify(h, "correct horse batterY"), 0);
  cr_assert_eq(auth_password_verify(h, ""), 0);
  cr_assert_eq(auth_password_hash("correct horse battery", h2), 0);
  cr_assert_str_neq(h, h2); /* random salt */
  cr_assert_eq(auth_password_verify("garbage", "x"), 0);
  cr_assert_eq(auth_password_verify(NULL, "x"), 0);
  cr_assert_eq(auth_password_verify(h, NULL), 0);
  auth_password_dummy_verify("anything");
  auth_password_dummy_verify(NULL);
}

Test(auth, password_policy)
{
  cr_assert_str_eq(auth_password_check("1234567"), "password must be at least 8 characters");
  cr_assert_null(auth_password_check("12345678"));
  cr_assert_str_eq(auth_password_check(""), "password must be at least 8 characters");
  /* 7 code points in 14 bytes: too short; 8 in 16 bytes: fine */
  cr_assert_str_eq(auth_password_check("ééééééé"), "password must be at least 8 characters");
  cr_assert_null(auth_password_check("éééééééé"));
  cr_assert_str_eq(auth_password_check("日本語日本語日"), "password must be at least 8 characters");
  char big[1100];
  memset(big, 'a', 1024);
  big[1024] = '\0';
  cr_assert_null(auth_password_check(big));
  big[1024] = 'a';
  big[1025] = '\0';
  cr_assert_str_eq(auth_password_check(big), "password too long");
  char h[AUTH_HASH_MAX];
  cr_assert_eq(auth_password_hash(big, h), AGD_EBAD_REQUEST);
}

/* ---- e-mail */

static const char *norm(const char *in)
{
  static char out[AUTH_EMAIL_MAX];
  return auth_email_normalize(in, out) == 0 ? out : NULL;
}

Test(auth, email_normalize)
{
  cr_assert_str_eq(norm("  Foo@Example.COM "), "foo@example.com");
  cr_assert_str_eq(norm("\tfirst.last+tag@sub.example.co.uk\r\n"), "first.last+tag@sub.example.co.uk");
  cr_assert_str_eq(norm("a@b-c.d"), "a@b-c.d");
  cr_assert_null(norm("a@b"));
  cr_assert_null(norm("a b@c.d"));
  cr_assert_null(norm(""));
  cr_assert_null(norm("   "));
  cr_assert_null(norm("@b.cd"));
  cr_assert_null(norm("a@"));
  cr_assert_null(norm("a@@b.cd"));
  cr_assert_null(norm("a@b@c.de"));
  cr_assert_null(norm("a@-b.cd"));
  cr_assert_null(norm("a@b-.cd"));
  cr_assert_null(norm("a@b..cd"));
  cr_assert_null(norm("a@.b.cd"));
  cr_assert_null(norm("a@b.cd."));
  cr_assert_null(norm("a@b_c.de"));
  cr_assert_null(norm(".a@b.cd"));
  cr_assert_null(norm("a.@b.cd"));
  cr_assert_null(norm("a..b@c.de"));
  cr_assert_null(norm("a\x01@b.cd"));
  cr_assert_null(norm("a\"b@c.de"));
  cr_assert_null(norm("\xc3\xa9@b.cd"));
  cr_assert_null(norm(NULL));

  char buf[400];
  memset(buf, 'x', 64);
  strcpy(buf + 64, "@example.com");
  cr_assert_str_eq(norm(buf), buf); /* 64-char local part: ok */
  memset(buf, 'x', 65);
  strcpy(buf + 65, "@example.com");
  cr_assert_null(norm(buf)); /* 65: invalid */

  /* label of 63 ok, 64 not */
  strcpy(buf, "a@");
  memset(buf + 2, 'd', 63);
  strcpy(buf + 65, ".com");
  cr_assert_not_null(norm(buf));
  strcpy(buf, "a@");
  memset(buf + 2, 'd', 64);
  strcpy(buf + 66, ".com");
  cr_assert_null(norm(buf));

  /* total 254 ok, 255 not: 64 + 1 + 189 */
  memset(buf, 'l', 64);
  buf[64] = '@';
  char *d = buf + 65;
  for (int i = 0; i < 3; i++) {
    memset(d, 'd', 60);
    d[60] = '.';
    d += 61;
  }
  memset(d, 'e', 6);
  d[6] = '\0';
  cr_assert_eq(strlen(buf), 254);
  cr_assert_not_null(norm(buf));
  strcat(buf, "e");
  cr_assert_null(norm(buf));
}

Test(auth, ct_equal)
{
  cr_assert_eq(auth_ct_equal("abc", 3, "abc", 3), 1);
  cr_assert_eq(auth_ct_equal("abc", 3, "abd", 3), 0);
  cr_assert_eq(auth_ct_equal("abc", 3, "abcd", 4), 0);
  cr_assert_eq(auth_ct_equal("", 0, "", 0), 1);
}
