/* tests/unit/test_agents.c — agent runs through a fake emitter: SPEC §5 order,
 * tool call pairing, streamed deltas, cancellation, timeout, failures. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agents/agent.h"
#include "llm/llm.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/timeutil.h"

typedef struct fake {
  json_t *events;    /* [{"type","agent","data"}] */
  int persisted;
  char last_persisted[8192];
  /* cancellation from another thread */
  atomic_int *cancel;
  const char *cancel_on; /* event type that triggers it */
  int fail_on_event;     /* emit returns an error for event #n (1-based), 0: never */
} fake_t;

static int fake_emit(void *arg, event_type_t type, const char *agent_name, json_t *data) {
  fake_t *f = arg;
  cr_assert_not_null(data, "event %s without data", event_type_name(type));
  json_array_append_new(f->events,
                        json_pack("{s:s,s:s,s:o}", "type", event_type_name(type), "agent", agent_name, "data", data));
  if (f->fail_on_event && (int)json_array_size(f->events) == f->fail_on_event) return AGD_EUNAVAILABLE;
  return 0;
}

static int fake_persist(void *arg, const char *content, char *message_id) {
  fake_t *f = arg;
  f->persisted++;
  snprintf(f->last_persisted, sizeof(f->last_persisted), "%s", content);
  snprintf(message_id, ID_MAX, "msg_fake%d", f->persisted);
  return 0;
}

static void setup(void) {
  tool_registry_reset();
  tools_register_builtin();
}
static void teardown(void) { tool_registry_reset(); }
TestSuite(agents, .init = setup, .fini = teardown);

static agent_run_params_t params(fake_t *f, const char *input) {
  return (agent_run_params_t){
      .run_id = "run_test",
      .user_id = "usr_test",
      .thread_id = "",
      .input = input,
      .llm = llm_builtin_new(),
      .emit = fake_emit,
      .persist = fake_persist,
      .emit_arg = f,
      .cancel = f->cancel,
  };
}

static const char *ev_type(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "type"));
}
static const char *ev_agent(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "agent"));
}
static json_t *ev_data(const json_t *evs, size_t i) { return json_object_get(json_array_get(evs, i), "data"); }

/* Every tool_executing has one tool_completed with the same call_id after it, and vice versa. */
static void check_tool_pairs(const json_t *evs) {
  for (size_t i = 0; i < json_array_size(evs); i++) {
    if (strcmp(ev_type(evs, i), "tool_executing") != 0) continue;
    const char *id = json_string_value(json_object_get(ev_data(evs, i), "call_id"));
    cr_assert(id && strncmp(id, "call_", 5) == 0);
    int found = 0;
    for (size_t k = i + 1; k < json_array_size(evs); k++)
      if (strcmp(ev_type(evs, k), "tool_completed") == 0 &&
          strcmp(json_string_value(json_object_get(ev_data(evs, k), "call_id")), id) == 0)
        found++;
    cr_expect_eq(found, 1, "call %s has %d completions", id, found);
  }
  for (size_t i = 0; i < json_array_size(evs); i++) {
    if (strcmp(ev_type(evs, i), "tool_completed") != 0) continue;
    const char *id = json_string_value(json_object_get(ev_data(evs, i), "call_id"));
    int found = 0;
    for (size_t k = 0; k < i; k++)
      if (strcmp(ev_type(evs, k), "tool_executing") == 0 &&
          strcmp(json_string_value(json_object_get(ev_data(evs, k), "call_id")), id) == 0)
        found++;
    cr_expect_eq(found, 1);
  }
}

/* partial_result deltas joined == the agent_response content. */
static void check_deltas(const json_t *evs, const char *content) {
  size_t cap = strlen(content) + 1, len = 0;
  char *joined = calloc(1, cap + 65536);
  for (size_t i = 0; i < json_array_size(evs); i++) {
    if (strcmp(ev_type(evs, i), "partial_result") != 0) continue;
    const char *d = json_string_value(json_object_get(ev_data(evs, i), "content"));
    cr_assert(strlen(d) > 0 && strlen(d) <= LLM_DELTA_MAX, "delta of %zu bytes", strlen(d));
    cr_assert(len + strlen(d) < cap + 65536);
    memcpy(joined + len, d, strlen(d));
    len += strlen(d);
  }
  joined[len] = '\0';
  cr_expect_str_eq(joined, content);
  free(joined);
}

Test(agents, registry) {
  const agent_ops_t *const *all = agent_all();
  cr_assert_not_null(all[0]);
  cr_expect_str_eq(all[0]->name, "supervisor");
  cr_expect_not_null(agent_find("triage"));
  cr_expect_not_null(agent_find("reporting"));
  cr_expect_null(agent_find("nope"));
  cr_expect_null(agent_find(NULL));
  cr_expect_str_eq(event_type_name(EV_AGENT_STOPPED), "agent_stopped");
  cr_expect_null(event_type_name(EV__COUNT));
}

Test(agents, supervisor_run_order) {
  fake_t f = {.events = json_array()};
  agent_run_params_t p = params(&f, "how can I cut my LLM costs?");
  json_t *result = NULL, *error = NULL;
  char *response = NULL;
  int rc = agent_run_top(agent_find("supervisor"), &p, &result, &response, &error);
  cr_assert_eq(rc, 0);
  json_t *evs = f.events;
  size_t n = json_array_size(evs);
  cr_assert(n > 10);
  cr_expect_str_eq(ev_type(evs, 0), "agent_started");
  cr_expect_str_eq(ev_agent(evs, 0), "supervisor");
  cr_expect_str_eq(json_string_value(json_object_get(ev_data(evs, 0), "message")), "how can I cut my LLM costs?");
  cr_expect_str_eq(ev_type(evs, n - 1), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 1), "supervisor");
  cr_expect_str_eq(json_string_value(json_object_get(ev_data(evs, n - 1), "status")), "completed");
  cr_expect_str_eq(ev_type(evs, n - 2), "agent_response");
  /* exactly one agent_response, one persist */
  int responses = 0;
  for (size_t i = 0; i < n; i++) responses += strcmp(ev_type(evs, i), "agent_response") == 0;
  cr_expect_eq(responses, 1);
  cr_expect_eq(f.persisted, 1);
  json_t *resp = ev_data(evs, n - 2);
  const char *content = json_string_value(json_object_get(resp, "content"));
  cr_expect_str_eq(json_string_value(json_object_get(resp, "message_id")), "msg_fake1");
  cr_expect_str_eq(content, f.last_persisted);
  cr_expect_str_eq(content, response);
  check_deltas(evs, content);
  check_tool_pairs(evs);
  /* the answer cites triage and says what to upload */
  cr_expect(strstr(content, "**cost**") != NULL, "%s", content);
  cr_expect(strstr(content, "POST /api/workloads") != NULL);
  cr_expect(strstr(content, "prompt_tokens") != NULL);
  /* sub-agents: triage then reporting, each started → ≥1 thinking → completed */
  const char *subs[] = {"triage", "reporting"};
  size_t last_end = 0;
  for (int s = 0; s < 2; s++) {
    size_t start = 0, end = 0;
    int thinking = 0;
    for (size_t i = 1; i < n - 1; i++) {
      if (strcmp(ev_type(evs, i), "agent_started") == 0 && strcmp(ev_agent(evs, i), subs[s]) == 0) start = i;
      if (strcmp(ev_type(evs, i), "agent_completed") == 0 && strcmp(ev_agent(evs, i), subs[s]) == 0) end = i;
    }
    cr_assert(start > last_end && end > start, "%s at %zu..%zu", subs[s], start, end);
    for (size_t i = start; i < end; i++)
      if (strcmp(ev_type(evs, i), "agent_thinking") == 0 && strcmp(ev_agent(evs, i), subs[s]) == 0) {
        thinking++;
        cr_expect_eq(json_integer_value(json_object_get(ev_data(evs, i), "step_number")), thinking);
      }
    cr_expect(thinking >= 1, "%s did not think", subs[s]);
    last_end = end;
  }
  /* triage called classify_request through a tool and found "cost" */
  json_t *tr = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ev_type(evs, i), "agent_completed") == 0 && strcmp(ev_agent(evs, i), "triage") == 0)
      tr = json_object_get(ev_data(evs, i), "result");
  cr_assert_not_null(tr);
  cr_expect_str_eq(json_string_value(json_object_get(tr, "intent")), "cost");
  cr_expect(json_is_array(json_object_get(tr, "next_agents")));
  cr_expect(json_is_array(json_object_get(tr, "keywords")));
  cr_expect(json_is_true(json_object_get(tr, "needs_data")));
  cr_expect(json_is_null(json_object_get(tr, "data_sufficient")));
  int classify_calls = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ev_type(evs, i), "tool_executing") == 0 &&
        strcmp(json_string_value(json_object_get(ev_data(evs, i), "tool_name")), "classify_request") == 0)
      classify_calls++;
  cr_expect_eq(classify_calls, 1);
  /* results */
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "cost");
  cr_expect_null(error);
  json_t *rep = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ev_type(evs, i), "agent_completed") == 0 && strcmp(ev_agent(evs, i), "reporting") == 0)
      rep = json_object_get(ev_data(evs, i), "result");
  cr_assert_not_null(rep);
  cr_expect(json_integer_value(json_object_get(rep, "word_count")) > 20);
  cr_expect(json_array_size(json_object_get(rep, "sections")) >= 2);
  cr_expect(json_string_length(json_object_get(rep, "summary")) > 10);
  json_decref(result);
  free(response);
  json_decref(f.events);
}

Test(agents, supervisor_deterministic) {
  char *r1 = NULL, *r2 = NULL;
  for (int k = 0; k < 2; k++) {
    fake_t f = {.events = json_array()};
    agent_run_params_t p = params(&f, "hello");
    cr_assert_eq(agent_run_top(agent_find("supervisor"), &p, NULL, k ? &r2 : &r1, NULL), 0);
    json_decref(f.events);
  }
  cr_expect_str_eq(r1, r2);
  cr_expect(strstr(r1, "general") != NULL);
  free(r1);
  free(r2);
}

Test(agents, single_agent_answers) {
  const char *names[] = {"triage", "reporting"};
  for (int k = 0; k < 2; k++) {
    fake_t f = {.events = json_array()};
    agent_run_params_t p = params(&f, "why is latency high?");
    char *response = NULL;
    cr_assert_eq(agent_run_top(agent_find(names[k]), &p, NULL, &response, NULL), 0);
    size_t n = json_array_size(f.events);
    cr_expect_str_eq(ev_type(f.events, 0), "agent_started");
    cr_expect_str_eq(ev_agent(f.events, 0), names[k]);
    cr_expect_str_eq(ev_type(f.events, n - 2), "agent_response");
    cr_expect_str_eq(ev_type(f.events, n - 1), "agent_completed");
    cr_expect_str_eq(ev_agent(f.events, n - 1), names[k]);
    const char *content = json_string_value(json_object_get(ev_data(f.events, n - 2), "content"));
    check_deltas(f.events, content);
    check_tool_pairs(f.events);
    cr_expect(strstr(content, "**latency**") != NULL, "%s: %s", names[k], content);
    cr_expect_str_eq(content, response);
    cr_expect_eq(f.persisted, 1);
    free(response);
    json_decref(f.events);
  }
}

/* ---- cancellation ---- */

typedef struct canceller {
  atomic_int *flag;
  atomic_int go;
} canceller_t;

static void *cancel_thread(void *arg) {
  canceller_t *c = arg;
  while (!atomic_load(&c->go)) usleep(100);
  atomic_store(c->flag, 1);
  return NULL;
}

static canceller_t *g_canceller;

static int emit_then_cancel(void *arg, event_type_t type, const char *agent_name, json_t *data) {
  fake_t *f = arg;
  int rc = fake_emit(arg, type, agent_name, data);
  if (f->cancel_on && strcmp(event_type_name(type), f->cancel_on) == 0 && !atomic_load(f->cancel)) {
    atomic_store(&g_canceller->go, 1); /* the other thread sets the flag … */
    for (int i = 0; i < 20000 && !atomic_load(f->cancel); i++) usleep(50); /* … while this step is running */
    cr_assert(atomic_load(f->cancel));
  }
  return rc;
}

static void run_cancel_at(const char *event) {
  atomic_int flag = 0;
  canceller_t c = {.flag = &flag};
  g_canceller = &c;
  pthread_t th;
  pthread_create(&th, NULL, cancel_thread, &c);
  fake_t f = {.events = json_array(), .cancel = &flag, .cancel_on = event};
  agent_run_params_t p = params(&f, "how can I cut my LLM costs?");
  p.emit = emit_then_cancel;
  json_t *result = NULL, *error = NULL;
  char *response = NULL;
  int rc = agent_run_top(agent_find("supervisor"), &p, &result, &response, &error);
  pthread_join(th, NULL);
  cr_expect_eq(rc, AGD_ECANCELLED, "cancel at %s", event);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_stopped", "cancel at %s", event);
  cr_expect_str_eq(json_string_value(json_object_get(ev_data(f.events, n - 1), "reason")), "cancelled");
  for (size_t i = 0; i + 1 < n; i++) {
    cr_expect_str_neq(ev_type(f.events, i), "agent_stopped");
    cr_expect_str_neq(ev_type(f.events, i), "agent_error");
  }
  /* nothing after the cancel point but the pairing tool_completed and agent_stopped */
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(ev_type(f.events, i), event) == 0) {
      at = i;
      break;
    }
  for (size_t i = at + 1; i + 1 < n; i++) cr_expect_str_eq(ev_type(f.events, i), "tool_completed");
  check_tool_pairs(f.events);
  cr_expect_null(result);
  cr_expect_null(response);
  json_decref(f.events);
}

Test(agents, cancel_mid_run) {
  run_cancel_at("tool_executing");
  run_cancel_at("agent_thinking");
  run_cancel_at("partial_result");
  run_cancel_at("agent_response");
}

Test(agents, deadline_passed) {
  fake_t f = {.events = json_array()};
  agent_run_params_t p = params(&f, "how can I cut my LLM costs?");
  p.deadline = time_now() - 1;
  int rc = agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL);
  cr_expect_eq(rc, AGD_ETIMEOUT);
  size_t n = json_array_size(f.events);
  cr_assert(n >= 1);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_stopped");
  cr_expect_str_eq(json_string_value(json_object_get(ev_data(f.events, n - 1), "reason")), "timeout");
  cr_expect_eq(f.persisted, 0);
  json_decref(f.events);
}

/* ---- failures ---- */

static int failing_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "about to fail");
  if (rc != 0) return rc;
  json_t *r = NULL;
  rc = agent_call_tool(ctx, "calculator", json_pack("{s:s}", "expression", "1/0"), &r);
  cr_expect_eq(rc, AGD_EVALIDATION);
  cr_expect_str_eq(json_string_value(json_object_get(r, "error")), "division by zero");
  json_decref(r);
  agent_fail(ctx, "MATH_FAILED", "could not compute: %s", "division by zero");
  return AGD_EINTERNAL;
}
static const agent_ops_t failing = {.name = "failing", .description = "fails", .run = failing_run};

static int parent_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "delegating");
  if (rc != 0) return rc;
  json_t *r;
  return agent_run_sub(ctx, &failing, &r);
}
static const agent_ops_t parent = {.name = "parent", .description = "runs failing", .run = parent_run};

Test(agents, failing_agent) {
  const agent_ops_t *tops[] = {&failing, &parent};
  for (int k = 0; k < 2; k++) {
    fake_t f = {.events = json_array()};
    agent_run_params_t p = params(&f, "x");
    json_t *error = NULL, *result = NULL;
    char *response = NULL;
    int rc = agent_run_top(tops[k], &p, &result, &response, &error);
    cr_expect_eq(rc, AGD_EINTERNAL);
    size_t n = json_array_size(f.events);
    cr_expect_str_eq(ev_type(f.events, n - 1), "agent_error");
    json_t *d = ev_data(f.events, n - 1);
    cr_expect_str_eq(json_string_value(json_object_get(d, "agent_name")), "failing");
    cr_expect_str_eq(json_string_value(json_object_get(d, "error_code")), "MATH_FAILED");
    cr_expect_str_eq(json_string_value(json_object_get(d, "error_message")), "could not compute: division by zero");
    cr_assert_not_null(error);
    cr_expect_str_eq(json_string_value(json_object_get(error, "error_code")), "MATH_FAILED");
    for (size_t i = 0; i < n; i++) cr_expect_str_neq(ev_type(f.events, i), "agent_completed");
    /* the tool error is reported as a completed call with status error */
    int tool_err = 0;
    for (size_t i = 0; i < n; i++)
      if (strcmp(ev_type(f.events, i), "tool_completed") == 0)
        tool_err += strcmp(json_string_value(json_object_get(ev_data(f.events, i), "status")), "error") == 0;
    cr_expect_eq(tool_err, 1);
    check_tool_pairs(f.events);
    cr_expect_null(result);
    cr_expect_null(response);
    json_decref(error);
    json_decref(f.events);
  }
}

static int bad_args_run(agent_ctx_t *ctx, json_t **result) {
  agent_think(ctx, "calling with bad arguments");
  json_t *r = NULL;
  int rc = agent_call_tool(ctx, "calculator", json_pack("{s:i}", "expression", 5), &r);
  cr_expect_eq(rc, AGD_EVALIDATION);
  json_decref(r);
  rc = agent_call_tool(ctx, "no_such_tool", NULL, &r);
  cr_expect_eq(rc, AGD_ENOT_FOUND);
  json_decref(r);
  rc = agent_call_tool(ctx, "calculator", json_pack("{s:s}", "expression", "(2+3)*4"), &r);
  cr_expect_eq(rc, 0);
  *result = json_pack("{s:O}", "value", json_object_get(r, "result"));
  json_decref(r);
  return 0;
}
static const agent_ops_t bad_args = {.name = "calc", .description = "calc", .run = bad_args_run};

Test(agents, tool_validation_is_reported) {
  fake_t f = {.events = json_array()};
  agent_run_params_t p = params(&f, "x");
  json_t *result = NULL;
  cr_assert_eq(agent_run_top(&bad_args, &p, &result, NULL, NULL), 0);
  cr_expect_eq(json_integer_value(json_object_get(result, "value")), 20);
  int seen = 0;
  for (size_t i = 0; i < json_array_size(f.events); i++) {
    if (strcmp(ev_type(f.events, i), "tool_completed") != 0) continue;
    json_t *d = ev_data(f.events, i);
    if (seen == 0) {
      cr_expect_str_eq(json_string_value(json_object_get(d, "status")), "error");
      cr_expect_str_eq(json_string_value(json_object_get(json_object_get(d, "result"), "error")),
                       "expression must be a string");
    }
    if (seen == 2) cr_expect_str_eq(json_string_value(json_object_get(d, "status")), "completed");
    cr_expect(json_is_number(json_object_get(d, "execution_time_ms")));
    seen++;
  }
  cr_expect_eq(seen, 4); /* + classify_request: the answer composed for a run that did not answer */
  check_tool_pairs(f.events);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 2), "agent_response");
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_completed");
  json_decref(result);
  json_decref(f.events);
}

Test(agents, emit_failure_fails_the_run) {
  fake_t f = {.events = json_array(), .fail_on_event = 3};
  agent_run_params_t p = params(&f, "how can I cut my LLM costs?");
  json_t *error = NULL;
  int rc = agent_run_top(agent_find("supervisor"), &p, NULL, NULL, &error);
  /* the store said "unavailable": a failure that keeps its cause, never read as a cancel */
  cr_expect_eq(rc, AGD_EUNAVAILABLE);
  cr_expect_neq(rc, AGD_ECANCELLED);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_error");
  cr_expect_eq(n, 4); /* the failing event, then nothing but the agent_error */
  cr_expect_str_eq(json_string_value(json_object_get(error, "error_code")), "EVENT_FAILED");
  json_decref(error);
  json_decref(f.events);
}

/* ---- triage reads the thread for a vague follow-up (real store) ---- */

Test(agents, follow_up_uses_thread_context) {
  char dir[] = "/tmp/agd_agents_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char url[128], err[256];
  snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
  store_t *st = NULL;
  cr_assert_eq(store_open(&st, url, err, sizeof(err)), 0, "%s", err);
  store_user_t u = {0};
  snprintf(u.id, sizeof(u.id), "usr_a");
  snprintf(u.email, sizeof(u.email), "a@example.com");
  cr_assert_eq(store_user_create(st, &u), 0);
  store_message_t m1 = {0}, m2 = {0};
  cr_assert_eq(store_message_add(st, "usr_a",
                                 &(store_message_new_t){.role = "user", .content = "why is latency so high?"}, &m1),
               0);
  cr_assert_eq(store_message_add(st, "usr_a",
                                 &(store_message_new_t){.thread_id = m1.thread_id, .role = "user",
                                                        .content = "tell me more"},
                                 &m2),
               0);
  fake_t f = {.events = json_array()};
  agent_run_params_t p = params(&f, "tell me more");
  p.user_id = "usr_a";
  p.thread_id = m1.thread_id;
  p.store = st;
  json_t *result = NULL;
  cr_assert_eq(agent_run_top(agent_find("triage"), &p, &result, NULL, NULL), 0);
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "latency");
  cr_expect(strstr(json_string_value(json_object_get(result, "reasoning")), "follow-up") != NULL);
  check_tool_pairs(f.events);
  json_decref(result);
  json_decref(f.events);

  /* another user's thread: NOT_FOUND inside the tool, triage still answers (general) */
  fake_t g = {.events = json_array()};
  agent_run_params_t q = params(&g, "tell me more");
  q.user_id = "usr_b";
  q.thread_id = m1.thread_id;
  q.store = st;
  cr_assert_eq(agent_run_top(agent_find("triage"), &q, &result, NULL, NULL), 0);
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "general");
  int not_found = 0;
  for (size_t i = 0; i < json_array_size(g.events); i++)
    if (strcmp(ev_type(g.events, i), "tool_completed") == 0) {
      const char *e = json_string_value(json_object_get(json_object_get(ev_data(g.events, i), "result"), "error"));
      not_found += e && strcmp(e, "thread not found") == 0;
    }
  cr_expect_eq(not_found, 1);
  json_decref(result);
  json_decref(g.events);
  store_message_dispose(&m1);
  store_message_dispose(&m2);
  store_close(st);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
}
