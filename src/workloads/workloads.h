/* workloads/workloads.h — the caller's LLM call records and the analyses the
 * built-in agents and tools run on them (SPEC §8; DESIGN.md "The built-in
 * agents").
 *
 * Records are stored through store/ (per user; nothing crosses users).  The
 * analyses run on worker or run threads (they read the store and may take tens
 * of milliseconds): never on the loop.  Every function takes the caller's user
 * id and sees only that user's records.  Results are JSON objects whose field
 * names are documented in docs/agents.md.
 */
#ifndef AGD_WORKLOADS_WORKLOADS_H
#define AGD_WORKLOADS_WORKLOADS_H

#include <jansson.h>
#include <stddef.h>

#include "store/store.h"

/* One LLM call record (SPEC §8). */
typedef struct workload_rec {
  double timestamp;            /* epoch seconds */
  char model[64];
  char provider[32];
  long long prompt_tokens;
  long long completion_tokens;
  double latency_ms;
  double cost_usd;             /* computed from the price table when the record had none */
  int is_error;                /* status "error" */
  char feature[64];            /* "" when absent */
  char prompt_hash[80];        /* "" when absent */
} workload_rec_t;

/* A time window; 0 means open on that side. */
typedef struct workload_window {
  double from, to;
} workload_window_t;

/* ---- prices (data/prices.json, embedded) ---- */

/* Price per million tokens for model (and provider, may be NULL).  0 and the prices, or AGD_ENOT_FOUND. */
int workloads_price(const char *provider, const char *model, double *input_per_m, double *output_per_m);
/* {"prices":[{"provider","model","input_per_million","output_per_million","tier"}],"source","as_of"} */
json_t *workloads_price_table(void);

/* ---- analyses (worker/run threads) ---- */

/* Number of the caller's records in the window. */
int workloads_count(store_t *s, const char *user_id, const workload_window_t *w, long *n);
/* The SPEC §8 summary: totals and per model/provider/feature groups (calls, tokens,
 * cost, latency p50/p95/p99, error rate) and a daily series.  *out new reference. */
int workloads_summary(store_t *s, const char *user_id, const workload_window_t *w, json_t **out);
/* Tool analyses (each a JSON object, *out new reference; args is the tool's
 * validated arguments object, may carry from/to and tool-specific knobs). */
int workloads_cost_breakdown(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_latency_analysis(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_cache_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_model_recommendations(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_batch_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_anomalies(store_t *s, const char *user_id, const json_t *args, json_t **out);

#endif
