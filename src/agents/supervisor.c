/* agents/supervisor.c — the default agent (SPEC §4): triage, then the agents
 * triage picked (those registered, in its order), then reporting, which
 * writes the answer.  Runs on a run thread.
 */
#include <string.h>

#include "agents/agents_int.h"
#include "util/err.h"

static int supervisor_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "Routing the request: triage first, then the agents it picks, then reporting.");
  if (rc != 0) return rc;
  json_t *tr = NULL;
  rc = agent_run_sub(ctx, &agent_triage_ops, &tr);
  if (rc != 0) return rc;

  const json_t *next = json_object_get(tr, "next_agents");
  const char *intent = json_string_value(json_object_get(tr, "intent"));
  size_t n_next = 0, i;
  const json_t *name;
  json_array_foreach(next, i, name) {
    const agent_ops_t *a = agent_find(json_string_value(name));
    if (a && a != &agent_supervisor_ops && a != &agent_triage_ops && a != &agent_reporting_ops) n_next++;
  }
  rc = n_next ? agent_think(ctx, "Triage says %s; running %zu analysis agent%s before reporting.", intent, n_next,
                            n_next == 1 ? "" : "s")
              : agent_think(ctx, "Triage says %s; no analysis agent is available for it, so reporting answers directly.", intent);
  json_array_foreach(next, i, name) {
    if (rc != 0) break;
    const agent_ops_t *a = agent_find(json_string_value(name));
    if (!a || a == &agent_supervisor_ops || a == &agent_triage_ops || a == &agent_reporting_ops) continue;
    json_t *r = NULL;
    rc = agent_run_sub(ctx, a, &r);
  }
  json_t *rep = NULL;
  if (rc == 0) rc = agent_run_sub(ctx, &agent_reporting_ops, &rep);
  if (rc != 0) return rc;
  *result = agents__resumed_result(ctx, &agent_supervisor_ops);
  return 0;
}

/* The supervisor's result from what ran (agent_prior_results holds each agent
 * that completed, in run order): also what a run resumed inside reporting ends
 * with. */
json_t *agents__resumed_result(agent_ctx_t *ctx, const agent_ops_t *top) {
  if (top != &agent_supervisor_ops) return json_object();
  json_t *prior = agent_prior_results(ctx);
  json_t *tr = json_object_get(prior, "triage"), *rep = json_object_get(prior, "reporting");
  json_t *ran = json_array();
  const char *name;
  json_t *v;
  json_object_foreach(prior, name, v) if (strcmp(name, "supervisor") != 0) json_array_append_new(ran, json_string(name));
  const char *intent = json_string_value(json_object_get(tr, "intent"));
  json_t *confidence = json_object_get(tr, "confidence");
  const char *summary = json_string_value(json_object_get(rep, "summary"));
  json_t *result = json_object();
  json_object_set_new(result, "intent", json_string(intent ? intent : "general"));
  json_object_set(result, "confidence", confidence ? confidence : json_null());
  json_object_set_new(result, "agents_run", ran);
  json_object_set_new(result, "summary", json_string(summary ? summary : ""));
  return result;
}

const agent_ops_t agent_supervisor_ops = {
    .name = "supervisor",
    .description = "Default agent: runs triage, then the analysis agents triage picks, then reporting for the "
                   "final answer.",
    .tools = (const char *const[]){NULL},
    .run = supervisor_run,
};
