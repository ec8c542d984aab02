/* agents/data_helper.c — the data_helper agent (DESIGN.md "The built-in
 * agents"): when the caller has no or too few call records for the analysis
 * they asked for, says exactly what to upload, in which format and where —
 * with the count they have and the count still needed.  Result fields:
 * docs/agents.md ("data_helper").  Runs on a run thread.
 */
#include <stdio.h>
#include <string.h>

#include "agents/agents_int.h"
#include "util/err.h"
#include "workloads/workloads.h"

static const char example_jsonl[] =
    "{\"timestamp\": 1767225600, \"model\": \"gpt-4o\", \"provider\": \"openai\", \"prompt_tokens\": 1200, "
    "\"completion_tokens\": 300, \"latency_ms\": 2350, \"cost_usd\": 0.006, \"status\": \"success\", "
    "\"feature\": \"support_chat\", \"prompt_hash\": \"9f2c1a\"}\n"
    "{\"timestamp\": 1767225660, \"model\": \"gpt-4o-mini\", \"provider\": \"openai\", \"prompt_tokens\": 812, "
    "\"completion_tokens\": 164, \"latency_ms\": 930, \"status\": \"success\", \"feature\": \"summarise\", "
    "\"prompt_hash\": \"a41f09\"}\n"
    "{\"timestamp\": 1767225720, \"model\": \"claude-3-5-haiku\", \"provider\": \"anthropic\", \"prompt_tokens\": 95, "
    "\"completion_tokens\": 12, \"latency_ms\": 410, \"status\": \"error\", \"feature\": \"classify\"}\n";

static json_t *formats(void) {
  return json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}]",                                  //
                   "name", "jsonl", "content_type", "application/x-ndjson", "description",
                   "one JSON object per line, one line per LLM call",                                  //
                   "name", "json", "content_type", "application/json", "description",
                   "a JSON array of the same objects",                                                  //
                   "name", "csv", "content_type", "text/csv", "description",
                   "a header row with the field names, then one row per call");
}

/* The intent the caller asked about: triage's, else classify here. */
static int asked_intent(agent_ctx_t *ctx, char *intent, size_t cap) {
  const json_t *tr = json_object_get(agent_prior_results(ctx), "triage");
  const char *i = json_string_value(json_object_get(tr, "intent"));
  if (i) {
    snprintf(intent, cap, "%s", i);
    return 0;
  }
  json_t *cls = NULL;
  int rc = agent__try_tool(ctx, "classify_request", json_pack("{s:s}", "text", agent_input_head(ctx)), &cls);
  if (rc < 0) return rc;
  i = rc == 0 ? json_string_value(json_object_get(cls, "intent")) : NULL;
  snprintf(intent, cap, "%s", i ? i : "general");
  json_decref(cls);
  return 0;
}

static int data_helper_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "Checking how many call records you have and what the analysis needs.");
  if (rc != 0) return rc;
  char intent[48];
  rc = asked_intent(ctx, intent, sizeof(intent));
  if (rc != 0) return rc;
  /* The count: triage's when it counted, else ask the store. */
  const json_t *tr = json_object_get(agent_prior_results(ctx), "triage");
  const json_t *jr = json_object_get(tr, "records");
  long records = -1;
  if (json_is_integer(jr)) {
    records = (long)json_integer_value(jr);
  } else {
    store_t *st = agent__store(ctx);
    if (st && agent_user_id(ctx) && workloads_count(st, agent_user_id(ctx), NULL, &records) != 0) records = -1;
  }
  long min = strcmp(intent, "usage_report") == 0 ? 1 : AGENTS_MIN_RECORDS;
  long have = records < 0 ? 0 : records;
  long needed = have >= min ? 0 : min - have;

  char summary[600];
  if (records < 0)
    snprintf(summary, sizeof(summary),
             "Your call records could not be counted. Upload at least %ld LLM call records to POST /api/workloads "
             "(JSONL, a JSON array or CSV) and ask again.",
             min);
  else if (have == 0)
    snprintf(summary, sizeof(summary),
             "You have no LLM call records yet. Upload at least %ld (one per LLM call, ideally a few weeks of "
             "traffic) to POST /api/workloads as JSONL, a JSON array or CSV, then ask again.",
             min);
  else if (needed > 0)
    snprintf(summary, sizeof(summary),
             "You have %ld LLM call record%s; this analysis needs at least %ld. Upload %ld more to POST "
             "/api/workloads (JSONL, a JSON array or CSV), then ask again.",
             have, have == 1 ? "" : "s", min, needed);
  else
    snprintf(summary, sizeof(summary),
             "You have %ld LLM call records, enough for the analysis. More (with feature and prompt_hash) make "
             "the recommendations sharper; upload them to POST /api/workloads.",
             have);
  rc = agent_think(ctx, "%s", summary);
  if (rc != 0) return rc;

  *result = json_object();
  json_object_set_new(*result, "has_data", json_boolean(have > 0));
  json_object_set_new(*result, "records", records < 0 ? json_null() : json_integer(records));
  json_object_set_new(*result, "needed", json_integer(needed));
  json_object_set_new(*result, "min_records", json_integer(min));
  json_object_set_new(*result, "endpoint", json_string("POST /api/workloads"));
  json_object_set_new(*result, "formats", formats());
  json_object_set_new(*result, "required_fields", json_pack("[ssssss]", "timestamp", "model", "provider",
                                                            "prompt_tokens", "completion_tokens", "latency_ms"));
  json_object_set_new(*result, "optional_fields",
                      json_pack("[ssss]", "cost_usd", "status", "feature", "prompt_hash"));
  json_object_set_new(*result, "example_jsonl", json_string(example_jsonl));
  json_object_set_new(*result, "curl_example",
                      json_string("curl -X POST \"$AGENTD/api/workloads\" -H \"Authorization: Bearer $TOKEN\" "
                                  "-H \"Content-Type: application/x-ndjson\" --data-binary @calls.jsonl"));
  json_object_set_new(*result, "tips",
                      json_pack("[ssss]",
                                "`timestamp` is epoch seconds; `status` is `success` or `error`.",
                                "`cost_usd` may be left out: agentd prices the call from GET /api/models/prices.",
                                "`prompt_hash` is any stable hash of the prompt: it finds repeated prompts worth "
                                "caching without sending their text.",
                                "A bad record is rejected alone with its line number; the good ones are kept. "
                                "To try the analysis first: POST /api/workloads/synthetic {\"records\": 1000}."));
  json_object_set_new(*result, "summary", json_string(summary));
  return 0;
}

static const char *const data_helper_tools[] = {"classify_request", NULL};

const agent_ops_t agent_data_helper_ops = {
    .name = "data_helper",
    .description = "When your call records are missing or too few, says exactly what to upload, in which format "
                   "and where.",
    .tools = data_helper_tools,
    .run = data_helper_run,
};
