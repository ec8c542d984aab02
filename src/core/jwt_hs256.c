/* core/jwt_hs256.c — HS256 compact JWS: sign and verify with libjwt; the
 * header and payload are parsed by us too (jansson, strict base64url) so the
 * algorithm is judged before libjwt chooses one.
 */
#include "core/jwt_hs256.h"

#include <jwt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/b64url.h"
#include "util/err.h"

int jwt_hs256_sign(const unsigned char *key, size_t key_len, const char *claims_json, char *out, size_t cap)
{
  if (!key || key_len == 0 || key_len > INT_MAX || !claims_json || !out || cap == 0) return ERR(AGD_EBAD_REQUEST);
  out[0] = '\0';
  int rc = 0;
  jwt_t *jwt = NULL;
  char *tok = NULL;
  if (jwt_new(&jwt) != 0 || jwt_set_alg(jwt, JWT_ALG_HS256, key, (int)key_len) != 0) {
    rc = ERR(AGD_EINTERNAL);
  } else if (jwt_add_grants_json(jwt, claims_json) != 0) {
    rc = ERR(AGD_EBAD_REQUEST);
  } else if (!(tok = jwt_encode_str(jwt))) {
    rc = ERR(AGD_EINTERNAL);
  } else if (strlen(tok) >= cap) {
    rc = ERR(AGD_ETOO_LARGE);
  } else {
    memcpy(out, tok, strlen(tok) + 1);
  }
  free(tok);
  jwt_free(jwt);
  return rc;
}

/* Decode one segment and parse it as a JSON object (duplicate keys refused). */
static json_t *segment_json(const char *p, size_t n)
{
  unsigned char raw[JWT_HS256_TOKEN_MAX];
  size_t rn = 0;
  if (b64url_decode(p, n, raw, sizeof raw, &rn) != 0) return NULL;
  json_t *j = json_loadb((const char *)raw, rn, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

static int refuse(const char **why, const char *reason)
{
  *why = reason;
  return AGD_EAUTH_INVALID;
}

int jwt_hs256_verify(const unsigned char *key, size_t key_len, const char *token, size_t len, json_t **payload,
                     const char **why)
{
  *payload = NULL;
  *why = NULL;
  if (!key || key_len == 0 || key_len > INT_MAX) return refuse(why, "bad signature");

  /* Shape first: bounded length, exactly three segments, no NUL. */
  if (!token || len == 0 || len > JWT_HS256_TOKEN_MAX || memchr(token, '\0', len)) return refuse(why, "malformed");
  const char *d1 = memchr(token, '.', len);
  if (!d1) return refuse(why, "malformed");
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return refuse(why, "malformed");
  size_t hn = (size_t)(d1 - token), pn = (size_t)(d2 - d1 - 1), sn = len - (size_t)(d2 + 1 - token);

  /* SPEC §2: HS256 only, judged on the header we parse ourselves — libjwt's
   * decode picks its algorithm from the header. */
  json_t *hdr = segment_json(token, hn);
  if (!hdr) return refuse(why, "malformed");
  json_t *alg = json_object_get(hdr, "alg");
  int alg_ok =
      json_is_string(alg) && json_string_length(alg) == 5 && strcmp(json_string_value(alg), "HS256") == 0;
  int has_crit = json_object_get(hdr, "crit") != NULL;
  /* libjwt 1.10 refuses any typ but "JWT"; say so rather than "bad signature". */
  json_t *typ = json_object_get(hdr, "typ");
  int typ_ok = !typ || (json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0);
  json_decref(hdr);
  if (!alg_ok) return refuse(why, "algorithm not allowed");
  if (has_crit || !typ_ok) return refuse(why, "malformed"); /* RFC 7515 §4.1.11: no extension understood */
  if (sn == 0) return refuse(why, "bad signature");

  json_t *claims = segment_json(d1 + 1, pn);
  if (!claims) return refuse(why, "malformed");

  /* Signature, by libjwt, then its own idea of the algorithm. */
  char buf[JWT_HS256_TOKEN_MAX + 1];
  memcpy(buf, token, len);
  buf[len] = '\0';
  jwt_t *jwt = NULL;
  int drc = jwt_decode(&jwt, buf, key, (int)key_len);
  jwt_alg_t jalg = drc == 0 && jwt ? jwt_get_alg(jwt) : JWT_ALG_INVAL;
  jwt_free(jwt);
  if (drc != 0 || jalg != JWT_ALG_HS256) {
    json_decref(claims);
    return refuse(why, drc != 0 ? "bad signature" : "algorithm not allowed");
  }
  *payload = claims;
  return 0;
}
