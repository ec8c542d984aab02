/* tests/unit/test_agent_loop.c — the tool-using model loop (agents/loop.c, SPEC §11)
 * through a scripted fake provider: event order, the model's call ids, bad calls
 * answered with error results, --llm-max-steps, provider error codes, deltas joined
 * = the answer, classification fallback, the approval gate (approved, denied,
 * timed out), resuming from a checkpoint, usage sums. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "agents/agent.h"
#include "llm/llm.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/err.h"

/* ---- the scripted provider ---- */

typedef struct call_spec {
  const char *id, *name, *args;
} call_spec_t;

typedef struct step {
  const char *reasoning;
  const char *text[4];
  call_spec_t calls[3];
  llm_error_t fail;
  long prompt_tokens, completion_tokens;
} step_t;

typedef struct script {
  llm_t base;
  const step_t *steps;
  size_t n, at;
  const char *classify;        /* the intent its classification gives; "nonsense": answers text */
  llm_error_t classify_fail;   /* classification fails with this */
  json_t *requests;            /* each chat request (not classification): {"messages":[…],"tools":[names]} */
  int classifications;
} script_t;

static json_t *request_json(const llm_request_t *req) {
  json_t *msgs = json_array(), *tools = json_array();
  for (size_t i = 0; i < req->n_messages; i++) {
    const llm_message_t *m = &req->messages[i];
    char *text = llm_message_text(m);
    json_t *o = json_pack("{s:s,s:s?,s:s?}", "role", llm_role_name(m->role), "content", text, "tool_call_id",
                          m->tool_call_id);
    free(text);
    if (m->n_tool_calls) {
      json_t *tc = json_array();
      for (size_t k = 0; k < m->n_tool_calls; k++)
        json_array_append_new(tc, json_pack("{s:s,s:s,s:s}", "id", m->tool_calls[k].id, "name",
                                            m->tool_calls[k].name, "arguments", m->tool_calls[k].arguments_raw));
      json_object_set_new(o, "tool_calls", tc);
    }
    json_array_append_new(msgs, o);
  }
  for (size_t i = 0; i < req->n_tools; i++) json_array_append_new(tools, json_string(req->tools[i].name));
  return json_pack("{s:o,s:o,s:i,s:i}", "messages", msgs, "tools", tools, "coalesce_bytes", req->coalesce_bytes,
                   "coalesce_ms", req->coalesce_ms);
}

static int script_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out) {
  script_t *s = (script_t *)l;
  if (req->tool_choice == LLM_TOOL_CHOICE_FUNCTION) {
    s->classifications++;
    if (s->classify_fail) return llm_response_fail(out, s->classify_fail, "the classifier is down");
    if (!s->classify || strcmp(s->classify, "nonsense") == 0) {
      out->text = strdup("I am not sure");
      out->finish = LLM_FINISH_STOP;
      return 0;
    }
    json_t *args = json_pack("{s:s,s:f,s:s,s:[s]}", "intent", s->classify, "confidence", 0.9, "reasoning",
                             "scripted", "keywords", "cost");
    llm_response_add_tool_call(out, "call_cls", req->tool_choice_name, args, NULL);
    out->finish = LLM_FINISH_TOOL_CALLS;
    out->prompt_tokens = 10;
    out->completion_tokens = 5;
    return 0;
  }
  json_array_append_new(s->requests, request_json(req));
  if (s->at >= s->n) return llm_response_fail(out, LLM_ERR_INTERNAL, "the script ran out");
  const step_t *st = &s->steps[s->at++];
  if (st->fail) return llm_response_fail(out, st->fail, "scripted failure %d", (int)st->fail);
  if (st->reasoning && cb->on_reasoning_delta && cb->on_reasoning_delta(ud, st->reasoning, strlen(st->reasoning))) {
    out->finish = LLM_FINISH_CANCELLED;
    return AGD_ECANCELLED;
  }
  char text[1024] = "";
  for (size_t i = 0; i < 4 && st->text[i]; i++) {
    if (llm_request_cancelled(req) || (cb->on_text_delta && cb->on_text_delta(ud, st->text[i], strlen(st->text[i])))) {
      out->finish = LLM_FINISH_CANCELLED;
      return AGD_ECANCELLED;
    }
    strncat(text, st->text[i], sizeof(text) - strlen(text) - 1);
  }
  out->text = strdup(text);
  out->reasoning = strdup(st->reasoning ? st->reasoning : "");
  for (size_t i = 0; i < 3 && st->calls[i].name; i++) {
    json_t *args = json_loads(st->calls[i].args, 0, NULL);
    llm_response_add_tool_call(out, st->calls[i].id, st->calls[i].name, args, st->calls[i].args);
  }
  out->finish = out->n_tool_calls ? LLM_FINISH_TOOL_CALLS : LLM_FINISH_STOP;
  out->prompt_tokens = st->prompt_tokens;
  out->completion_tokens = st->completion_tokens;
  return 0;
}

static const char *script_model(const llm_t *l) { return "gpt-4o-mini"; }

/* "openai" so the price table knows its model (gpt-4o-mini: $0.15 / $0.60 per million). */
static const llm_provider_t script_provider = {.name = "openai", .chat = script_chat, .model = script_model};

static script_t script(const step_t *steps, size_t n, const char *classify) {
  return (script_t){.base = {.provider = &script_provider},
                    .steps = steps,
                    .n = n,
                    .classify = classify,
                    .requests = json_array()};
}

/* ---- the run's side ---- */

typedef struct fake {
  json_t *events;
  int persisted;
  char last_persisted[4096];
  atomic_int cancel;
  const char *cancel_on;
  /* approvals */
  const char *approve_tool;   /* calls of it need approval */
  agent_approval_t outcome;
  const char *reason;
  int await_rc;               /* non-zero: await returns it (after setting cancel to cancel_value) */
  int cancel_value;
  int asked, asked_resumed;
  json_t *checkpoint;         /* the last one asked with (a copy) */
  char asked_call_id[64], asked_agent[32];
  json_t *asked_params;
  agent_usage_t usage;
  int llm_calls_seen;
} fake_t;

static int fake_emit(void *arg, event_type_t type, const char *agent_name, json_t *data) {
  fake_t *f = arg;
  json_array_append_new(f->events,
                        json_pack("{s:s,s:s,s:o}", "type", event_type_name(type), "agent", agent_name, "data", data));
  if (f->cancel_on && strcmp(event_type_name(type), f->cancel_on) == 0) atomic_store(&f->cancel, 1);
  return 0;
}

static int fake_persist(void *arg, const char *content, char *message_id) {
  fake_t *f = arg;
  f->persisted++;
  snprintf(f->last_persisted, sizeof(f->last_persisted), "%s", content);
  snprintf(message_id, ID_MAX, "msg_fake%d", f->persisted);
  return 0;
}

static int fake_needs(void *arg, const char *tool) {
  fake_t *f = arg;
  return f->approve_tool && strcmp(f->approve_tool, tool) == 0;
}

static int fake_await(void *arg, const agent_approval_req_t *req, agent_approval_t *out, char *reason, size_t cap) {
  fake_t *f = arg;
  f->asked++;
  f->asked_resumed += req->resumed;
  json_decref(f->checkpoint);
  f->checkpoint = json_deep_copy(req->checkpoint);
  json_decref(f->asked_params);
  f->asked_params = req->parameters ? json_deep_copy(req->parameters) : NULL;
  snprintf(f->asked_call_id, sizeof(f->asked_call_id), "%s", req->call_id);
  snprintf(f->asked_agent, sizeof(f->asked_agent), "%s", req->agent_name);
  if (f->await_rc) {
    atomic_store(&f->cancel, f->cancel_value);
    return f->await_rc;
  }
  *out = f->outcome;
  snprintf(reason, cap, "%s", f->reason ? f->reason : "");
  return 0;
}

static void fake_llm_call(void *arg, const struct llm_call_usage *u, double cost) { ((fake_t *)arg)->llm_calls_seen++; }

static agent_run_params_t params(fake_t *f, script_t *s, const char *input) {
  return (agent_run_params_t){.run_id = "run_loop",
                              .user_id = "usr_loop",
                              .thread_id = "",
                              .input = input,
                              .llm = &s->base,
                              .emit = fake_emit,
                              .persist = fake_persist,
                              .cancel = &f->cancel,
                              .needs_approval = fake_needs,
                              .await_approval = fake_await,
                              .usage = &f->usage,
                              .on_llm_call = fake_llm_call,
                              .emit_arg = f};
}

static void setup(void) {
  tool_registry_reset();
  tools_register_builtin();
}
static void teardown(void) { tool_registry_reset(); }
TestSuite(loop, .init = setup, .fini = teardown);

static const char *ev_type(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "type"));
}
static const char *ev_agent(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "agent"));
}
static json_t *ev_data(const json_t *evs, size_t i) { return json_object_get(json_array_get(evs, i), "data"); }
static const char *ev_str(const json_t *evs, size_t i, const char *key) {
  return json_string_value(json_object_get(ev_data(evs, i), key));
}

/* Index of the n-th (0-based) event of type (and agent, when non-NULL) at or after from; -1 when none. */
static long find_ev(const json_t *evs, size_t from, const char *type, const char *agent) {
  for (size_t i = from; i < json_array_size(evs); i++)
    if (strcmp(ev_type(evs, i), type) == 0 && (!agent || strcmp(ev_agent(evs, i), agent) == 0)) return (long)i;
  return -1;
}

static char *joined_partials(const json_t *evs) {
  static char buf[8192];
  buf[0] = '\0';
  for (size_t i = 0; i < json_array_size(evs); i++)
    if (strcmp(ev_type(evs, i), "partial_result") == 0) strncat(buf, ev_str(evs, i, "content"), sizeof(buf) - strlen(buf) - 1);
  return buf;
}

static void check_pairs(const json_t *evs) {
  for (size_t i = 0; i < json_array_size(evs); i++) {
    if (strcmp(ev_type(evs, i), "tool_executing") != 0) continue;
    const char *id = ev_str(evs, i, "call_id");
    int found = 0;
    for (size_t k = i + 1; k < json_array_size(evs); k++)
      found += strcmp(ev_type(evs, k), "tool_completed") == 0 && strcmp(ev_str(evs, k, "call_id"), id) == 0;
    cr_expect_eq(found, 1, "call %s completed %d times", id, found);
  }
}

static void dispose(fake_t *f, script_t *s) {
  json_decref(f->events);
  json_decref(f->checkpoint);
  json_decref(f->asked_params);
  json_decref(s->requests);
}

/* ---- the loop's events and messages ---- */

static const step_t two_rounds[] = {
    {.reasoning = "I need the sum.",
     .text = {"Checking."},
     .calls = {{"call_model1", "calculator", "{\"expression\":\"2+3\"}"}},
     .prompt_tokens = 1000,
     .completion_tokens = 200},
    {.reasoning = "Now I can answer.", .text = {"The answer ", "is 5."}, .prompt_tokens = 3000, .completion_tokens = 100},
};

Test(loop, events_in_order_with_model_call_ids) {
  fake_t f = {.events = json_array()};
  script_t s = script(two_rounds, 2, "general");
  agent_run_params_t p = params(&f, &s, "what is 2+3?");
  json_t *result = NULL;
  char *response = NULL;
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &p, &result, &response, NULL), 0);
  json_t *evs = f.events;
  size_t n = json_array_size(evs);
  /* SPEC §5: supervisor started … reporting started, thinking, the loop's steps, reporting completed,
   * agent_response, supervisor completed */
  cr_expect_str_eq(ev_type(evs, 0), "agent_started");
  cr_expect_str_eq(ev_agent(evs, 0), "supervisor");
  cr_expect_str_eq(ev_type(evs, n - 1), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 1), "supervisor");
  cr_expect_str_eq(ev_type(evs, n - 2), "agent_response");
  cr_expect_str_eq(ev_type(evs, n - 3), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 3), "reporting");
  long rs = find_ev(evs, 0, "agent_started", "reporting");
  cr_assert(rs > 0);
  long th1 = find_ev(evs, rs, "agent_thinking", "reporting");       /* reporting's own step */
  long th2 = find_ev(evs, th1 + 1, "agent_thinking", "reporting");  /* the model's reasoning */
  cr_assert(th1 > rs && th2 > th1);
  cr_expect_str_eq(ev_str(evs, th2, "reasoning"), "I need the sum.");
  cr_expect_eq(json_integer_value(json_object_get(ev_data(evs, th2), "step_number")), 2);
  long p1 = find_ev(evs, th2, "partial_result", NULL);
  long ex = find_ev(evs, th2, "tool_executing", "reporting");
  long done = find_ev(evs, ex, "tool_completed", "reporting");
  long th3 = find_ev(evs, done, "agent_thinking", "reporting");
  long p2 = find_ev(evs, done, "partial_result", NULL);
  cr_assert(p1 > th2 && ex > p1 && done > ex && th3 > done && p2 > th3, "%ld %ld %ld %ld %ld", p1, ex, done, th3, p2);
  cr_expect_str_eq(ev_str(evs, ex, "call_id"), "call_model1");
  cr_expect_str_eq(ev_str(evs, ex, "tool_name"), "calculator");
  cr_expect_str_eq(ev_str(evs, done, "call_id"), "call_model1");
  cr_expect_str_eq(ev_str(evs, done, "status"), "completed");
  cr_expect_eq(json_number_value(json_object_get(json_object_get(ev_data(evs, done), "result"), "result")), 5);
  cr_expect_eq(json_integer_value(json_object_get(ev_data(evs, th3), "step_number")), 3);
  check_pairs(evs);
  /* the deltas joined are the answer, which is every round's text */
  const char *content = ev_str(evs, n - 2, "content");
  cr_expect_str_eq(content, "Checking.\n\nThe answer is 5.");
  cr_expect_str_eq(joined_partials(evs), content);
  cr_expect_str_eq(response, content);
  cr_expect_str_eq(f.last_persisted, content);
  cr_expect_eq(f.persisted, 1);
  /* what the model was sent */
  cr_assert_eq(json_array_size(s.requests), 2);
  json_t *r0 = json_array_get(s.requests, 0), *r1 = json_array_get(s.requests, 1);
  cr_expect_eq(json_integer_value(json_object_get(r0, "coalesce_bytes")), 256);
  cr_expect_eq(json_integer_value(json_object_get(r0, "coalesce_ms")), 25);
  json_t *tools = json_object_get(r0, "tools");
  int has_calc = 0, has_classify = 0, has_ctx = 0;
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    has_calc += strcmp(json_string_value(t), "calculator") == 0;
    has_classify += strcmp(json_string_value(t), "classify_request") == 0;
    has_ctx += strcmp(json_string_value(t), "thread_context") == 0;
  }
  cr_expect(has_calc && !has_classify && !has_ctx);
  json_t *m0 = json_object_get(r0, "messages");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(m0, 0), "role")), "system");
  cr_expect(strstr(json_string_value(json_object_get(json_array_get(m0, 0), "content")), "never") != NULL);
  /* … the user's message, then triage's classify_request call and its result, as this run's tool calls */
  size_t k = json_array_size(m0);
  cr_assert(k >= 4);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(m0, k - 3), "role")), "user");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(m0, k - 3), "content")), "what is 2+3?");
  json_t *prior = json_array_get(m0, k - 2);
  cr_expect_str_eq(json_string_value(json_object_get(prior, "role")), "assistant");
  json_t *pc = json_array_get(json_object_get(prior, "tool_calls"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(pc, "name")), "classify_request");
  json_t *pt = json_array_get(m0, k - 1);
  cr_expect_str_eq(json_string_value(json_object_get(pt, "role")), "tool");
  cr_expect_str_eq(json_string_value(json_object_get(pt, "tool_call_id")), json_string_value(json_object_get(pc, "id")));
  cr_expect(strstr(json_string_value(json_object_get(pt, "content")), "general") != NULL);
  /* round 2 has round 1's assistant turn and the calculator's result, answering call_model1 */
  json_t *m1 = json_object_get(r1, "messages");
  size_t k1 = json_array_size(m1);
  cr_assert_eq(k1, k + 2);
  json_t *asst = json_array_get(m1, k);
  cr_expect_str_eq(json_string_value(json_object_get(asst, "content")), "Checking.");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(asst, "tool_calls"), 0), "id")),
                   "call_model1");
  json_t *res = json_array_get(m1, k + 1);
  cr_expect_str_eq(json_string_value(json_object_get(res, "tool_call_id")), "call_model1");
  cr_expect(strstr(json_string_value(json_object_get(res, "content")), "5") != NULL);
  /* usage: the classification and two rounds, priced as gpt-4o-mini */
  cr_expect_eq(f.usage.llm_calls, 3);
  cr_expect_eq(f.usage.prompt_tokens, 4010);
  cr_expect_eq(f.usage.completion_tokens, 305);
  cr_expect_float_eq(f.usage.cost_usd, (4010 * 0.15 + 305 * 0.60) / 1e6, 1e-12);
  cr_expect_eq(f.llm_calls_seen, 3);
  /* results: reporting's says how the model answered; the supervisor's what ran */
  json_t *rep = json_object_get(ev_data(evs, n - 3), "result");
  cr_expect_eq(json_integer_value(json_object_get(rep, "llm_rounds")), 2);
  cr_expect_eq(json_integer_value(json_object_get(rep, "tool_calls")), 1);
  cr_expect_str_eq(json_string_value(json_object_get(rep, "model")), "gpt-4o-mini");
  json_t *ran = json_object_get(result, "agents_run");
  cr_expect_eq(json_array_size(ran), 2);
  cr_expect_str_eq(json_string_value(json_array_get(ran, 0)), "triage");
  cr_expect_str_eq(json_string_value(json_array_get(ran, 1)), "reporting");
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "general");
  json_decref(result);
  free(response);
  dispose(&f, &s);
}

Test(loop, reporting_alone_and_builtin_usage_is_zero) {
  /* reporting as the top agent: the loop answers, no classification needed */
  static const step_t one[] = {{.text = {"Hello."}, .prompt_tokens = 7, .completion_tokens = 2}};
  fake_t f = {.events = json_array()};
  script_t s = script(one, 1, "general");
  agent_run_params_t p = params(&f, &s, "hi");
  char *response = NULL;
  cr_assert_eq(agent_run_top(agent_find("reporting"), &p, NULL, &response, NULL), 0);
  cr_expect_str_eq(response, "Hello.");
  cr_expect_eq(s.classifications, 0);
  cr_expect_eq(f.usage.llm_calls, 1);
  free(response);
  dispose(&f, &s);
  /* the builtin provider is no model: nothing counted */
  fake_t g = {.events = json_array()};
  script_t unused = script(NULL, 0, NULL);
  agent_run_params_t q = params(&g, &unused, "how can I cut my LLM costs?");
  q.llm = llm_builtin_new();
  g.usage.llm_calls = 99; /* reset by the run */
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &q, NULL, NULL, NULL), 0);
  cr_expect_eq(g.usage.llm_calls, 0);
  cr_expect_eq(g.usage.prompt_tokens, 0);
  cr_expect_eq(g.llm_calls_seen, 0);
  dispose(&g, &unused);
}

/* ---- bad calls, max steps, provider errors ---- */

Test(loop, bad_calls_get_error_results_and_the_run_goes_on) {
  static const step_t steps[] = {
      {.calls = {{"call_a", "no_such_tool", "{}"},
                 {"call_b", "calculator", "{\"expression\":5}"},
                 {"call_c", "calculator", "not json"}}},
      {.text = {"Sorry, I could not compute it."}},
  };
  fake_t f = {.events = json_array()};
  script_t s = script(steps, 2, "general");
  agent_run_params_t p = params(&f, &s, "compute");
  cr_assert_eq(agent_run_top(agent_find("reporting"), &p, NULL, NULL, NULL), 0);
  json_t *evs = f.events;
  const char *ids[] = {"call_a", "call_b", "call_c"};
  long at = 0;
  for (int c = 0; c < 3; c++) {
    long ex = find_ev(evs, (size_t)at, "tool_executing", NULL);
    long done = find_ev(evs, (size_t)ex, "tool_completed", NULL);
    cr_assert(ex >= 0 && done > ex);
    cr_expect_str_eq(ev_str(evs, ex, "call_id"), ids[c]);
    cr_expect_str_eq(ev_str(evs, done, "status"), "error");
    cr_expect(json_is_object(json_object_get(ev_data(evs, ex), "parameters")));
    at = done + 1;
  }
  check_pairs(evs);
  /* the model got the three errors back, each answering its call */
  json_t *m = json_object_get(json_array_get(s.requests, 1), "messages");
  size_t k = json_array_size(m);
  for (int c = 0; c < 3; c++) {
    json_t *tm = json_array_get(m, k - 3 + c);
    cr_expect_str_eq(json_string_value(json_object_get(tm, "tool_call_id")), ids[c]);
    cr_expect(strstr(json_string_value(json_object_get(tm, "content")), "\"error\"") != NULL);
  }
  cr_expect(strstr(json_string_value(json_object_get(json_array_get(m, k - 3), "content")), "unknown tool") != NULL);
  cr_expect(strstr(json_string_value(json_object_get(json_array_get(m, k - 2), "content")), "expression") != NULL);
  size_t n = json_array_size(evs);
  cr_expect_str_eq(ev_type(evs, n - 2), "agent_response");
  cr_expect_str_eq(ev_str(evs, n - 2, "content"), "Sorry, I could not compute it.");
  dispose(&f, &s);
}

Test(loop, too_many_steps) {
  static const step_t steps[] = {
      {.calls = {{"call_1", "calculator", "{\"expression\":\"1\"}"}}},
      {.calls = {{"call_2", "calculator", "{\"expression\":\"2\"}"}}},
      {.calls = {{"call_3", "calculator", "{\"expression\":\"3\"}"}}},
  };
  fake_t f = {.events = json_array()};
  script_t s = script(steps, 3, "general");
  agent_run_params_t p = params(&f, &s, "loop");
  p.max_steps = 2;
  json_t *error = NULL;
  int rc = agent_run_top(agent_find("supervisor"), &p, NULL, NULL, &error);
  cr_expect_neq(rc, 0);
  cr_expect_eq(s.at, 2, "two rounds, not %zu", s.at);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_error");
  cr_expect_str_eq(ev_str(f.events, n - 1, "error_code"), "LLM_TOO_MANY_STEPS");
  cr_expect_str_eq(ev_str(f.events, n - 1, "agent_name"), "reporting");
  cr_expect_str_eq(json_string_value(json_object_get(error, "error_code")), "LLM_TOO_MANY_STEPS");
  cr_expect_eq(find_ev(f.events, 0, "agent_response", NULL), -1);
  check_pairs(f.events);
  json_decref(error);
  dispose(&f, &s);
}

Test(loop, provider_errors_become_their_codes) {
  const llm_error_t errs[] = {LLM_ERR_UNAVAILABLE, LLM_ERR_RATE_LIMITED, LLM_ERR_BAD_RESPONSE, LLM_ERR_TIMEOUT};
  const char *codes[] = {"LLM_UNAVAILABLE", "LLM_RATE_LIMITED", "LLM_BAD_RESPONSE", "LLM_TIMEOUT"};
  for (int i = 0; i < 4; i++) {
    step_t steps[1] = {{.fail = errs[i]}};
    fake_t f = {.events = json_array()};
    script_t s = script(steps, 1, "general");
    agent_run_params_t p = params(&f, &s, "hello");
    cr_expect_neq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), 0);
    size_t n = json_array_size(f.events);
    cr_expect_str_eq(ev_type(f.events, n - 1), "agent_error", "%s", codes[i]);
    cr_expect_str_eq(ev_str(f.events, n - 1, "error_code"), codes[i]);
    cr_expect(strstr(ev_str(f.events, n - 1, "error_message"), "scripted failure") != NULL);
    cr_expect_eq(f.usage.llm_calls, 2); /* the classification and the failed call */
    dispose(&f, &s);
  }
}

Test(loop, cancel_mid_stream) {
  static const step_t steps[] = {{.text = {"one ", "two ", "three ", "four"}}};
  fake_t f = {.events = json_array(), .cancel_on = "partial_result"};
  script_t s = script(steps, 1, "general");
  agent_run_params_t p = params(&f, &s, "hello");
  cr_expect_eq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), AGD_ECANCELLED);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_stopped");
  cr_expect_str_eq(ev_str(f.events, n - 1, "reason"), "cancelled");
  cr_expect_eq(find_ev(f.events, 0, "agent_response", NULL), -1);
  cr_expect_eq(f.persisted, 0);
  dispose(&f, &s);
}

/* ---- classification on the model ---- */

Test(loop, classification_falls_back_to_builtin) {
  static const step_t steps[] = {{.text = {"Costs."}}};
  for (int k = 0; k < 2; k++) {
    fake_t f = {.events = json_array()};
    script_t s = script(steps, 1, k == 0 ? "nonsense" : NULL);
    if (k == 1) s.classify_fail = LLM_ERR_RATE_LIMITED;
    agent_run_params_t p = params(&f, &s, "how can I cut my LLM costs?");
    json_t *result = NULL;
    cr_assert_eq(agent_run_top(agent_find("triage"), &p, &result, NULL, NULL), 0, "case %d", k);
    /* the builtin classifier's answer, said to be a fallback in the tool result and a thinking step */
    cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "cost");
    long done = find_ev(f.events, 0, "tool_completed", "triage");
    cr_assert(done > 0);
    cr_expect_str_eq(ev_str(f.events, done, "status"), "completed");
    json_t *r = json_object_get(ev_data(f.events, done), "result");
    cr_expect(json_is_true(json_object_get(r, "fallback")));
    cr_expect(json_is_string(json_object_get(r, "fallback_reason")));
    long th = find_ev(f.events, done, "agent_thinking", "triage");
    cr_assert(th > done);
    cr_expect(strstr(ev_str(f.events, th, "reasoning"), "built-in classifier") != NULL, "%s",
              ev_str(f.events, th, "reasoning"));
    json_decref(result);
    dispose(&f, &s);
  }
  /* a model that classifies: no fallback */
  fake_t f = {.events = json_array()};
  script_t s = script(steps, 1, "latency");
  agent_run_params_t p = params(&f, &s, "how can I cut my LLM costs?");
  json_t *result = NULL;
  cr_assert_eq(agent_run_top(agent_find("triage"), &p, &result, NULL, NULL), 0);
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "latency");
  long done = find_ev(f.events, 0, "tool_completed", "triage");
  cr_expect_null(json_object_get(json_object_get(ev_data(f.events, done), "result"), "fallback"));
  json_decref(result);
  dispose(&f, &s);
}

/* ---- approvals ---- */

static const step_t approval_steps[] = {
    {.text = {"Let me compute."}, .calls = {{"call_ap1", "calculator", "{\"expression\":\"6*7\"}"}},
     .prompt_tokens = 100, .completion_tokens = 10},
    {.reasoning = "Got it.", .text = {"It is 42."}, .prompt_tokens = 200, .completion_tokens = 20},
};

Test(loop, approval_approved) {
  fake_t f = {.events = json_array(), .approve_tool = "calculator", .outcome = AGENT_APPROVAL_APPROVED};
  script_t s = script(approval_steps, 2, "general");
  agent_run_params_t p = params(&f, &s, "six times seven");
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), 0);
  cr_expect_eq(f.asked, 1);
  cr_expect_eq(f.asked_resumed, 0);
  cr_expect_str_eq(f.asked_call_id, "call_ap1");
  cr_expect_str_eq(f.asked_agent, "reporting");
  cr_expect_str_eq(json_string_value(json_object_get(f.asked_params, "expression")), "6*7");
  long done = find_ev(f.events, 0, "tool_completed", "reporting");
  cr_expect_str_eq(ev_str(f.events, done, "status"), "completed");
  cr_expect_eq(json_number_value(json_object_get(json_object_get(ev_data(f.events, done), "result"), "result")), 42);
  /* the checkpoint has what a restart needs */
  json_t *cp = f.checkpoint;
  cr_expect_str_eq(json_string_value(json_object_get(cp, "top_agent")), "supervisor");
  cr_expect_eq(json_array_size(json_object_get(cp, "stack")), 2);
  cr_expect_str_eq(json_string_value(json_object_get(cp, "streamed")), "Let me compute.");
  cr_expect(json_is_object(json_object_get(json_object_get(cp, "prior"), "triage")));
  json_t *loop = json_object_get(cp, "loop");
  cr_expect_eq(json_integer_value(json_object_get(loop, "round")), 1);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(loop, "pending"), 0), "id")),
                   "call_ap1");
  cr_expect_eq(json_integer_value(json_object_get(json_object_get(cp, "usage"), "llm_calls")), 2);
  dispose(&f, &s);
}

Test(loop, approval_denied_tells_the_model) {
  fake_t f = {.events = json_array(), .approve_tool = "calculator", .outcome = AGENT_APPROVAL_DENIED,
              .reason = "not now"};
  script_t s = script(approval_steps, 2, "general");
  agent_run_params_t p = params(&f, &s, "six times seven");
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), 0);
  long done = find_ev(f.events, 0, "tool_completed", "reporting");
  cr_expect_str_eq(ev_str(f.events, done, "status"), "error");
  json_t *r = json_object_get(ev_data(f.events, done), "result");
  cr_expect_str_eq(json_string_value(json_object_get(r, "error")), "the user denied this call");
  cr_expect_str_eq(json_string_value(json_object_get(r, "reason")), "not now");
  json_t *m = json_object_get(json_array_get(s.requests, 1), "messages");
  const char *last = json_string_value(json_object_get(json_array_get(m, json_array_size(m) - 1), "content"));
  cr_expect(strstr(last, "denied") != NULL && strstr(last, "not now") != NULL, "%s", last);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_completed");
  dispose(&f, &s);
}

Test(loop, approval_timeout_stops_the_run) {
  fake_t f = {.events = json_array(), .approve_tool = "calculator", .outcome = AGENT_APPROVAL_TIMED_OUT};
  script_t s = script(approval_steps, 2, "general");
  agent_run_params_t p = params(&f, &s, "six times seven");
  cr_expect_eq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), AGD_ECANCELLED);
  size_t n = json_array_size(f.events);
  cr_expect_str_eq(ev_type(f.events, n - 1), "agent_stopped");
  cr_expect_str_eq(ev_str(f.events, n - 1, "reason"), "approval_timeout");
  cr_expect_eq(find_ev(f.events, 0, "tool_executing", "reporting"), -1);
  cr_expect_eq(find_ev(f.events, 0, "agent_response", NULL), -1);
  cr_expect_eq(find_ev(f.events, 0, "agent_error", NULL), -1);
  dispose(&f, &s);
}

/* A server restart while the call waits: the first run stops there (a shutdown);
 * the second resumes from the checkpoint, emits nothing again and ends normally. */
Test(loop, resume_from_checkpoint) {
  fake_t f = {.events = json_array(), .approve_tool = "calculator", .await_rc = AGD_ECANCELLED, .cancel_value = 2};
  script_t s = script(approval_steps, 1, "general");
  agent_run_params_t p = params(&f, &s, "six times seven");
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &p, NULL, NULL, NULL), AGD_ECANCELLED);
  cr_assert_not_null(f.checkpoint);
  size_t n1 = json_array_size(f.events);
  cr_expect_str_eq(ev_str(f.events, n1 - 1, "reason"), "shutdown");
  int max_step = 0;
  for (size_t i = 0; i < n1; i++)
    if (strcmp(ev_type(f.events, i), "agent_thinking") == 0 && strcmp(ev_agent(f.events, i), "reporting") == 0)
      max_step = (int)json_integer_value(json_object_get(ev_data(f.events, i), "step_number"));
  const char *first_part = joined_partials(f.events);
  char before[256];
  snprintf(before, sizeof(before), "%s", first_part);
  cr_expect_str_eq(before, "Let me compute.");

  /* the restart: a fresh provider plays the rest of the script */
  json_t *cp = json_incref(f.checkpoint);
  fake_t g = {.events = json_array(), .approve_tool = "calculator", .outcome = AGENT_APPROVAL_APPROVED};
  script_t s2 = script(approval_steps + 1, 1, "general");
  agent_run_params_t q = params(&g, &s2, "six times seven");
  q.resume = cp;
  json_t *result = NULL;
  char *response = NULL;
  cr_assert_eq(agent_run_top(agent_find("supervisor"), &q, &result, &response, NULL), 0);
  cr_expect_eq(g.asked, 1);
  cr_expect_eq(g.asked_resumed, 1);
  cr_expect_str_eq(g.asked_call_id, "call_ap1");
  cr_expect_eq(s2.classifications, 0, "triage is not run again");
  json_t *evs = g.events;
  size_t n = json_array_size(evs);
  /* nothing of the first part again: the pending call first, then the rest */
  cr_expect_str_eq(ev_type(evs, 0), "tool_executing");
  cr_expect_str_eq(ev_str(evs, 0, "call_id"), "call_ap1");
  cr_expect_str_eq(ev_type(evs, 1), "tool_completed");
  cr_expect_str_eq(ev_str(evs, 1, "status"), "completed");
  cr_expect_eq(find_ev(evs, 0, "agent_started", NULL), -1);
  long th = find_ev(evs, 0, "agent_thinking", "reporting");
  cr_assert(th > 1);
  cr_expect_eq(json_integer_value(json_object_get(ev_data(evs, th), "step_number")), max_step + 1);
  cr_expect_str_eq(ev_type(evs, n - 3), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 3), "reporting");
  cr_expect_str_eq(ev_type(evs, n - 2), "agent_response");
  cr_expect_str_eq(ev_type(evs, n - 1), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 1), "supervisor");
  /* the deltas of both parts joined are the answer */
  char all[512];
  snprintf(all, sizeof(all), "%s%s", before, joined_partials(evs));
  cr_expect_str_eq(ev_str(evs, n - 2, "content"), "Let me compute.\n\nIt is 42.");
  cr_expect_str_eq(all, ev_str(evs, n - 2, "content"));
  cr_expect_str_eq(response, "Let me compute.\n\nIt is 42.");
  /* the model saw the approved call's result */
  json_t *m = json_object_get(json_array_get(s2.requests, 0), "messages");
  json_t *last = json_array_get(m, json_array_size(m) - 1);
  cr_expect_str_eq(json_string_value(json_object_get(last, "tool_call_id")), "call_ap1");
  cr_expect(strstr(json_string_value(json_object_get(last, "content")), "42") != NULL);
  /* usage goes on from the checkpoint's: classification + round 1 before, round 2 now */
  cr_expect_eq(g.usage.llm_calls, 3);
  cr_expect_eq(g.usage.prompt_tokens, 10 + 100 + 200);
  cr_expect_eq(g.usage.completion_tokens, 5 + 10 + 20);
  /* the supervisor's result as an uninterrupted run's */
  json_t *ran = json_object_get(result, "agents_run");
  cr_expect_eq(json_array_size(ran), 2);
  cr_expect_str_eq(json_string_value(json_array_get(ran, 1)), "reporting");
  cr_expect_str_eq(json_string_value(json_object_get(result, "intent")), "general");
  json_decref(result);
  free(response);
  json_decref(cp);
  dispose(&f, &s);
  dispose(&g, &s2);
}

Test(loop, resume_refuses_a_foreign_checkpoint) {
  fake_t g = {.events = json_array()};
  script_t s = script(NULL, 0, "general");
  agent_run_params_t q = params(&g, &s, "x");
  json_t *cp = json_pack("{s:i,s:s,s:[{s:s,s:i}],s:{}}", "v", 1, "top_agent", "reporting", "stack", "agent",
                         "reporting", "step", 1, "loop");
  q.resume = cp;
  cr_expect_neq(agent_run_top(agent_find("supervisor"), &q, NULL, NULL, NULL), 0);
  size_t n = json_array_size(g.events);
  cr_expect_str_eq(ev_type(g.events, n - 1), "agent_error");
  cr_expect_str_eq(ev_str(g.events, n - 1, "error_code"), "RESUME_FAILED");
  json_decref(cp);
  dispose(&g, &s);
}

/* ---- history ---- */

Test(loop, history_is_sent_oldest_first_within_budget) {
  char dir[] = "/tmp/agd_loop_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char url[128], err[256];
  snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
  store_t *st = NULL;
  cr_assert_eq(store_open(&st, url, err, sizeof(err)), 0, "%s", err);
  store_user_t u = {0};
  snprintf(u.id, sizeof(u.id), "usr_loop");
  snprintf(u.email, sizeof(u.email), "l@example.com");
  cr_assert_eq(store_user_create(st, &u), 0);
  /* four long messages (each sent cut to 8000 bytes: only three fit the 32000-byte
   * budget beside the newer ones), then three short ones */
  static char big[30000];
  memset(big, 'x', sizeof(big) - 1);
  store_message_t m = {0};
  cr_assert_eq(store_message_add(st, "usr_loop", &(store_message_new_t){.role = "user", .content = "oldest"}, &m), 0);
  char thread[ID_MAX];
  snprintf(thread, sizeof(thread), "%s", m.thread_id);
  store_message_dispose(&m);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(store_message_add(st, "usr_loop",
                                   &(store_message_new_t){.thread_id = thread, .role = "assistant", .content = big},
                                   &m),
                 0);
    store_message_dispose(&m);
  }
  const char *later[][2] = {{"user", "first question"}, {"assistant", "first answer"}, {"user", "now this"}};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(store_message_add(st, "usr_loop",
                                   &(store_message_new_t){.thread_id = thread, .role = later[i][0],
                                                          .content = later[i][1]},
                                   &m),
                 0);
    store_message_dispose(&m);
  }
  static const step_t one[] = {{.text = {"ok"}}};
  fake_t f = {.events = json_array()};
  script_t s = script(one, 1, "general");
  agent_run_params_t p = params(&f, &s, "now this");
  p.thread_id = thread;
  p.store = st;
  cr_assert_eq(agent_run_top(agent_find("reporting"), &p, NULL, NULL, NULL), 0);
  json_t *msgs = json_object_get(json_array_get(s.requests, 0), "messages");
  /* system, three cut long ones, "first question", "first answer", then the request once */
  cr_assert_eq(json_array_size(msgs), 7);
  for (int i = 1; i <= 3; i++) {
    const char *c = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
    cr_expect(strncmp(c, "xxxx", 4) == 0 && strstr(c, "more bytes cut") != NULL && strlen(c) < 8100);
  }
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 4), "content")), "first question");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 5), "role")), "assistant");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 5), "content")), "first answer");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 6), "content")), "now this");
  dispose(&f, &s);
  store_close(st);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
}

/* The reporting agent alone (one level on the stack), denied after the restart:
 * the model is told, the run answers, reporting's agent_completed ends it. */
Test(loop, resume_top_agent_then_denied) {
  fake_t f = {.events = json_array(), .approve_tool = "calculator", .await_rc = AGD_ECANCELLED, .cancel_value = 2};
  script_t s = script(approval_steps, 1, NULL);
  agent_run_params_t p = params(&f, &s, "six times seven");
  cr_assert_eq(agent_run_top(agent_find("reporting"), &p, NULL, NULL, NULL), AGD_ECANCELLED);
  cr_assert_not_null(f.checkpoint);
  cr_expect_eq(json_array_size(json_object_get(f.checkpoint, "stack")), 1);
  cr_expect_str_eq(json_string_value(json_object_get(f.checkpoint, "top_agent")), "reporting");

  json_t *cp = json_incref(f.checkpoint);
  static const step_t rest[] = {{.text = {"I was not allowed to compute it."}}};
  fake_t g = {.events = json_array(), .approve_tool = "calculator", .outcome = AGENT_APPROVAL_DENIED,
              .reason = "no"};
  script_t s2 = script(rest, 1, NULL);
  agent_run_params_t q = params(&g, &s2, "six times seven");
  q.resume = cp;
  json_t *result = NULL;
  char *response = NULL;
  cr_assert_eq(agent_run_top(agent_find("reporting"), &q, &result, &response, NULL), 0);
  cr_expect_eq(g.asked_resumed, 1);
  json_t *evs = g.events;
  size_t n = json_array_size(evs);
  cr_expect_str_eq(ev_type(evs, 0), "tool_executing");
  cr_expect_str_eq(ev_type(evs, 1), "tool_completed");
  cr_expect_str_eq(ev_str(evs, 1, "status"), "error");
  cr_expect_str_eq(ev_type(evs, n - 2), "agent_response");
  cr_expect_str_eq(ev_str(evs, n - 2, "content"), "Let me compute.\n\nI was not allowed to compute it.");
  cr_expect_str_eq(ev_type(evs, n - 1), "agent_completed");
  cr_expect_str_eq(ev_agent(evs, n - 1), "reporting");
  cr_expect_eq(find_ev(evs, 0, "agent_completed", NULL), (long)n - 1, "one agent_completed only");
  cr_expect_eq(json_integer_value(json_object_get(result, "llm_rounds")), 2);
  json_t *m = json_object_get(json_array_get(s2.requests, 0), "messages");
  const char *last = json_string_value(json_object_get(json_array_get(m, json_array_size(m) - 1), "content"));
  cr_expect(strstr(last, "denied") != NULL, "%s", last);
  json_decref(result);
  free(response);
  json_decref(cp);
  dispose(&f, &s);
  dispose(&g, &s2);
}
