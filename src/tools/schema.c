/* tools/schema.c — JSON Schema validation, see schema.h.
 *
 * schema_compile walks the document once (every subschema it could apply,
 * $defs included), checks each keyword's form, compiles each `pattern` and
 * `patternProperties` key, and checks each $ref; schema_validate then walks
 * the schema against the value, looking compiled regexes up by the address of
 * their JSON node (the document is immutable while the schema lives).
 *
 * `pattern` is ECMA-262 in JSON Schema; we match with POSIX regcomp
 * (REG_EXTENDED) after a small translation (translate_pattern):
 *   - \d \D become [0-9] [^0-9] (0-9 inside a class); \n \t \r \f \v become
 *     the characters; \w \W \s \S \b \B stay (GNU regex knows them outside a
 *     class); \w and \s inside a class are spelled out; an escaped punctuation
 *     mark becomes itself (escaped when ERE treats it as special);
 *   - "(?:" becomes "("; lazy quantifiers (*? +? ?? }?) lose the '?', which
 *     never changes whether a string matches;
 *   - refused (the schema is invalid): back-references (\1, slow in glibc and
 *     not ERE), lookaround and other "(?" groups, \u \x \p \c escapes, \D \W \S
 *     inside a class, \] \^ \- inside a class.
 * Differences that remain: "." also matches a newline; matching is by bytes
 * in the C locale, so a class or "." sees a multi-byte character as several
 * bytes (literal UTF-8 text still matches); ERE's leftmost-longest rule does
 * not change whether a string matches.  Patterns are capped at 1000 bytes.
 */
#include "tools/schema.h"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/utf8.h"
#include "util/xalloc.h"

#define PATTERN_MAX 1000
#define PTR_MAX 256  /* the JSON pointer shown in compile errors */
#define PATH_MAX_ 512 /* the failing value's path */
#define MSG_MAX 300

typedef struct compiled_re {
  const void *key; /* the pattern's json_t node, or the patternProperties key */
  regex_t re;
} compiled_re_t;

struct schema {
  json_t *doc;
  compiled_re_t *re; /* sorted by key after compiling */
  size_t n_re, cap_re;
};

/* ---- small helpers ---- */

/* A keyword that must hold a non-negative integer (5 or 5.0). */
static int is_count(const json_t *v) {
  if (json_is_integer(v)) return json_integer_value(v) >= 0;
  if (!json_is_real(v)) return 0;
  double d = json_real_value(v);
  return d >= 0 && d <= 9e15 && d == floor(d);
}

static long long count_value(const json_t *v) {
  return json_is_integer(v) ? (long long)json_integer_value(v) : (long long)json_real_value(v);
}

static const char *const TYPE_NAMES[] = {"string", "number", "integer", "boolean", "array", "object", "null"};

static int known_type(const char *t) {
  for (size_t i = 0; i < sizeof(TYPE_NAMES) / sizeof(TYPE_NAMES[0]); i++)
    if (strcmp(t, TYPE_NAMES[i]) == 0) return 1;
  return 0;
}

static int type_is(const char *t, const json_t *v) {
  if (strcmp(t, "string") == 0) return json_is_string(v);
  if (strcmp(t, "number") == 0) return json_is_number(v);
  if (strcmp(t, "integer") == 0) {
    if (json_is_integer(v)) return 1;
    if (!json_is_real(v)) return 0;
    double d = json_real_value(v); /* JSON Schema: 1.0 is an integer */
    return isfinite(d) && d == floor(d);
  }
  if (strcmp(t, "boolean") == 0) return json_is_boolean(v);
  if (strcmp(t, "array") == 0) return json_is_array(v);
  if (strcmp(t, "object") == 0) return json_is_object(v);
  if (strcmp(t, "null") == 0) return json_is_null(v);
  return 0;
}

/* JSON Schema equality (enum, const): numbers by value (1 == 1.0), objects
 * regardless of key order. */
static int json_same(const json_t *a, const json_t *b) {
  if (json_is_number(a) && json_is_number(b)) {
    if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
    return json_number_value(a) == json_number_value(b);
  }
  if (json_typeof(a) != json_typeof(b)) return 0;
  if (json_is_array(a)) {
    if (json_array_size(a) != json_array_size(b)) return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!json_same(json_array_get(a, i), json_array_get(b, i))) return 0;
    return 1;
  }
  if (json_is_object(a)) {
    if (json_object_size(a) != json_object_size(b)) return 0;
    const char *k;
    size_t klen;
    json_t *va;
    json_object_keylen_foreach((json_t *)a, k, klen, va) {
      const json_t *vb = json_object_getn(b, k, klen);
      if (!vb || !json_same(va, vb)) return 0;
    }
    return 1;
  }
  return json_equal((json_t *)a, (json_t *)b);
}

/* Resolve a local $ref ("#", "#/$defs/...", "#/definitions/..."); NULL when it
 * is not local or names nothing. */
static const json_t *resolve_ref(const json_t *root, const char *ref) {
  if (strcmp(ref, "#") == 0) return root;
  if (strncmp(ref, "#/$defs/", 8) != 0 && strncmp(ref, "#/definitions/", 14) != 0) return NULL;
  const json_t *cur = root;
  const char *p = ref + 2;
  char tok[256];
  while (cur) {
    size_t n = 0;
    for (; *p && *p != '/'; p++) {
      char ch = *p;
      if (ch == '~') { /* RFC 6901 escapes */
        if (p[1] == '0') ch = '~';
        else if (p[1] == '1') ch = '/';
        else return NULL;
        p++;
      }
      if (n + 1 >= sizeof(tok)) return NULL;
      tok[n++] = ch;
    }
    tok[n] = '\0';
    if (json_is_object(cur)) {
      cur = json_object_getn(cur, tok, n);
    } else if (json_is_array(cur)) {
      char *end;
      unsigned long i = strtoul(tok, &end, 10);
      cur = (n && *end == '\0') ? json_array_get(cur, i) : NULL;
    } else {
      return NULL;
    }
    if (*p == '\0') return cur;
    p++;
  }
  return NULL;
}

/* ---- pattern translation (ECMA-262 → POSIX ERE, see the top comment) ---- */

static int emit(char *dst, size_t cap, size_t *o, const char *s) {
  size_t n = strlen(s);
  if (*o + n + 1 > cap) return -1;
  memcpy(dst + *o, s, n);
  *o += n;
  dst[*o] = '\0';
  return 0;
}

static int translate_pattern(const char *src, char *dst, size_t cap, const char **why) {
  size_t o = 0;
  int in_class = 0;
  dst[0] = '\0';
  *why = "pattern too long";
  for (const char *p = src; *p; p++) {
    char one[3] = {*p, 0, 0};
    if (*p == '\\') {
      char c = p[1];
      if (!c) {
        *why = "pattern ends with a lone backslash";
        return -1;
      }
      p++;
      const char *out = NULL;
      if (c >= '1' && c <= '9') {
        *why = "back-references are not supported";
        return -1;
      }
      switch (c) {
        case 'd': out = in_class ? "0-9" : "[0-9]"; break;
        case 'D': out = in_class ? NULL : "[^0-9]"; break;
        case 'w': out = in_class ? "A-Za-z0-9_" : "\\w"; break;
        case 's': out = in_class ? " \t\n\r\f\v" : "\\s"; break;
        case 'W': out = in_class ? NULL : "\\W"; break;
        case 'S': out = in_class ? NULL : "\\S"; break;
        case 'b': out = in_class ? "\b" : "\\b"; break;
        case 'B': out = in_class ? NULL : "\\B"; break;
        case 'n': out = "\n"; break;
        case 't': out = "\t"; break;
        case 'r': out = "\r"; break;
        case 'f': out = "\f"; break;
        case 'v': out = "\v"; break;
        default:
          if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) break; /* \u \x \p ... */
          if (in_class) {
            if (c == ']' || c == '^' || c == '-') break;
            one[0] = c; /* a backslash is literal inside a POSIX class */
            out = one;
          } else if (strchr(".[]()*+?{}|^$\\", c)) {
            one[0] = '\\';
            one[1] = c;
            out = one;
          } else {
            one[0] = c;
            out = one;
          }
      }
      if (!out) {
        *why = "unsupported escape in pattern";
        return -1;
      }
      if (emit(dst, cap, &o, out) != 0) return -1;
      continue;
    }
    if (in_class) {
      if (*p == ']') in_class = 0;
    } else if (*p == '[') {
      in_class = 1;
      if (emit(dst, cap, &o, "[") != 0) return -1;
      if (p[1] == '^') {
        p++;
        if (emit(dst, cap, &o, "^") != 0) return -1;
      }
      continue;
    } else if (*p == '(' && p[1] == '?') {
      if (p[2] != ':') {
        *why = "lookaround and named groups are not supported";
        return -1;
      }
      p += 2;
    } else if (*p == '?' && p > src && (p[-1] == '*' || p[-1] == '+' || p[-1] == '?' || p[-1] == '}') &&
               !(p - 1 > src && p[-2] == '\\')) {
      continue; /* lazy quantifier: same match/no-match answer */
    }
    if (emit(dst, cap, &o, one) != 0) return -1;
  }
  return 0;
}

/* glibc unrolls a bounded repetition into copies of its operand, so nested
 * counts multiply: (a{1,100}){1,100} builds some 10 000 nodes, one more level a
 * million, and matching costs grow with them.  Estimate the unrolled size of
 * the ERE and refuse a pattern above PATTERN_MAX_COST (a server's schema is
 * input too).  Ordinary patterns ("^.{1,256}$", an e-mail shape) cost hundreds. */
#define PATTERN_MAX_COST 20000.0

static int pattern_cost_ok(const char *ere) {
  double group[SCHEMA_MAX_DEPTH + 1]; /* cost of the group being read, per nesting level */
  int sp = 0;
  double last = 0; /* cost of the last atom (what a quantifier repeats) */
  group[0] = 0;
  for (const char *p = ere; *p; p++) {
    switch (*p) {
      case '\\':
        if (p[1]) p++;
        last = 1;
        group[sp] += 1;
        break;
      case '[': /* a class is one atom; skip to its end ("[]a]", "[^]a]", "[[:alpha:]]") */
        p++;
        if (*p == '^') p++;
        if (*p == ']') p++;
        while (*p && *p != ']') {
          if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char close = p[1];
            p += 2;
            while (*p && !(*p == close && p[1] == ']')) p++;
            if (*p) p++;
          }
          if (*p) p++;
        }
        if (!*p) return 1; /* unterminated: regcomp refuses it */
        last = 1;
        group[sp] += 1;
        break;
      case '(':
        if (sp >= SCHEMA_MAX_DEPTH) return 0;
        group[++sp] = 0;
        break;
      case ')':
        last = sp > 0 ? group[sp--] : 1;
        group[sp] += last;
        break;
      case '{': {
        char *end;
        double lo = strtod(p + 1, &end), hi = lo;
        if (*end == ',') hi = end[1] == '}' ? lo + 1 : strtod(end + 1, &end);
        if (hi < 1) hi = 1;
        group[sp] += last * (hi - 1);
        last *= hi;
        while (*p && *p != '}') p++;
        if (!*p) return 1;
        break;
      }
      case '*':
      case '+':
      case '?':
      case '|':
      case '^':
      case '$':
        break;
      default:
        last = 1;
        group[sp] += 1;
    }
    if (group[sp] > PATTERN_MAX_COST || last > PATTERN_MAX_COST) return 0;
  }
  return group[0] <= PATTERN_MAX_COST;
}

/* ---- compile ---- */

typedef struct cctx {
  schema_t *s;
  char *err;
  size_t errcap;
  char ptr[PTR_MAX];
  size_t plen;
  const json_t **nodes; /* every schema object walked (sorted afterwards) */
  size_t n_nodes, cap_nodes;
  const json_t **refs; /* every object holding a $ref */
  size_t n_refs, cap_refs;
} cctx_t;

static int cfail(cctx_t *c, const char *fmt, ...) {
  if (c->err && c->errcap) {
    int n = snprintf(c->err, c->errcap, "#%s: ", c->ptr);
    if (n >= 0 && (size_t)n < c->errcap) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(c->err + n, c->errcap - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return AGD_EVALIDATION;
}

static size_t cpush(cctx_t *c, const char *seg) {
  size_t old = c->plen;
  int n = snprintf(c->ptr + c->plen, sizeof(c->ptr) - c->plen, "/%s", seg);
  if (n > 0) c->plen = c->plen + (size_t)n < sizeof(c->ptr) ? c->plen + (size_t)n : sizeof(c->ptr) - 1;
  return old;
}

static size_t cpush_i(cctx_t *c, const char *kw, size_t i) {
  char seg[64];
  snprintf(seg, sizeof(seg), "%s/%zu", kw, i);
  return cpush(c, seg);
}

static void cpop(cctx_t *c, size_t old) {
  c->plen = old;
  c->ptr[old] = '\0';
}

static void grow(void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return;
  size_t nc = *cap ? *cap * 2 : 16;
  while (nc < need) nc *= 2;
  *arr = xrealloc(*arr, nc * elem);
  *cap = nc;
}

static int add_regex(cctx_t *c, const void *key, const char *pattern) {
  if (strlen(pattern) > PATTERN_MAX) return cfail(c, "pattern longer than %d bytes", PATTERN_MAX);
  char ere[PATTERN_MAX * 4 + 16];
  const char *why;
  if (translate_pattern(pattern, ere, sizeof(ere), &why) != 0) return cfail(c, "%s", why);
  if (!pattern_cost_ok(ere)) return cfail(c, "pattern too complex (nested repetition counts)");
  grow((void **)&c->s->re, &c->s->cap_re, c->s->n_re + 1, sizeof(compiled_re_t));
  compiled_re_t *r = &c->s->re[c->s->n_re];
  int rc = regcomp(&r->re, ere, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char buf[128];
    regerror(rc, &r->re, buf, sizeof(buf));
    return cfail(c, "pattern does not compile (%s)", buf);
  }
  r->key = key;
  c->s->n_re++;
  return 0;
}

static int walk(cctx_t *c, const json_t *sch, int depth);

static int walk_array(cctx_t *c, const json_t *arr, const char *kw, int depth, int nonempty) {
  if (!json_is_array(arr) || (nonempty && json_array_size(arr) == 0))
    return cfail(c, "%s must be a%s array of schemas", kw, nonempty ? " non-empty" : "n");
  for (size_t i = 0; i < json_array_size(arr); i++) {
    size_t old = cpush_i(c, kw, i);
    int rc = walk(c, json_array_get(arr, i), depth + 1);
    cpop(c, old);
    if (rc) return rc;
  }
  return 0;
}

static int walk_map(cctx_t *c, const json_t *map, const char *kw, int depth, int regex_keys) {
  if (!json_is_object(map)) return cfail(c, "%s must be an object", kw);
  size_t old = cpush(c, kw);
  const char *k;
  json_t *v;
  int rc = 0;
  json_object_foreach((json_t *)map, k, v) {
    size_t o2 = cpush(c, k);
    if (regex_keys) rc = add_regex(c, k, k);
    if (!rc) rc = walk(c, v, depth + 1);
    cpop(c, o2);
    if (rc) break;
  }
  cpop(c, old);
  return rc;
}

static int walk_one(cctx_t *c, const json_t *sub, const char *kw, int depth) {
  size_t old = cpush(c, kw);
  int rc = walk(c, sub, depth + 1);
  cpop(c, old);
  return rc;
}

static int walk_keyword(cctx_t *c, const json_t *sch, const char *kw, const json_t *v, int depth) {
  if (strcmp(kw, "type") == 0) {
    if (json_is_string(v)) {
      if (!known_type(json_string_value(v))) return cfail(c, "unknown type '%.40s'", json_string_value(v));
      return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) return cfail(c, "type must be a name or an array of names");
    for (size_t i = 0; i < json_array_size(v); i++) {
      const char *t = json_string_value(json_array_get(v, i));
      if (!t || !known_type(t)) return cfail(c, "type[%zu] is not a known type name", i);
    }
    return 0;
  }
  if (strcmp(kw, "enum") == 0) return json_is_array(v) ? 0 : cfail(c, "enum must be an array");
  if (strcmp(kw, "allOf") == 0 || strcmp(kw, "anyOf") == 0 || strcmp(kw, "oneOf") == 0)
    return walk_array(c, v, kw, depth, 1);
  if (strcmp(kw, "prefixItems") == 0) return walk_array(c, v, kw, depth, 0);
  if (strcmp(kw, "items") == 0) return json_is_array(v) ? walk_array(c, v, kw, depth, 0) : walk_one(c, v, kw, depth);
  if (strcmp(kw, "not") == 0 || strcmp(kw, "additionalProperties") == 0) return walk_one(c, v, kw, depth);
  if (strcmp(kw, "properties") == 0 || strcmp(kw, "$defs") == 0 || strcmp(kw, "definitions") == 0)
    return walk_map(c, v, kw, depth, 0);
  if (strcmp(kw, "patternProperties") == 0) return walk_map(c, v, kw, depth, 1);
  if (strcmp(kw, "required") == 0) {
    if (!json_is_array(v)) return cfail(c, "required must be an array of names");
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!json_is_string(json_array_get(v, i))) return cfail(c, "required[%zu] must be a string", i);
    return 0;
  }
  if (strcmp(kw, "minimum") == 0 || strcmp(kw, "maximum") == 0)
    return json_is_number(v) ? 0 : cfail(c, "%s must be a number", kw);
  if (strcmp(kw, "exclusiveMinimum") == 0 || strcmp(kw, "exclusiveMaximum") == 0)
    return json_is_number(v) || json_is_boolean(v) ? 0 : cfail(c, "%s must be a number", kw);
  if (strcmp(kw, "multipleOf") == 0)
    return json_is_number(v) && json_number_value(v) > 0 ? 0 : cfail(c, "multipleOf must be a number > 0");
  if (strcmp(kw, "minLength") == 0 || strcmp(kw, "maxLength") == 0 || strcmp(kw, "minItems") == 0 ||
      strcmp(kw, "maxItems") == 0)
    return is_count(v) ? 0 : cfail(c, "%s must be a non-negative integer", kw);
  if (strcmp(kw, "pattern") == 0) {
    if (!json_is_string(v)) return cfail(c, "pattern must be a string");
    size_t old = cpush(c, "pattern");
    int rc = add_regex(c, v, json_string_value(v));
    cpop(c, old);
    return rc;
  }
  if (strcmp(kw, "$ref") == 0) {
    if (!json_is_string(v)) return cfail(c, "$ref must be a string");
    grow((void **)&c->refs, &c->cap_refs, c->n_refs + 1, sizeof(*c->refs));
    c->refs[c->n_refs++] = sch;
    return 0;
  }
  return 0; /* an annotation or a keyword we do not check */
}

static int walk(cctx_t *c, const json_t *sch, int depth) {
  if (json_is_boolean(sch)) return 0;
  if (!json_is_object(sch)) return cfail(c, "a schema must be an object or a boolean");
  if (depth > SCHEMA_MAX_DEPTH) return cfail(c, "schema nested deeper than %d levels", SCHEMA_MAX_DEPTH);
  grow((void **)&c->nodes, &c->cap_nodes, c->n_nodes + 1, sizeof(*c->nodes));
  c->nodes[c->n_nodes++] = sch;
  const char *kw;
  json_t *v;
  json_object_foreach((json_t *)sch, kw, v) {
    int rc = walk_keyword(c, sch, kw, v, depth);
    if (rc) return rc;
  }
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
  return x < y ? -1 : x > y;
}

static int walked(const cctx_t *c, const json_t *node) {
  return json_is_boolean(node) || (c->n_nodes && bsearch(&node, c->nodes, c->n_nodes, sizeof(*c->nodes), cmp_ptr) != NULL);
}

/* Each $ref must be local, name a subschema we walked, and not start a chain of
 * $refs that comes back to itself (that would recurse without consuming the
 * value).  Recursion through properties/items is fine: the value is finite. */
static int check_refs(cctx_t *c) {
  if (c->n_nodes > 1) qsort(c->nodes, c->n_nodes, sizeof(*c->nodes), cmp_ptr);
  for (size_t i = 0; i < c->n_refs; i++) {
    const json_t *node = c->refs[i];
    const char *ref = json_string_value(json_object_get(node, "$ref"));
    c->plen = 0;
    c->ptr[0] = '\0';
    const json_t *t = resolve_ref(c->s->doc, ref);
    if (!t) return cfail(c, "$ref '%.100s' is not a local #/$defs/... reference that exists", ref);
    if (!walked(c, t)) return cfail(c, "$ref '%.100s' does not name a schema", ref);
    const json_t *cur = t;
    for (int hops = 0; json_is_object(cur) && json_is_string(json_object_get(cur, "$ref")); hops++) {
      if (cur == node || hops > SCHEMA_MAX_DEPTH) return cfail(c, "$ref '%.100s' is a cycle of $refs", ref);
      cur = resolve_ref(c->s->doc, json_string_value(json_object_get(cur, "$ref")));
    }
  }
  return 0;
}

static int cmp_re(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const compiled_re_t *)a)->key, y = (uintptr_t)((const compiled_re_t *)b)->key;
  return x < y ? -1 : x > y;
}

int schema_compile(const json_t *doc, schema_t **out, char *err, size_t errcap) {
  *out = NULL;
  if (err && errcap) err[0] = '\0';
  schema_t *s = xcalloc(1, sizeof(*s));
  s->doc = json_incref((json_t *)doc);
  cctx_t c = {.s = s, .err = err, .errcap = errcap};
  int rc = walk(&c, doc, 0);
  if (rc == 0) rc = check_refs(&c);
  free(c.nodes);
  free(c.refs);
  if (rc != 0) {
    schema_free(s);
    return rc;
  }
  if (s->n_re > 1) qsort(s->re, s->n_re, sizeof(*s->re), cmp_re);
  *out = s;
  return 0;
}

void schema_free(schema_t *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_re; i++) regfree(&s->re[i].re);
  free(s->re);
  json_decref(s->doc);
  free(s);
}

json_t *schema_doc(const schema_t *s) { return s ? s->doc : NULL; }

static const regex_t *find_re(const schema_t *s, const void *key) {
  if (s->n_re == 0) return NULL;
  compiled_re_t k = {.key = key};
  const compiled_re_t *r = bsearch(&k, s->re, s->n_re, sizeof(*s->re), cmp_re);
  return r ? &r->re : NULL;
}

/* 1 match, 0 no match, -1 no compiled regex (cannot happen after compile). */
static int pattern_match(const schema_t *s, const void *key, const char *str, size_t len) {
  const regex_t *re = find_re(s, key);
  if (!re) return -1;
  regmatch_t m[1] = {{.rm_so = 0, .rm_eo = (regoff_t)len}};
  /* REG_STARTEND: the bounds come from m[0], so a string holding NUL is whole. */
  return regexec(re, str, 1, m, REG_STARTEND) == 0;
}

/* ---- validate ---- */

typedef struct vctx {
  const schema_t *s;
  int depth;
  long steps;
  int fatal; /* depth or step budget exhausted: stop everything */
  size_t root_len;
  char path[PATH_MAX_];
  size_t plen;
  char epath[PATH_MAX_]; /* where the reported failure is */
  char emsg[MSG_MAX];
} vctx_t;

static int vfail(vctx_t *c, const char *fmt, ...) {
  memcpy(c->epath, c->path, c->plen + 1);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->emsg, sizeof(c->emsg), fmt, ap);
  va_end(ap);
  return AGD_EVALIDATION;
}

static size_t vpush_raw(vctx_t *c, const char *s) {
  size_t old = c->plen;
  size_t n = strlen(s);
  if (c->plen + n >= sizeof(c->path)) n = sizeof(c->path) - 1 - c->plen;
  memcpy(c->path + c->plen, s, n);
  c->plen += n;
  c->path[c->plen] = '\0';
  return old;
}

/* ".name" for identifier-like keys, ["a b"] otherwise (quotes escaped). */
static size_t vpush_key(vctx_t *c, const char *k, size_t klen) {
  int ident = klen > 0 && klen <= 200;
  for (size_t i = 0; ident && i < klen; i++) {
    char ch = k[i];
    ident = ch == '_' || ch == '-' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (i > 0 && ch >= '0' && ch <= '9');
  }
  char seg[220];
  size_t o = 0;
  if (ident) {
    seg[o++] = '.';
    memcpy(seg + o, k, klen);
    o += klen;
  } else {
    seg[o++] = '[';
    seg[o++] = '"';
    for (size_t i = 0; i < klen && o < sizeof(seg) - 6; i++) {
      unsigned char ch = (unsigned char)k[i];
      if (ch == '"' || ch == '\\') seg[o++] = '\\';
      seg[o++] = ch < 0x20 ? '?' : (char)ch;
    }
    seg[o++] = '"';
    seg[o++] = ']';
  }
  seg[o] = '\0';
  return vpush_raw(c, seg);
}

static size_t vpush_index(vctx_t *c, size_t i) {
  char seg[32];
  snprintf(seg, sizeof(seg), "[%zu]", i);
  return vpush_raw(c, seg);
}

static void vpop(vctx_t *c, size_t old) {
  c->plen = old;
  c->path[old] = '\0';
}

static int v(vctx_t *c, const json_t *sch, const json_t *inst);

static const char *article(const char *t) {
  if (strcmp(t, "null") == 0) return "";
  return (t[0] == 'a' || t[0] == 'i' || t[0] == 'o') ? "an " : "a ";
}

static int check_type(vctx_t *c, const json_t *type, const json_t *inst) {
  if (json_is_string(type)) {
    const char *t = json_string_value(type);
    return type_is(t, inst) ? 0 : vfail(c, "must be %s%s", article(t), t);
  }
  size_t n = json_array_size(type);
  for (size_t i = 0; i < n; i++)
    if (type_is(json_string_value(json_array_get(type, i)), inst)) return 0;
  char msg[MSG_MAX];
  size_t o = (size_t)snprintf(msg, sizeof(msg), "must be");
  for (size_t i = 0; i < n && o < sizeof(msg); i++) {
    const char *t = json_string_value(json_array_get(type, i));
    o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s%s%s", i == 0 ? " " : i + 1 == n ? " or " : ", ", article(t),
                          t);
  }
  return vfail(c, "%s", msg);
}

static int check_enum(vctx_t *c, const json_t *en, const json_t *inst) {
  size_t i;
  const json_t *e;
  json_array_foreach(en, i, e) if (json_same(e, inst)) return 0;
  char msg[MSG_MAX];
  size_t o = (size_t)snprintf(msg, sizeof(msg), "must be one of:");
  json_array_foreach(en, i, e) {
    if (o >= sizeof(msg)) break;
    char *s = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
    o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s %s", i ? "," : "", s ? s : "?");
    free(s);
  }
  return vfail(c, "%s", msg);
}

static int check_number(vctx_t *c, const json_t *sch, const json_t *inst) {
  double x = json_number_value(inst);
  const json_t *mn = json_object_get(sch, "minimum"), *mx = json_object_get(sch, "maximum");
  const json_t *emn = json_object_get(sch, "exclusiveMinimum"), *emx = json_object_get(sch, "exclusiveMaximum");
  if (json_is_number(mn)) {
    double m = json_number_value(mn);
    if (json_is_true(emn) && x <= m) return vfail(c, "must be > %g", m); /* draft-04 form */
    if (x < m) return vfail(c, "must be >= %g", m);
  }
  if (json_is_number(mx)) {
    double m = json_number_value(mx);
    if (json_is_true(emx) && x >= m) return vfail(c, "must be < %g", m);
    if (x > m) return vfail(c, "must be <= %g", m);
  }
  if (json_is_number(emn) && x <= json_number_value(emn)) return vfail(c, "must be > %g", json_number_value(emn));
  if (json_is_number(emx) && x >= json_number_value(emx)) return vfail(c, "must be < %g", json_number_value(emx));
  const json_t *mo = json_object_get(sch, "multipleOf");
  if (json_is_number(mo)) {
    double q = x / json_number_value(mo);
    if (!isfinite(q) || fabs(q - round(q)) > 1e-9 * fmax(1.0, fabs(q)))
      return vfail(c, "must be a multiple of %g", json_number_value(mo));
  }
  return 0;
}

static int check_string(vctx_t *c, const json_t *sch, const json_t *inst) {
  const char *s = json_string_value(inst);
  size_t bytes = json_string_length(inst);
  const json_t *mn = json_object_get(sch, "minLength"), *mx = json_object_get(sch, "maxLength");
  if (mn || mx) {
    long long chars = (long long)utf8_chars(s, bytes); /* code points, not bytes */
    if (mn && chars < count_value(mn)) {
      if (count_value(mn) == 1) return vfail(c, "must not be empty");
      return vfail(c, "must be at least %lld characters", count_value(mn));
    }
    if (mx && chars > count_value(mx)) return vfail(c, "must be at most %lld characters", count_value(mx));
  }
  const json_t *pat = json_object_get(sch, "pattern");
  if (pat && pattern_match(c->s, pat, s, bytes) != 1)
    return vfail(c, "must match the pattern %.200s", json_string_value(pat));
  return 0;
}

static int check_array(vctx_t *c, const json_t *sch, const json_t *inst) {
  size_t n = json_array_size(inst);
  const json_t *mn = json_object_get(sch, "minItems"), *mx = json_object_get(sch, "maxItems");
  if (mn && (long long)n < count_value(mn)) return vfail(c, "must have at least %lld items", count_value(mn));
  if (mx && (long long)n > count_value(mx)) return vfail(c, "must have at most %lld items", count_value(mx));
  const json_t *items = json_object_get(sch, "items");
  const json_t *prefix = json_object_get(sch, "prefixItems");
  if (json_is_array(items)) { /* draft-07 tuple form */
    prefix = items;
    items = NULL;
  }
  size_t np = json_array_size(prefix);
  for (size_t i = 0; i < n; i++) {
    const json_t *sub = i < np ? json_array_get(prefix, i) : items;
    if (!sub) {
      if (!prefix) break;
      continue;
    }
    size_t old = vpush_index(c, i);
    int rc = v(c, sub, json_array_get(inst, i));
    vpop(c, old);
    if (rc) return rc;
  }
  return 0;
}

static int check_object(vctx_t *c, const json_t *sch, const json_t *inst) {
  const json_t *req = json_object_get(sch, "required");
  for (size_t i = 0; i < json_array_size(req); i++) {
    const json_t *r = json_array_get(req, i);
    if (!json_object_getn(inst, json_string_value(r), json_string_length(r))) {
      size_t old = vpush_key(c, json_string_value(r), json_string_length(r));
      int rc = vfail(c, "is required");
      vpop(c, old);
      return rc;
    }
  }
  const json_t *props = json_object_get(sch, "properties");
  const json_t *pprops = json_object_get(sch, "patternProperties");
  const json_t *addl = json_object_get(sch, "additionalProperties");
  if (!props && !pprops && !addl) return 0;
  const char *k;
  size_t klen;
  json_t *val;
  json_object_keylen_foreach((json_t *)inst, k, klen, val) {
    size_t old = vpush_key(c, k, klen);
    int known = 0, rc = 0;
    const json_t *ps = json_is_object(props) ? json_object_getn(props, k, klen) : NULL;
    if (ps) {
      known = 1;
      rc = v(c, ps, val);
    }
    if (!rc && json_is_object(pprops)) {
      const char *pk;
      json_t *psub;
      json_object_foreach((json_t *)pprops, pk, psub) {
        if (pattern_match(c->s, pk, k, klen) != 1) continue;
        known = 1;
        if ((rc = v(c, psub, val)) != 0) break;
      }
    }
    if (!rc && !known && addl) {
      if (json_is_false(addl))
        rc = vfail(c, old == c->root_len ? "is not a known argument" : "is not a known property");
      else
        rc = v(c, addl, val);
    }
    vpop(c, old);
    if (rc) return rc;
  }
  return 0;
}

/* anyOf / oneOf: how many branches pass; a failure reports the branch that got
 * deepest into the value (most likely the one meant), or else every branch's
 * complaint about this value. */
static int check_alternatives(vctx_t *c, const json_t *arr, const json_t *inst, const char *kw) {
  size_t n = json_array_size(arr), passed = 0, first_pass = 0, second_pass = 0;
  /* On the stack: a heap block this size (a large-bin request) makes glibc
   * consolidate its fast bins on every validation of a run's tool call. */
  char best_path[PATH_MAX_], best_msg[MSG_MAX], here[MSG_MAX];
  best_path[0] = best_msg[0] = here[0] = '\0';
  size_t here_len = 0;
  int one = strcmp(kw, "oneOf") == 0;
  for (size_t i = 0; i < n; i++) {
    int rc = v(c, json_array_get(arr, i), inst);
    if (c->fatal) {
      return rc;
    }
    if (rc == 0) {
      if (passed++ == 0) first_pass = i;
      else second_pass = i;
      if (!one || passed > 1) break;
      continue;
    }
    if (strlen(c->epath) > c->plen) { /* failed inside the value */
      if (strlen(c->epath) > strlen(best_path)) {
        snprintf(best_path, PATH_MAX_, "%s", c->epath);
        snprintf(best_msg, MSG_MAX, "%s", c->emsg);
      }
    } else if (here_len < MSG_MAX - 1) { /* failed on the value itself */
      int w = snprintf(here + here_len, MSG_MAX - here_len, "%s%s", here_len ? "; " : "", c->emsg);
      if (w > 0) here_len = here_len + (size_t)w < MSG_MAX - 1 ? here_len + (size_t)w : MSG_MAX - 1;
    }
  }
  int rc = 0;
  if (one && passed > 1) {
    rc = vfail(c, "matches more than one of the oneOf schemas (#%zu and #%zu)", first_pass, second_pass);
  } else if (passed == 0) {
    if (best_path[0]) {
      rc = vfail(c, "%s", best_msg);
      snprintf(c->epath, sizeof(c->epath), "%s", best_path);
    } else {
      rc = vfail(c, "matches none of the %s schemas: %s", kw, here);
    }
  }
  return rc;
}

static int v_object(vctx_t *c, const json_t *sch, const json_t *inst) {
  int rc;
  const json_t *kw;
  if ((kw = json_object_get(sch, "type")) && (rc = check_type(c, kw, inst)) != 0) return rc;
  if ((kw = json_object_get(sch, "const")) && !json_same(kw, inst)) {
    char *s = json_dumps(kw, JSON_ENCODE_ANY | JSON_COMPACT);
    rc = vfail(c, "must be %.200s", s ? s : "the constant");
    free(s);
    return rc;
  }
  if ((kw = json_object_get(sch, "enum")) && (rc = check_enum(c, kw, inst)) != 0) return rc;
  if (json_is_number(inst) && (rc = check_number(c, sch, inst)) != 0) return rc;
  if (json_is_string(inst) && (rc = check_string(c, sch, inst)) != 0) return rc;
  if (json_is_array(inst) && (rc = check_array(c, sch, inst)) != 0) return rc;
  if (json_is_object(inst) && (rc = check_object(c, sch, inst)) != 0) return rc;
  if ((kw = json_object_get(sch, "$ref"))) {
    const json_t *t = resolve_ref(c->s->doc, json_string_value(kw));
    if (!t) return vfail(c, "could not be checked ($ref %.100s)", json_string_value(kw));
    if ((rc = v(c, t, inst)) != 0) return rc;
  }
  if ((kw = json_object_get(sch, "allOf")))
    for (size_t i = 0; i < json_array_size(kw); i++)
      if ((rc = v(c, json_array_get(kw, i), inst)) != 0) return rc;
  if ((kw = json_object_get(sch, "anyOf")) && (rc = check_alternatives(c, kw, inst, "anyOf")) != 0) return rc;
  if ((kw = json_object_get(sch, "oneOf")) && (rc = check_alternatives(c, kw, inst, "oneOf")) != 0) return rc;
  if ((kw = json_object_get(sch, "not"))) {
    rc = v(c, kw, inst);
    if (c->fatal) return rc;
    if (rc == 0) return vfail(c, "must not match the schema under \"not\"");
  }
  return 0;
}

static int v(vctx_t *c, const json_t *sch, const json_t *inst) {
  if (c->fatal) return AGD_EVALIDATION;
  if (++c->steps > SCHEMA_MAX_STEPS) {
    c->fatal = 1;
    return vfail(c, "is too complex to check against the schema");
  }
  if (json_is_true(sch)) return 0;
  if (json_is_false(sch)) return vfail(c, "is not allowed");
  if (c->depth >= SCHEMA_MAX_DEPTH) {
    c->fatal = 1;
    return vfail(c, "nests deeper than %d schema levels", SCHEMA_MAX_DEPTH);
  }
  c->depth++;
  int rc = v_object(c, sch, inst);
  c->depth--;
  return rc;
}

int schema_validate(const schema_t *s, const json_t *inst, const char *root, char *path, size_t pathcap, char *msg,
                    size_t msgcap) {
  if (path && pathcap) path[0] = '\0';
  if (msg && msgcap) msg[0] = '\0';
  /* On the stack (~1.3 KiB) for the reason check_alternatives gives. */
  vctx_t ctx = {0}, *c = &ctx;
  c->s = s;
  vpush_raw(c, root ? root : "");
  c->root_len = c->plen;
  int rc = v(c, s->doc, inst);
  if (rc != 0) {
    rc = AGD_EVALIDATION;
    if (path && pathcap) snprintf(path, pathcap, "%s", c->epath);
    if (msg && msgcap) snprintf(msg, msgcap, "%s", c->emsg);
  }
  return rc;
}
