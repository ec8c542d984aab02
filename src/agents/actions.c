/* agents/actions.c — the actions agent (DESIGN.md "The built-in agents"):
 * turns the optimization agent's ranked recommendations into an ordered plan,
 * each step with what to do, its expected effect and its monthly saving; run
 * on its own it runs the optimization agent first.  Result fields:
 * docs/agents.md ("actions").  Runs on a run thread.
 */
#include <stdio.h>
#include <string.h>

#include "agents/agents_int.h"
#include "util/err.h"

/* What to do for each kind of recommendation. */
static const struct {
  const char *kind;
  const char *action; /* %s: the recommendation's title */
  const char *effect; /* what changes (the saving is appended) */
} templates[] = {
    {"caching",
     "%s: key a response cache on the prompt hash (exact match first), with a TTL that fits how fast the answers "
     "go stale.",
     "Repeated prompts are answered from the cache: no model call, no model latency, no cost."},
    {"model_switch",
     "%s: route these calls to the cheaper model behind a flag, compare answers on a sample, then switch.",
     "The same short calls at the cheaper model's price, usually faster too."},
    {"batching",
     "%s: queue calls that can wait and submit them through the provider's batch API.",
     "Delay-tolerant calls are priced at the batch discount; interactive traffic is unchanged."},
    {"latency",
     "%s: stream the answer, cap max_tokens, and send short calls to a faster model.",
     "Lower p95/p99 latency for the slowest calls."},
};

static int plan_step(json_t *plan, const json_t *rec) {
  const char *kind = json_string_value(json_object_get(rec, "kind"));
  const char *title = json_string_value(json_object_get(rec, "title"));
  const char *detail = json_string_value(json_object_get(rec, "detail"));
  const char *action = "%s.", *effect = detail ? detail : "";
  for (size_t i = 0; kind && i < sizeof(templates) / sizeof(templates[0]); i++)
    if (strcmp(templates[i].kind, kind) == 0) {
      action = templates[i].action;
      effect = templates[i].effect;
    }
  double saving = json_number_value(json_object_get(rec, "monthly_saving_usd"));
  char a[700], e[900];
  snprintf(a, sizeof(a), action, title ? title : "Apply the recommendation");
  if (saving > 0) snprintf(e, sizeof(e), "%s Saves about $%.2f per month.", effect, saving);
  else snprintf(e, sizeof(e), "%s", effect);
  json_t *s = json_object();
  json_object_set_new(s, "step", json_integer((json_int_t)json_array_size(plan) + 1));
  json_t *ja = json_string(a), *je = json_string(e);
  json_object_set_new(s, "action", ja ? ja : json_string("Apply the recommendation."));
  json_object_set_new(s, "expected_effect", je ? je : json_string(""));
  json_object_set_new(s, "monthly_saving_usd", agent__money(saving, 2));
  json_object_set_new(s, "kind", json_string(kind ? kind : "other"));
  json_array_append_new(plan, s);
  return 0;
}

static void add_step(json_t *plan, const char *kind, const char *action, const char *effect) {
  json_array_append_new(plan, json_pack("{s:I,s:s,s:s,s:f,s:s}", "step", (json_int_t)json_array_size(plan) + 1,
                                        "action", action, "expected_effect", effect, "monthly_saving_usd", 0.0,
                                        "kind", kind));
}

static int actions_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "Turning the recommendations into an ordered plan, biggest saving first.");
  if (rc != 0) return rc;
  json_t *opt = json_object_get(agent_prior_results(ctx), "optimization");
  if (!opt) {
    rc = agent_think(ctx, "No recommendations yet: running the optimization agent first.");
    if (rc == 0) rc = agent_run_sub(ctx, &agent_optimization_ops, &opt);
    if (rc != 0) return rc;
  }
  const json_t *recs = json_object_get(opt, "recommendations");
  const json_t *data = json_object_get(agent_prior_results(ctx), "data");
  json_t *plan = json_array();
  double total = 0;
  size_t i;
  const json_t *rec;
  json_array_foreach(recs, i, rec) {
    plan_step(plan, rec);
    total += json_number_value(json_object_get(rec, "monthly_saving_usd"));
  }
  if (json_array_size(plan) > 0) {
    add_step(plan, "measure",
             "Upload next month's call records to POST /api/workloads and ask again to compare spend and latency "
             "with this month.",
             "Confirms each change saved what was estimated and finds the next one.");
  } else if (data && json_is_false(json_object_get(data, "has_data"))) {
    add_step(plan, "upload",
             "Upload your LLM call records to POST /api/workloads (JSONL, a JSON array or CSV; fields timestamp, "
             "model, provider, prompt_tokens, completion_tokens, latency_ms).",
             "agentd can then find what to cache, which calls a cheaper model can take and what to batch.");
  } else {
    add_step(plan, "monitor",
             "Nothing to change now: keep uploading your call records and ask again after your traffic grows or "
             "changes.",
             "New repeated prompts, expensive models or slow calls are caught early.");
  }
  rc = agent_think(ctx, "Plan of %zu step%s; together they save about $%.2f per month.", json_array_size(plan),
                   json_array_size(plan) == 1 ? "" : "s", total);
  if (rc != 0) {
    json_decref(plan);
    return rc;
  }
  char summary[300];
  snprintf(summary, sizeof(summary), "%zu-step plan saving about $%.2f per month.", json_array_size(plan), total);
  *result = json_object();
  json_object_set_new(*result, "plan", plan);
  json_object_set_new(*result, "total_monthly_saving_usd", agent__money(total, 2));
  json_object_set_new(*result, "summary", json_string(summary));
  return 0;
}

const agent_ops_t agent_actions_ops = {
    .name = "actions",
    .description = "Turns the optimization agent's recommendations into an ordered plan with the expected effect "
                   "and monthly saving of each step.",
    .tools = (const char *const[]){NULL},
    .run = actions_run,
};
