/* tools/builtin_workloads.c — the built-in tools over the caller's workload
 * data (SPEC §7, §8; DESIGN.md "The built-in agents"):
 *   workload_summary      {from?,to?}                          → workloads_summary
 *   cost_breakdown        {from?,to?,top?}                     → workloads_cost_breakdown
 *   latency_analysis      {from?,to?,top?}                     → workloads_latency_analysis
 *   cache_opportunities   {from?,to?,top?,min_repeat_rate?}    → workloads_cache_opportunities
 *   model_recommendations {from?,to?,max_prompt_tokens?,max_completion_tokens?}
 *                                                              → workloads_model_recommendations
 *   batch_opportunities   {from?,to?,discount?,features?}      → workloads_batch_opportunities
 *   anomalies             {from?,to?,threshold?}               → workloads_anomalies
 *   price_lookup          {model, provider?}   → workloads_price
 * Each reads only ctx->user_id's records through ctx->store.  The result
 * shapes are those of workloads.h (docs/agents.md, "Tools").
 *
 * Thread: the caller's (a run thread or a worker); they block on the store, so
 * never on the loop thread.  Reentrant.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/tool.h"
#include "util/err.h"
#include "workloads/workloads.h"

/* The window arguments every tool takes (inclusive): epoch seconds or an ISO
 * 8601 time (workloads_parse_time). */
#define WINDOW_PROPS                                                                                               \
  "\"from\":{\"type\":[\"number\",\"string\"],\"maxLength\":64,\"description\":\"start of the window: epoch "      \
  "seconds or ISO 8601 (default: the first record)\"},"                                                            \
  "\"to\":{\"type\":[\"number\",\"string\"],\"maxLength\":64,\"description\":\"end of the window, inclusive: "     \
  "epoch seconds or ISO 8601 (default: the last record)\"}"
#define TOP_PROP "\"top\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100,\"description\":\"rows listed\"}"
#define SCHEMA(extra) "{\"type\":\"object\",\"properties\":{" WINDOW_PROPS extra "},\"additionalProperties\":false}"

static json_t *error_obj(const char *msg) { return json_pack("{s:s}", "error", msg); }

/* Checks shared by every analysis: a store, a caller, a sane window.  0 or
 * AGD_E* with *result set to {"error"}. */
static int check_call(const tool_call_ctx_t *ctx, const json_t *args, workload_window_t *w, json_t **result) {
  if (!ctx || !ctx->store || !ctx->user_id || !ctx->user_id[0]) {
    *result = error_obj("the workload store is not available");
    return AGD_EUNAVAILABLE;
  }
  const char *keys[2] = {"from", "to"};
  double *vals[2] = {&w->from, &w->to};
  for (int i = 0; i < 2; i++) {
    const json_t *v = json_object_get(args, keys[i]);
    *vals[i] = 0;
    if (!v) continue;
    if (json_is_number(v)) *vals[i] = json_number_value(v);
    else if (!json_is_string(v) || workloads_parse_time(json_string_value(v), vals[i]) != 0) *vals[i] = NAN;
    if (!isfinite(*vals[i]) || *vals[i] < 0) {
      char msg[160];
      snprintf(msg, sizeof(msg), "%s must be epoch seconds or an ISO 8601 time", keys[i]);
      *result = error_obj(msg);
      return AGD_EVALIDATION;
    }
  }
  if (w->from > 0 && w->to > 0 && w->from > w->to) {
    *result = error_obj("from must not be after to");
    return AGD_EVALIDATION;
  }
  return 0;
}

/* The analysis failed: keep what it said, else say which error. */
static int analysis_failed(int rc, const char *what, json_t **result) {
  if (!*result || !json_object_get(*result, "error")) {
    json_decref(*result);
    char msg[160];
    snprintf(msg, sizeof(msg), "%s failed (%s)", what, agd_err_code(rc));
    *result = error_obj(msg);
  }
  return rc;
}

typedef int (*analysis_fn)(store_t *s, const char *user_id, const json_t *args, json_t **out);

static int run_analysis(const tool_call_ctx_t *ctx, const json_t *args, json_t **result, analysis_fn fn,
                        const char *what) {
  workload_window_t w;
  int rc = check_call(ctx, args, &w, result);
  if (rc != 0) return rc;
  json_t *out = NULL;
  rc = fn((store_t *)ctx->store, ctx->user_id, args, &out);
  if (rc != 0) {
    *result = out;
    return analysis_failed(rc, what, result);
  }
  *result = json_is_object(out) ? out : (json_decref(out), json_object());
  return 0;
}

/* ---- workload_summary ---- */

static int summary_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  workload_window_t w;
  int rc = check_call(ctx, args, &w, result);
  if (rc != 0) return rc;
  json_t *out = NULL;
  rc = workloads_summary((store_t *)ctx->store, ctx->user_id, &w, &out);
  if (rc != 0) {
    *result = out;
    return analysis_failed(rc, "the summary", result);
  }
  *result = json_is_object(out) ? out : (json_decref(out), json_object());
  return 0;
}

static const tool_t tool_summary = {
    .name = "workload_summary",
    .description = "Totals of the caller's LLM call records in a window: calls, tokens, cost, latency "
                   "p50/p95/p99 and error rate, by model, provider and feature, with a daily series "
                   "(the same numbers as GET /api/workloads/summary).",
    .input_schema_json = SCHEMA(""),
    .source = "builtin",
    .call = summary_call,
};

/* ---- the analyses ---- */

#define ANALYSIS_TOOL(var, tname, fn, what, props, desc)                                                                  \
  static int var##_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {   \
    return run_analysis(ctx, args, result, fn, what);                                                              \
  }                                                                                                                \
  static const tool_t var = {                                                                                      \
      .name = tname,                                                                                               \
      .description = desc,                                                                                         \
      .input_schema_json = SCHEMA(props),                                                                          \
      .source = "builtin",                                                                                         \
      .call = var##_call,                                                                                          \
  };

ANALYSIS_TOOL(tool_cost_breakdown, "cost_breakdown", workloads_cost_breakdown, "the cost breakdown", "," TOP_PROP,
              "Where the caller's LLM spend goes: cost by model, provider and feature with shares, the top cost "
              "drivers, and the spend projected to a month.")
ANALYSIS_TOOL(tool_latency_analysis, "latency_analysis", workloads_latency_analysis, "the latency analysis",
              "," TOP_PROP,
              "Latency of the caller's LLM calls: p50/p95/p99 overall and by model and feature, the slowest "
              "groups and error rates.")
ANALYSIS_TOOL(tool_cache_opportunities, "cache_opportunities", workloads_cache_opportunities,
              "the cache analysis",
              "," TOP_PROP ",\"min_repeat_rate\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1,"
              "\"description\":\"recommend caching from this share of repeated calls (default 0.05)\"}",
              "Repeated prompts (same prompt_hash) worth caching: repeated calls, their share, and the estimated "
              "monthly saving of a response cache.")
ANALYSIS_TOOL(tool_model_recommendations, "model_recommendations", workloads_model_recommendations,
              "the model analysis",
              ",\"max_prompt_tokens\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"a call is short "
              "up to this many prompt tokens (default 500)\"},\"max_completion_tokens\":{\"type\":\"integer\","
              "\"minimum\":0,\"description\":\"... and completion tokens (default 200)\"}",
              "Calls that could move to a cheaper model (short or simple calls on premium models), with the "
              "suggested model and the estimated monthly saving.")
ANALYSIS_TOOL(tool_batch_opportunities, "batch_opportunities", workloads_batch_opportunities,
              "the batching analysis",
              ",\"discount\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"description\":\"the batch "
              "API's discount (default: the price table's)\"},\"features\":{\"type\":\"array\",\"items\":"
              "{\"type\":\"string\",\"maxLength\":64},\"description\":\"features known to tolerate delay\"}",
              "Traffic that tolerates delay and could go through a batch API at a discount, with the estimated "
              "monthly saving.")
ANALYSIS_TOOL(tool_anomalies, "anomalies", workloads_anomalies, "the anomaly analysis",
              ",\"threshold\":{\"type\":\"number\",\"minimum\":0.5,\"maximum\":100,\"description\":"
              "\"robust z-score above which a day or hour is flagged (default 3.5)\"}",
              "Unusual days in the caller's LLM usage: cost, call, latency or error-rate spikes against the "
              "usual level.")

/* ---- price_lookup ---- */

static int price_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  const char *model = json_string_value(json_object_get(args, "model"));
  const char *provider = json_string_value(json_object_get(args, "provider"));
  double in = 0, out = 0;
  int rc = workloads_price(provider, model, &in, &out);
  if (rc != 0) {
    char msg[300];
    snprintf(msg, sizeof(msg), "no price known for model '%.100s'%s%.60s%s", model, provider ? " of provider '" : "",
             provider ? provider : "", provider ? "'" : "");
    *result = error_obj(msg);
    return rc == AGD_ENOT_FOUND ? rc : AGD_ENOT_FOUND;
  }
  json_t *r = json_pack("{s:s,s:f,s:f}", "model", model, "input_per_million", in, "output_per_million", out);
  /* The table row says which provider and tier the price is for. */
  json_t *table = workloads_price_table();
  const json_t *row;
  size_t i;
  json_array_foreach(json_object_get(table, "prices"), i, row) {
    const char *m = json_string_value(json_object_get(row, "model"));
    const char *p = json_string_value(json_object_get(row, "provider"));
    if (!m || strcmp(m, model) != 0) continue;
    if (provider && (!p || strcmp(p, provider) != 0)) continue;
    if (p) json_object_set_new(r, "provider", json_string(p));
    const json_t *tier = json_object_get(row, "tier");
    if (json_is_string(tier)) json_object_set(r, "tier", (json_t *)tier);
    break;
  }
  if (!json_object_get(r, "provider"))
    json_object_set_new(r, "provider", provider ? json_string(provider) : json_null());
  json_decref(table);
  *result = r;
  return 0;
}

static const tool_t tool_price_lookup = {
    .name = "price_lookup",
    .description = "The price per million input and output tokens of a model (GET /api/models/prices), "
                   "optionally for one provider.",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{\"model\":{\"type\":\"string\",\"minLength\":1,"
                         "\"maxLength\":64,\"description\":\"e.g. gpt-4o-mini\"},\"provider\":{\"type\":\"string\","
                         "\"minLength\":1,\"maxLength\":32,\"description\":\"e.g. openai\"}},"
                         "\"required\":[\"model\"],\"additionalProperties\":false}",
    .source = "builtin",
    .call = price_call,
};

/* Called from tools_register_builtin (builtin_core.c). */
void tools__register_workloads(void);
void tools__register_workloads(void) {
  tool_register(&tool_summary);
  tool_register(&tool_cost_breakdown);
  tool_register(&tool_latency_analysis);
  tool_register(&tool_cache_opportunities);
  tool_register(&tool_model_recommendations);
  tool_register(&tool_batch_opportunities);
  tool_register(&tool_anomalies);
  tool_register(&tool_price_lookup);
}
