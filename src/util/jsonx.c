/* util/jsonx.c — JSON helpers on jansson (util/jsonx.h).
 *
 * SPEC caps JSON nesting at 64 (413 past it) while jansson allows 2048, so
 * request bodies are depth-scanned on the raw bytes before json_loadb().
 * Serialisation is compact, keys in insertion order.  Any thread.
 */
#include "util/jsonx.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"

int jsonx_depth(const char *p, size_t n, int max_depth) {
  int depth = 0, max = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (in_str) {
      if (c == '\\') i++; /* skip the escaped byte (\" and \\ included) */
      else if (c == '"') in_str = 0;
      continue;
    }
    switch (c) {
    case '"': in_str = 1; break;
    case '[':
    case '{':
      if (++depth > max_depth) return -1;
      if (depth > max) max = depth;
      break;
    case ']':
    case '}':
      if (depth > 0) depth--; /* unbalanced input is the parser's problem */
      break;
    default: break;
    }
  }
  return max;
}

int jsonx_parse(const char *p, size_t n, int max_depth, json_t **out, char *msg, size_t msg_cap) {
  *out = NULL;
  if (msg && msg_cap) msg[0] = '\0';
  if (p == NULL || n == 0) {
    if (msg && msg_cap) snprintf(msg, msg_cap, "empty body");
    return AGD_EBAD_REQUEST;
  }
  if (jsonx_depth(p, n, max_depth) < 0) { /* SPEC: too deep is 413, checked before parsing */
    if (msg && msg_cap) snprintf(msg, msg_cap, "JSON nesting deeper than %d", max_depth);
    return AGD_ETOO_LARGE;
  }
  json_error_t jerr;
  /* Scalars parse too (the caller checks the type).  JSON_ALLOW_NUL: "\u0000" is valid
   * JSON, so it is never a 400; the fields read as C strings refuse it (jsonx_get_cstr). */
  json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (v == NULL) {
    if (json_error_code(&jerr) == json_error_null_byte_in_key) { /* valid JSON jansson cannot hold */
      if (msg && msg_cap) snprintf(msg, msg_cap, "object keys must not contain NUL characters");
      return AGD_EVALIDATION;
    }
    if (msg && msg_cap) snprintf(msg, msg_cap, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    return AGD_EBAD_REQUEST;
  }
  *out = v;
  return 0;
}

typedef struct {
  buf_t *b;
  int too_large;
} jsonx_sink_t;

static int jsonx__on_chunk(const char *p, size_t n, void *data) {
  jsonx_sink_t *s = data;
  if (buf_append(s->b, p, n) != 0) {
    s->too_large = 1;
    return -1;
  }
  return 0;
}

/* 15 significant digits: 0.95 prints as 0.95, not 0.94999999999999996. */
#define JSONX_DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

int jsonx_append(buf_t *b, const json_t *v) {
  size_t len0 = b->len;
  jsonx_sink_t s = {b, 0};
  if (json_dump_callback(v, jsonx__on_chunk, &s, JSONX_DUMP_FLAGS) != 0) {
    b->len = len0; /* nothing appended */
    if (b->base) b->base[len0] = '\0';
    return s.too_large ? AGD_ETOO_LARGE : AGD_EINTERNAL;
  }
  return 0;
}

char *jsonx_dumps(const json_t *v) { return json_dumps(v, JSONX_DUMP_FLAGS); }

/* A string whose C form is the whole of it (no embedded NUL). */
static int whole_cstr(const json_t *s) { return strlen(json_string_value(s)) == json_string_length(s); }

const char *jsonx_get_str(const json_t *obj, const char *key) {
  json_t *m = json_object_get(obj, key);
  return json_is_string(m) && whole_cstr(m) ? json_string_value(m) : NULL;
}

int jsonx_get_cstr(const json_t *obj, const char *key, const char **out) {
  json_t *m = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  *out = NULL;
  if (!m || json_is_null(m)) return 0;
  if (!json_is_string(m)) return JSONX_ENOT_STRING;
  if (!whole_cstr(m)) return JSONX_ENUL;
  *out = json_string_value(m);
  return 0;
}

const char *jsonx_cstr_why(int rc) {
  return rc == JSONX_ENUL ? "must not contain NUL characters" : "must be a string";
}

int jsonx_has_nul(const json_t *v) {
  size_t i;
  const char *k;
  json_t *m;
  if (!v) return 0;
  switch (json_typeof(v)) { /* depth is bounded: bodies are depth-checked before parsing */
  case JSON_STRING: return !whole_cstr(v);
  case JSON_ARRAY:
    json_array_foreach(v, i, m) if (jsonx_has_nul(m)) return 1;
    return 0;
  case JSON_OBJECT:
    json_object_foreach((json_t *)v, k, m) if (jsonx_has_nul(m)) return 1;
    return 0;
  default: return 0;
  }
}

int jsonx_get_bool(const json_t *obj, const char *key, int def) {
  json_t *m = json_object_get(obj, key);
  return json_is_boolean(m) ? json_is_true(m) : def;
}

int jsonx_get_int(const json_t *obj, const char *key, long long *out) {
  json_t *m = json_object_get(obj, key);
  if (!json_is_integer(m)) return -1;
  *out = (long long)json_integer_value(m);
  return 0;
}
