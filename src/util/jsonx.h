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

/* Parse a request body (or a WebSocket frame).  Returns 0 and *out (new reference), or
 *   AGD_ETOO_LARGE    nesting deeper than max_depth,
 *   AGD_EBAD_REQUEST  malformed JSON / not UTF-8 (msg gets "line L column C: text"),
 *   AGD_EVALIDATION   valid JSON that jansson cannot hold: an object key with a \u0000
 *                     escape (msg says so; the caller answers 422 naming "body").
 * A \u0000 escape in a string value is valid JSON and is accepted (JSON_ALLOW_NUL):
 * such a string has json_string_length() > strlen(); read the strings that go on as
 * C strings with jsonx_get_cstr(), which refuses them instead of cutting them short.
 * An empty body is AGD_EBAD_REQUEST.  msg may be NULL. */
int jsonx_parse(const char *p, size_t n, int max_depth, json_t **out, char *msg, size_t msg_cap);

/* Serialise compactly (no spaces, keys in insertion order) and append to b.
 * 0 or AGD_ETOO_LARGE. */
int jsonx_append(buf_t *b, const json_t *v);
/* Compact serialisation into a malloc'd NUL-terminated string (free()). */
char *jsonx_dumps(const json_t *v);

/* Getters that tolerate absence: return the member if it has the type, else NULL/def.
 * jsonx_get_str is NULL too for a string with an embedded NUL (never a cut-short copy). */
const char *jsonx_get_str(const json_t *obj, const char *key); /* NULL if absent/not string */
int jsonx_get_bool(const json_t *obj, const char *key, int def);
int jsonx_get_int(const json_t *obj, const char *key, long long *out); /* 0 if integer present, -1 */

/* A string field of a request body that goes on as a C string (content, title, name,
 * email, ids, …).  Returns
 *   0                  *out = the string, or NULL when the member is absent or JSON null,
 *   JSONX_ENOT_STRING  the member has another type (*out = NULL),
 *   JSONX_ENUL         the string holds a NUL character (valid JSON: "\u0000"), which a C
 *                      string would silently cut short (*out = NULL).
 * For the last two the caller answers 422 VALIDATION_ERROR naming the field, with the
 * message jsonx_cstr_why(rc).  obj may be NULL or a non-object (then: absent). */
#define JSONX_ENOT_STRING (-1)
#define JSONX_ENUL (-2)
int jsonx_get_cstr(const json_t *obj, const char *key, const char **out);
/* "must be a string" / "must not contain NUL characters" for those codes (static). */
const char *jsonx_cstr_why(int rc);
/* 1 when a string anywhere inside v (array and object values, recursively) holds a NUL
 * character: for free-form JSON (metadata, context, tool arguments) that is stored as
 * text and read back, or handed to code that reads its strings as C strings. */
int jsonx_has_nul(const json_t *v);

#endif
