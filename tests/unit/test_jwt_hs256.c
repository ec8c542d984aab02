/* tests/unit/test_jwt_hs256.c — core/jwt_hs256: the HS256 JWS envelope. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <string.h>

#include "core/jwt_hs256.h"
#include "util/err.h"

static const unsigned char KEY[] = "0123456789abcdef0123456789abcdef-jws-key";
#define KEYLEN (sizeof KEY - 1)

Test(jwt_hs256, sign_verify_round_trip)
{
  char tok[1024];
  cr_assert_eq(jwt_hs256_sign(KEY, KEYLEN, "{\"sub\":\"usr_1\",\"n\":7}", tok, sizeof tok), 0);
  cr_assert_eq(strchr(strchr(tok, '.') + 1, '.') != NULL, 1);
  json_t *p = NULL;
  const char *why = NULL;
  cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, tok, strlen(tok), &p, &why), 0, "%s", why);
  cr_assert_str_eq(json_string_value(json_object_get(p, "sub")), "usr_1");
  cr_assert_eq(json_integer_value(json_object_get(p, "n")), 7);
  json_decref(p);
  /* another key: bad signature, nothing handed out */
  static const unsigned char OTHER[] = "another-key-another-key-another-key!";
  cr_assert_eq(jwt_hs256_verify(OTHER, sizeof OTHER - 1, tok, strlen(tok), &p, &why), AGD_EAUTH_INVALID);
  cr_assert_str_eq(why, "bad signature");
  cr_assert_null(p);
  /* too small a buffer */
  char small[16];
  cr_assert_eq(jwt_hs256_sign(KEY, KEYLEN, "{\"sub\":\"usr_1\"}", small, sizeof small), AGD_ETOO_LARGE);
}

Test(jwt_hs256, envelope_refusals)
{
  json_t *p = NULL;
  const char *why = NULL;
  /* {"alg":"none"} . {"sub":"x"} . "" */
  const char *none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
  cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, none, strlen(none), &p, &why), AGD_EAUTH_INVALID);
  cr_assert_str_eq(why, "algorithm not allowed");
  /* {"alg":"HS256","crit":["x"]} */
  const char *crit = "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieCJdfQ.eyJzdWIiOiJ4In0.c2ln";
  cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, crit, strlen(crit), &p, &why), AGD_EAUTH_INVALID);
  cr_assert_str_eq(why, "malformed");
  const char *shapes[] = {"a.b", "a.b.c.d", "...", "eyJhbGciOiJIUzI1NiJ9.e30"};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, shapes[i], strlen(shapes[i]), &p, &why), AGD_EAUTH_INVALID, "%s",
                 shapes[i]);
    cr_assert_null(p);
  }
  /* an empty signature is a bad signature, not a token without one */
  const char *nosig = "eyJhbGciOiJIUzI1NiJ9.e30.";
  cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, nosig, strlen(nosig), &p, &why), AGD_EAUTH_INVALID);
  cr_assert_str_eq(why, "bad signature");
  cr_assert_eq(jwt_hs256_verify(KEY, KEYLEN, nosig, JWT_HS256_TOKEN_MAX + 1, &p, &why), AGD_EAUTH_INVALID);
  cr_assert_str_eq(why, "malformed");
}
