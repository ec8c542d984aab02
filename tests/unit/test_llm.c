/* tests/unit/test_llm.c — the llm seam (llm.h): the builtin provider through
 * the chat vtable (classification as a forced function call, answers streamed
 * in deltas, cancellation, deadlines, bad requests), provider selection, and a
 * fake provider that the classify helper and the reporting agent use exactly
 * as they use the builtin one. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "llm/llm.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/timeutil.h"

/* ---- classification (llm_classify over the builtin provider) ---- */

static llm_classification_t classify(const char *text) {
  llm_classification_t c;
  cr_assert_eq(llm_classify(llm_builtin_new(), text, NULL, NULL, &c), 0);
  return c;
}

#define EXPECT_INTENT(text, want)                                                                        \
  do {                                                                                                   \
    llm_classification_t c_ = classify(text);                                                            \
    cr_expect_str_eq(llm_intent_name(c_.intent), want, "%s → %s (%s)", text, llm_intent_name(c_.intent), \
                     c_.reasoning);                                                                      \
    cr_expect(c_.confidence > 0 && c_.confidence <= 1);                                                  \
    cr_expect(strlen(c_.reasoning) > 10);                                                                \
  } while (0)

Test(llm, classify_examples) {
  EXPECT_INTENT("how can I cut my LLM costs?", "cost");
  EXPECT_INTENT("why is latency high?", "latency");
  EXPECT_INTENT("which model should I use for summarisation?", "model_selection");
  EXPECT_INTENT("summarise my usage", "usage_report");
  EXPECT_INTENT("how do I upload my data?", "data_upload_help");
  EXPECT_INTENT("hello", "general");
  EXPECT_INTENT("Should we cache repeated prompts?", "caching");
  EXPECT_INTENT("We spend $4k a month on GPT-4, how do we make it cheaper?", "cost");
  EXPECT_INTENT("our p95 response time is terrible", "latency");
  EXPECT_INTENT("What's the CSV format you accept?", "data_upload_help");
  EXPECT_INTENT("this is important", "general"); /* "import" is a whole word only */
  EXPECT_INTENT("", "general");
}

Test(llm, classify_reasoning_names_keywords) {
  llm_classification_t c = classify("how can I cut my LLM costs?");
  cr_expect_str_eq(c.keywords, "cost,cut");
  cr_expect(strstr(c.reasoning, "\"cost\"") != NULL, "%s", c.reasoning);
  llm_classification_t g = classify("hello");
  cr_expect_str_eq(g.keywords, "");
  cr_expect(g.confidence < classify("what does my bill cost, price per call?").confidence);
  llm_classification_t x;
  cr_expect_eq(llm_classify(llm_builtin_new(), NULL, NULL, NULL, &x), AGD_EBAD_REQUEST);
}

Test(llm, classify_huge_input) {
  size_t n = 300000;
  char *s = malloc(n + 1);
  memset(s, 'a', n);
  s[n] = '\0';
  memcpy(s + 10, " latency ", 9);
  llm_classification_t c = classify(s);
  cr_expect_str_eq(llm_intent_name(c.intent), "latency");
  free(s);
}

/* ---- chat through the vtable ---- */

typedef struct collected {
  char buf[65536];
  size_t len;
  int calls, tool_calls;
  atomic_int *cancel_after_first; /* set to 1 after the first delta */
  int stop_at;                    /* return non-zero at delta #stop_at (1-based), 0: never */
} collected_t;

static int on_text(void *ud, const char *d, size_t n) {
  collected_t *c = ud;
  cr_assert(n > 0 && n <= LLM_DELTA_MAX);
  cr_assert(c->len + n < sizeof(c->buf));
  memcpy(c->buf + c->len, d, n);
  c->len += n;
  c->buf[c->len] = '\0';
  c->calls++;
  if (c->cancel_after_first) atomic_store(c->cancel_after_first, 1);
  return c->stop_at && c->calls == c->stop_at;
}

static int on_call(void *ud, const llm_tool_call_t *call) {
  collected_t *c = ud;
  cr_assert(call->id && call->name && call->arguments_raw);
  c->tool_calls++;
  return 0;
}

static const llm_stream_cb_t collect_cb = {.on_text_delta = on_text, .on_tool_call = on_call};

static json_t *sample_facts(void) {
  return json_pack("{s:s,s:s,s:f,s:s,s:[s],s:{},s:[ss],s:{s:[s],s:{s:s,s:[s],s:[s],s:s}}}", "request",
                   "how can I cut my LLM costs?", "intent", "cost", "confidence", 0.91, "reasoning",
                   "The request mentions \"cost\".", "keywords", "cost", "findings", "unavailable_agents", "data",
                   "optimization", "guidance", "capabilities", "Break spend down by model.", "upload", "endpoint",
                   "POST /api/workloads", "required_fields", "model", "formats", "JSONL", "example",
                   "{\"model\":\"x\"}");
}

/* A reporting-shaped request: system prompt, the user's request, the facts. */
typedef struct answer_req {
  char *facts_text;
  llm_message_t msgs[3];
  llm_request_t req;
} answer_req_t;

static void answer_req_init(answer_req_t *a, const char *request, const json_t *facts) {
  a->facts_text = json_dumps(facts, JSON_COMPACT);
  cr_assert_not_null(a->facts_text);
  a->msgs[0] = (llm_message_t){.role = LLM_ROLE_SYSTEM, .content = "Write the answer from the facts."};
  a->msgs[1] = (llm_message_t){.role = LLM_ROLE_USER, .content = request};
  a->msgs[2] = (llm_message_t){.role = LLM_ROLE_USER, .content = a->facts_text};
  a->req = (llm_request_t){.messages = a->msgs, .n_messages = 3, .tool_choice = LLM_TOOL_CHOICE_NONE};
}

Test(llm, chat_streams_deltas_joining_to_the_text) {
  json_t *facts = sample_facts();
  answer_req_t a;
  answer_req_init(&a, "how can I cut my LLM costs?", facts);
  collected_t c1 = {0}, c2 = {0};
  llm_response_t r1, r2;
  cr_assert_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &c1, &r1), 0);
  cr_assert_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &c2, &r2), 0);
  cr_expect_eq(r1.finish, LLM_FINISH_STOP);
  cr_expect_str_eq(llm_finish_name(r1.finish), "stop");
  cr_expect_eq(r1.error, LLM_OK);
  cr_expect_str_eq(r1.text, r2.text); /* deterministic */
  cr_expect_str_eq(c1.buf, r1.text);  /* deltas joined == the text */
  cr_expect_str_eq(r1.reasoning, "");
  cr_expect_eq(r1.n_tool_calls, 0);
  cr_expect_eq(c1.tool_calls, 0);
  /* sentence-sized deltas (≥ 200 bytes, ≤ LLM_DELTA_MAX), more than one */
  cr_expect(c1.calls >= 2 && (size_t)c1.calls <= strlen(r1.text) / 200 + 1, "%d deltas for %zu bytes", c1.calls,
            strlen(r1.text));
  cr_expect(strstr(r1.text, "**cost**") != NULL, "%s", r1.text);
  cr_expect(strstr(r1.text, "POST /api/workloads") != NULL);
  cr_expect(strstr(r1.text, "`data` and `optimization` agents") != NULL, "%s", r1.text);
  llm_response_dispose(&r1);
  llm_response_dispose(&r2);
  free(a.facts_text);
  json_decref(facts);
}

Test(llm, chat_renders_findings_without_callbacks) {
  json_t *facts = json_pack("{s:s,s:s,s:{s:{s:s,s:f,s:[ss]}}}", "request", "x", "intent", "latency", "findings",
                            "data", "summary", "p95 is 2.1 s on gpt-4o", "p95_ms", 2100.5, "slow_models", "gpt-4o",
                            "claude");
  answer_req_t a;
  answer_req_init(&a, "x", facts);
  llm_response_t r;
  cr_assert_eq(llm_chat(llm_builtin_new(), &a.req, NULL, NULL, &r), 0);
  cr_expect(strstr(r.text, "### Data agent") != NULL, "%s", r.text);
  cr_expect(strstr(r.text, "p95 is 2.1 s on gpt-4o") != NULL);
  cr_expect(strstr(r.text, "slow_models: gpt-4o, claude") != NULL, "%s", r.text);
  cr_expect(strstr(r.text, "What data to upload") == NULL);
  llm_response_dispose(&r);
  free(a.facts_text);
  json_decref(facts);
}

Test(llm, chat_plain_question_answers_with_its_classification) {
  llm_message_t m = {.role = LLM_ROLE_USER, .content = "why is latency high?"};
  llm_request_t req = {.messages = &m, .n_messages = 1};
  llm_response_t r;
  cr_assert_eq(llm_chat(llm_builtin_new(), &req, NULL, NULL, &r), 0);
  cr_expect(strncmp(r.text, "## Making your LLM calls faster", 31) == 0, "%s", r.text);
  cr_expect(strstr(r.text, "**latency** request") != NULL, "%s", r.text);
  llm_response_dispose(&r);
}

static json_t *classify_params(void) {
  return json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties", "intent", "type", "string", "required",
                   "intent");
}

Test(llm, chat_with_tools_calls_the_classify_function) {
  json_t *params = classify_params();
  llm_tool_t tools[] = {{.name = "calculator", .description = "math", .parameters = params},
                        {.name = LLM_CLASSIFY_FN, .description = "classify", .parameters = params}};
  llm_message_t msgs[] = {{.role = LLM_ROLE_SYSTEM, .content = "Classify."},
                          {.role = LLM_ROLE_USER, .content = "Should we cache repeated prompts?"}};
  llm_request_t req = {.messages = msgs, .n_messages = 2, .tools = tools, .n_tools = 2}; /* tool_choice auto */
  collected_t c = {0};
  llm_response_t r;
  cr_assert_eq(llm_chat(llm_builtin_new(), &req, &collect_cb, &c, &r), 0);
  cr_expect_eq(r.finish, LLM_FINISH_TOOL_CALLS);
  cr_assert_eq(r.n_tool_calls, 1);
  cr_expect_eq(c.tool_calls, 1);
  cr_expect_eq(c.calls, 0);
  cr_expect_str_eq(r.text, "");
  const llm_tool_call_t *call = &r.tool_calls[0];
  cr_expect_str_eq(call->name, LLM_CLASSIFY_FN);
  cr_expect(strncmp(call->id, "call_", 5) == 0, "%s", call->id);
  cr_expect_str_eq(json_string_value(json_object_get(call->arguments, "intent")), "caching");
  cr_expect(json_is_number(json_object_get(call->arguments, "confidence")));
  cr_expect(json_array_size(json_object_get(call->arguments, "keywords")) >= 1);
  json_t *raw = json_loads(call->arguments_raw, 0, NULL);
  cr_expect(json_equal(raw, call->arguments), "%s", call->arguments_raw);
  json_decref(raw);

  /* The call answered: with tool_choice auto the model now writes text. */
  llm_tool_call_t asked = *call;
  llm_message_t more[] = {msgs[0], msgs[1],
                          {.role = LLM_ROLE_ASSISTANT, .tool_calls = &asked, .n_tool_calls = 1},
                          {.role = LLM_ROLE_TOOL, .tool_call_id = asked.id, .content = "{\"ok\":true}"}};
  llm_request_t req2 = {.messages = more, .n_messages = 4, .tools = tools, .n_tools = 2};
  llm_response_t r2;
  cr_assert_eq(llm_chat(llm_builtin_new(), &req2, NULL, NULL, &r2), 0);
  cr_expect_eq(r2.finish, LLM_FINISH_STOP);
  cr_expect_eq(r2.n_tool_calls, 0);
  cr_expect(strstr(r2.text, "**caching** request") != NULL, "%s", r2.text);
  llm_response_dispose(&r2);
  llm_response_dispose(&r);

  /* Forced to a function it does not know: a bad request, not a made-up call. */
  llm_request_t req3 = {.messages = msgs, .n_messages = 2, .tools = tools, .n_tools = 2,
                        .tool_choice = LLM_TOOL_CHOICE_FUNCTION, .tool_choice_name = "calculator"};
  llm_response_t r3;
  cr_expect_eq(llm_chat(llm_builtin_new(), &req3, NULL, NULL, &r3), AGD_EBAD_REQUEST);
  cr_expect_eq(r3.finish, LLM_FINISH_ERROR);
  cr_expect_str_eq(llm_error_code(r3.error), "LLM_BAD_REQUEST");
  llm_response_dispose(&r3);
  json_decref(params);
}

Test(llm, cancel_flag_mid_stream_finishes_cancelled) {
  json_t *facts = sample_facts();
  answer_req_t a;
  answer_req_init(&a, "x", facts);
  atomic_int cancel = 0;
  a.req.cancel = &cancel;
  collected_t c = {.cancel_after_first = &cancel};
  llm_response_t r;
  cr_expect_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &c, &r), AGD_ECANCELLED);
  cr_expect_eq(r.finish, LLM_FINISH_CANCELLED);
  cr_expect_str_eq(llm_finish_name(r.finish), "cancelled");
  cr_expect_eq(c.calls, 1, "the flag is checked before every delta: %d", c.calls);
  cr_expect_str_eq(r.text, c.buf); /* the text is what was streamed */
  llm_response_dispose(&r);
  free(a.facts_text);
  json_decref(facts);
}

static int probe_after(const void *arg) { return ((const collected_t *)arg)->calls >= 2; }

Test(llm, cancel_probe_and_callback_stop) {
  json_t *facts = sample_facts();
  answer_req_t a;
  answer_req_init(&a, "x", facts);
  collected_t c = {0};
  a.req.cancelled = probe_after;
  a.req.cancel_arg = &c;
  llm_response_t r;
  cr_expect_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &c, &r), AGD_ECANCELLED);
  cr_expect_eq(r.finish, LLM_FINISH_CANCELLED);
  cr_expect_eq(c.calls, 2);
  llm_response_dispose(&r);

  /* a callback that returns non-zero stops the stream too */
  a.req.cancelled = NULL;
  collected_t s = {.stop_at = 1};
  cr_expect_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &s, &r), AGD_ECANCELLED);
  cr_expect_eq(r.finish, LLM_FINISH_CANCELLED);
  cr_expect_eq(s.calls, 1);
  cr_expect_str_eq(r.text, "");
  llm_response_dispose(&r);

  /* cancelled before it starts: nothing streamed */
  atomic_int cancel = 1;
  a.req.cancel = &cancel;
  collected_t z = {0};
  cr_expect_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &z, &r), AGD_ECANCELLED);
  cr_expect_eq(z.calls, 0);
  cr_expect_str_eq(r.text, "");
  llm_response_dispose(&r);
  free(a.facts_text);
  json_decref(facts);
}

Test(llm, deadline_passed_is_a_timeout) {
  llm_message_t m = {.role = LLM_ROLE_USER, .content = "hello"};
  llm_request_t req = {.messages = &m, .n_messages = 1, .deadline = time_now() - 1};
  llm_response_t r;
  cr_expect_eq(llm_chat(llm_builtin_new(), &req, NULL, NULL, &r), AGD_ETIMEOUT);
  cr_expect_eq(r.finish, LLM_FINISH_ERROR);
  cr_expect_str_eq(llm_error_code(r.error), "LLM_TIMEOUT");
  llm_response_dispose(&r);
}

Test(llm, max_output_tokens_cuts_with_finish_length) {
  json_t *facts = sample_facts();
  answer_req_t a;
  answer_req_init(&a, "x", facts);
  a.req.max_output_tokens = 20;
  collected_t c = {0};
  llm_response_t r;
  cr_assert_eq(llm_chat(llm_builtin_new(), &a.req, &collect_cb, &c, &r), 0);
  cr_expect_eq(r.finish, LLM_FINISH_LENGTH);
  cr_expect(strlen(r.text) > 0 && strlen(r.text) <= 80, "%zu", strlen(r.text));
  cr_expect_str_eq(c.buf, r.text);
  llm_response_dispose(&r);
  free(a.facts_text);
  json_decref(facts);
}

#define EXPECT_BAD(reqv, why)                                                                      \
  do {                                                                                             \
    llm_response_t r_;                                                                             \
    cr_expect_eq(llm_chat(llm_builtin_new(), &(reqv), NULL, NULL, &r_), AGD_EBAD_REQUEST, why);   \
    cr_expect_eq(r_.finish, LLM_FINISH_ERROR, why);                                                \
    cr_expect_eq(r_.error, LLM_ERR_BAD_REQUEST, why);                                              \
    cr_expect(strlen(r_.error_message) > 0, why);                                                  \
    cr_expect_str_eq(r_.text, "", why);                                                            \
    llm_response_dispose(&r_);                                                                     \
  } while (0)

Test(llm, bad_requests) {
  llm_request_t none = {0};
  EXPECT_BAD(none, "no messages");
  llm_message_t sys = {.role = LLM_ROLE_SYSTEM, .content = "only a system prompt"};
  llm_request_t no_user = {.messages = &sys, .n_messages = 1};
  EXPECT_BAD(no_user, "no user message");
  llm_message_t empty = {.role = LLM_ROLE_USER};
  llm_request_t no_content = {.messages = &empty, .n_messages = 1};
  EXPECT_BAD(no_content, "a message without content");
  llm_message_t tool = {.role = LLM_ROLE_TOOL, .content = "{}"};
  llm_request_t orphan = {.messages = &tool, .n_messages = 1};
  EXPECT_BAD(orphan, "a tool result without tool_call_id");
  llm_message_t u = {.role = LLM_ROLE_USER, .content = "hi"};
  llm_tool_t bad_tool = {.name = "has space", .parameters = NULL};
  llm_request_t bad_tools = {.messages = &u, .n_messages = 1, .tools = &bad_tool, .n_tools = 1};
  EXPECT_BAD(bad_tools, "a tool name with a space, no schema");
  llm_request_t choice = {.messages = &u, .n_messages = 1, .tool_choice = LLM_TOOL_CHOICE_FUNCTION,
                          .tool_choice_name = LLM_CLASSIFY_FN};
  EXPECT_BAD(choice, "tool_choice names a function that is not offered");
  llm_request_t hot = {.messages = &u, .n_messages = 1, .temperature = 2.5};
  EXPECT_BAD(hot, "temperature above 2");
  llm_response_t r;
  cr_expect_eq(llm_chat(NULL, &choice, NULL, NULL, &r), AGD_EBAD_REQUEST);
  llm_response_dispose(&r);
}

Test(llm, next_delta_utf8_and_bounds) {
  const char *s = "héllo wörld, ça va? ";
  size_t n = strlen(s), off = 0, pieces = 0;
  while (off < n) {
    size_t d = llm_next_delta(s + off, n - off);
    cr_assert(d > 0 && d <= LLM_DELTA_MAX);
    off += d;
    pieces++;
  }
  cr_expect_eq(off, n);
  /* a 200-byte word of 2-byte characters is cut between characters */
  char w[201];
  for (int i = 0; i < 100; i++) memcpy(w + 2 * i, "é", 2);
  w[200] = '\0';
  size_t d = llm_next_delta(w, 200);
  cr_expect(d <= LLM_DELTA_MAX && d % 2 == 0 && d > 0, "%zu", d);
  cr_expect_eq(llm_next_delta("", 0), 0);
}

Test(llm, open_by_name) {
  char err[128] = "";
  llm_t *l = llm_open("builtin", NULL, err, sizeof(err));
  cr_assert_not_null(l);
  cr_expect_str_eq(llm_name(l), "builtin");
  llm_close(l);
  cr_expect_eq(llm_open(NULL, NULL, err, sizeof(err)), llm_builtin_new());
  /* openai: the defaults, or the options given; a base URL that is not http(s) is refused */
  l = llm_open("openai", NULL, err, sizeof(err));
  cr_assert_not_null(l, "%s", err);
  cr_expect_str_eq(llm_name(l), "openai");
  cr_expect_str_eq(llm_model(l), LLM_OPENAI_DEFAULT_MODEL);
  llm_close(l);
  llm_options_t opt = {.base_url = "http://127.0.0.1:9/v1/", .model = "m1", .api_key = "k"};
  l = llm_open("openai", &opt, err, sizeof(err));
  cr_assert_not_null(l, "%s", err);
  cr_expect_str_eq(llm_model(l), "m1");
  llm_close(l);
  const char *bad[] = {"ftp://x/v1", "localhost:8080/v1", "http://", "http:///v1", "http://a b/v1", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    llm_options_t b = {.base_url = bad[i]};
    err[0] = '\0';
    llm_t *x = llm_open("openai", &b, err, sizeof(err));
    if (!bad[i][0]) { /* empty: the default */
      cr_expect_not_null(x);
      llm_close(x);
      continue;
    }
    cr_expect_null(x, "%s", bad[i]);
    cr_expect(strstr(err, "OPENAI_BASE_URL") != NULL, "%s", err);
  }
  cr_expect_null(llm_open("nope", NULL, err, sizeof(err)));
  cr_expect_str_eq(err, "unknown llm provider 'nope' (known: builtin, openai)");
  cr_expect_str_eq(llm_intent_name(LLM_INTENT_DATA_UPLOAD_HELP), "data_upload_help");
  cr_expect_eq(llm_intent_parse("caching"), LLM_INTENT_CACHING);
  cr_expect_eq(llm_intent_parse("nope"), -1);
  cr_expect_str_eq(llm_role_name(LLM_ROLE_TOOL), "tool");
  cr_expect_null(llm_error_code(LLM_OK));
  cr_expect_str_eq(llm_error_code(LLM_ERR_UNAVAILABLE), "LLM_UNAVAILABLE");
}

/* ---- another implementation: a fake provider ----
 * A provider with state embeds llm_t first.  It answers a forced function
 * with a call, and anything else with text in three deltas and a reasoning
 * delta; or fails like a server that is down. */

typedef struct fake_llm {
  llm_t base;
  const char *intent; /* what its classification says */
  llm_error_t fail;   /* answer text requests with this error (LLM_OK: answer) */
  int chats, destroyed;
  json_t *facts_seen; /* the last message of the last text request, parsed */
  char reasoning_seen[64];
} fake_llm_t;

static const char *const fake_pieces[] = {"Fake answer: ", "cache your ", "repeated prompts."};
#define FAKE_TEXT "Fake answer: cache your repeated prompts."

static int fake_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out) {
  fake_llm_t *f = (fake_llm_t *)l;
  f->chats++;
  if (req->tool_choice == LLM_TOOL_CHOICE_FUNCTION) {
    json_t *args = json_pack("{s:s,s:f,s:s,s:[ss]}", "intent", f->intent, "confidence", 0.7, "reasoning",
                             "The fake model read the request.", "keywords", "cache", "repeated");
    if (llm_response_add_tool_call(out, "call_fake1", req->tool_choice_name, args, NULL) != 0)
      return llm_response_fail(out, LLM_ERR_INTERNAL, "oom");
    if (cb->on_tool_call && cb->on_tool_call(ud, &out->tool_calls[0])) {
      out->finish = LLM_FINISH_CANCELLED;
      return AGD_ECANCELLED;
    }
    out->finish = LLM_FINISH_TOOL_CALLS;
    return 0;
  }
  if (f->fail) return llm_response_fail(out, f->fail, "the fake server is down");
  json_decref(f->facts_seen);
  /* As a provider that sends text would: the message's text form. */
  char *text = llm_message_text(&req->messages[req->n_messages - 1]);
  f->facts_seen = text ? json_loads(text, 0, NULL) : NULL;
  free(text);
  if (cb->on_reasoning_delta) cb->on_reasoning_delta(ud, "thinking", 8);
  out->reasoning = strdup("thinking");
  for (size_t i = 0; i < 3; i++) {
    if (llm_request_cancelled(req) ||
        (cb->on_text_delta && cb->on_text_delta(ud, fake_pieces[i], strlen(fake_pieces[i])))) {
      out->finish = LLM_FINISH_CANCELLED;
      return AGD_ECANCELLED;
    }
  }
  out->text = strdup(FAKE_TEXT);
  out->finish = LLM_FINISH_STOP;
  out->prompt_tokens = 120;
  out->completion_tokens = 9;
  return 0;
}

static void fake_destroy(llm_t *l) { ((fake_llm_t *)l)->destroyed++; }

static const llm_provider_t fake_provider = {.name = "fake", .chat = fake_chat, .destroy = fake_destroy};

Test(llm, classify_works_with_another_provider) {
  fake_llm_t f = {.base = {.provider = &fake_provider}, .intent = "caching"};
  llm_classification_t c;
  cr_assert_eq(llm_classify(&f.base, "anything at all", NULL, NULL, &c), 0);
  cr_expect_eq(c.intent, LLM_INTENT_CACHING);
  cr_expect_float_eq(c.confidence, 0.7, 1e-9);
  cr_expect_str_eq(c.reasoning, "The fake model read the request.");
  cr_expect_str_eq(c.keywords, "cache,repeated");
  /* a model that names no known intent is a bad response, not "general" */
  f.intent = "astrology";
  cr_expect_eq(llm_classify(&f.base, "anything", NULL, NULL, &c), AGD_EUNAVAILABLE);
  cr_expect_str_eq(llm_name(&f.base), "fake");
  llm_close(&f.base);
  cr_expect_eq(f.destroyed, 1);
}

/* An agent-side consumer: the reporting agent, run alone, classifies through
 * the classify_request tool and writes the answer through llm_chat — with the
 * fake provider it streams the fake's deltas and answers with its text. */

typedef struct run_events {
  json_t *events;
  char persisted[256];
} run_events_t;

static int collect_emit(void *arg, event_type_t type, const char *agent, json_t *data) {
  run_events_t *e = arg;
  json_array_append_new(e->events,
                        json_pack("{s:s,s:s,s:o}", "type", event_type_name(type), "agent", agent, "data", data));
  return 0;
}

static int collect_persist(void *arg, const char *content, char *message_id) {
  run_events_t *e = arg;
  snprintf(e->persisted, sizeof(e->persisted), "%s", content);
  snprintf(message_id, ID_MAX, "msg_fake");
  return 0;
}

static int run_reporting(fake_llm_t *f, run_events_t *e) {
  tool_registry_reset();
  tools_register_builtin();
  e->events = json_array();
  agent_run_params_t p = {.run_id = "run_llm", .user_id = "usr_llm", .thread_id = "", .input = "hello there",
                          .llm = &f->base, .emit = collect_emit, .persist = collect_persist, .emit_arg = e};
  json_t *result = NULL, *error = NULL;
  char *response = NULL;
  int rc = agent_run_top(agent_find("reporting"), &p, &result, &response, &error);
  json_decref(result);
  json_decref(error);
  free(response);
  tool_registry_reset();
  return rc;
}

static const json_t *find_event(const json_t *evs, const char *type) {
  size_t i;
  const json_t *ev;
  json_array_foreach(evs, i, ev) if (strcmp(json_string_value(json_object_get(ev, "type")), type) == 0) return ev;
  return NULL;
}

Test(llm, reporting_agent_works_with_another_provider) {
  fake_llm_t f = {.base = {.provider = &fake_provider}, .intent = "caching"};
  run_events_t e = {0};
  cr_assert_eq(run_reporting(&f, &e), 0);
  cr_expect_eq(f.chats, 2, "one classification, one answer: %d", f.chats);
  /* the tool's classification is the fake's */
  const json_t *done = find_event(e.events, "tool_completed");
  cr_assert_not_null(done);
  const json_t *tool_result = json_object_get(json_object_get(done, "data"), "result");
  cr_expect_str_eq(json_string_value(json_object_get(tool_result, "intent")), "caching");
  /* the facts reached the model as a JSON object with that classification */
  cr_expect_str_eq(json_string_value(json_object_get(f.facts_seen, "intent")), "caching");
  cr_expect_str_eq(json_string_value(json_object_get(f.facts_seen, "request")), "hello there");
  /* its three deltas became three partial_result events; the answer is its text */
  char joined[256] = "";
  int partials = 0;
  size_t i;
  const json_t *ev;
  json_array_foreach(e.events, i, ev) {
    if (strcmp(json_string_value(json_object_get(ev, "type")), "partial_result") != 0) continue;
    partials++;
    strncat(joined, json_string_value(json_object_get(json_object_get(ev, "data"), "content")),
            sizeof(joined) - strlen(joined) - 1);
  }
  cr_expect_eq(partials, 3);
  cr_expect_str_eq(joined, FAKE_TEXT);
  const json_t *resp = find_event(e.events, "agent_response");
  cr_assert_not_null(resp);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(resp, "data"), "content")), FAKE_TEXT);
  cr_expect_str_eq(e.persisted, FAKE_TEXT);
  json_decref(e.events);
  json_decref(f.facts_seen);
}

Test(llm, reporting_agent_reports_a_provider_failure) {
  fake_llm_t f = {.base = {.provider = &fake_provider}, .intent = "cost", .fail = LLM_ERR_UNAVAILABLE};
  run_events_t e = {0};
  cr_expect_neq(run_reporting(&f, &e), 0);
  const json_t *err = find_event(e.events, "agent_error");
  cr_assert_not_null(err, "%s", json_dumps(e.events, 0));
  const json_t *d = json_object_get(err, "data");
  cr_expect_str_eq(json_string_value(json_object_get(d, "error_code")), "LLM_UNAVAILABLE");
  cr_expect(strstr(json_string_value(json_object_get(d, "error_message")), "the fake server is down") != NULL);
  cr_expect_null(find_event(e.events, "agent_response"));
  json_decref(e.events);
}

/* A message's text: its JSON value as compact JSON when it has one, else its
 * text; a builtin answer from a JSON-valued message reads the object itself. */
Test(llm, message_text_and_json_content) {
  json_t *facts = json_pack("{s:s,s:i}", "intent", "caching", "n", 3);
  llm_message_t with_json = {.role = LLM_ROLE_USER, .content = "ignored", .content_json = facts};
  llm_message_t with_text = {.role = LLM_ROLE_USER, .content = "plain"};
  llm_message_t neither = {.role = LLM_ROLE_ASSISTANT};
  char *a = llm_message_text(&with_json), *b = llm_message_text(&with_text);
  cr_expect_str_eq(a, "{\"intent\":\"caching\",\"n\":3}");
  cr_expect_str_eq(b, "plain");
  cr_expect_null(llm_message_text(&neither));
  free(a);
  free(b);
  /* The builtin writes the same answer from the object as from its text. */
  llm_t *l = llm_builtin_new();
  cr_assert_not_null(l);
  char *facts_text = json_dumps(facts, JSON_COMPACT);
  llm_message_t as_text = {.role = LLM_ROLE_USER, .content = facts_text};
  llm_message_t as_json = {.role = LLM_ROLE_USER, .content_json = facts};
  llm_request_t r1 = {.messages = &as_text, .n_messages = 1, .tool_choice = LLM_TOOL_CHOICE_NONE};
  llm_request_t r2 = {.messages = &as_json, .n_messages = 1, .tool_choice = LLM_TOOL_CHOICE_NONE};
  llm_response_t o1, o2;
  cr_assert_eq(llm_chat(l, &r1, NULL, NULL, &o1), 0);
  cr_assert_eq(llm_chat(l, &r2, NULL, NULL, &o2), 0);
  cr_expect_str_eq(o1.text, o2.text);
  llm_response_dispose(&o1);
  llm_response_dispose(&o2);
  free(facts_text);
  json_decref(facts);
  llm_close(l);
}
