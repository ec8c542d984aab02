/* util/jsonx.h — JSON helpers on top of jansson (jansson owns the json_ prefix).
 *
 * jansson's own nesting cap is 2048; SPEC limits JSON depth to 64 and answers
 * 413 past it, so the depth is checked on the raw bytes before parsing.
 * Any thread.
 */
#ifndef AGD_UTIL_JSONX_H
#define AGD_UTIL_JSONX_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

/* Max nesting of [ and { in p[0..n) (strings and escapes skipped), or -1 when it passes max_depth. */
int jsonx_depth(const char *p, size_t n, int max_depth);

/* Parse a request body.  Returns 0 and *out (new reference), or
 *   AGD_ETOO_LARGE    nesting deeper than max_depth,
 *   AGD_EBAD_REQUEST  malformed JSON / not UTF-8 (msg gets "line L column C: text").
 * An empty body is AGD_EBAD_REQUEST.  msg may be NULL. */
int jsonx_parse(const char *p, size_t n, int max_depth, json_t **out, char *msg, size_t msg_cap);

/* Serialise compactly (no spaces, keys in insertion order) and append to b.
 * 0 or AGD_ETOO_LARGE. */
int jsonx_append(buf_t *b, const json_t *v);
/* Compact serialisation into a malloc'd NUL-terminated string (free()). */
char *jsonx_dumps(const json_t *v);

/* Getters that tolerate absence: return the member if it has the type, else NULL/def. */
const char *jsonx_get_str(const json_t *obj, const char *key); /* NULL if absent/not string */
int jsonx_get_bool(const json_t *obj, const char *key, int def);
int jsonx_get_int(const json_t *obj, const char *key, long long *out); /* 0 if integer present, -1 */

/* 1 when p[0..n) is valid UTF-8 (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF). */
int jsonx_utf8_valid(const char *p, size_t n);

#endif
