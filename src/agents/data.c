/* agents/data.c — the data agent (DESIGN.md "The built-in agents"): summarises
 * the caller's LLM call records through the `workload_summary` and
 * `anomalies` tools — totals, the models that cost most, latency percentiles,
 * error rate, unusual days.  Its numbers are the summary's, unchanged, so they
 * equal GET /api/workloads/summary for the same window.  Result fields:
 * docs/agents.md ("data").  Runs on a run thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents_int.h"
#include "util/buf.h"
#include "util/err.h"

#define TOP_MODELS 5
#define TOP_FEATURES 5
#define MAX_ANOMALIES 10

/* Where the summary keeps its numbers (workloads_summary, docs/agents.md "Tools"). */
#define P_TOTALS "totals"
#define P_CALLS "calls"
#define P_COST "cost_usd"
#define P_PROMPT "prompt_tokens"
#define P_COMPLETION "completion_tokens"
#define P_TOKENS "total_tokens|tokens"
#define P_P50 "latency_p50_ms|latency_ms.p50|p50_ms"
#define P_P95 "latency_p95_ms|latency_ms.p95|p95_ms"
#define P_P99 "latency_p99_ms|latency_ms.p99|p99_ms"
#define P_ERROR_RATE "error_rate"

/* The top n groups of a summary's by_<what> list by cost, with their share of the total cost. */
static json_t *top_groups(const json_t *list, const char *key, const char *key2, double total_cost, size_t n) {
  json_t *out = json_array();
  size_t count = json_array_size(list);
  if (count == 0) return out;
  /* selection of the n most expensive (lists are small: one row per model/feature) */
  char *taken = calloc(count, 1);
  if (!taken) abort();
  for (size_t k = 0; k < n; k++) {
    size_t best = count;
    double best_cost = -1;
    for (size_t i = 0; i < count; i++) {
      double c = agent__pick_num(json_array_get(list, i), P_COST);
      if (!taken[i] && c > best_cost) {
        best = i;
        best_cost = c;
      }
    }
    if (best == count) break;
    taken[best] = 1;
    const json_t *g = json_array_get(list, best);
    json_t *row = json_object();
    const json_t *name = json_object_get(g, key);
    json_object_set_new(row, key, json_is_string(name) ? json_incref((json_t *)name) : json_string(""));
    if (key2) {
      const json_t *v = json_object_get(g, key2);
      if (json_is_string(v)) json_object_set(row, key2, (json_t *)v);
    }
    json_t *v;
    if ((v = agent__pick(g, P_CALLS))) json_object_set(row, "calls", v);
    if ((v = agent__pick(g, P_COST))) json_object_set(row, "cost_usd", v);
    if ((v = agent__pick(g, P_TOKENS))) json_object_set(row, "tokens", v);
    if ((v = agent__pick(g, P_P95))) json_object_set(row, "latency_p95_ms", v);
    json_object_set_new(row, "share_of_cost", agent__money(total_cost > 0 ? best_cost / total_cost : 0, 4));
    json_array_append_new(out, row);
  }
  free(taken);
  return out;
}

/* Add "description": one line a reader understands ("2026-01-05: cost_usd spike, 12.30 against a usual 3.10"). */
static void describe_anomaly(json_t *a) {
  if (!json_is_object(a) || json_object_get(a, "description")) return;
  const char *period = json_string_value(json_object_get(a, "period"));
  const char *metric = json_string_value(json_object_get(a, "metric"));
  const char *dir = json_string_value(json_object_get(a, "direction"));
  const char *gran = json_string_value(json_object_get(a, "granularity"));
  if (!period || !metric) return;
  int money = strcmp(metric, "cost_usd") == 0;
  char d[300];
  snprintf(d, sizeof(d), "%.32s %.32s: %.32s %.16s, %s%.*f against a usual %s%.*f (z %.1f)", gran ? gran : "period",
           period, metric, dir ? dir : "change", money ? "$" : "", money ? 2 : 0,
           agent__pick_num(a, "value"), money ? "$" : "", money ? 2 : 0, agent__pick_num(a, "expected"),
           agent__pick_num(a, "z"));
  json_t *js = json_string(d);
  if (js) json_object_set_new(a, "description", js);
}

static json_t *no_data_result(const char *why, json_t *window) {
  return json_pack("{s:b,s:i,s:i,s:f,s:i,s:[],s:[],s:[],s:o,s:s}", "has_data", 0, "records", 0, "calls", 0,
                   "cost_usd", 0.0, "tokens", 0, "top_models", "top_features", "anomalies", "window", window,
                   "summary", why);
}

static int data_run(agent_ctx_t *ctx, json_t **result) {
  int rc = agent_think(ctx, "Reading your LLM call records: totals, the models and features that cost most, "
                            "latency percentiles, error rate and unusual days.");
  if (rc != 0) return rc;
  json_t *window = agent__window_args(ctx);
  json_t *sum = NULL;
  rc = agent__try_tool(ctx, "workload_summary", json_deep_copy(window), &sum);
  if (rc < 0) {
    json_decref(window);
    return rc;
  }
  if (rc == 1) {
    const char *why = json_string_value(json_object_get(sum, "error"));
    char msg[300];
    snprintf(msg, sizeof(msg), "Your call records could not be read (%s).", why ? why : "unknown error");
    json_decref(sum);
    rc = agent_think(ctx, "%s Without them there is nothing to summarise.", msg);
    if (rc != 0) {
      json_decref(window);
      return rc;
    }
    *result = no_data_result(msg, window);
    json_object_set_new(*result, "error", json_string(why ? why : "unknown error"));
    return 0;
  }
  const json_t *totals = agent__pick(sum, P_TOTALS);
  if (!totals) totals = sum;
  double calls = agent__pick_num(totals, P_CALLS);
  if (calls <= 0) {
    json_decref(sum);
    rc = agent_think(ctx, "You have no call records in this window, so there is nothing to summarise yet.");
    if (rc != 0) {
      json_decref(window);
      return rc;
    }
    *result = no_data_result("You have no LLM call records in this window yet.", window);
    return 0;
  }

  json_t *anom = NULL;
  rc = agent__try_tool(ctx, "anomalies", json_deep_copy(window), &anom);
  if (rc < 0) {
    json_decref(sum);
    json_decref(window);
    return rc;
  }
  json_t *anomalies = json_array();
  if (rc == 0) {
    const json_t *list = agent__pick(anom, "anomalies|items");
    size_t i;
    const json_t *a;
    json_array_foreach(list, i, a) {
      if (i >= MAX_ANOMALIES) break;
      json_t *c = json_deep_copy(a);
      describe_anomaly(c);
      json_array_append_new(anomalies, c);
    }
  }

  double cost = agent__pick_num(totals, P_COST);
  double prompt = agent__pick_num(totals, P_PROMPT), completion = agent__pick_num(totals, P_COMPLETION);
  const json_t *jt = agent__pick(totals, P_TOKENS);
  double tokens = json_is_number(jt) ? json_number_value(jt) : prompt + completion;
  json_t *top_models = top_groups(agent__pick(sum, "by_model|models"), "model", "provider", cost, TOP_MODELS);
  json_t *top_features = top_groups(agent__pick(sum, "by_feature|features"), "feature", NULL, cost, TOP_FEATURES);

  *result = json_object();
  json_object_set_new(*result, "has_data", json_true());
  json_object_set_new(*result, "records", json_integer((json_int_t)calls));
  json_object_set(*result, "calls", agent__pick(totals, P_CALLS));
  json_t *jc = agent__pick(totals, P_COST);
  json_object_set_new(*result, "cost_usd", jc ? json_incref(jc) : json_real(0));
  json_object_set_new(*result, "tokens", json_integer((json_int_t)tokens));
  json_object_set_new(*result, "prompt_tokens", json_integer((json_int_t)prompt));
  json_object_set_new(*result, "completion_tokens", json_integer((json_int_t)completion));
  json_t *lat = json_object();
  json_t *v;
  if ((v = agent__pick(totals, P_P50))) json_object_set(lat, "p50", v);
  if ((v = agent__pick(totals, P_P95))) json_object_set(lat, "p95", v);
  if ((v = agent__pick(totals, P_P99))) json_object_set(lat, "p99", v);
  json_object_set_new(*result, "latency_ms", lat);
  v = agent__pick(totals, P_ERROR_RATE);
  json_object_set_new(*result, "error_rate", v ? json_incref(v) : json_real(0));
  json_object_set_new(*result, "top_models", top_models);
  json_object_set_new(*result, "top_features", top_features);
  json_object_set_new(*result, "anomalies", anomalies);
  json_t *period = json_object();
  if ((v = agent__pick(sum, "window.first_timestamp"))) json_object_set(period, "from", v);
  if ((v = agent__pick(sum, "window.last_timestamp"))) json_object_set(period, "to", v);
  if ((v = agent__pick(sum, "window.days"))) json_object_set(period, "days", v);
  json_object_set_new(*result, "period", period);
  json_object_set_new(*result, "window", window);
  json_object_set(*result, "totals", (json_t *)totals); /* the summary's own totals, unchanged */

  const char *top = json_string_value(json_object_get(json_array_get(top_models, 0), "model"));
  double top_share = json_number_value(json_object_get(json_array_get(top_models, 0), "share_of_cost"));
  buf_t b;
  buf_init(&b, 4096);
  buf_appendf(&b,
              "%.0f calls, %.0f tokens, $%.2f in total; latency p50 %.0f ms, p95 %.0f ms, p99 %.0f ms; error rate "
              "%.1f%%.",
              calls, tokens, cost, agent__pick_num(totals, P_P50), agent__pick_num(totals, P_P95),
              agent__pick_num(totals, P_P99), 100.0 * agent__pick_num(totals, P_ERROR_RATE));
  if (top) buf_appendf(&b, " The biggest cost driver is %.64s (%.0f%% of the cost).", top, 100.0 * top_share);
  if (json_array_size(anomalies))
    buf_appendf(&b, " %zu unusual day%s found.", json_array_size(anomalies),
                json_array_size(anomalies) == 1 ? " was" : "s were");
  char *summary = buf_steal(&b, NULL);
  json_t *js = json_string(summary ? summary : "");
  json_object_set_new(*result, "summary", js ? js : json_string(""));
  json_decref(sum);
  json_decref(anom);
  rc = agent_think(ctx, "%s", summary ? summary : "");
  free(summary);
  return rc;
}

static const char *const data_tools[] = {"workload_summary", "anomalies", NULL};

const agent_ops_t agent_data_ops = {
    .name = "data",
    .description = "Summarises your LLM call records: calls, tokens and cost by model, provider and feature, "
                   "p50/p95/p99 latency, error rate and unusual days.",
    .tools = data_tools,
    .run = data_run,
};
