/* core/jwt_hs256.h — compact JWS with HS256, through libjwt (SPEC §2).
 *
 * Only the token's envelope: shape, header, signature.  What the claims mean
 * (exp, iat, sub, type, iss, revocation) is core/auth's business.  No state:
 * the key is passed to every call.  Any thread.  Errors: 0 or a negative AGD_E*.
 */
#ifndef AGD_CORE_JWT_HS256_H
#define AGD_CORE_JWT_HS256_H

#include <jansson.h>
#include <stddef.h>

#define JWT_HS256_TOKEN_MAX 8192 /* longest token jwt_hs256_verify() looks at */

/* Sign claims_json (a JSON object) as a compact JWS {"alg":"HS256","typ":"JWT"}
 * under key[0..key_len).  0 and out NUL-terminated; AGD_ETOO_LARGE when it does
 * not fit cap bytes; AGD_EBAD_REQUEST for claims that are not an object;
 * AGD_EINTERNAL if libjwt fails. */
int jwt_hs256_sign(const unsigned char *key, size_t key_len, const char *claims_json, char *out, size_t cap);

/* Check token[0..len) under key: at most JWT_HS256_TOKEN_MAX bytes, no NUL,
 * exactly three segments of strict base64url (util/b64url), header and payload
 * JSON objects without duplicate keys; alg exactly "HS256" (judged on the header
 * we parse ourselves and again on libjwt's view — libjwt picks its algorithm
 * from the header); no "crit"; typ absent or "JWT"; a valid HMAC.
 * 0 and *payload (a new reference: caller json_decref()s), or AGD_EAUTH_INVALID
 * with *why one of "malformed", "algorithm not allowed", "bad signature". */
int jwt_hs256_verify(const unsigned char *key, size_t key_len, const char *token, size_t len, json_t **payload,
                     const char **why);

#endif
