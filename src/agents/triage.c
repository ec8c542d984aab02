/* agents/triage.c — the triage agent (DESIGN.md "The built-in agents"):
 * classifies the request through the `classify_request` tool, picks up the
 * topic of earlier turns for a vague follow-up (`thread_context`), judges
 * whether workload data is needed and whether the caller has enough of it
 * (workloads_count: none → data_helper; fewer than the analysis needs → data,
 * then data_helper), and chooses the next agents among those registered.
 * Runs on a run thread.
 */
#include <stdio.h>
#include <string.h>

#include "agents/agents_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "workloads/workloads.h"

/* Intent → the analytics chain (the agents that answer it), in run order. */
static const char *const chain_cost[] = {"data", "optimization", "actions", NULL};
static const char *const chain_latency[] = {"data", "optimization", NULL};
static const char *const chain_model[] = {"data", "optimization", NULL};
static const char *const chain_caching[] = {"data", "optimization", NULL};
static const char *const chain_usage[] = {"data", NULL};
static const char *const chain_upload[] = {"data_helper", NULL};
static const char *const chain_no_data[] = {"data_helper", NULL};
static const char *const chain_little_data[] = {"data", "data_helper", NULL};
static const char *const chain_none[] = {NULL};

static const struct {
  const char *intent;
  const char *const *chain;
  int needs_data;
} intents[] = {
    {"cost", chain_cost, 1},       {"latency", chain_latency, 1},          {"model_selection", chain_model, 1},
    {"caching", chain_caching, 1}, {"usage_report", chain_usage, 1},       {"data_upload_help", chain_upload, 0},
    {"general", chain_none, 0},
};

const char *const *triage_chain(const char *intent) {
  for (size_t i = 0; intent && i < sizeof(intents) / sizeof(intents[0]); i++)
    if (strcmp(intents[i].intent, intent) == 0) return intents[i].chain;
  return chain_none;
}

/* Records the analysis of this intent needs (0: none needed). */
static long min_records(const char *intent) {
  if (intent && strcmp(intent, "usage_report") == 0) return 1;
  return AGENTS_MIN_RECORDS;
}

/* What the optimization agent should concentrate on. */
static const char *focus_of(const char *intent) {
  static const struct { const char *intent, *focus; } f[] = {
      {"cost", "cost"}, {"latency", "latency"}, {"model_selection", "model"}, {"caching", "caching"},
      {"usage_report", "usage"},
  };
  for (size_t i = 0; intent && i < sizeof(f) / sizeof(f[0]); i++)
    if (strcmp(f[i].intent, intent) == 0) return f[i].focus;
  return "general";
}

static int needs_data(const char *intent) {
  for (size_t i = 0; intent && i < sizeof(intents) / sizeof(intents[0]); i++)
    if (strcmp(intents[i].intent, intent) == 0) return intents[i].needs_data;
  return 0;
}

/* Classify text through the tool; *cls gets the tool's result (new reference). */
static int classify(agent_ctx_t *ctx, const char *text, json_t **cls) {
  int rc = agent_call_tool(ctx, "classify_request", json_pack("{s:s}", "text", text), cls);
  if (rc != 0 && !agent_cancelled(ctx)) {
    const char *why = json_string_value(json_object_get(*cls, "error"));
    agent_fail(ctx, "CLASSIFICATION_FAILED", "could not classify the request: %s", why ? why : agd_err_code(rc));
  }
  /* The model could not classify: the tool fell back to the builtin rules; say so. */
  if (rc == 0 && json_is_true(json_object_get(*cls, "fallback"))) {
    const char *why = json_string_value(json_object_get(*cls, "fallback_reason"));
    rc = agent_think(ctx, "The model could not classify the request (%s); used agentd's built-in classifier instead.",
                     why ? why : "no answer");
  }
  return rc;
}

/* For a request that says nothing specific ("tell me more"), the earlier user
 * turns of the thread say what it is about.  Returns a new classification or
 * NULL when the thread adds nothing (no thread, no store, no earlier turns). */
static json_t *classify_from_thread(agent_ctx_t *ctx, int *rc_out) {
  *rc_out = 0;
  const char *thread_id = agent_thread_id(ctx);
  if (!thread_id || !*thread_id) return NULL;
  json_t *hist = NULL;
  int rc = agent_call_tool(ctx, "thread_context", json_pack("{s:s,s:i}", "thread_id", thread_id, "limit", 6), &hist);
  if (rc != 0) {
    json_decref(hist);
    if (agent_cancelled(ctx)) *rc_out = AGD_ECANCELLED;
    return NULL; /* history is a hint, not a requirement */
  }
  buf_t earlier;
  buf_init(&earlier, 16384);
  const json_t *msgs = json_object_get(hist, "messages");
  size_t i;
  const json_t *m;
  json_array_foreach(msgs, i, m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *content = json_string_value(json_object_get(m, "content"));
    if (!role || !content || strcmp(role, "user") != 0) continue;
    if (strcmp(content, agent_input(ctx)) == 0) continue; /* this request itself */
    if (buf_append_str(&earlier, content) != 0 || buf_append_str(&earlier, "\n") != 0) break;
  }
  json_decref(hist);
  json_t *cls = NULL;
  if (earlier.len > 0) {
    rc = classify(ctx, earlier.base, &cls);
    if (rc != 0) {
      json_decref(cls);
      cls = NULL;
      *rc_out = rc;
    }
  }
  buf_dispose(&earlier);
  return cls;
}

static int triage_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "Classifying the request to decide which analysis answers it.");
  if (rc != 0) return rc;
  json_t *cls = NULL;
  rc = classify(ctx, agent_input_head(ctx), &cls);
  if (rc != 0) {
    json_decref(cls);
    return rc;
  }
  const char *intent = json_string_value(json_object_get(cls, "intent"));
  if (intent && strcmp(intent, "general") == 0) {
    json_t *prev = classify_from_thread(ctx, &rc);
    if (rc != 0) {
      json_decref(cls);
      return rc;
    }
    const char *pi = json_string_value(json_object_get(prev, "intent"));
    if (pi && strcmp(pi, "general") != 0) {
      char why[700];
      snprintf(why, sizeof(why), "This message is a follow-up; the earlier turns of the thread are about %s. %s",
               pi, json_string_value(json_object_get(prev, "reasoning")));
      json_t *jwhy = json_string(why);
      json_object_set_new(prev, "reasoning", jwhy ? jwhy : json_string("This message is a follow-up."));
      json_decref(cls);
      cls = prev;
      intent = pi;
    } else {
      json_decref(prev);
    }
  }
  if (!intent) intent = "general";

  int nd = needs_data(intent);
  /* How many records the caller has (unknown without a store, or when the
   * count fails: then the chain runs and the data agent finds out). */
  long records = -1;
  store_t *st = agent__store(ctx);
  if (st && agent_user_id(ctx) && workloads_count(st, agent_user_id(ctx), NULL, &records) != 0) records = -1;
  long need = min_records(intent);
  const char *const *chain = triage_chain(intent);
  const char *data_note = "";
  if (nd && records == 0) {
    chain = chain_no_data;
    data_note = " You have no call records yet, so data_helper says what to upload.";
  } else if (nd && records > 0 && records < need) {
    chain = chain_little_data;
    data_note = " You have too few call records for this analysis, so data summarises them and data_helper says "
                "what else to upload.";
  }

  json_t *next = json_array();
  json_t *missing = json_array();
  for (const char *const *a = chain; *a; a++)
    json_array_append_new(agent_find(*a) ? next : missing, json_string(*a));

  char counted[96] = "";
  if (records >= 0)
    snprintf(counted, sizeof(counted), " %ld call record%s on file (%ld needed).", records, records == 1 ? "" : "s",
             need);
  if (json_array_size(next) > 0)
    rc = agent_think(ctx, "Intent %s (confidence %.2f).%s%s Next: %s%s%s.", intent,
                     json_number_value(json_object_get(cls, "confidence")), counted, data_note,
                     json_string_value(json_array_get(next, 0)), json_array_size(next) > 1 ? " and " : "",
                     json_array_size(next) > 1 ? "the agents after it" : "");
  else if (json_array_size(missing) > 0)
    rc = agent_think(ctx,
                     "Intent %s (confidence %.2f). The agents for it (%s first) are not available, so the answer "
                     "will explain what agentd does for this and what data it needs.",
                     intent, json_number_value(json_object_get(cls, "confidence")),
                     json_string_value(json_array_get(missing, 0)));
  else
    rc = agent_think(ctx, "Intent %s (confidence %.2f).%s No analysis is needed; the answer comes straight from "
                     "reporting.", intent, json_number_value(json_object_get(cls, "confidence")), counted);
  json_decref(missing);
  if (rc != 0) {
    json_decref(cls);
    json_decref(next);
    return rc;
  }
  /* data_sufficient / records are null when the records could not be counted
   * (no store): the data agent finds out when it runs. */
  json_t *kw = json_object_get(cls, "keywords");
  const char *reasoning = json_string_value(json_object_get(cls, "reasoning"));
  *result = json_object();
  json_object_set_new(*result, "intent", json_string(intent));
  json_object_set_new(*result, "confidence", json_real(json_number_value(json_object_get(cls, "confidence"))));
  json_object_set_new(*result, "reasoning", json_string(reasoning ? reasoning : ""));
  json_object_set_new(*result, "keywords", json_is_array(kw) ? json_incref(kw) : json_array());
  json_object_set_new(*result, "next_agents", next);
  json_object_set_new(*result, "needs_data", json_boolean(nd));
  json_object_set_new(*result, "data_sufficient", records < 0 ? json_null() : json_boolean(records >= need));
  json_object_set_new(*result, "records", records < 0 ? json_null() : json_integer(records));
  json_object_set_new(*result, "min_records", json_integer(need));
  json_object_set_new(*result, "focus", json_string(focus_of(intent)));
  json_decref(cls);
  return 0;
}

static const char *const triage_tools[] = {"classify_request", "thread_context", NULL};

const agent_ops_t agent_triage_ops = {
    .name = "triage",
    .description = "Classifies the request (cost, latency, model selection, caching, usage report, data upload "
                   "help, general), judges whether workload data is needed and picks the next agents.",
    .tools = triage_tools,
    .run = triage_run,
};
