/* tests/unit/test_jsonx.c — util/jsonx.c: depth cap (SPEC: 64, 413 past it), parse errors,
 * compact serialisation under a buf limit, getters, strict UTF-8. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/jsonx.h"

/* "[[[...1...]]]" with d levels; caller frees. */
static char *nested(int d, char open, char close, size_t *n) {
  char *s = malloc((size_t)d * 8 + 8);
  size_t k = 0;
  for (int i = 0; i < d; i++) {
    if (open == '{') {
      memcpy(s + k, "{\"a\":", 5);
      k += 5;
    } else {
      s[k++] = open;
    }
  }
  s[k++] = '1';
  for (int i = 0; i < d; i++) s[k++] = close;
  s[k] = '\0';
  *n = k;
  return s;
}

Test(jsonx, depth_counts_nesting) {
  cr_assert_eq(jsonx_depth("1", 1, 64), 0);
  cr_assert_eq(jsonx_depth("[]", 2, 64), 1);
  cr_assert_eq(jsonx_depth("{\"a\":[1,{}],\"b\":[]}", 19, 64), 3);
  cr_assert_eq(jsonx_depth("", 0, 64), 0);
}

Test(jsonx, depth_ignores_strings_and_escapes) {
  const char *s = "{\"a\":\"[[[[{{{{\",\"b\":\"\\\"[[[\\\\\",\"c\":[]}";
  cr_assert_eq(jsonx_depth(s, strlen(s), 2), 2);
  /* Escaped backslash then a real quote: the string ends, the bracket counts. */
  const char *t = "[\"\\\\\",[]]";
  cr_assert_eq(jsonx_depth(t, strlen(t), 64), 2);
  /* A trailing lone backslash inside a string does not read past n. */
  cr_assert_eq(jsonx_depth("[\"\\", 3, 64), 1);
}

Test(jsonx, depth_limit_minus_one_equal_plus_one) {
  size_t n;
  for (int d = 63; d <= 65; d++) {
    char *a = nested(d, '[', ']', &n);
    char *o = nested(d, '{', '}', &n);
    int want = d <= 64 ? d : -1;
    cr_assert_eq(jsonx_depth(a, strlen(a), 64), want, "d=%d", d);
    cr_assert_eq(jsonx_depth(o, strlen(o), 64), want, "d=%d", d);
    free(a);
    free(o);
  }
  /* Stops early: huge unclosed input past the cap. */
  char big[10000];
  memset(big, '[', sizeof big);
  cr_assert_eq(jsonx_depth(big, sizeof big, 64), -1);
  cr_assert_eq(jsonx_depth(big, sizeof big, 20000), (int)sizeof big);
}

Test(jsonx, parse_depth_64_ok_65_too_large) {
  size_t n;
  json_t *v = NULL;
  char msg[128];
  char *s = nested(64, '[', ']', &n);
  cr_assert_eq(jsonx_parse(s, n, 64, &v, msg, sizeof msg), 0);
  cr_assert(json_is_array(v));
  json_decref(v);
  free(s);
  s = nested(65, '{', '}', &n);
  cr_assert_eq(jsonx_parse(s, n, 64, &v, msg, sizeof msg), AGD_ETOO_LARGE);
  cr_assert_null(v);
  cr_assert(strlen(msg) > 0);
  free(s);
  /* Depth beats jansson's own 2048 cap and is answered 413, not 400. */
  char *deep = nested(3000, '[', ']', &n);
  cr_assert_eq(jsonx_parse(deep, n, 64, &v, NULL, 0), AGD_ETOO_LARGE);
  free(deep);
}

Test(jsonx, parse_ok_objects_and_scalars) {
  json_t *v = NULL;
  const char *s = "{\"a\":1,\"b\":\"x\"}";
  cr_assert_eq(jsonx_parse(s, strlen(s), 64, &v, NULL, 0), 0);
  cr_assert(json_is_object(v));
  json_decref(v);
  cr_assert_eq(jsonx_parse("42", 2, 64, &v, NULL, 0), 0);
  cr_assert(json_is_integer(v));
  json_decref(v);
  cr_assert_eq(jsonx_parse("\"s\"", 3, 64, &v, NULL, 0), 0);
  cr_assert(json_is_string(v));
  json_decref(v);
  cr_assert_eq(jsonx_parse(" null ", 6, 64, &v, NULL, 0), 0);
  cr_assert(json_is_null(v));
  json_decref(v);
  /* Not NUL-terminated: only n bytes are read. */
  cr_assert_eq(jsonx_parse("[1]garbage", 3, 64, &v, NULL, 0), 0);
  json_decref(v);
}

Test(jsonx, parse_errors_are_bad_request_with_position) {
  json_t *v = (json_t *)1;
  char msg[160];
  cr_assert_eq(jsonx_parse("", 0, 64, &v, msg, sizeof msg), AGD_EBAD_REQUEST);
  cr_assert_null(v);
  cr_assert(strlen(msg) > 0);
  cr_assert_eq(jsonx_parse(NULL, 0, 64, &v, NULL, 0), AGD_EBAD_REQUEST);

  const char *s = "{\"a\":1,}";
  cr_assert_eq(jsonx_parse(s, strlen(s), 64, &v, msg, sizeof msg), AGD_EBAD_REQUEST);
  cr_assert_null(v);
  cr_assert_eq(strncmp(msg, "line 1 column 8: ", 17), 0, "msg=%s", msg);

  s = "{\n  \"a\": tru\n}";
  cr_assert_eq(jsonx_parse(s, strlen(s), 64, &v, msg, sizeof msg), AGD_EBAD_REQUEST);
  cr_assert_eq(strncmp(msg, "line 2 column ", 14), 0, "msg=%s", msg);
  cr_assert_not_null(strchr(msg, ':'));

  const char *bad[] = {"{", "[1,2", "{\"a\" 1}", "[1] [2]", "nul", "   ", "{'a':1}", "[01]", "\"\\x\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(jsonx_parse(bad[i], strlen(bad[i]), 64, &v, msg, sizeof msg), AGD_EBAD_REQUEST, "%s", bad[i]);
    cr_assert_eq(strncmp(msg, "line ", 5), 0, "msg=%s", msg);
    cr_assert_null(v);
  }
  /* A tiny message buffer truncates safely. */
  char tiny[8];
  cr_assert_eq(jsonx_parse("{", 1, 64, &v, tiny, sizeof tiny), AGD_EBAD_REQUEST);
  cr_assert_eq(strlen(tiny), sizeof tiny - 1);
}

Test(jsonx, parse_rejects_bad_utf8_and_nul) {
  json_t *v = NULL;
  const char *bad[] = {"\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\xff\"", "\"\xf4\x90\x80\x80\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(jsonx_parse(bad[i], strlen(bad[i]), 64, &v, NULL, 0), AGD_EBAD_REQUEST, "case %zu", i);
  cr_assert_eq(jsonx_parse("[1]\0", 4, 64, &v, NULL, 0), AGD_EBAD_REQUEST); /* a raw NUL byte is not JSON */
  cr_assert_eq(jsonx_parse("\"\xc3\xa9\"", 4, 64, &v, NULL, 0), 0);
  cr_assert_str_eq(json_string_value(v), "\xc3\xa9");
  json_decref(v);
}

/* Issue 13, defect 7: "\u0000" is valid JSON, so it parses (never a 400); the string keeps
 * its full length, and the C-string getters refuse it rather than cut it at the NUL. */
Test(jsonx, parse_accepts_escaped_nul_and_getters_refuse_it) {
  json_t *v = NULL;
  const char *s = "{\"content\":\"a\\u0000b\",\"ok\":\"x\",\"n\":1,\"z\":null}";
  cr_assert_eq(jsonx_parse(s, strlen(s), 64, &v, NULL, 0), 0);
  json_t *c = json_object_get(v, "content");
  cr_assert_eq(json_string_length(c), 3);
  cr_assert_eq(memcmp(json_string_value(c), "a\0b", 3), 0);

  const char *out = "junk";
  cr_assert_eq(jsonx_get_cstr(v, "content", &out), JSONX_ENUL);
  cr_assert_null(out);
  cr_assert_str_eq(jsonx_cstr_why(JSONX_ENUL), "must not contain NUL characters");
  cr_assert_null(jsonx_get_str(v, "content")); /* the tolerant getter never returns "a" */
  cr_assert_eq(jsonx_get_cstr(v, "ok", &out), 0);
  cr_assert_str_eq(out, "x");
  cr_assert_eq(jsonx_get_cstr(v, "n", &out), JSONX_ENOT_STRING);
  cr_assert_null(out);
  cr_assert_str_eq(jsonx_cstr_why(JSONX_ENOT_STRING), "must be a string");
  out = "junk";
  cr_assert_eq(jsonx_get_cstr(v, "z", &out), 0); /* null: absent */
  cr_assert_null(out);
  cr_assert_eq(jsonx_get_cstr(v, "missing", &out), 0);
  cr_assert_null(out);
  cr_assert_eq(jsonx_get_cstr(NULL, "missing", &out), 0);
  json_decref(v);

  /* A bare string and a NUL at either end. */
  cr_assert_eq(jsonx_parse("\"\\u0000\"", 8, 64, &v, NULL, 0), 0);
  cr_assert_eq(json_string_length(v), 1);
  json_decref(v);

  /* A NUL in an object key is valid JSON that jansson cannot hold: 422, not 400. */
  char msg[120];
  s = "{\"a\\u0000\":1}";
  cr_assert_eq(jsonx_parse(s, strlen(s), 64, &v, msg, sizeof msg), AGD_EVALIDATION);
  cr_assert_null(v);
  cr_assert_str_eq(msg, "object keys must not contain NUL characters");
}

Test(jsonx, has_nul_finds_nested_strings) {
  json_t *v = NULL;
  const char *clean = "{\"a\":[1,\"x\",{\"b\":\"y\"}],\"c\":null}";
  cr_assert_eq(jsonx_parse(clean, strlen(clean), 64, &v, NULL, 0), 0);
  cr_assert_eq(jsonx_has_nul(v), 0);
  json_decref(v);
  const char *deep = "{\"a\":[1,\"x\",{\"b\":\"y\\u0000\"}]}";
  cr_assert_eq(jsonx_parse(deep, strlen(deep), 64, &v, NULL, 0), 0);
  cr_assert_eq(jsonx_has_nul(v), 1);
  json_decref(v);
  cr_assert_eq(jsonx_has_nul(NULL), 0);
}

Test(jsonx, append_compact_in_order) {
  json_t *o = json_object();
  json_object_set_new(o, "z", json_integer(1));
  json_object_set_new(o, "a", json_pack("[s,b,n]", "x\"y", 1));
  json_object_set_new(o, "m", json_string("\xc3\xa9\n"));
  buf_t b;
  buf_init(&b, 0);
  buf_append_str(&b, "pre:");
  cr_assert_eq(jsonx_append(&b, o), 0);
  cr_assert_str_eq(b.base, "pre:{\"z\":1,\"a\":[\"x\\\"y\",true,null],\"m\":\"\xc3\xa9\\n\"}");
  char *d = jsonx_dumps(o);
  cr_assert_str_eq(d, b.base + 4);
  free(d);
  buf_dispose(&b);
  json_decref(o);

  json_t *s = json_integer(7);
  d = jsonx_dumps(s); /* scalars serialise too */
  cr_assert_str_eq(d, "7");
  free(d);
  json_decref(s);
}

Test(jsonx, append_respects_limit) {
  json_t *v = json_pack("{s:s}", "k", "vvvv"); /* {"k":"vvvv"} = 12 bytes */
  const size_t len = 12;
  buf_t b;
  for (size_t lim = len - 1; lim <= len + 1; lim++) {
    buf_init(&b, lim);
    int rc = jsonx_append(&b, v);
    if (lim < len) {
      cr_assert_eq(rc, AGD_ETOO_LARGE);
      cr_assert_eq(b.len, 0);
    } else {
      cr_assert_eq(rc, 0);
      cr_assert_str_eq(b.base, "{\"k\":\"vvvv\"}");
    }
    buf_dispose(&b);
  }
  /* Failure leaves earlier content as it was. */
  buf_init(&b, 15);
  buf_append_str(&b, "abcd");
  cr_assert_eq(jsonx_append(&b, v), AGD_ETOO_LARGE);
  cr_assert_eq(b.len, 4);
  cr_assert_str_eq(b.base, "abcd");
  buf_dispose(&b);
  json_decref(v);
}

Test(jsonx, getters) {
  json_t *o = json_pack("{s:s,s:b,s:I,s:f,s:n}", "s", "str", "b", 0, "i", (json_int_t)-42, "f", 1.5, "z");
  cr_assert_str_eq(jsonx_get_str(o, "s"), "str");
  cr_assert_null(jsonx_get_str(o, "b"));
  cr_assert_null(jsonx_get_str(o, "missing"));
  cr_assert_eq(jsonx_get_bool(o, "b", 1), 0);
  cr_assert_eq(jsonx_get_bool(o, "s", 7), 7);
  cr_assert_eq(jsonx_get_bool(o, "missing", -1), -1);
  long long i = 0;
  cr_assert_eq(jsonx_get_int(o, "i", &i), 0);
  cr_assert_eq(i, -42);
  i = 5;
  cr_assert_eq(jsonx_get_int(o, "f", &i), -1); /* a real is not an integer */
  cr_assert_eq(jsonx_get_int(o, "z", &i), -1);
  cr_assert_eq(jsonx_get_int(o, "missing", &i), -1);
  cr_assert_eq(i, 5);
  /* Non-objects and NULL are tolerated. */
  json_t *a = json_array();
  cr_assert_null(jsonx_get_str(a, "s"));
  cr_assert_null(jsonx_get_str(NULL, "s"));
  cr_assert_eq(jsonx_get_bool(NULL, "b", 3), 3);
  cr_assert_eq(jsonx_get_int(NULL, "i", &i), -1);
  json_decref(a);
  json_decref(o);
}
