/* tests/unit/test_llm.c — the builtin llm provider: classification, compose, deltas. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"

static llm_classification_t classify(const char *text) {
  llm_t *l = llm_builtin_new();
  llm_classification_t c;
  cr_assert_eq(l->ops->classify(l, text, &c), 0);
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
  cr_expect(strstr(c.keywords, "cost") != NULL, "%s", c.keywords);
  cr_expect(strstr(c.reasoning, "\"cost\"") != NULL, "%s", c.reasoning);
  llm_classification_t g = classify("hello");
  cr_expect_str_eq(g.keywords, "");
  cr_expect(g.confidence < classify("what does my bill cost, price per call?").confidence);
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

typedef struct collected {
  char buf[65536];
  size_t len;
  int calls;
} collected_t;

static int on_delta(void *arg, const char *d, size_t n) {
  collected_t *c = arg;
  cr_assert(n > 0 && n <= LLM_DELTA_MAX);
  cr_assert(c->len + n < sizeof(c->buf));
  memcpy(c->buf + c->len, d, n);
  c->len += n;
  c->buf[c->len] = '\0';
  c->calls++;
  return 0;
}

static json_t *sample_facts(void) {
  return json_pack("{s:s,s:s,s:f,s:s,s:[s],s:{},s:[ss],s:{s:[s],s:{s:s,s:[s],s:[s],s:s}}}", "request",
                   "how can I cut my LLM costs?", "intent", "cost", "confidence", 0.91, "reasoning",
                   "The request mentions \"cost\".", "keywords", "cost", "findings", "unavailable_agents", "data",
                   "optimization", "guidance", "capabilities", "Break spend down by model.", "upload", "endpoint",
                   "POST /api/workloads", "required_fields", "model", "formats", "JSONL", "example", "{\"model\":\"x\"}");
}

Test(llm, compose_is_deterministic_and_streamed) {
  llm_t *l = llm_builtin_new();
  json_t *facts = sample_facts();
  cr_assert_not_null(facts);
  collected_t a = {0}, b = {0};
  char *t1 = NULL, *t2 = NULL;
  cr_assert_eq(l->ops->compose(l, "how can I cut my LLM costs?", facts, on_delta, &a, &t1), 0);
  cr_assert_eq(l->ops->compose(l, "how can I cut my LLM costs?", facts, on_delta, &b, &t2), 0);
  cr_expect_str_eq(t1, t2);
  cr_expect_str_eq(a.buf, t1); /* deltas joined == the text */
  /* streamed: sentence-sized deltas (≥ 200 bytes, ≤ LLM_DELTA_MAX), more than one */
  cr_expect(a.calls >= 2 && (size_t)a.calls <= strlen(t1) / 200 + 1, "%d deltas for %zu bytes", a.calls, strlen(t1));
  cr_expect(strstr(t1, "**cost**") != NULL, "%s", t1);
  cr_expect(strstr(t1, "POST /api/workloads") != NULL);
  cr_expect(strstr(t1, "`data` and `optimization` agents") != NULL, "%s", t1);
  free(t1);
  free(t2);
  json_decref(facts);
}

Test(llm, compose_renders_findings) {
  llm_t *l = llm_builtin_new();
  json_t *facts = json_pack("{s:s,s:s,s:{s:{s:s,s:f,s:[ss]}}}", "request", "x", "intent", "latency", "findings",
                            "data", "summary", "p95 is 2.1 s on gpt-4o", "p95_ms", 2100.5, "slow_models", "gpt-4o",
                            "claude");
  char *t = NULL;
  cr_assert_eq(l->ops->compose(l, "x", facts, NULL, NULL, &t), 0);
  cr_expect(strstr(t, "### Data agent") != NULL, "%s", t);
  cr_expect(strstr(t, "p95 is 2.1 s on gpt-4o") != NULL);
  cr_expect(strstr(t, "slow_models: gpt-4o, claude") != NULL, "%s", t);
  cr_expect(strstr(t, "What data to upload") == NULL);
  free(t);
  json_decref(facts);
}

static int stop_cb(void *a, const char *d, size_t n) { return 1; }

Test(llm, compose_stop) {
  llm_t *l = llm_builtin_new();
  json_t *facts = sample_facts();
  char *t = NULL;
  cr_expect_neq(l->ops->compose(l, "x", facts, stop_cb, NULL, &t), 0);
  cr_expect_null(t);
  json_decref(facts);
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

Test(llm, open) {
  char err[128] = "";
  llm_t *l = llm_open("builtin", err, sizeof(err));
  cr_assert_not_null(l);
  cr_expect_str_eq(l->ops->name, "builtin");
  llm_close(l);
  cr_expect_null(llm_open("openai", err, sizeof(err)));
  cr_expect_str_eq(err, "llm provider 'openai' is not available in this build yet");
  cr_expect_null(llm_open("nope", err, sizeof(err)));
  cr_expect_str_eq(llm_intent_name(LLM_INTENT_DATA_UPLOAD_HELP), "data_upload_help");
}
