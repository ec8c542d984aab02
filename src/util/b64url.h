/* util/b64url.h — base64url without padding (RFC 4648 §5), the one decoder of
 * agentd: JWT segments (core/auth) and the `jwt.<token>` WebSocket subprotocol
 * (api/ws_api) must agree on what a token is.
 *
 * Strict: only [A-Za-z0-9_-], no '=' padding, no '+' or '/', no blanks; a length
 * of 4k+1 is refused.  OpenSSL decodes the blocks.  Any thread (pure).
 */
#ifndef AGD_UTIL_B64URL_H
#define AGD_UTIL_B64URL_H

#include <stddef.h>

/* Largest input b64url_decode looks at (bytes). */
#define B64URL_MAX_IN 65536

/* Decode in[0..n) into out (cap bytes): 0 and *outn, or -1 (not strict base64url,
 * empty, over B64URL_MAX_IN, or out too small). */
int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *outn);

#endif
