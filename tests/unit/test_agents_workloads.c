/* tests/unit/test_agents_workloads.c — the workload tools and the analysis
 * agents (data, optimization, actions, data_helper, triage routing, reporting)
 * on hand-made datasets with known answers, through a real sqlite store and
 * the real workloads/ analyses; SPEC §5 order for every chain. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/agent.h"
#include "llm/llm.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/err.h"
#include "workloads/workloads.h"

/* ---- fixture: a store in a temp dir, the builtin tools ---- */

static char g_dir[64];
static store_t *g_st;

static void setup(void) {
  tool_registry_reset();
  tools_register_builtin();
  snprintf(g_dir, sizeof(g_dir), "/tmp/agd_awl_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
  char url[128], err[256];
  snprintf(url, sizeof(url), "sqlite:%s/t.db", g_dir);
  cr_assert_eq(store_open(&g_st, url, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void) {
  workloads_cache_clear();
  store_close(g_st);
  g_st = NULL;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  cr_expect_eq(system(cmd), 0);
  tool_registry_reset();
}
TestSuite(awl, .init = setup, .fini = teardown);

/* ---- datasets ---- */

#define DAY 86400.0
#define T0 1767225600.0 /* 2026-01-01 00:00 UTC */

static workload_rec_t rec(double ts, const char *model, const char *provider, long long pt, long long ct,
                          double lat, double cost, const char *feature, const char *hash) {
  workload_rec_t r;
  memset(&r, 0, sizeof(r));
  r.timestamp = ts;
  snprintf(r.model, sizeof(r.model), "%s", model);
  snprintf(r.provider, sizeof(r.provider), "%s", provider);
  r.prompt_tokens = pt;
  r.completion_tokens = ct;
  r.latency_ms = lat;
  r.cost_usd = cost;
  snprintf(r.feature, sizeof(r.feature), "%s", feature ? feature : "");
  snprintf(r.prompt_hash, sizeof(r.prompt_hash), "%s", hash ? hash : "");
  return r;
}

static void insert(const char *user, const workload_rec_t *recs, size_t n) {
  long ins = 0;
  cr_assert_eq(workloads_insert(g_st, user, recs, n, &ins), 0);
  cr_assert_eq(ins, (long)n);
}

/* n records spread evenly over exactly `days` days (first at T0, last at T0 + days). */
static double ts_of(size_t i, size_t n, double days) {
  return T0 + (days * DAY) * (double)i / (double)(n > 1 ? n - 1 : 1);
}

/* Caching: 1000 gpt-4o-mini calls of $0.01 over 30 days; 200 prompts asked 3
 * times (400 repeats) and 400 asked once: 40% of the calls repeat a prompt, a
 * cache saves 400 x $0.01 = $4.00 in the 30 days, so $4.00 a month. */
#define CACHE_N 1000
static void dataset_cache(const char *user) {
  workload_rec_t *r = calloc(CACHE_N, sizeof(*r));
  size_t k = 0;
  for (int h = 0; h < 200; h++)
    for (int rep = 0; rep < 3; rep++) {
      char hash[32];
      snprintf(hash, sizeof(hash), "rep%03d", h);
      r[k] = rec(0, "gpt-4o-mini", "openai", 500, 100, 800, 0.01, "support", hash);
      k++;
    }
  for (int u = 0; u < 400; u++) {
    char hash[32];
    snprintf(hash, sizeof(hash), "uniq%03d", u);
    r[k++] = rec(0, "gpt-4o-mini", "openai", 500, 100, 800, 0.01, "support", hash);
  }
  /* interleave in time: record i at ts_of(i) */
  for (size_t i = 0; i < CACHE_N; i++) r[i].timestamp = ts_of(i, CACHE_N, 30);
  insert(user, r, CACHE_N);
  free(r);
}

/* Model switch: 2000 gpt-4o calls with small prompts (400 tokens in, 150 out),
 * all distinct, over 30 days, priced from the table.  gpt-4o-mini (its
 * downgrade) would cost 400 x 0.15 + 150 x 0.60 = 150 instead of 400 x 2.50 +
 * 150 x 10 = 2500 micro-dollars per call: 2000 x $0.00235 = $4.70 a month. */
#define MODEL_N 2000
static void dataset_model(const char *user) {
  workload_rec_t *r = calloc(MODEL_N, sizeof(*r));
  double in = 0, out = 0;
  cr_assert_eq(workloads_price("openai", "gpt-4o", &in, &out), 0);
  for (size_t i = 0; i < MODEL_N; i++) {
    char hash[32];
    snprintf(hash, sizeof(hash), "m%04zu", i);
    r[i] = rec(ts_of(i, MODEL_N, 30), "gpt-4o", "openai", 400, 150, 1200, (400 * in + 150 * out) / 1e6, "classify",
               hash);
  }
  insert(user, r, MODEL_N);
  free(r);
}

static void dataset_small(const char *user, size_t n) {
  workload_rec_t *r = calloc(n, sizeof(*r));
  for (size_t i = 0; i < n; i++) {
    char hash[32];
    snprintf(hash, sizeof(hash), "s%04zu", i);
    r[i] = rec(ts_of(i, n, 3), "gpt-4o-mini", "openai", 300, 50, 600, 0.0002, "chat", hash);
  }
  insert(user, r, n);
  free(r);
}

/* ---- running agents through a fake emitter ---- */

typedef struct fake {
  json_t *events; /* [{"type","agent","data"}] */
  int persisted;
} fake_t;

static int fake_emit(void *arg, event_type_t type, const char *agent_name, json_t *data) {
  fake_t *f = arg;
  cr_assert_not_null(data);
  json_array_append_new(f->events,
                        json_pack("{s:s,s:s,s:o}", "type", event_type_name(type), "agent", agent_name, "data", data));
  return 0;
}

static int fake_persist(void *arg, const char *content, char *message_id) {
  fake_t *f = arg;
  f->persisted++;
  snprintf(message_id, ID_MAX, "msg_fake%d", f->persisted);
  return 0;
}

typedef struct run {
  fake_t f;
  json_t *result;
  char *response;
} run_t;

static void run_agent(run_t *r, const char *agent, const char *user, const char *input, store_t *st) {
  memset(r, 0, sizeof(*r));
  r->f.events = json_array();
  agent_run_params_t p = {
      .run_id = "run_test",
      .user_id = user,
      .thread_id = "",
      .input = input,
      .llm = llm_builtin_new(),
      .store = st,
      .emit = fake_emit,
      .persist = fake_persist,
      .emit_arg = &r->f,
  };
  json_t *error = NULL;
  int rc = agent_run_top(agent_find(agent), &p, &r->result, &r->response, &error);
  char *e = error ? json_dumps(error, 0) : NULL;
  cr_assert_eq(rc, 0, "%s failed: %s", agent, e ? e : "?");
  free(e);
  json_decref(error);
}

static void run_dispose(run_t *r) {
  json_decref(r->f.events);
  json_decref(r->result);
  free(r->response);
}

static const char *ev_type(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "type"));
}
static const char *ev_agent(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "agent"));
}
static json_t *ev_data(const json_t *evs, size_t i) { return json_object_get(json_array_get(evs, i), "data"); }

/* The result of sub-agent `name` (its agent_completed), or NULL. */
static json_t *result_of(const run_t *r, const char *name) {
  for (size_t i = 0; i < json_array_size(r->f.events); i++)
    if (strcmp(ev_type(r->f.events, i), "agent_completed") == 0 && strcmp(ev_agent(r->f.events, i), name) == 0)
      return json_object_get(ev_data(r->f.events, i), "result");
  return NULL;
}

/* The agents that started, in order, as "a,b,c". */
static void started(const run_t *r, char *out, size_t cap) {
  out[0] = '\0';
  for (size_t i = 0; i < json_array_size(r->f.events); i++)
    if (strcmp(ev_type(r->f.events, i), "agent_started") == 0) {
      size_t l = strlen(out);
      snprintf(out + l, cap - l, "%s%s", l ? "," : "", ev_agent(r->f.events, i));
    }
}

/* SPEC §5: top agent_started first; per sub-agent started → ≥1 thinking →
 * completed, nested properly; tool calls paired inside their agent; one
 * agent_response right before the top agent_completed, deltas joined == content. */
static void check_order(const run_t *r, const char *top) {
  const json_t *evs = r->f.events;
  size_t n = json_array_size(evs);
  cr_assert(n >= 4);
  cr_assert_str_eq(ev_type(evs, 0), "agent_started");
  cr_assert_str_eq(ev_agent(evs, 0), top);
  cr_assert_str_eq(ev_type(evs, n - 1), "agent_completed");
  cr_assert_str_eq(ev_agent(evs, n - 1), top);
  cr_assert_str_eq(ev_type(evs, n - 2), "agent_response");
  const char *stack[16];
  int thinking[16], depth = 0;
  const char *open_call = NULL;
  size_t pl = 0;
  char *joined = calloc(1, 1 << 20);
  for (size_t i = 0; i < n; i++) {
    const char *t = ev_type(evs, i), *a = ev_agent(evs, i);
    json_t *d = ev_data(evs, i);
    if (strcmp(t, "agent_started") == 0) {
      cr_assert(depth < 16);
      cr_assert_null(open_call);
      stack[depth] = a;
      thinking[depth++] = 0;
    } else if (strcmp(t, "agent_completed") == 0) {
      cr_assert(depth > 0);
      cr_assert_str_eq(stack[depth - 1], a, "agent_completed of %s inside %s", a, stack[depth - 1]);
      cr_expect(thinking[depth - 1] >= 1, "%s did not think", a);
      cr_assert(json_is_object(json_object_get(d, "result")), "%s result not an object", a);
      depth--;
    } else if (strcmp(t, "agent_thinking") == 0) {
      cr_assert(depth > 0);
      cr_assert_str_eq(stack[depth - 1], a);
      thinking[depth - 1]++;
      cr_expect_eq(json_integer_value(json_object_get(d, "step_number")), thinking[depth - 1]);
    } else if (strcmp(t, "tool_executing") == 0) {
      cr_assert_null(open_call, "tool call inside a tool call");
      cr_assert_str_eq(stack[depth - 1], a);
      open_call = json_string_value(json_object_get(d, "call_id"));
    } else if (strcmp(t, "tool_completed") == 0) {
      cr_assert_not_null(open_call);
      cr_assert_str_eq(json_string_value(json_object_get(d, "call_id")), open_call);
      open_call = NULL;
    } else if (strcmp(t, "partial_result") == 0) {
      const char *c = json_string_value(json_object_get(d, "content"));
      size_t cl = strlen(c);
      cr_assert(pl + cl < (1 << 20));
      memcpy(joined + pl, c, cl);
      pl += cl;
    } else if (strcmp(t, "agent_response") == 0) {
      cr_assert_eq(i, n - 2);
      cr_expect_str_eq(joined, json_string_value(json_object_get(d, "content")));
      cr_expect_str_eq(r->response, json_string_value(json_object_get(d, "content")));
    } else {
      cr_assert_fail("unexpected %s", t);
    }
  }
  cr_expect_eq(depth, 0);
  cr_expect_eq(r->f.persisted, 1);
  free(joined);
}

/* Call a tool directly as a REST caller would; *rc gets its status. */
static json_t *tool(const char *name, const char *user, const char *args_json, int *rc) {
  const tool_t *t = tool_find(name);
  cr_assert_not_null(t, "tool %s", name);
  json_t *args = json_loads(args_json, 0, NULL);
  cr_assert_not_null(args);
  tool_call_ctx_t ctx = {.user_id = user, .store = g_st};
  json_t *res = NULL;
  *rc = tool_call(t, &ctx, args, &res);
  tool_unref(t);
  json_decref(args);
  return res;
}

static int has_rec(const json_t *recs, const char *kind, double *saving) {
  size_t i;
  const json_t *r;
  json_array_foreach(recs, i, r) if (strcmp(json_string_value(json_object_get(r, "kind")), kind) == 0) {
    if (saving) *saving = json_number_value(json_object_get(r, "monthly_saving_usd"));
    return 1;
  }
  return 0;
}

/* ---- tools ---- */

Test(awl, tools_registered_with_schemas) {
  const char *names[] = {"workload_summary",      "cost_breakdown",      "latency_analysis", "cache_opportunities",
                         "model_recommendations", "batch_opportunities", "anomalies",        "price_lookup"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const tool_t *t = tool_find(names[i]);
    cr_assert_not_null(t, "%s", names[i]);
    cr_expect_str_eq(t->source, "builtin");
    json_t *schema = tool_schema(t);
    cr_expect_str_eq(json_string_value(json_object_get(schema, "type")), "object");
    const char *prop = i + 1 < sizeof(names) / sizeof(names[0]) ? "from" : "model";
    cr_expect_not_null(json_object_get(json_object_get(schema, "properties"), prop), "%s schema", names[i]);
    tool_unref(t);
  }
  /* bad arguments are refused by the schema */
  int rc;
  json_t *r = tool("workload_summary", "usr_a", "{\"from\":\"yesterday\"}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
  r = tool("cache_opportunities", "usr_a", "{\"bogus\":1}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
  r = tool("anomalies", "usr_a", "{\"from\":200,\"to\":100}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
  r = tool("price_lookup", "usr_a", "{}", &rc);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
}

Test(awl, price_lookup) {
  int rc;
  json_t *r = tool("price_lookup", "usr_a", "{\"model\":\"gpt-4o\"}", &rc);
  cr_assert_eq(rc, 0);
  double in = 0, out = 0;
  cr_assert_eq(workloads_price(NULL, "gpt-4o", &in, &out), 0);
  cr_expect_float_eq(json_number_value(json_object_get(r, "input_per_million")), in, 1e-9);
  cr_expect_float_eq(json_number_value(json_object_get(r, "output_per_million")), out, 1e-9);
  cr_expect_str_eq(json_string_value(json_object_get(r, "provider")), "openai");
  cr_expect_str_eq(json_string_value(json_object_get(r, "tier")), "premium");
  json_decref(r);
  r = tool("price_lookup", "usr_a", "{\"model\":\"no-such-model-xyz\"}", &rc);
  cr_expect_eq(rc, AGD_ENOT_FOUND);
  cr_expect(strstr(json_string_value(json_object_get(r, "error")), "no-such-model-xyz") != NULL);
  json_decref(r);
}

Test(awl, tools_need_a_store) {
  const tool_t *t = tool_find("workload_summary");
  json_t *args = json_object(), *res = NULL;
  tool_call_ctx_t ctx = {.user_id = "usr_a", .store = NULL};
  cr_expect_eq(tool_call(t, &ctx, args, &res), AGD_EUNAVAILABLE);
  tool_unref(t);
  cr_expect_not_null(json_object_get(res, "error"));
  json_decref(res);
  json_decref(args);
}

Test(awl, summary_tool_is_the_summary_and_per_user) {
  dataset_small("usr_a", 120);
  dataset_small("usr_b", 7);
  int rc;
  json_t *r = tool("workload_summary", "usr_a", "{}", &rc);
  cr_assert_eq(rc, 0);
  json_t *direct = NULL;
  cr_assert_eq(workloads_summary(g_st, "usr_a", &(workload_window_t){0, 0}, &direct), 0);
  cr_expect(json_equal(r, direct));
  json_decref(r);
  json_decref(direct);
  r = tool("workload_summary", "usr_b", "{}", &rc);
  cr_assert_eq(rc, 0);
  cr_expect_eq((long)json_number_value(json_object_get(json_object_get(r, "totals"), "calls")), 7);
  json_decref(r);
}

/* ---- triage routing on the caller's record count ---- */

static json_t *triage_of(const char *user, const char *q, char *agents, size_t cap) {
  run_t r;
  run_agent(&r, "triage", user, q, g_st);
  check_order(&r, "triage");
  json_t *res = json_incref(r.result);
  agents[0] = '\0';
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(res, "next_agents"), i, a) {
    size_t l = strlen(agents);
    snprintf(agents + l, cap - l, "%s%s", l ? "," : "", json_string_value(a));
  }
  run_dispose(&r);
  return res;
}

Test(awl, triage_routes_on_data) {
  char next[200];
  /* no data: data_helper */
  json_t *t = triage_of("usr_none", "how can I cut my LLM costs?", next, sizeof(next));
  cr_expect_str_eq(next, "data_helper");
  cr_expect(json_is_false(json_object_get(t, "data_sufficient")));
  cr_expect_eq(json_integer_value(json_object_get(t, "records")), 0);
  json_decref(t);
  /* too little: data, then data_helper */
  dataset_small("usr_few", 12);
  t = triage_of("usr_few", "how can I cut my LLM costs?", next, sizeof(next));
  cr_expect_str_eq(next, "data,data_helper");
  cr_expect(json_is_false(json_object_get(t, "data_sufficient")));
  cr_expect_eq(json_integer_value(json_object_get(t, "records")), 12);
  json_decref(t);
  /* ... but enough for a usage report */
  t = triage_of("usr_few", "summarise my usage", next, sizeof(next));
  cr_expect_str_eq(next, "data");
  cr_expect(json_is_true(json_object_get(t, "data_sufficient")));
  json_decref(t);
  /* enough */
  dataset_small("usr_many", 80);
  struct {
    const char *q, *next, *intent, *focus;
  } cases[] = {
      {"how can I cut my LLM costs?", "data,optimization,actions", "cost", "cost"},
      {"why is latency high?", "data,optimization", "latency", "latency"},
      {"which model should I use for summarisation?", "data,optimization", "model_selection", "model"},
      {"summarise my usage", "data", "usage_report", "usage"},
      {"how do I upload my data?", "data_helper", "data_upload_help", "general"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    t = triage_of("usr_many", cases[i].q, next, sizeof(next));
    cr_expect_str_eq(next, cases[i].next, "%s", cases[i].q);
    cr_expect_str_eq(json_string_value(json_object_get(t, "intent")), cases[i].intent);
    cr_expect_str_eq(json_string_value(json_object_get(t, "focus")), cases[i].focus);
    cr_expect_eq(json_integer_value(json_object_get(t, "records")), 80);
    cr_expect(json_is_true(json_object_get(t, "data_sufficient")), "%s", cases[i].q);
    json_decref(t);
  }
}

/* ---- no data: data_helper says what to upload ---- */

Test(awl, no_data_routes_to_data_helper) {
  run_t r;
  run_agent(&r, "supervisor", "usr_none", "how can I cut my LLM costs?", g_st);
  check_order(&r, "supervisor");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data_helper,reporting");
  json_t *h = result_of(&r, "data_helper");
  cr_assert_not_null(h);
  cr_expect(json_is_false(json_object_get(h, "has_data")));
  cr_expect_eq(json_integer_value(json_object_get(h, "records")), 0);
  cr_expect_eq(json_integer_value(json_object_get(h, "needed")), 50);
  cr_expect_str_eq(json_string_value(json_object_get(h, "endpoint")), "POST /api/workloads");
  cr_expect_eq(json_array_size(json_object_get(h, "formats")), 3);
  /* the example is valid JSONL of records the ingest accepts */
  const char *ex = json_string_value(json_object_get(h, "example_jsonl"));
  int lines = 0;
  for (const char *p = ex; p && *p;) {
    const char *nl = strchr(p, '\n');
    json_t *o = json_loadb(p, nl ? (size_t)(nl - p) : strlen(p), 0, NULL);
    cr_assert(json_is_object(o), "line %d", lines + 1);
    workload_rec_t w;
    char err[200];
    cr_expect_eq(workloads_rec_from_json(o, &w, err, sizeof(err)), 0, "%s", err);
    json_decref(o);
    lines++;
    p = nl ? nl + 1 : NULL;
  }
  cr_expect_eq(lines, 3);
  cr_expect(strstr(r.response, "What data to upload") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "POST /api/workloads") != NULL);
  cr_expect(strstr(r.response, "prompt_tokens") != NULL);
  cr_expect(strstr(r.response, "application/x-ndjson") != NULL);
  cr_expect(strstr(r.response, "no LLM call records") != NULL, "%s", r.response);
  run_dispose(&r);

  /* too few records: the data agent summarises them and data_helper says how many more */
  dataset_small("usr_few", 12);
  run_agent(&r, "supervisor", "usr_few", "how can I cut my LLM costs?", g_st);
  check_order(&r, "supervisor");
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data,data_helper,reporting");
  h = result_of(&r, "data_helper");
  cr_expect_eq(json_integer_value(json_object_get(h, "needed")), 38);
  cr_expect(json_is_true(json_object_get(h, "has_data")));
  cr_expect(strstr(r.response, "Upload 38 more") != NULL, "%s", r.response);
  run_dispose(&r);
}

/* ---- summarise my usage: the data agent's numbers are the summary's ---- */

Test(awl, usage_report_numbers_equal_summary) {
  dataset_cache("usr_a");
  dataset_small("usr_a", 50);
  run_t r;
  run_agent(&r, "supervisor", "usr_a", "summarise my usage", g_st);
  check_order(&r, "supervisor");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data,reporting");
  json_t *d = result_of(&r, "data");
  cr_assert_not_null(d);
  json_t *sum = NULL;
  cr_assert_eq(workloads_summary(g_st, "usr_a", &(workload_window_t){0, 0}, &sum), 0);
  json_t *tot = json_object_get(sum, "totals");
  cr_expect(json_equal(json_object_get(d, "totals"), tot));
  cr_expect_eq(json_integer_value(json_object_get(d, "calls")), CACHE_N + 50);
  cr_expect(json_equal(json_object_get(d, "calls"), json_object_get(tot, "calls")));
  cr_expect(json_equal(json_object_get(d, "cost_usd"), json_object_get(tot, "cost_usd")));
  cr_expect_float_eq(json_number_value(json_object_get(d, "cost_usd")), CACHE_N * 0.01 + 50 * 0.0002, 1e-9);
  cr_expect_eq(json_integer_value(json_object_get(d, "tokens")), CACHE_N * 600 + 50 * 350);
  json_t *top = json_array_get(json_object_get(d, "top_models"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(top, "model")), "gpt-4o-mini");
  cr_expect(json_is_array(json_object_get(d, "anomalies")));
  cr_expect(json_is_number(json_object_get(json_object_get(d, "latency_ms"), "p95")));
  /* the answer cites the numbers */
  cr_expect(strstr(r.response, "1050 calls") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "$10.01") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "p95") != NULL);
  json_decref(sum);
  run_dispose(&r);
}

/* ---- optimization on datasets with known savings ---- */

static double rec_saving(const json_t *opt, const char *kind) {
  double v = -1;
  cr_assert(has_rec(json_object_get(opt, "recommendations"), kind, &v), "no %s recommendation", kind);
  return v;
}

Test(awl, caching_saving) {
  dataset_cache("usr_c");
  int rc;
  json_t *c = tool("cache_opportunities", "usr_c", "{}", &rc);
  cr_assert_eq(rc, 0);
  cr_expect_eq(json_integer_value(json_object_get(c, "repeated_calls")), 400);
  cr_expect_float_eq(json_number_value(json_object_get(c, "repeat_rate")), 0.4, 1e-9);
  cr_expect_float_eq(json_number_value(json_object_get(c, "monthly_saving_usd")), 4.0, 1e-6);
  json_decref(c);

  run_t r;
  run_agent(&r, "supervisor", "usr_c", "how can I cut my LLM costs?", g_st);
  check_order(&r, "supervisor");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data,optimization,actions,reporting");
  json_t *opt = result_of(&r, "optimization");
  cr_assert_not_null(opt);
  cr_expect_float_eq(rec_saving(opt, "caching"), 4.00, 1e-9);
  cr_expect(!has_rec(json_object_get(opt, "recommendations"), "model_switch", NULL)); /* gpt-4o-mini is budget */
  cr_expect_float_eq(json_number_value(json_object_get(opt, "total_monthly_saving_usd")), 4.00, 1e-9);
  json_t *top = json_array_get(json_object_get(opt, "recommendations"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(top, "kind")), "caching");
  json_t *ev = json_object_get(top, "evidence");
  cr_expect_eq(json_integer_value(json_object_get(ev, "repeated_calls")), 400);
  cr_expect(json_array_size(json_object_get(ev, "top_prompts")) <= 5);
  /* the plan: caching first, then measure */
  json_t *act = result_of(&r, "actions");
  json_t *plan = json_object_get(act, "plan");
  cr_assert_eq(json_array_size(plan), 2);
  json_t *s1 = json_array_get(plan, 0);
  cr_expect_eq(json_integer_value(json_object_get(s1, "step")), 1);
  cr_expect_str_eq(json_string_value(json_object_get(s1, "kind")), "caching");
  cr_expect_float_eq(json_number_value(json_object_get(s1, "monthly_saving_usd")), 4.00, 1e-9);
  cr_expect(json_string_length(json_object_get(s1, "action")) > 20);
  cr_expect(json_string_length(json_object_get(s1, "expected_effect")) > 20);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(plan, 1), "kind")), "measure");
  /* the answer cites the saving and the usage */
  cr_expect(strstr(r.response, "Cache responses to repeated prompts") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "$4.00 per month") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "400 of 1000 calls") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "Top cost drivers") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "p95") != NULL);
  cr_expect(strstr(r.response, "### Plan") != NULL);
  cr_expect(strstr(r.response, "What data to upload") == NULL, "%s", r.response);
  run_dispose(&r);
}

Test(awl, model_switch_saving) {
  dataset_model("usr_m");
  run_t r;
  run_agent(&r, "supervisor", "usr_m", "which model should I use for classification?", g_st);
  check_order(&r, "supervisor");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data,optimization,reporting");
  json_t *opt = result_of(&r, "optimization");
  cr_expect_str_eq(json_string_value(json_object_get(opt, "focus")), "model");
  cr_expect_float_eq(rec_saving(opt, "model_switch"), 4.70, 1e-9);
  json_t *top = json_array_get(json_object_get(opt, "recommendations"), 0);
  json_t *ev = json_object_get(top, "evidence");
  cr_expect_str_eq(json_string_value(json_object_get(ev, "model")), "gpt-4o");
  cr_expect_str_eq(json_string_value(json_object_get(ev, "suggested_model")), "gpt-4o-mini");
  cr_expect_eq(json_integer_value(json_object_get(ev, "eligible_calls")), MODEL_N);
  /* the prices the switch rests on */
  cr_expect_float_eq(json_number_value(json_object_get(json_object_get(ev, "price_from"), "input_per_million")), 2.5,
                     1e-9);
  cr_expect_float_eq(json_number_value(json_object_get(json_object_get(ev, "price_to"), "input_per_million")), 0.15,
                     1e-9);
  cr_expect(strstr(r.response, "Move short gpt-4o calls to gpt-4o-mini") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "$4.70") != NULL, "%s", r.response);
  run_dispose(&r);

  /* the same data asked about cost: the model switch is there too, and actions plans it */
  run_agent(&r, "supervisor", "usr_m", "how can I cut my LLM costs?", g_st);
  check_order(&r, "supervisor");
  opt = result_of(&r, "optimization");
  cr_expect_float_eq(rec_saving(opt, "model_switch"), 4.70, 1e-9);
  json_t *plan = json_object_get(result_of(&r, "actions"), "plan");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(plan, 0), "kind")), "model_switch");
  run_dispose(&r);
}

Test(awl, both_ranked_and_latency_focus) {
  dataset_cache("usr_x");
  dataset_model("usr_x");
  run_t r;
  run_agent(&r, "optimization", "usr_x", "how can I cut my LLM costs?", g_st); /* on its own */
  check_order(&r, "optimization");
  json_t *recs = json_object_get(r.result, "recommendations");
  cr_assert_eq(json_array_size(recs), 2);
  /* both datasets span the same 30 days: ranked by saving, model switch ($4.70) first */
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(recs, 0), "kind")), "model_switch");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(recs, 1), "kind")), "caching");
  cr_expect_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "rank")), 1);
  cr_expect_float_eq(json_number_value(json_object_get(r.result, "total_monthly_saving_usd")), 8.70, 1e-9);
  run_dispose(&r);

  run_agent(&r, "supervisor", "usr_x", "why is latency high?", g_st);
  check_order(&r, "supervisor");
  json_t *opt = result_of(&r, "optimization");
  cr_expect_str_eq(json_string_value(json_object_get(opt, "focus")), "latency");
  cr_expect(has_rec(json_object_get(opt, "recommendations"), "latency", NULL));
  cr_expect(strstr(r.response, "Cut the latency of gpt-4o calls") != NULL, "%s", r.response);
  cr_expect(strstr(r.response, "p95 1200 ms") != NULL, "%s", r.response);
  run_dispose(&r);

  /* actions on its own runs optimization first */
  run_agent(&r, "actions", "usr_x", "what should I do to spend less?", g_st);
  check_order(&r, "actions");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "actions,optimization");
  cr_expect_eq(json_array_size(json_object_get(r.result, "plan")), 3);
  cr_expect_float_eq(json_number_value(json_object_get(r.result, "total_monthly_saving_usd")), 8.70, 1e-9);
  run_dispose(&r);
}

Test(awl, no_store_still_answers) {
  run_t r;
  run_agent(&r, "supervisor", "usr_a", "how can I cut my LLM costs?", NULL);
  check_order(&r, "supervisor");
  char s[300];
  started(&r, s, sizeof(s));
  cr_expect_str_eq(s, "supervisor,triage,data,optimization,actions,reporting");
  json_t *d = result_of(&r, "data");
  cr_expect(json_is_false(json_object_get(d, "has_data")));
  cr_expect_not_null(json_object_get(d, "error"));
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(result_of(&r, "actions"), "plan"), 0),
                                                     "kind")),
                   "upload");
  cr_expect(strstr(r.response, "What data to upload") != NULL, "%s", r.response);
  run_dispose(&r);
  /* every agent on its own */
  const char *names[] = {"data", "optimization", "actions", "data_helper"};
  for (size_t i = 0; i < 4; i++) {
    run_agent(&r, names[i], "usr_a", "how can I cut my LLM costs?", NULL);
    check_order(&r, names[i]);
    run_dispose(&r);
  }
}
