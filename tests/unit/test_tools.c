/* tests/unit/test_tools.c — tool registry: run-time registration and
 * unregistration across threads, schema validation through the registry,
 * calculator, classify_request, thread_context. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "tools/tool.h"
#include "util/err.h"

static int echo_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
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

static int validate(const char *args_json, char *path, char *msg) {
  json_t *a = json_loads(args_json, JSON_DECODE_ANY, NULL);
  cr_assert_not_null(a, "%s", args_json);
  const tool_t *t = tool_find("echo");
  int rc = tool_validate(t, a, path, 200, msg, 200);
  tool_unref(t);
  json_decref(a);
  return rc;
}

#define BAD(json, want_path, want_msg_part)                                                    \
  do {                                                                                         \
    char p_[200], m_[200];                                                                     \
    cr_expect_eq(validate(json, p_, m_), AGD_EVALIDATION, "%s", json);                         \
    cr_expect_str_eq(p_, want_path, "%s", json);                                               \
    cr_expect(strstr(m_, want_msg_part) != NULL, "%s: message '%s'", json, m_);               \
  } while (0)

Test(tools, validation) {
  char p[200], m[200];
  cr_expect_eq(validate("{\"s\":\"abc\"}", p, m), 0);
  cr_expect_eq(validate("{\"s\":\"ééé\",\"i\":10,\"n\":-1.5,\"b\":true,\"a\":[\"q\"],\"o\":{},\"e\":\"y\"}", p, m), 0);
  cr_expect_eq(validate("{\"s\":\"ab\",\"i\":2.0}", p, m), 0); /* 2.0 is an integer */
  BAD("{}", "arguments.s", "is required");
  BAD("{\"s\":5}", "arguments.s", "must be a string");
  BAD("{\"s\":\"a\"}", "arguments.s", "at least 2");
  BAD("{\"s\":\"abcdef\"}", "arguments.s", "at most 5");
  BAD("{\"s\":\"ab\",\"i\":1.5}", "arguments.i", "must be an integer");
  BAD("{\"s\":\"ab\",\"i\":0}", "arguments.i", ">= 1");
  BAD("{\"s\":\"ab\",\"i\":11}", "arguments.i", "<= 10");
  BAD("{\"s\":\"ab\",\"n\":\"1\"}", "arguments.n", "must be a number");
  BAD("{\"s\":\"ab\",\"n\":-2}", "arguments.n", ">= -1.5");
  BAD("{\"s\":\"ab\",\"b\":1}", "arguments.b", "must be a boolean");
  BAD("{\"s\":\"ab\",\"a\":[\"x\",1]}", "arguments.a[1]", "must be a string");
  BAD("{\"s\":\"ab\",\"o\":[]}", "arguments.o", "must be an object");
  BAD("{\"s\":\"ab\",\"e\":\"z\"}", "arguments.e", "one of: \"x\", \"y\"");
  BAD("{\"s\":\"ab\",\"zz\":1}", "arguments.zz", "not a known argument");
  BAD("[1]", "arguments", "must be an object");
}

/* What agents (and models) see when the schema refuses a call. */
Test(tools, call_reports_the_path_below_arguments) {
  const tool_t *t = tool_find("echo");
  json_t *a = json_pack("{s:s,s:[s,i]}", "s", "ab", "a", "x", 1), *res = NULL;
  cr_expect_eq(tool_call(t, &(tool_call_ctx_t){0}, a, &res), AGD_EVALIDATION);
  cr_expect_str_eq(json_string_value(json_object_get(res, "error")), "a[1] must be a string");
  json_decref(res);
  json_decref(a);
  tool_unref(t);
}

static json_t *call(const char *tool, const char *args_json, int *rc) {
  json_t *a = json_loads(args_json, 0, NULL);
  cr_assert_not_null(a);
  json_t *res = NULL;
  const tool_t *t = tool_find(tool);
  cr_assert_not_null(t, "%s", tool);
  *rc = tool_call(t, &(tool_call_ctx_t){.user_id = "usr_x"}, a, &res);
  tool_unref(t);
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
  tool_list_t *l = tool_list_acquire();
  size_t before = tool_list_size(l); /* echo + every built-in tool */
  cr_expect_gt(before, 4);
  cr_expect_str_eq(tool_list_get(l, 0)->name, "echo");
  cr_expect_null(tool_list_get(l, before));
  tool_list_release(l);
  cr_expect_eq(tool_register(&echo), AGD_ECONFLICT); /* a duplicate fails; the first stays */
  l = tool_list_acquire();
  cr_expect_eq(tool_list_size(l), before);
  tool_list_release(l);
  cr_expect_null(tool_find("nope"));
  const tool_t *calc = tool_find("calculator");
  cr_expect_not_null(tool_schema(calc));
  cr_expect_str_eq(calc->source, "builtin");
  tool_unref(calc);
}

/* ---- run-time registration (MCP tools come and go) ---- */

typedef struct remote {
  char remote_name[32]; /* what a proxy would send to its server */
  atomic_int *freed;    /* counts user_data_free calls */
} remote_t;

static void remote_free(void *p) {
  remote_t *r = p;
  atomic_fetch_add(r->freed, 1);
  memset(r, 0x5a, sizeof(*r)); /* poison: a later read is caught below or by ASan */
  free(r);
}

/* A proxy: answers with what its own tool says it is. */
static int proxy_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  const remote_t *r = self->user_data;
  *result = json_pack("{s:s,s:s,s:s}", "self", self->name, "remote", r->remote_name, "source", self->source);
  return 0;
}

static tool_t proxy_desc(const char *name, const char *source, const char *remote, atomic_int *freed) {
  remote_t *r = calloc(1, sizeof(*r));
  snprintf(r->remote_name, sizeof(r->remote_name), "%s", remote);
  r->freed = freed;
  return (tool_t){.name = name,
                  .description = "a remote tool",
                  .input_schema_json = "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":[\"string\",\"null\"]}}}",
                  .source = source,
                  .call = proxy_call,
                  .user_data = r,
                  .user_data_free = remote_free};
}

static json_t *call_ok(const char *name) {
  const tool_t *t = tool_find(name);
  cr_assert_not_null(t, "%s", name);
  json_t *a = json_object(), *res = NULL;
  cr_assert_eq(tool_call(t, &(tool_call_ctx_t){0}, a, &res), 0);
  json_decref(a);
  tool_unref(t);
  return res;
}

Test(tools, call_gets_its_own_tool) {
  static atomic_int freed;
  tool_t a = proxy_desc("srv.alpha", "mcp:srv", "alpha", &freed), b = proxy_desc("srv.beta", "mcp:srv", "beta", &freed);
  cr_assert_eq(tool_register(&a), 0);
  cr_assert_eq(tool_register(&b), 0);
  json_t *r = call_ok("srv.beta"); /* the same code, told apart by self */
  cr_expect_str_eq(json_string_value(json_object_get(r, "self")), "srv.beta");
  cr_expect_str_eq(json_string_value(json_object_get(r, "remote")), "beta");
  cr_expect_str_eq(json_string_value(json_object_get(r, "source")), "mcp:srv");
  json_decref(r);
  r = call_ok("srv.alpha");
  cr_expect_str_eq(json_string_value(json_object_get(r, "remote")), "alpha");
  json_decref(r);
  tool_registry_reset();
  cr_expect_eq(atomic_load(&freed), 2);
}

Test(tools, unregister_by_name_and_source) {
  static atomic_int freed;
  const char *names[] = {"foo.a", "foo.b", "foo.c", "bar.a"};
  for (int i = 0; i < 4; i++) {
    tool_t d = proxy_desc(names[i], i < 3 ? "mcp:foo" : "mcp:bar", names[i], &freed);
    cr_assert_eq(tool_register(&d), 0);
  }
  /* a duplicate name fails and leaves user_data with the caller */
  tool_t dup = proxy_desc("foo.a", "mcp:other", "x", &freed);
  cr_expect_eq(tool_register(&dup), AGD_ECONFLICT);
  remote_free(dup.user_data);
  cr_expect_eq(atomic_load(&freed), 1);
  /* a tool held by a run survives its unregistration until the run lets go */
  const tool_t *held = tool_find("foo.b");
  cr_expect_eq(tool_unregister("foo.a"), 0);
  cr_expect_eq(tool_unregister("foo.a"), AGD_ENOT_FOUND);
  cr_expect_eq(atomic_load(&freed), 2);
  cr_expect_eq(tool_unregister_source("mcp:foo"), 2);
  cr_expect_eq(tool_unregister_source("mcp:foo"), 0);
  cr_expect_null(tool_find("foo.c"));
  cr_expect_eq(atomic_load(&freed), 3); /* foo.c gone; foo.b is held */
  json_t *a = json_object(), *res = NULL;
  cr_expect_eq(tool_call(held, &(tool_call_ctx_t){0}, a, &res), 0);
  cr_expect_str_eq(json_string_value(json_object_get(res, "remote")), "foo.b");
  json_decref(res);
  json_decref(a);
  tool_unref(held);
  cr_expect_eq(atomic_load(&freed), 4);
  const tool_t *bar = tool_find("bar.a");
  cr_expect_not_null(bar);
  cr_expect_str_eq(bar->source, "mcp:bar");
  tool_unref(bar);
  const tool_t *calc = tool_find("calculator"); /* other sources untouched */
  cr_expect_not_null(calc);
  tool_unref(calc);
}

Test(tools, replace_source_is_all_or_nothing) {
  static atomic_int freed;
  tool_t d1 = proxy_desc("m.one", NULL, "one", &freed), d2 = proxy_desc("m.two", NULL, "two", &freed);
  const tool_t *batch[] = {&d1, &d2};
  cr_assert_eq(tool_replace_source("mcp:m", batch, 2), 0);
  json_t *r = call_ok("m.two");
  cr_expect_str_eq(json_string_value(json_object_get(r, "source")), "mcp:m");
  json_decref(r);
  /* the server's list changes: m.one goes, m.three comes */
  tool_t d3 = proxy_desc("m.three", NULL, "three", &freed), d2b = proxy_desc("m.two", NULL, "two-v2", &freed);
  const tool_t *batch2[] = {&d2b, &d3};
  cr_assert_eq(tool_replace_source("mcp:m", batch2, 2), 0);
  cr_expect_null(tool_find("m.one"));
  r = call_ok("m.two");
  cr_expect_str_eq(json_string_value(json_object_get(r, "remote")), "two-v2");
  json_decref(r);
  cr_expect_eq(atomic_load(&freed), 2); /* m.one and the old m.two */
  /* a clash with another source's name, or a bad schema: nothing changes */
  tool_t clash = proxy_desc("calculator", NULL, "c", &freed), ok = proxy_desc("m.four", NULL, "four", &freed);
  const tool_t *batch3[] = {&ok, &clash};
  cr_expect_eq(tool_replace_source("mcp:m", batch3, 2), AGD_ECONFLICT);
  tool_t bad = proxy_desc("m.five", NULL, "five", &freed);
  bad.input_schema_json = "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":\"a(b\"}}}";
  const tool_t *batch4[] = {&ok, &bad};
  cr_expect_eq(tool_replace_source("mcp:m", batch4, 2), AGD_EVALIDATION);
  cr_expect_eq(atomic_load(&freed), 2); /* the caller still owns those */
  remote_free(clash.user_data);
  remote_free(ok.user_data);
  remote_free(bad.user_data);
  const tool_t *t = tool_find("m.three");
  cr_expect_not_null(t);
  tool_unref(t);
  cr_expect_null(tool_find("m.four"));
  tool_registry_reset();
  cr_expect_eq(atomic_load(&freed), 7);
}

Test(tools, refuses_bad_descriptions) {
  tool_t d = echo;
  d.name = "bad_schema";
  d.input_schema_json = "{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/missing\"}}}";
  cr_expect_eq(tool_register(&d), AGD_EVALIDATION);
  d.input_schema_json = "{\"type\":";
  cr_expect_eq(tool_register(&d), AGD_EVALIDATION);
  d.input_schema_json = "[]";
  cr_expect_eq(tool_register(&d), AGD_EVALIDATION);
  d.input_schema_json = NULL;
  d.name = "";
  cr_expect_eq(tool_register(&d), AGD_EVALIDATION);
  d.name = "no_call";
  d.call = NULL;
  cr_expect_eq(tool_register(&d), AGD_EVALIDATION);
  cr_expect_null(tool_find("bad_schema"));
  /* a schema given as JSON is copied */
  json_t *js = json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties", "k", "type", "integer",
                         "required", "k");
  d = echo;
  d.name = "from_json";
  d.input_schema_json = NULL;
  d.input_schema = js;
  cr_expect_eq(tool_register(&d), 0);
  json_decref(js);
  const tool_t *t = tool_find("from_json");
  char p[100], m[100];
  json_t *a = json_pack("{s:s}", "k", "1");
  cr_expect_eq(tool_validate(t, a, p, sizeof(p), m, sizeof(m)), AGD_EVALIDATION);
  cr_expect_str_eq(p, "arguments.k");
  json_decref(a);
  tool_unref(t);
}

/* 4 threads find, call and list in a loop while the main thread registers and
 * unregisters the same names; under ASan any use of a freed tool, list or
 * user_data aborts, and a call through a poisoned user_data fails the check. */
#define CHURN_ROUNDS 400
#define CHURN_READERS 4

static atomic_int churn_stop, churn_freed;
static atomic_long churn_calls;

static void *churn_reader(void *arg) {
  long bad = 0;
  while (!atomic_load(&churn_stop)) {
    char name[16];
    for (int i = 0; i < 4; i++) {
      snprintf(name, sizeof(name), "dyn.t%d", i);
      const tool_t *t = tool_find(name);
      if (!t) continue;
      json_t *a = json_object(), *res = NULL;
      if (tool_call(t, &(tool_call_ctx_t){0}, a, &res) != 0) bad++;
      const char *remote = json_string_value(json_object_get(res, "remote"));
      if (!remote || strcmp(remote, name) != 0) bad++;
      json_decref(res);
      json_decref(a);
      tool_unref(t);
      atomic_fetch_add(&churn_calls, 1);
    }
    tool_list_t *l = tool_list_acquire();
    for (size_t i = 0; i < tool_list_size(l); i++) {
      const tool_t *t = tool_list_get(l, i);
      if (!t->name[0] || !tool_schema(t)) bad++;
      if (strncmp(t->name, "dyn.", 4) == 0 && strcmp(((const remote_t *)t->user_data)->remote_name, t->name) != 0)
        bad++;
    }
    tool_list_release(l);
  }
  return (void *)bad;
}

Test(tools, churn_across_threads) {
  pthread_t th[CHURN_READERS];
  for (int i = 0; i < CHURN_READERS; i++) cr_assert_eq(pthread_create(&th[i], NULL, churn_reader, NULL), 0);
  size_t registered = 0;
  for (int round = 0; round < CHURN_ROUNDS; round++) {
    char name[16];
    snprintf(name, sizeof(name), "dyn.t%d", round % 4);
    tool_t d = proxy_desc(name, "mcp:dyn", name, &churn_freed);
    if (tool_register(&d) == 0) registered++;
    else remote_free(d.user_data), atomic_fetch_sub(&churn_freed, 1);
    if (round % 3 == 0) tool_unregister(name);
    if (round % 17 == 0) tool_unregister_source("mcp:dyn");
  }
  /* let the readers see some tools before stopping (no timing: count calls) */
  for (int i = 0; i < 4; i++) {
    char name[16];
    snprintf(name, sizeof(name), "dyn.t%d", i);
    tool_t d = proxy_desc(name, "mcp:dyn", name, &churn_freed);
    if (tool_register(&d) == 0) registered++;
    else remote_free(d.user_data), atomic_fetch_sub(&churn_freed, 1);
  }
  while (atomic_load(&churn_calls) < 100) sched_yield();
  atomic_store(&churn_stop, 1);
  for (int i = 0; i < CHURN_READERS; i++) {
    void *bad;
    pthread_join(th[i], &bad);
    cr_expect_eq((long)bad, 0, "reader %d saw %ld bad results", i, (long)bad);
  }
  cr_expect_eq(tool_unregister_source("mcp:dyn"), 4);
  cr_expect_eq((size_t)atomic_load(&churn_freed), registered); /* every user_data freed exactly once */
}
