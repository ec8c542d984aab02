/* tests/unit/test_schema.c — tools/schema: every keyword passing and failing,
 * the failing path, bad patterns, $ref (local, recursive, cyclic, missing),
 * and the depth and step caps. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/schema.h"
#include "util/err.h"

static schema_t *compile(const char *schema_json) {
  json_error_t jerr;
  json_t *doc = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
  cr_assert_not_null(doc, "schema JSON: %s: %s", schema_json, jerr.text);
  schema_t *s = NULL;
  char err[300];
  int rc = schema_compile(doc, &s, err, sizeof(err));
  json_decref(doc);
  cr_assert_eq(rc, 0, "schema %s refused: %s", schema_json, err);
  return s;
}

static int check(const char *schema_json, const char *inst_json, char *path, char *msg) {
  schema_t *s = compile(schema_json);
  json_t *inst = json_loads(inst_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  cr_assert_not_null(inst, "instance %s", inst_json);
  int rc = schema_validate(s, inst, "arguments", path, 300, msg, 300);
  json_decref(inst);
  schema_free(s);
  return rc;
}

#define OK(schema, inst)                                                                        \
  do {                                                                                          \
    char p_[300], m_[300];                                                                      \
    cr_expect_eq(check(schema, inst, p_, m_), 0, "%s ~ %s: %s %s", schema, inst, p_, m_);      \
  } while (0)

#define BAD(schema, inst, want_path, want_msg)                                                  \
  do {                                                                                          \
    char p_[300], m_[300];                                                                      \
    cr_expect_eq(check(schema, inst, p_, m_), AGD_EVALIDATION, "%s ~ %s passed", schema, inst); \
    cr_expect_str_eq(p_, want_path, "%s ~ %s (msg %s)", schema, inst, m_);                      \
    cr_expect(strstr(m_, want_msg) != NULL, "%s ~ %s: message '%s'", schema, inst, m_);        \
  } while (0)

/* The schema itself is refused with a message containing `want`. */
static void invalid(const char *schema_json, const char *want) {
  json_t *doc = json_loads(schema_json, JSON_DECODE_ANY, NULL);
  cr_assert_not_null(doc, "%s", schema_json);
  schema_t *s = NULL;
  char err[300] = "";
  cr_expect_eq(schema_compile(doc, &s, err, sizeof(err)), AGD_EVALIDATION, "%s compiled", schema_json);
  cr_expect_null(s);
  cr_expect(strstr(err, want) != NULL, "%s: error '%s', want '%s'", schema_json, err, want);
  json_decref(doc);
}

Test(schema, type) {
  OK("{\"type\":\"string\"}", "\"x\"");
  BAD("{\"type\":\"string\"}", "1", "arguments", "must be a string");
  OK("{\"type\":\"integer\"}", "3");
  OK("{\"type\":\"integer\"}", "3.0"); /* JSON Schema: 1.0 is an integer */
  BAD("{\"type\":\"integer\"}", "3.5", "arguments", "must be an integer");
  OK("{\"type\":\"number\"}", "3.5");
  BAD("{\"type\":\"number\"}", "\"3\"", "arguments", "must be a number");
  OK("{\"type\":\"boolean\"}", "false");
  BAD("{\"type\":\"boolean\"}", "0", "arguments", "must be a boolean");
  OK("{\"type\":\"null\"}", "null");
  BAD("{\"type\":\"array\"}", "{}", "arguments", "must be an array");
  BAD("{\"type\":\"object\"}", "[]", "arguments", "must be an object");
  /* unions */
  OK("{\"type\":[\"string\",\"null\"]}", "null");
  OK("{\"type\":[\"string\",\"null\"]}", "\"a\"");
  BAD("{\"type\":[\"string\",\"null\"]}", "1", "arguments", "must be a string or null");
  BAD("{\"type\":[\"string\",\"integer\",\"array\"]}", "true", "arguments", "must be a string, an integer or an array");
  invalid("{\"type\":\"str\"}", "unknown type");
  invalid("{\"type\":[]}", "type");
  OK("true", "{\"anything\":1}");
  BAD("{\"properties\":{\"x\":false}}", "{\"x\":1}", "arguments.x", "is not allowed");
}

Test(schema, enum_and_const) {
  const char *e = "{\"enum\":[\"a\",1,null,{\"k\":[1,2]}]}";
  OK(e, "\"a\"");
  OK(e, "1.0"); /* equal numbers are equal whatever their spelling */
  OK(e, "null");
  OK(e, "{\"k\":[1,2.0]}");
  BAD(e, "\"b\"", "arguments", "must be one of: \"a\", 1, null");
  BAD(e, "{\"k\":[2,1]}", "arguments", "one of");
  OK("{\"const\":5}", "5");
  OK("{\"const\":{\"a\":1,\"b\":2}}", "{\"b\":2,\"a\":1}");
  BAD("{\"const\":5}", "6", "arguments", "must be 5");
  BAD("{\"const\":\"x\"}", "\"y\"", "arguments", "must be \"x\"");
  invalid("{\"enum\":\"a\"}", "enum must be an array");
}

Test(schema, numbers) {
  const char *s = "{\"type\":\"number\",\"minimum\":1,\"maximum\":10}";
  OK(s, "1");
  OK(s, "10");
  BAD(s, "0.5", "arguments", "must be >= 1");
  BAD(s, "11", "arguments", "must be <= 10");
  const char *x = "{\"exclusiveMinimum\":0,\"exclusiveMaximum\":1}";
  OK(x, "0.5");
  BAD(x, "0", "arguments", "must be > 0");
  BAD(x, "1", "arguments", "must be < 1");
  BAD("{\"minimum\":0,\"exclusiveMinimum\":true}", "0", "arguments", "must be > 0"); /* draft-04 */
  OK("{\"multipleOf\":0.5}", "2.5");
  BAD("{\"multipleOf\":3}", "7", "arguments", "multiple of 3");
  OK("{\"minimum\":5}", "\"not a number: minimum does not apply\"");
  invalid("{\"minimum\":\"1\"}", "minimum must be a number");
  invalid("{\"multipleOf\":0}", "multipleOf");
}

Test(schema, strings) {
  const char *s = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
  OK(s, "\"ab\"");
  OK(s, "\"ééé\"");                 /* 3 code points, 6 bytes */
  OK(s, "\"\\ud83d\\ude00\\ud83d\\ude00\""); /* 2 emoji, 8 bytes */
  BAD(s, "\"a\"", "arguments", "at least 2 characters");
  BAD(s, "\"abcd\"", "arguments", "at most 3 characters");
  BAD(s, "\"éééé\"", "arguments", "at most 3");
  BAD("{\"minLength\":1}", "\"\"", "arguments", "must not be empty");
  OK("{\"maxLength\":2.0}", "\"ab\"");
  invalid("{\"maxLength\":-1}", "non-negative integer");
  invalid("{\"minLength\":1.5}", "non-negative integer");
}

Test(schema, pattern) {
  OK("{\"pattern\":\"^[a-z]+$\"}", "\"abc\"");
  BAD("{\"pattern\":\"^[a-z]+$\"}", "\"abC\"", "arguments", "must match the pattern ^[a-z]+$");
  OK("{\"pattern\":\"b\"}", "\"abc\""); /* unanchored, as in ECMA-262 */
  /* ECMA-262 spellings translated for POSIX */
  const char *date = "{\"pattern\":\"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"}";
  OK(date, "\"2026-12-07\"");
  BAD(date, "\"2026-1-07\"", "arguments", "pattern");
  OK("{\"pattern\":\"^[\\\\d.]+$\"}", "\"1.5\"");
  OK("{\"pattern\":\"^(?:ab)+c*?$\"}", "\"ababcc\"");
  OK("{\"pattern\":\"^a\\\\.b$\"}", "\"a.b\"");
  BAD("{\"pattern\":\"^a\\\\.b$\"}", "\"axb\"", "arguments", "pattern");
  OK("{\"pattern\":\"^\\\\w+\\\\s\\\\w+$\"}", "\"hello world\"");
  OK("{\"pattern\":\"^a\\\\/b$\"}", "\"a/b\"");
  /* the whole string is matched, an embedded NUL included */
  BAD("{\"pattern\":\"^[a-z]*$\"}", "\"ab\\u0000CD\"", "arguments", "pattern");
  OK("{\"pattern\":\"^x\"}", "5"); /* pattern applies to strings only */
  /* patterns that cannot be honoured make the schema invalid, never a crash */
  invalid("{\"pattern\":\"a(b\"}", "does not compile");
  invalid("{\"pattern\":\"[z-a]\"}", "does not compile");
  invalid("{\"pattern\":\"(a)\\\\1\"}", "back-references");
  invalid("{\"pattern\":\"a(?=b)\"}", "lookaround");
  invalid("{\"pattern\":\"\\\\u00e9\"}", "unsupported escape");
  invalid("{\"pattern\":\"ab\\\\\"}", "lone backslash");
  invalid("{\"pattern\":5}", "pattern must be a string");
  /* nested counts multiply what glibc builds: refused before regcomp */
  invalid("{\"pattern\":\"((a{1,100}){1,100}){1,100}\"}", "too complex");
  invalid("{\"pattern\":\"([a-z]{1,1000}){30}\"}", "too complex");
  OK("{\"pattern\":\"^(a{1,100}){1,100}$\"}", "\"aaa\"");
  OK("{\"pattern\":\"^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,255}\\\\.[a-z]{2,63}$\"}", "\"me@example.org\"");
  invalid("{\"properties\":{\"x\":{\"properties\":{\"y\":{\"pattern\":\"(\"}}}}}",
          "#/properties/x/properties/y/pattern");
  char *long_pat = malloc(1100 + 32);
  strcpy(long_pat, "{\"pattern\":\"");
  memset(long_pat + strlen(long_pat), 'a', 1001);
  strcpy(long_pat + 12 + 1001, "\"}");
  invalid(long_pat, "longer than");
  free(long_pat);
}

Test(schema, arrays) {
  const char *s = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}";
  OK(s, "[1,2,3]");
  BAD(s, "[]", "arguments", "at least 1 items");
  BAD(s, "[1,2,3,4]", "arguments", "at most 3 items");
  BAD(s, "[1,\"2\"]", "arguments[1]", "must be an integer");
  const char *t = "{\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"number\"}],\"items\":{\"type\":\"boolean\"}}";
  OK(t, "[\"a\",1,true,false]");
  BAD(t, "[\"a\",\"b\"]", "arguments[1]", "must be a number");
  BAD(t, "[\"a\",1,null]", "arguments[2]", "must be a boolean");
  /* draft-07 tuple form: items as an array */
  OK("{\"items\":[{\"type\":\"string\"}]}", "[\"a\",5]");
  BAD("{\"items\":[{\"type\":\"string\"}]}", "[5]", "arguments[0]", "must be a string");
  invalid("{\"items\":5}", "a schema must be an object or a boolean");
}

Test(schema, objects) {
  const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"object\","
                  "\"properties\":{\"c\":{\"type\":\"integer\"}},\"required\":[\"c\"],\"additionalProperties\":false}},"
                  "\"required\":[\"a\"],\"additionalProperties\":false}";
  OK(s, "{\"a\":\"x\",\"b\":{\"c\":1}}");
  BAD(s, "{}", "arguments.a", "is required");
  BAD(s, "{\"a\":\"x\",\"b\":{}}", "arguments.b.c", "is required");
  BAD(s, "{\"a\":\"x\",\"z\":1}", "arguments.z", "is not a known argument");
  BAD(s, "{\"a\":\"x\",\"b\":{\"c\":1,\"d\":2}}", "arguments.b.d", "is not a known property");
  /* additionalProperties as a schema, patternProperties */
  const char *m = "{\"properties\":{\"id\":{\"type\":\"string\"}},\"patternProperties\":{\"^x-\":{\"type\":\"integer\"}},"
                  "\"additionalProperties\":{\"type\":\"boolean\"}}";
  OK(m, "{\"id\":\"1\",\"x-a\":2,\"other\":true}");
  BAD(m, "{\"x-a\":\"2\"}", "arguments.x-a", "must be an integer");
  BAD(m, "{\"other\":1}", "arguments.other", "must be a boolean");
  /* a key that is not a plain name is quoted in the path */
  BAD("{\"additionalProperties\":{\"type\":\"string\"}}", "{\"a b\\\"\":1}", "arguments[\"a b\\\"\"]",
      "must be a string");
  invalid("{\"required\":[1]}", "required[0] must be a string");
  invalid("{\"properties\":[]}", "properties must be an object");
}

/* The brief's example: a violation deep in the arguments names the field. */
Test(schema, deep_path) {
  const char *s = "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                  "\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}}}}";
  OK(s, "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}]}");
  BAD(s, "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":3}]}", "arguments.items[2].name", "must be a string");
  BAD(s, "{\"items\":[{\"name\":\"a\"},{}]}", "arguments.items[1].name", "is required");
}

Test(schema, combinators) {
  const char *any = "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"type\":\"integer\"}]}";
  OK(any, "\"ab\"");
  OK(any, "5");
  BAD(any, "true", "arguments", "matches none of the anyOf schemas: must be a string; must be an integer");
  BAD(any, "\"abc\"", "arguments", "at most 2");
  /* the branch that got deepest into the value is reported */
  const char *shapes = "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},"
                       "\"r\":{\"type\":\"number\"}}},{\"type\":\"string\"}]}";
  BAD(shapes, "{\"kind\":\"circle\",\"r\":\"big\"}", "arguments.r", "must be a number");
  const char *one = "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\",\"minimum\":10}]}";
  OK(one, "3");
  OK(one, "10.5");
  BAD(one, "12", "arguments", "more than one of the oneOf schemas");
  BAD(one, "\"x\"", "arguments", "matches none of the oneOf schemas");
  const char *all = "{\"allOf\":[{\"type\":\"string\"},{\"minLength\":2}]}";
  OK(all, "\"ab\"");
  BAD(all, "\"a\"", "arguments", "at least 2 characters");
  OK("{\"not\":{\"type\":\"null\"}}", "1");
  BAD("{\"not\":{\"type\":\"null\"}}", "null", "arguments", "must not match");
  invalid("{\"anyOf\":[]}", "non-empty array");
  invalid("{\"oneOf\":{}}", "array of schemas");
}

Test(schema, refs) {
  const char *s = "{\"$defs\":{\"name\":{\"type\":\"string\",\"minLength\":1}},\"definitions\":{\"n\":{\"type\":"
                  "\"integer\"}},\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/name\"},"
                  "\"b\":{\"$ref\":\"#/definitions/n\"}}}";
  OK(s, "{\"a\":\"x\",\"b\":2}");
  BAD(s, "{\"a\":\"\"}", "arguments.a", "must not be empty");
  BAD(s, "{\"b\":\"2\"}", "arguments.b", "must be an integer");
  /* JSON Pointer escapes: ~1 is '/', ~0 is '~' */
  OK("{\"$defs\":{\"a/b~c\":{\"type\":\"null\"}},\"$ref\":\"#/$defs/a~1b~0c\"}", "null");
  /* a recursive tree is fine: each level consumes the value */
  const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                     "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}}}},\"$ref\":\"#/$defs/node\"}";
  OK(tree, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":3}]}]}");
  BAD(tree, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":\"3\"}]}]}", "arguments.kids[0].kids[0].v",
      "must be an integer");
  OK("{\"type\":\"object\",\"properties\":{\"self\":{\"$ref\":\"#\"}}}", "{\"self\":{\"self\":{}}}");
  /* only local $defs/definitions references that exist */
  invalid("{\"$ref\":\"http://example.com/s.json\"}", "not a local");
  invalid("{\"$ref\":\"#/properties/x\",\"properties\":{\"x\":{}}}", "not a local");
  invalid("{\"$ref\":\"#/$defs/missing\"}", "not a local");
  invalid("{\"$defs\":{\"a\":{\"enum\":[{\"type\":\"string\"}]}},\"$ref\":\"#/$defs/a/enum/0\"}", "does not name a schema");
  invalid("{\"$ref\":7}", "$ref must be a string");
}

Test(schema, ref_cycles) {
  invalid("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "cycle");
  invalid("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"properties\":{\"x\":"
          "{\"$ref\":\"#/$defs/a\"}}}",
          "cycle");
  /* a cycle through anyOf that never consumes the value stops at the depth cap */
  char p[300], m[300];
  cr_expect_eq(check("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}", "1", p, m),
               AGD_EVALIDATION);
  cr_expect(strstr(m, "deeper than 64") != NULL, "%s", m);
}

Test(schema, depth_cap) {
  /* a schema nested deeper than the cap is refused */
  char *deep = malloc(20 * 80 + 100);
  strcpy(deep, "");
  for (int i = 0; i < 70; i++) strcat(deep, "{\"items\":");
  strcat(deep, "{}");
  for (int i = 0; i < 70; i++) strcat(deep, "}");
  invalid(deep, "nested deeper than 64");
  free(deep);
  /* a value nested deeper than the cap through a recursive $ref is refused */
  const char *s = "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"c\":{\"$ref\":\"#/$defs/n\"}}}},"
                  "\"$ref\":\"#/$defs/n\"}";
  char inst[2000] = "", p[300], m[300];
  for (int i = 0; i < 10; i++) strcat(inst, "{\"c\":");
  strcat(inst, "{}");
  for (int i = 0; i < 10; i++) strcat(inst, "}");
  cr_expect_eq(check(s, inst, p, m), 0, "%s %s", p, m);
  strcpy(inst, "");
  for (int i = 0; i < 100; i++) strcat(inst, "{\"c\":");
  strcat(inst, "{}");
  for (int i = 0; i < 100; i++) strcat(inst, "}");
  cr_expect_eq(check(s, inst, p, m), AGD_EVALIDATION);
  cr_expect(strstr(m, "deeper than 64") != NULL, "%s", m);
}

Test(schema, step_cap) {
  /* 2^22 ways through nested anyOf: stopped by the step budget, not run out */
  char s[8000];
  size_t o = (size_t)snprintf(s, sizeof(s), "{\"$defs\":{");
  for (int i = 0; i < 22; i++)
    o += (size_t)snprintf(s + o, sizeof(s) - o, "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},{\"$ref\":\"#/$defs/d%d\"}]},",
                          i, i + 1, i + 1);
  snprintf(s + o, sizeof(s) - o, "\"d22\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/d0\"}");
  char p[300], m[300];
  OK(s, "\"fine\""); /* the first branch passes at once */
  cr_expect_eq(check(s, "5", p, m), AGD_EVALIDATION);
  cr_expect(strstr(m, "too complex") != NULL, "%s", m);
}

Test(schema, annotations_and_unknown_keywords_are_ignored) {
  OK("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"title\":\"t\",\"description\":\"d\","
     "\"format\":\"email\",\"examples\":[1],\"x-custom\":{\"type\":\"string\"},\"type\":\"string\"}",
     "\"not an email\"");
  invalid("[]", "a schema must be an object or a boolean");
}

Test(schema, shared_across_calls) {
  /* one compiled schema, many validations (the registry's use) */
  schema_t *s = compile("{\"type\":\"object\",\"properties\":{\"p\":{\"pattern\":\"^[0-9]+$\"}}}");
  for (int i = 0; i < 50; i++) {
    json_t *a = json_pack("{s:s}", "p", i % 2 ? "123" : "12a");
    char p[100], m[100];
    cr_expect_eq(schema_validate(s, a, "arguments", p, sizeof(p), m, sizeof(m)), i % 2 ? 0 : AGD_EVALIDATION);
    json_decref(a);
  }
  cr_expect_not_null(schema_doc(s));
  schema_free(s);
  schema_free(NULL);
}
