/* agents/reporting.c — the reporting agent (DESIGN.md "The built-in agents"):
 * writes the final markdown answer from what the other agents found
 * (agent_prior_results), through the llm's compose (streamed as
 * partial_result), persists it and emits agent_response.  The answer cites
 * the numbers the others found (recommendations with their monthly saving,
 * the plan, top cost drivers, latency percentiles, anomalies).  When no
 * analysis agent ran, or the analysis found no call records, it says what
 * agentd does for this kind of request and exactly what data to upload.  Runs
 * on a run thread.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents_int.h"
#include "llm/llm.h"
#include "util/buf.h"
#include "util/err.h"

/* What agentd analyses for each intent once call records are uploaded. */
static const char *const caps_cost[] = {
    "Break your spend down by model, provider and feature (from `cost_usd`, or from tokens and the price table "
    "of `GET /api/models/prices` when a record has no cost).",
    "Find calls that could move to a cheaper model, prompts repeated often enough to cache, batchable traffic "
    "and oversized completions.",
    "Estimate the monthly saving of each change and order them into a plan you can act on.",
    NULL};
static const char *const caps_latency[] = {
    "Compute p50/p95/p99 latency by model, provider and feature, with error rates.",
    "Point out the models and features that are slowest, and when over your time range they slowed down.",
    "Suggest faster models for short calls and caching for repeated prompts, with the expected gain.",
    NULL};
static const char *const caps_model[] = {
    "Compare the models you already use on cost per call, latency and error rate for each feature.",
    "Flag short or simple calls where a smaller, cheaper model is likely enough, and what switching saves.",
    NULL};
static const char *const caps_caching[] = {
    "Find repeated prompts (same `prompt_hash`) and the calls, tokens and cost they account for.",
    "Estimate what a response cache would save per month and which features benefit most.",
    NULL};
static const char *const caps_usage[] = {
    "Total calls, tokens and cost by model, provider and feature, with p50/p95/p99 latency and error rate "
    "(also available directly from `GET /api/workloads/summary?from=&to=`).",
    "Show how usage changed over the time range you uploaded.",
    NULL};
static const char *const caps_upload[] = {
    "Accept your LLM call records as a JSON array, JSONL or CSV and report each bad record with its line "
    "number, keeping the good ones.",
    "Generate a realistic demo workload with `POST /api/workloads/synthetic` `{\"records\": 1000}` if you want "
    "to try the analysis first.",
    NULL};
static const char *const caps_general[] = {
    "agentd answers questions about your LLM usage: what it costs and how to cut it, latency, which model to "
    "use, caching repeated prompts, and usage reports.",
    "Try: \"How can I cut my LLM costs?\", \"Why is latency high?\", \"Which model should I use for "
    "summarisation?\", \"Summarise my usage\".",
    NULL};

static const struct {
  const char *intent;
  const char *const *caps;
} capabilities[] = {
    {"cost", caps_cost},         {"latency", caps_latency},         {"model_selection", caps_model},
    {"caching", caps_caching},   {"usage_report", caps_usage},      {"data_upload_help", caps_upload},
    {"general", caps_general},
};

static json_t *guidance_for(const char *intent) {
  const char *const *caps = caps_general;
  for (size_t i = 0; intent && i < sizeof(capabilities) / sizeof(capabilities[0]); i++)
    if (strcmp(capabilities[i].intent, intent) == 0) caps = capabilities[i].caps;
  json_t *jc = json_array();
  for (; *caps; caps++) json_array_append_new(jc, json_string(*caps));
  json_t *up = json_pack(
      "{s:s,s:[sss],s:[ssssss],s:[ssss],s:s,s:[ss]}", "endpoint", "POST /api/workloads", "formats",
      "a JSON array (`application/json`)", "JSONL (`application/x-ndjson`)", "CSV with a header row (`text/csv`)",
      "required_fields", "timestamp", "model", "provider", "prompt_tokens", "completion_tokens", "latency_ms",
      "optional_fields", "cost_usd", "status", "feature", "prompt_hash", "example",
      "{\"timestamp\": 1767225600, \"model\": \"gpt-4o-mini\", \"provider\": \"openai\", \"prompt_tokens\": 812, "
      "\"completion_tokens\": 164, \"latency_ms\": 930, \"cost_usd\": 0.00022, \"status\": \"success\", "
      "\"feature\": \"summarise\", \"prompt_hash\": \"a41f09\"}",
      "notes",
      "`timestamp` is epoch seconds; `status` is `success` or `error`; `prompt_hash` is any stable hash of the "
      "prompt (it finds repeated prompts without sending their text).",
      "A bad record is rejected alone with its line number (`{\"inserted\", \"rejected\": [{\"line\", \"error\"}]}`); "
      "you only ever see your own records, and `DELETE /api/workloads` removes them.");
  return json_pack("{s:o,s:o}", "capabilities", jc, "upload", up);
}

/* The facts the llm writes from (see llm/builtin.c for the shape). */
static json_t *build_facts(agent_ctx_t *ctx, const json_t *triage) {
  json_t *facts = json_pack("{s:s}", "request", agent_input(ctx));
  const char *intent = json_string_value(json_object_get(triage, "intent"));
  if (intent) {
    json_object_set_new(facts, "intent", json_string(intent));
    json_t *v;
    if ((v = json_object_get(triage, "confidence"))) json_object_set(facts, "confidence", v);
    if ((v = json_object_get(triage, "reasoning"))) json_object_set(facts, "reasoning", v);
    if ((v = json_object_get(triage, "keywords"))) json_object_set(facts, "keywords", v);
    if ((v = json_object_get(triage, "needs_data"))) json_object_set(facts, "needs_data", v);
  }
  json_t *findings = json_object();
  const char *name;
  json_t *res;
  json_object_foreach(agent_prior_results(ctx), name, res) {
    if (strcmp(name, "triage") == 0 || strcmp(name, "reporting") == 0 || strcmp(name, "supervisor") == 0) continue;
    json_object_set(findings, name, res);
  }
  const json_t *data = json_object_get(findings, "data");
  if (json_object_size(findings) == 0) {
    json_t *missing = json_array();
    for (const char *const *a = triage_chain(intent); *a; a++)
      if (!agent_find(*a)) json_array_append_new(missing, json_string(*a));
    json_object_set_new(facts, "unavailable_agents", missing);
    json_object_set_new(facts, "guidance", guidance_for(intent));
  } else if (data && json_is_false(json_object_get(data, "has_data")) && !json_object_get(findings, "data_helper")) {
    /* The analysis found no records and data_helper did not run: say what to upload. */
    json_object_set_new(facts, "guidance", guidance_for(intent));
  }
  json_object_set_new(facts, "findings", findings);
  return facts;
}

/* What the reporting agent asks of its model; the facts follow the request as
 * the last user message (the builtin provider renders them as they are). */
static const char reporting_prompt[] =
    "You are the reporting agent of agentd, a service that analyses a user's own LLM calls. Answer the user's "
    "request in markdown from the facts in the last message only: a JSON object with triage's classification "
    "(intent, confidence, reasoning), the findings of the analysis agents that ran (findings: agent name -> "
    "result), the agents that were not available, and, when no analysis ran or no call records exist, guidance "
    "on what agentd does and what data to upload. Cite the numbers the findings give (savings per month, the "
    "plan, top cost drivers, latency percentiles, anomalies); never invent a number.";

static int probe_cancelled(const void *arg) { return agent_cancelled(arg); }

/* A stream callback: it may run on the provider's I/O thread while the run
 * thread waits in llm_chat (llm.h); agent_partial only touches the run's
 * context and emits. */
int reporting__on_delta(void *arg, const char *delta, size_t n) {
  agent_ctx_t *ctx = arg;
  char tmp[LLM_DELTA_MAX * 4 + 1];
  /* Providers send small deltas; a bigger one goes out in pieces. */
  while (n > 0) {
    size_t d = n < sizeof(tmp) - 1 ? n : llm_next_delta(delta, n);
    if (d > sizeof(tmp) - 1) d = sizeof(tmp) - 1;
    memcpy(tmp, delta, d);
    tmp[d] = '\0';
    if (agent_partial(ctx, tmp) != 0) return 1;
    delta += d;
    n -= d;
  }
  return 0;
}

static json_t *result_of(const char *text, const json_t *facts) {
  json_t *sections = json_array();
  long words = 0;
  int in_word = 0;
  for (const char *p = text; *p; p++) {
    int sp = isspace((unsigned char)*p);
    if (!sp && !in_word) words++;
    in_word = !sp;
  }
  for (const char *line = text; line && *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    if (len > 3 && line[0] == '#') {
      size_t h = 0;
      while (h < len && line[h] == '#') h++;
      while (h < len && line[h] == ' ') h++;
      json_array_append_new(sections, json_stringn(line + h, len - h));
    }
    line = nl ? nl + 1 : NULL;
  }
  const char *intent = json_string_value(json_object_get(facts, "intent"));
  const json_t *findings = json_object_get(facts, "findings");
  char summary[512];
  if (json_object_size(findings) > 0) {
    buf_t b;
    buf_init(&b, 400);
    const char *name;
    const json_t *v;
    size_t i = 0;
    json_object_foreach((json_t *)findings, name, v) buf_appendf(&b, "%s%s", i++ ? ", " : "", name);
    snprintf(summary, sizeof(summary), "Answered a %s request with the findings of the %s agent%s.",
             intent ? intent : "general", b.base ? b.base : "", json_object_size(findings) > 1 ? "s" : "");
    buf_dispose(&b);
  } else {
    snprintf(summary, sizeof(summary),
             "Answered a %s request: no analysis agent ran, so the answer explains what agentd does for it and "
             "what data to upload.",
             intent ? intent : "general");
  }
  return json_pack("{s:s,s:o,s:I}", "summary", summary, "sections", sections, "word_count", (json_int_t)words);
}

json_t *reporting__result(agent_ctx_t *ctx, const char *text) {
  json_t *facts = build_facts(ctx, json_object_get(agent_prior_results(ctx), "triage"));
  json_t *r = result_of(text, facts);
  json_decref(facts);
  return r;
}

int reporting_answer(agent_ctx_t *ctx, json_t **result) {
  if (result) *result = NULL;
  /* A model answers through the tool loop (SPEC §11): it reads the history and
   * this run's tool results and may call tools itself. */
  if (strcmp(llm_name(agent_llm(ctx)), "builtin") != 0) {
    json_t *own = NULL;
    int rc = agents__loop_run(ctx, &own);
    if (result) *result = own;
    else json_decref(own);
    return rc;
  }
  json_t *prior = agent_prior_results(ctx);
  json_t *triage = json_object_get(prior, "triage");
  json_t *own = NULL;
  int rc = 0;
  if (!triage) {
    /* Run on its own: classify here so the answer fits the request. */
    rc = agent_call_tool(ctx, "classify_request", json_pack("{s:s}", "text", agent_input_head(ctx)), &own);
    if (rc != 0) {
      json_decref(own);
      own = NULL;
      if (agent_cancelled(ctx)) return rc;
      rc = 0; /* answer without a classification */
    }
    triage = own;
  }
  json_t *facts = build_facts(ctx, triage);
  json_decref(own);
  /* The model writes from the facts, given after the request as JSON (a provider
   * that sends text sends it as JSON text; the builtin reads the object). */
  if (!facts) {
    agent_fail(ctx, "COMPOSE_FAILED", "could not write the answer (%s)", agd_err_code(AGD_EINTERNAL));
    return ERR(AGD_EINTERNAL);
  }
  const llm_message_t msgs[] = {{.role = LLM_ROLE_SYSTEM, .content = reporting_prompt},
                                {.role = LLM_ROLE_USER, .content = agent_input(ctx)},
                                {.role = LLM_ROLE_USER, .content_json = facts}};
  const llm_request_t req = {.messages = msgs,
                             .n_messages = sizeof(msgs) / sizeof(msgs[0]),
                             .tool_choice = LLM_TOOL_CHOICE_NONE,
                             .cancelled = probe_cancelled,
                             .cancel_arg = ctx};
  const llm_stream_cb_t cb = {.on_text_delta = reporting__on_delta};
  llm_response_t resp;
  rc = llm_chat(agent_llm(ctx), &req, &cb, ctx, &resp);
  if (rc != 0) {
    if (!agent_cancelled(ctx)) {
      const char *code = resp.finish == LLM_FINISH_ERROR ? llm_error_code(resp.error) : NULL;
      agent_fail(ctx, code ? code : "COMPOSE_FAILED", "could not write the answer: %s",
                 resp.error_message[0] ? resp.error_message : agd_err_code(rc));
    }
    llm_response_dispose(&resp);
    json_decref(facts);
    return rc;
  }
  rc = agent_respond(ctx, resp.text);
  if (rc == 0 && result) *result = result_of(resp.text, facts);
  llm_response_dispose(&resp);
  json_decref(facts);
  return rc;
}

static int reporting_run(agent_ctx_t *ctx, json_t **result) {
  json_t *prior = agent_prior_results(ctx);
  size_t others = 0;
  const char *name;
  json_t *v;
  json_object_foreach(prior, name, v) if (strcmp(name, "triage") != 0) others++;
  int rc = agent_think(ctx, "Writing the answer from %s%s.", json_object_get(prior, "triage") ? "triage's "
                                                                                                 "classification"
                                                                                               : "the request",
                       others ? " and the analysis agents' findings" : "");
  if (rc != 0) return rc;
  return reporting_answer(ctx, result);
}

static const char *const reporting_tools[] = {"classify_request", NULL};

const agent_ops_t agent_reporting_ops = {
    .name = "reporting",
    .description = "Writes the final markdown answer from what the other agents found; without workload "
                   "analysis, explains what agentd can do and what data to upload.",
    .tools = reporting_tools,
    .run = reporting_run,
};
