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

/* One LLM call record (SPEC §8): the store's row type (store.h store_workload_t):
 *   double timestamp (epoch s); char model[64], provider[32]; long long prompt_tokens,
 *   completion_tokens; double latency_ms, cost_usd (computed from the price table when
 *   the record had none); int is_error (status "error"); char feature[64] ("" when
 *   absent), prompt_hash[80] ("" when absent). */
typedef store_workload_t workload_rec_t;

/* A time window, inclusive on both sides (from <= timestamp <= to); 0 means open on that side. */
typedef struct workload_window {
  double from, to;
} workload_window_t;

/* ---- prices (src/workloads/prices.json, embedded) ---- */

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
/* The same, and with by_day also "by_day": [{"date","model","provider","calls","errors",
 * "total_tokens","cost_usd"}] per UTC day and model (the 8 costliest models of the window,
 * the rest summed as model "(other)", provider null; only non-empty cells; the days of
 * `daily`) and "by_day_truncated" (docs/agents.md). */
int workloads_summary_ex(store_t *s, const char *user_id, const workload_window_t *w, int by_day, json_t **out);
/* Tool analyses (each a JSON object, *out new reference; args is the tool's
 * validated arguments object, may carry from/to and tool-specific knobs). */
int workloads_cost_breakdown(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_latency_analysis(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_cache_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_model_recommendations(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_batch_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out);
int workloads_anomalies(store_t *s, const char *user_id, const json_t *args, json_t **out);

/* ---- records: ingest, delete, synthetic data (worker threads) ---- */

/* Store n records of user_id (batched in transactions of WORKLOADS_TX_RECORDS) and keep
 * the user's in-memory cache up to date.  Records must be valid (workloads_rec_from_json
 * or the ingest parser made them).  *inserted (may be NULL) counts what was stored. */
#define WORKLOADS_TX_RECORDS 5000
int workloads_insert(store_t *s, const char *user_id, const workload_rec_t *recs, size_t n, long *inserted);
/* Delete every record of user_id; *deleted gets how many. */
int workloads_delete(store_t *s, const char *user_id, long *deleted);

/* Validate one JSON record (SPEC §8 fields) into *out, computing cost_usd from the
 * price table when absent.  0, or -1 with a one-line reason in err (cap bytes):
 * "missing field: model", "wrong type: prompt_tokens must be a non-negative integer",
 * "negative number: latency_ms", "bad timestamp: …", "bad status: …",
 * "unknown model for pricing: X; give cost_usd", … */
int workloads_rec_from_json(const json_t *obj, workload_rec_t *out, char *err, size_t cap);

/* Parse a time given as epoch seconds ("1718000000", "1718000000.5") or ISO 8601
 * ("2025-06-01", "2025-06-01T12:00:00Z", "…T12:00:00.250+02:00").  0 or -1. */
int workloads_parse_time(const char *s, double *out);

/* Streaming ingest of one upload (POST /api/workloads): feed the body in pieces of
 * any size, in order, from one thread at a time (a worker job per chunk).  Records
 * are stored as they are parsed (transactions of WORKLOADS_TX_RECORDS); bad ones are
 * collected with their line (JSON array: element index from 1) and reason. */
typedef enum { WORKLOADS_FMT_JSON = 0, WORKLOADS_FMT_JSONL, WORKLOADS_FMT_CSV } workloads_format_t;
#define WORKLOADS_REJECTED_MAX 1000 /* rejected entries listed; rejected_total counts all */
#define WORKLOADS_RECORD_MAX (1u << 20) /* bytes of one record / line */
typedef struct workloads_ingest workloads_ingest_t;
/* user_id and s are copied / borrowed for the ingest's life. */
workloads_ingest_t *workloads_ingest_new(store_t *s, const char *user_id, workloads_format_t fmt);
/* Consume n bytes; last = 1 on the final piece (n may be 0), which flushes everything.
 * 0; a fatal error of the whole upload (not a JSON array, CSV header without the
 * required columns) or of the store makes this and later calls return it (negative
 * AGD_E*) and workloads_ingest_error() tells why; later input is skipped. */
int workloads_ingest_feed(workloads_ingest_t *in, const char *data, size_t n, int last);
/* Deferred mode (on before the first feed): feed only parses; the caller takes the parsed
 * records with workloads_ingest_take() and stores them itself (workloads_insert), e.g. on
 * another thread while the next piece is parsed.  "inserted" of the result stays 0. */
void workloads_ingest_set_deferred(workloads_ingest_t *in, int on);
/* The records parsed since the last take: *recs (malloc'd, room for *cap records; the caller
 * frees it or gives it back) and the count (0 and NULL when none).  Same thread rules as feed. */
size_t workloads_ingest_take(workloads_ingest_t *in, workload_rec_t **recs, size_t *cap);
/* Hand back a taken array (room for cap records, contents ignored) for the next records:
 * reusing memory instead of faulting in fresh pages per piece.  in owns it afterwards. */
void workloads_ingest_give(workloads_ingest_t *in, workload_rec_t *recs, size_t cap);
/* The fatal error's code (0: none) and message (static or owned by in). */
int workloads_ingest_error(const workloads_ingest_t *in, const char **msg);
/* {"inserted","rejected":[{"line","error"}],"rejected_total"} (new reference). */
json_t *workloads_ingest_result(const workloads_ingest_t *in);
void workloads_ingest_free(workloads_ingest_t *in); /* NULL is a no-op */
/* The JSONL parser's helper threads (a fixed few, shared by every ingest, started at
 * first use): stop and join them (shutdown, tests); no ingest may be feeding.  A later
 * feed starts them again.  workloads_ingest_helpers() counts those running. */
void workloads_ingest_shutdown(void);
int workloads_ingest_helpers(void);

/* Generate n (1..WORKLOADS_SYNTHETIC_MAX) realistic records for user_id from seed
 * (same seed, same UTC day → same records): the 30 days before today 00:00 UTC,
 * several providers/models/features, a diurnal and weekly pattern, heavy-tailed
 * latency, repeated prompts, some errors, one traffic spike day.  Stored as
 * workloads_insert does. */
#define WORKLOADS_SYNTHETIC_MAX 1000000
int workloads_synthetic(store_t *s, const char *user_id, long n, unsigned long long seed, long *inserted);

/* ---- the per-user in-memory cache (see docs/agents.md "Tool results") ---- */

/* Bytes the cache may hold across users (default 256 MiB); least recently used users
 * are dropped past it.  Any thread. */
void workloads_cache_set_limit(size_t bytes);
/* Drop everything cached (shutdown, tests).  No other workloads_* call may run. */
void workloads_cache_clear(void);
/* Bytes currently cached (metrics, tests). */
size_t workloads_cache_bytes(void);

#endif
