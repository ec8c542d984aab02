/* tests/unit/test_tools.c — tool registry: schema validation, calculator, classify_request, thread_context. */
#include <criterion/criterion.h>
#include <string.h>

#include "tools/tool.h"
#include "util/err.h"

static int echo_call(const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  *result = json_deep_copy(args);
  return 0;
}

static const tool_t echo = {
    .name = "echo",
    .description = "echo",
    .input_schema_json =
        "{\"type\":\"object\",\"properties\":{"
        "\"s\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":5},"
        "\"i\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10},"
        "\"n\":{\"type\":\"number\",\"minimum\":-1.5},"
        "\"b\":{\"type\":\"boolean\"},"
        "\"a\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"o\":{\"type\":\"object\"},"
        "\"e\":{\"type\":\"string\",\"enum\":[\"x\",\"y\"]}},"
        "\"required\":[\"s\"],\"additionalProperties\":false}",
    .source = "builtin",
    .call = echo_call,
};

static void setup(void) {
  tool_registry_reset();
  tool_register(&echo);
  tools_register_builtin();
}
static void teardown(void) { tool_registry_reset(); }

TestSuite(tools, .init = setup, .fini = teardown);

static char field_copy[64];

static int validate(const char *args_json, const char **field, char *msg) {
  json_t *a = json_loads(args_json, JSON_DECODE_ANY, NULL);
  cr_assert_not_null(a, "%s", args_json);
  int rc = tool_validate(tool_find("echo"), a, field, msg, 200);
  if (*field) { /* it may point into args */
    snprintf(field_copy, sizeof(field_copy), "%s", *field);
    *field = field_copy;
  }
  json_decref(a);
  return rc;
}

#define BAD(json, want_field, want_msg_part)                                                   \
  do {                                                                                         \
    const char *f_ = NULL;                                                                     \
    char m_[200];                                                                              \
    cr_expect_eq(validate(json, &f_, m_), AGD_EVALIDATION, "%s", json);                        \
    cr_expect_str_eq(f_ ? f_ : "(null)", want_field, "%s", json);                              \
    cr_expect(strstr(m_, want_msg_part) != NULL, "%s: message '%s'", json, m_);               \
  } while (0)

Test(tools, validation) {
  const char *f;
  char m[200];
  cr_expect_eq(validate("{\"s\":\"abc\"}", &f, m), 0);
  cr_expect_eq(validate("{\"s\":\"ééé\",\"i\":10,\"n\":-1.5,\"b\":true,\"a\":[\"q\"],\"o\":{},\"e\":\"y\"}", &f, m), 0);
  BAD("{}", "s", "required");
  BAD("{\"s\":5}", "s", "must be a string");
  BAD("{\"s\":\"a\"}", "s", "at least 2");
  BAD("{\"s\":\"abcdef\"}", "s", "at most 5");
  BAD("{\"s\":\"ab\",\"i\":1.5}", "i", "must be an integer");
  BAD("{\"s\":\"ab\",\"i\":0}", "i", ">= 1");
  BAD("{\"s\":\"ab\",\"i\":11}", "i", "<= 10");
  BAD("{\"s\":\"ab\",\"n\":\"1\"}", "n", "must be a number");
  BAD("{\"s\":\"ab\",\"n\":-2}", "n", ">= -1.5");
  BAD("{\"s\":\"ab\",\"b\":1}", "b", "boolean");
  BAD("{\"s\":\"ab\",\"a\":[1]}", "a", "item 0");
  BAD("{\"s\":\"ab\",\"o\":[]}", "o", "object");
  BAD("{\"s\":\"ab\",\"e\":\"z\"}", "e", "one of");
  BAD("{\"s\":\"ab\",\"zz\":1}", "zz", "not a known argument");
  BAD("[1]", "arguments", "object");
}

static json_t *call(const char *tool, const char *args_json, int *rc) {
  json_t *a = json_loads(args_json, 0, NULL);
  cr_assert_not_null(a);
  json_t *res = NULL;
  *rc = tool_call(tool_find(tool), &(tool_call_ctx_t){.user_id = "usr_x"}, a, &res);
  json_decref(a);
  cr_assert_not_null(res);
  return res;
}

static void calc_ok(const char *expr, double want) {
  char args[1200];
  json_t *e = json_string(expr);
  char *q = json_dumps(e, JSON_ENCODE_ANY);
  snprintf(args, sizeof(args), "{\"expression\":%s}", q);
  free(q);
  json_decref(e);
  int rc;
  json_t *r = call("calculator", args, &rc);
  cr_expect_eq(rc, 0, "%s: %s", expr, json_string_value(json_object_get(r, "error")));
  cr_expect_float_eq(json_number_value(json_object_get(r, "result")), want, 1e-9, "%s", expr);
  json_decref(r);
}

static void calc_bad(const char *expr, const char *msg_part) {
  char args[4200];
  snprintf(args, sizeof(args), "{\"expression\":\"%s\"}", expr);
  int rc;
  json_t *r = call("calculator", args, &rc);
  cr_expect_eq(rc, AGD_EVALIDATION, "%s", expr);
  const char *err = json_string_value(json_object_get(r, "error"));
  cr_expect(err && strstr(err, msg_part), "%.40s: '%s'", expr, err ? err : "(none)");
  json_decref(r);
}

Test(tools, calculator) {
  calc_ok("1+2*3", 7);
  calc_ok("(1+2)*3", 9);
  calc_ok("2*3-4/8", 5.5);
  calc_ok("10-4-3", 3);
  calc_ok("64/4/2", 8);
  calc_ok("-3+5", 2);
  calc_ok("-(2+3)*-2", 10);
  calc_ok("--4", 4);
  calc_ok(" 0.03 * 1200 + .5 ", 36.5);
  calc_ok("(0.03 * 1200 + 0.06 * 300) / 1000", 0.054);
  calc_ok("1.5", 1.5);
  calc_bad("1/0", "division by zero");
  calc_bad("1/(2-2)", "division by zero");
  calc_bad("2+", "expected a number");
  calc_bad("2 3", "expected an operator");
  calc_bad("(1+2", "expected ')'");
  calc_bad("abc", "unexpected 'a'");
  calc_bad("1+2; rm -rf /", "unexpected ';'");
  calc_bad("1e5", "unexpected 'e'");
  /* depth: 65 nested parentheses fail, 60 pass */
  char deep[400] = "";
  for (int i = 0; i < 65; i++) strcat(deep, "(");
  strcat(deep, "1");
  for (int i = 0; i < 65; i++) strcat(deep, ")");
  calc_bad(deep, "nested deeper");
  char ok[400] = "";
  for (int i = 0; i < 60; i++) strcat(ok, "(");
  strcat(ok, "1");
  for (int i = 0; i < 60; i++) strcat(ok, ")");
  calc_ok(ok, 1);
  char neg[200] = "";
  for (int i = 0; i < 70; i++) strcat(neg, "-");
  strcat(neg, "1");
  calc_bad(neg, "nested deeper");
  /* result integral → integer */
  int rc;
  json_t *r = call("calculator", "{\"expression\":\"6/3\"}", &rc);
  cr_expect(json_is_integer(json_object_get(r, "result")));
  json_decref(r);
}

Test(tools, calculator_length_limit) {
  char *big = malloc(1100 + 40);
  strcpy(big, "{\"expression\":\"");
  size_t o = strlen(big);
  for (int i = 0; i < 1001; i++) big[o++] = i % 2 ? '+' : '1';
  big[o - 1] = '1';
  strcpy(big + o, "\"}");
  int rc;
  json_t *r = call("calculator", big, &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  cr_expect(strstr(json_string_value(json_object_get(r, "error")), "at most 1000") != NULL);
  json_decref(r);
  free(big);
}

Test(tools, classify_and_context) {
  int rc;
  json_t *r = call("classify_request", "{\"text\":\"why is latency high?\"}", &rc);
  cr_expect_eq(rc, 0);
  cr_expect_str_eq(json_string_value(json_object_get(r, "intent")), "latency");
  cr_expect(json_array_size(json_object_get(r, "keywords")) >= 1);
  json_decref(r);
  r = call("classify_request", "{\"text\":\"\"}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
  /* no store in this context: unavailable, not a crash */
  r = call("thread_context", "{\"thread_id\":\"thr_x\"}", &rc);
  cr_expect_eq(rc, AGD_EUNAVAILABLE);
  json_decref(r);
  r = call("thread_context", "{\"thread_id\":\"thr_x\",\"limit\":0}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
}

Test(tools, registry) {
  size_t n;
  const tool_t *const *all = tool_all(&n);
  size_t before = n; /* echo + every built-in tool */
  cr_expect_gt(n, 4);
  cr_expect_str_eq(all[0]->name, "echo");
  cr_expect_null(all[n]);
  tool_register(&echo); /* twice: ignored */
  tool_all(&n);
  cr_expect_eq(n, before);
  cr_expect_null(tool_find("nope"));
  cr_expect_not_null(tool_schema(tool_find("calculator")));
}
