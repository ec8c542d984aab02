/* workloads/analyze.c — the SPEC §8 summary and the tool analyses of workloads.h,
 * computed over the caller's cached columns (cache.c) on worker / run threads.
 *
 * Exact numbers: sums in double, percentiles by nearest rank (the ceil(p/100·n)-th
 * smallest latency) found by selection (O(n) per group, no sort), so one summary over
 * 1,000,000 records is a few linear passes.  Field names: docs/agents.md "Tool results".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/xalloc.h"
#include "workloads/wl_int.h"

#define DAY 86400.0
#define DAILY_MAX 1000   /* days listed in a summary's daily series (the most recent) */
#define BY_DAY_MODELS 8  /* models of their own in by_day (highest cost); the rest is one "(other)" row */
#define TOP_DEFAULT 20
#define TOP_MAX 100

/* ---- selection: the records in a window ---------------------------------------------------- */

typedef struct sel {
  const wl_data_t *d;
  uint32_t *idx;   /* record indices, or NULL: every record */
  size_t n;
  double first, last; /* timestamps of the earliest and latest selected record */
  workload_window_t w;
} sel_t;

static inline size_t at(const sel_t *s, size_t k) { return s->idx ? s->idx[k] : k; }

static void sel_make(sel_t *s, const wl_data_t *d, const workload_window_t *w) {
  memset(s, 0, sizeof *s);
  s->d = d;
  if (w) s->w = *w;
  double from = s->w.from, to = s->w.to > 0 ? s->w.to : INFINITY;
  if (s->w.from > 0 || s->w.to > 0) {
    s->idx = malloc((d->n ? d->n : 1) * sizeof *s->idx);
    if (!s->idx) abort();
    for (size_t i = 0; i < d->n; i++)
      if (d->ts[i] >= from && d->ts[i] <= to) s->idx[s->n++] = (uint32_t)i;
  } else {
    s->n = d->n;
  }
  s->first = INFINITY;
  s->last = -INFINITY;
  for (size_t k = 0; k < s->n; k++) {
    double t = d->ts[at(s, k)];
    if (t < s->first) s->first = t;
    if (t > s->last) s->last = t;
  }
  if (s->n == 0) s->first = s->last = 0;
}

static void sel_dispose(sel_t *s) { free(s->idx); }

/* Days the window covers, for daily averages and 30-day projections: the given from/to,
 * else the first/last selected record; at least 1. */
static double sel_days(const sel_t *s) {
  double a = s->w.from > 0 ? s->w.from : s->first, b = s->w.to > 0 ? s->w.to : s->last;
  double d = (b - a) / DAY;
  return d > 1 ? d : 1;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *window_json(const sel_t *s) {
  return json_pack("{s:o, s:o, s:o, s:o, s:f}", "from", s->w.from > 0 ? json_real(s->w.from) : json_null(), "to",
                   s->w.to > 0 ? json_real(s->w.to) : json_null(), "first_timestamp",
                   s->n ? json_real(s->first) : json_null(), "last_timestamp", s->n ? json_real(s->last) : json_null(),
                   "days", sel_days(s));
}

/* ---- selection of the k-th smallest (nearest-rank percentiles) ---------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Rearrange a[0..n) so a[k] is the value a sort would put there, smaller-or-equal ones
 * before it and greater-or-equal after (introselect: falls back to a sort of the
 * remaining range when partitions go badly, so hostile data cannot make it quadratic). */
static void nth(double *a, size_t n, size_t k) {
  size_t lo = 0, hi = n; /* [lo, hi) holds position k */
  int budget = 64;
  while (hi - lo > 16) {
    if (--budget == 0) {
      qsort(a + lo, hi - lo, sizeof *a, cmp_double);
      return;
    }
    size_t mid = lo + (hi - lo) / 2;
    double x = a[lo], y = a[mid], z = a[hi - 1];
    double pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    /* three-way partition: < pivot | == pivot | > pivot */
    size_t lt = lo, i = lo, gt = hi;
    while (i < gt) {
      if (a[i] < pivot) {
        double t = a[lt];
        a[lt++] = a[i];
        a[i++] = t;
      } else if (a[i] > pivot) {
        double t = a[--gt];
        a[gt] = a[i];
        a[i] = t;
      } else {
        i++;
      }
    }
    if (k < lt) hi = lt;
    else if (k >= gt) lo = gt;
    else return;
  }
  qsort(a + lo, hi - lo, sizeof *a, cmp_double);
}

/* 0-based index of the nearest-rank p-th percentile of n values (n >= 1). */
static size_t rank_idx(int p, size_t n) {
  size_t r = ((size_t)p * n + 99) / 100; /* ceil(p·n/100) */
  return r ? r - 1 : 0;
}

/* ---- grouped aggregates ------------------------------------------------------------------ */

typedef struct agg {
  long calls, errors;
  long long pt, ct;
  double cost, lat_sum;
  double p50, p95, p99; /* NAN when calls == 0 or not computed */
} agg_t;

/* Group ids: by a column of the data (col[record]) or by selection position (bysel[k]). */
typedef struct gsrc {
  const uint32_t *col;
  const uint32_t *bysel;
} gsrc_t;

static inline uint32_t gid(const sel_t *s, gsrc_t g, size_t k) {
  return g.bysel ? g.bysel[k] : g.col ? g.col[at(s, k)] : 0;
}

/* Aggregates for ng groups (ng >= 1); with pct, latency percentiles too.  Group ids
 * >= ng are skipped.  Returns ng agg_t (free()). */
static agg_t *aggregate(const sel_t *s, gsrc_t g, uint32_t ng, int pct) {
  const wl_data_t *d = s->d;
  agg_t *a = xcalloc(ng, sizeof *a);
  for (size_t k = 0; k < s->n; k++) {
    uint32_t id = gid(s, g, k);
    if (id >= ng) continue;
    size_t i = at(s, k);
    agg_t *x = &a[id];
    x->calls++;
    x->errors += d->err[i];
    x->pt += d->pt[i];
    x->ct += d->ct[i];
    x->cost += d->cost[i];
    x->lat_sum += d->lat[i];
  }
  for (uint32_t j = 0; j < ng; j++) a[j].p50 = a[j].p95 = a[j].p99 = NAN;
  if (!pct) return a;
  /* latencies laid out by group (counting sort), then selection within each group */
  size_t *off = xcalloc((size_t)ng + 1, sizeof *off);
  for (uint32_t j = 0; j < ng; j++) off[j + 1] = off[j] + (size_t)a[j].calls;
  size_t total = off[ng];
  double *buf = malloc((total ? total : 1) * sizeof *buf);
  size_t *fill = malloc(((size_t)ng + 1) * sizeof *fill);
  if (!buf || !fill) abort();
  memcpy(fill, off, ((size_t)ng + 1) * sizeof *fill);
  for (size_t k = 0; k < s->n; k++) {
    uint32_t id = gid(s, g, k);
    if (id < ng) buf[fill[id]++] = d->lat[at(s, k)];
  }
  for (uint32_t j = 0; j < ng; j++) {
    size_t n = (size_t)a[j].calls;
    if (!n) continue;
    double *v = buf + off[j];
    size_t k50 = rank_idx(50, n), k95 = rank_idx(95, n), k99 = rank_idx(99, n);
    nth(v, n, k50);
    a[j].p50 = v[k50];
    nth(v + k50, n - k50, k95 - k50);
    a[j].p95 = v[k95];
    nth(v + k95, n - k95, k99 - k95);
    a[j].p99 = v[k99];
  }
  free(fill);
  free(buf);
  free(off);
  return a;
}

/* {"calls","errors","error_rate","prompt_tokens","completion_tokens","total_tokens","cost_usd",
 *  "latency_mean_ms","latency_p50_ms","latency_p95_ms","latency_p99_ms"} added to o. */
static void agg_fill(json_t *o, const agg_t *a) {
  json_object_set_new(o, "calls", json_integer(a->calls));
  json_object_set_new(o, "errors", json_integer(a->errors));
  json_object_set_new(o, "error_rate", json_real(a->calls ? (double)a->errors / (double)a->calls : 0));
  json_object_set_new(o, "prompt_tokens", json_integer(a->pt));
  json_object_set_new(o, "completion_tokens", json_integer(a->ct));
  json_object_set_new(o, "total_tokens", json_integer(a->pt + a->ct));
  json_object_set_new(o, "cost_usd", json_real(a->cost));
  json_object_set_new(o, "latency_mean_ms", a->calls ? json_real(a->lat_sum / (double)a->calls) : json_null());
  json_object_set_new(o, "latency_p50_ms", num_or_null(a->p50));
  json_object_set_new(o, "latency_p95_ms", num_or_null(a->p95));
  json_object_set_new(o, "latency_p99_ms", num_or_null(a->p99));
}

/* Group ids ordered by a key, descending (ties: id order). */
static _Thread_local const double *sort_key;
static int cmp_desc(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  if (sort_key[x] != sort_key[y]) return sort_key[x] > sort_key[y] ? -1 : 1;
  return x < y ? -1 : x > y;
}
/* The ids 0..ng-1 with calls > 0, by key descending; *n gets how many. */
static uint32_t *order_groups(const agg_t *a, uint32_t ng, const double *key, size_t *n) {
  uint32_t *ids = xcalloc(ng, sizeof *ids);
  size_t m = 0;
  for (uint32_t j = 0; j < ng; j++)
    if (a[j].calls) ids[m++] = j;
  sort_key = key;
  qsort(ids, m, sizeof *ids, cmp_desc);
  *n = m;
  return ids;
}

static json_t *feature_name(const wl_data_t *d, uint32_t f) {
  const char *s = wl_dict_str(&d->features, f);
  return s[0] ? json_string(s) : json_null();
}

static const char *pair_model(const wl_data_t *d, uint32_t mp) { return wl_dict_str(&d->models, d->mp_model_of[mp]); }
static const char *pair_provider(const wl_data_t *d, uint32_t mp) {
  return wl_dict_str(&d->providers, d->mp_prov_of[mp]);
}

/* ---- argument helpers ---------------------------------------------------------------------- */

static long arg_int(const json_t *args, const char *name, long def, long lo, long hi) {
  json_t *v = args ? json_object_get(args, name) : NULL;
  if (!json_is_number(v)) return def;
  double x = json_number_value(v);
  if (x < lo) return lo;
  if (x > hi) return hi;
  return (long)x;
}

static double arg_num(const json_t *args, const char *name, double def, double lo, double hi) {
  json_t *v = args ? json_object_get(args, name) : NULL;
  if (!json_is_number(v)) return def;
  double x = json_number_value(v);
  return x < lo ? lo : x > hi ? hi : x;
}

/* Runs fn over the caller's records in the window of args ("from"/"to"). */
typedef struct run_ctx {
  workload_window_t w;
  const json_t *args;
  json_t *out;
  json_t *(*fn)(const sel_t *s, const json_t *args);
} run_ctx_t;

static int run_read(const wl_data_t *d, void *arg) {
  run_ctx_t *c = arg;
  sel_t s;
  sel_make(&s, d, &c->w);
  c->out = c->fn(&s, c->args);
  sel_dispose(&s);
  return 0;
}

static int run_tool(store_t *s, const char *user_id, const json_t *args, json_t **out,
                    json_t *(*fn)(const sel_t *, const json_t *)) {
  if (!out) return ERR(AGD_EINTERNAL);
  *out = NULL;
  run_ctx_t c = {.args = args, .fn = fn};
  char err[128];
  if (wl_args_window(args, &c.w, err, sizeof err) != 0) return AGD_EVALIDATION;
  int rc = wl_cache_read(s, user_id, run_read, &c);
  if (rc == 0) *out = c.out;
  else json_decref(c.out);
  return rc;
}

/* ---- count and summary ----------------------------------------------------------------------- */

typedef struct count_ctx {
  workload_window_t w;
  long n;
} count_ctx_t;

static int count_read(const wl_data_t *d, void *arg) {
  count_ctx_t *c = arg;
  double to = c->w.to > 0 ? c->w.to : INFINITY;
  long n = 0;
  if (c->w.from <= 0 && c->w.to <= 0) n = (long)d->n;
  else
    for (size_t i = 0; i < d->n; i++) n += d->ts[i] >= c->w.from && d->ts[i] <= to;
  c->n = n;
  return 0;
}

int workloads_count(store_t *s, const char *user_id, const workload_window_t *w, long *n) {
  count_ctx_t c = {.n = 0};
  if (w) c.w = *w;
  int rc = wl_cache_read(s, user_id, count_read, &c);
  if (n) *n = rc == 0 ? c.n : 0;
  return rc;
}

static void date_str(double day_start, char out[16]) {
  time_t t = (time_t)day_start;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 16, "%Y-%m-%d", &tm);
}

/* The day index (UTC) of every selected record relative to day0, in bysel order. */
static uint32_t *day_ids(const sel_t *s, double *day0, uint32_t *ndays) {
  uint32_t *ids = malloc((s->n ? s->n : 1) * sizeof *ids);
  if (!ids) abort();
  *day0 = floor(s->first / DAY);
  double last = floor(s->last / DAY);
  double span = s->n ? last - *day0 + 1 : 0;
  *ndays = (uint32_t)span;
  for (size_t k = 0; k < s->n; k++) ids[k] = (uint32_t)(floor(s->d->ts[at(s, k)] / DAY) - *day0);
  return ids;
}

static json_t *group_list_models(const sel_t *s, const agg_t *a, uint32_t ng) {
  json_t *arr = json_array();
  double *key = xcalloc(ng, sizeof *key);
  for (uint32_t j = 0; j < ng; j++) key[j] = a[j].cost;
  size_t m;
  uint32_t *ids = order_groups(a, ng, key, &m);
  for (size_t q = 0; q < m; q++) {
    json_t *o = json_pack("{s:s, s:s}", "model", pair_model(s->d, ids[q]), "provider", pair_provider(s->d, ids[q]));
    agg_fill(o, &a[ids[q]]);
    json_array_append_new(arr, o);
  }
  free(ids);
  free(key);
  return arr;
}

static json_t *group_list_named(const sel_t *s, const agg_t *a, uint32_t ng, int features) {
  json_t *arr = json_array();
  double *key = xcalloc(ng, sizeof *key);
  for (uint32_t j = 0; j < ng; j++) key[j] = a[j].cost;
  size_t m;
  uint32_t *ids = order_groups(a, ng, key, &m);
  for (size_t q = 0; q < m; q++) {
    json_t *o = json_object();
    if (features) json_object_set_new(o, "feature", feature_name(s->d, ids[q]));
    else json_object_set_new(o, "provider", json_string(wl_dict_str(&s->d->providers, ids[q])));
    agg_fill(o, &a[ids[q]]);
    json_array_append_new(arr, o);
  }
  free(ids);
  free(key);
  return arr;
}

/* by_day (GET /api/workloads/summary?group_by=day): cost and calls per UTC day and model,
 * for the same days as `daily` (the last DAILY_MAX).  The BY_DAY_MODELS models of highest
 * cost in the window keep their own rows, the others are summed into one "(other)" row per
 * day, so the answer is at most DAILY_MAX x (BY_DAY_MODELS + 1) rows and the grid a few
 * hundred kilobytes whatever the data.  Only days on which a model had calls are listed. */
static void add_by_day(json_t *o, const sel_t *s, const agg_t *pairs, const uint32_t *days, uint32_t skip,
                       uint32_t nd, double day0) {
  const wl_data_t *d = s->d;
  uint32_t np = d->pairs.n;
  double *key = xcalloc(np ? np : 1, sizeof *key);
  for (uint32_t j = 0; j < np; j++) key[j] = pairs[j].cost;
  size_t m;
  uint32_t *ids = order_groups(pairs, np, key, &m);
  const uint32_t other = BY_DAY_MODELS;
  uint32_t *slot = xcalloc(np ? np : 1, sizeof *slot); /* pair -> column */
  for (uint32_t j = 0; j < np; j++) slot[j] = other;
  size_t own = m < BY_DAY_MODELS ? m : BY_DAY_MODELS;
  for (size_t q = 0; q < own; q++) slot[ids[q]] = (uint32_t)q;
  const uint32_t cols = BY_DAY_MODELS + 1;
  uint32_t *cell = malloc((s->n ? s->n : 1) * sizeof *cell);
  if (!cell) abort();
  for (size_t k = 0; k < s->n; k++)
    cell[k] = days[k] == UINT32_MAX ? UINT32_MAX : days[k] * cols + slot[d->mp[at(s, k)]];
  agg_t *a = nd ? aggregate(s, (gsrc_t){.bysel = cell}, nd * cols, 0) : NULL;
  json_t *arr = json_array();
  for (uint32_t day = 0; day < nd; day++) {
    char ds[16];
    date_str((day0 + skip + day) * DAY, ds);
    for (uint32_t c = 0; c < cols; c++) {
      const agg_t *x = &a[day * cols + c];
      if (!x->calls) continue;
      json_t *row = c < own ? json_pack("{s:s, s:s, s:s}", "date", ds, "model", pair_model(d, ids[c]), "provider",
                                        pair_provider(d, ids[c]))
                            : json_pack("{s:s, s:s, s:n}", "date", ds, "model", "(other)", "provider");
      json_object_set_new(row, "calls", json_integer(x->calls));
      json_object_set_new(row, "errors", json_integer(x->errors));
      json_object_set_new(row, "total_tokens", json_integer(x->pt + x->ct));
      json_object_set_new(row, "cost_usd", json_real(x->cost));
      json_array_append_new(arr, row);
    }
  }
  json_object_set_new(o, "by_day", arr);
  json_object_set_new(o, "by_day_truncated", json_boolean(skip > 0));
  free(a);
  free(cell);
  free(slot);
  free(ids);
  free(key);
}

static json_t *summary_of(const sel_t *s, int by_day) {
  const wl_data_t *d = s->d;
  json_t *o = json_object();
  json_object_set_new(o, "window", window_json(s));
  agg_t *tot = aggregate(s, (gsrc_t){0}, 1, 1);
  json_t *t = json_object();
  agg_fill(t, tot);
  json_object_set_new(o, "totals", t);
  free(tot);
  agg_t *a = aggregate(s, (gsrc_t){.col = d->mp}, d->pairs.n, 1);
  json_object_set_new(o, "by_model", group_list_models(s, a, d->pairs.n));
  agg_t *pairs = a;
  a = aggregate(s, (gsrc_t){.col = d->prov}, d->providers.n, 1);
  json_object_set_new(o, "by_provider", group_list_named(s, a, d->providers.n, 0));
  free(a);
  a = aggregate(s, (gsrc_t){.col = d->feat}, d->features.n, 1);
  json_object_set_new(o, "by_feature", group_list_named(s, a, d->features.n, 1));
  free(a);
  /* daily series (UTC days, zero-filled from the first to the last record) */
  double day0;
  uint32_t ndays;
  uint32_t *days = day_ids(s, &day0, &ndays);
  uint32_t skip = ndays > DAILY_MAX ? ndays - DAILY_MAX : 0;
  json_t *daily = json_array();
  if (ndays) {
    for (size_t k = 0; k < s->n; k++) days[k] = days[k] >= skip ? days[k] - skip : UINT32_MAX;
    uint32_t nd = ndays - skip;
    a = aggregate(s, (gsrc_t){.bysel = days}, nd, 1);
    for (uint32_t j = 0; j < nd; j++) {
      char ds[16];
      date_str((day0 + skip + j) * DAY, ds);
      json_t *row = json_pack("{s:s}", "date", ds);
      agg_fill(row, &a[j]);
      json_array_append_new(daily, row);
    }
    free(a);
  }
  json_object_set_new(o, "daily", daily);
  json_object_set_new(o, "daily_truncated", json_boolean(skip > 0));
  if (by_day) add_by_day(o, s, pairs, days, skip, ndays - skip, day0);
  free(days);
  free(pairs);
  return o;
}

typedef struct sum_ctx {
  workload_window_t w;
  int by_day;
  json_t *out;
} sum_ctx_t;

static int summary_read(const wl_data_t *d, void *arg) {
  sum_ctx_t *c = arg;
  sel_t s;
  sel_make(&s, d, &c->w);
  c->out = summary_of(&s, c->by_day);
  sel_dispose(&s);
  return 0;
}

int workloads_summary(store_t *s, const char *user_id, const workload_window_t *w, json_t **out) {
  return workloads_summary_ex(s, user_id, w, 0, out);
}

int workloads_summary_ex(store_t *s, const char *user_id, const workload_window_t *w, int by_day, json_t **out) {
  if (!out) return ERR(AGD_EINTERNAL);
  *out = NULL;
  sum_ctx_t c = {.by_day = by_day, .out = NULL};
  if (w) c.w = *w;
  int rc = wl_cache_read(s, user_id, summary_read, &c);
  if (rc == 0) *out = c.out;
  else json_decref(c.out);
  return rc;
}

/* ---- cost breakdown ----------------------------------------------------------------------- */

static json_t *share_list(const sel_t *s, const agg_t *a, uint32_t ng, double total, int kind, long top,
                          int *truncated) {
  json_t *arr = json_array();
  double *key = xcalloc(ng, sizeof *key);
  for (uint32_t j = 0; j < ng; j++) key[j] = a[j].cost;
  size_t m;
  uint32_t *ids = order_groups(a, ng, key, &m);
  *truncated = m > (size_t)top;
  for (size_t q = 0; q < m && q < (size_t)top; q++) {
    uint32_t id = ids[q];
    const agg_t *x = &a[id];
    json_t *o = json_object();
    if (kind == 0) {
      const char *model = pair_model(s->d, id);
      const wl_price_t *p = wl_price_find(pair_provider(s->d, id), model);
      json_object_set_new(o, "model", json_string(model));
      json_object_set_new(o, "provider", json_string(pair_provider(s->d, id)));
      json_object_set_new(o, "tier", p ? json_string(wl_tier_name(p->tier)) : json_null());
    } else if (kind == 1) {
      json_object_set_new(o, "provider", json_string(wl_dict_str(&s->d->providers, id)));
    } else {
      json_object_set_new(o, "feature", feature_name(s->d, id));
    }
    json_object_set_new(o, "calls", json_integer(x->calls));
    json_object_set_new(o, "total_tokens", json_integer(x->pt + x->ct));
    json_object_set_new(o, "cost_usd", json_real(x->cost));
    json_object_set_new(o, "share", json_real(total > 0 ? x->cost / total : 0));
    json_object_set_new(o, "avg_cost_per_call_usd", json_real(x->calls ? x->cost / (double)x->calls : 0));
    json_array_append_new(arr, o);
  }
  free(ids);
  free(key);
  return arr;
}

static json_t *cost_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  long top = arg_int(args, "top", TOP_DEFAULT, 1, TOP_MAX);
  agg_t *tot = aggregate(s, (gsrc_t){0}, 1, 0);
  double total = tot->cost, days = sel_days(s);
  json_t *o = json_pack("{s:o, s:I, s:f, s:f, s:f, s:f}", "window", window_json(s), "records", (json_int_t)s->n,
                        "total_cost_usd", total, "days", days, "daily_avg_cost_usd", total / days,
                        "monthly_projection_usd", total / days * 30);
  free(tot);
  int tr;
  json_t *driver = json_null();
  agg_t *a = aggregate(s, (gsrc_t){.col = d->mp}, d->pairs.n, 0);
  json_t *models = share_list(s, a, d->pairs.n, total, 0, top, &tr);
  json_object_set_new(o, "by_model", models);
  json_object_set_new(o, "by_model_truncated", json_boolean(tr));
  if (json_array_size(models)) {
    json_t *m0 = json_array_get(models, 0);
    json_decref(driver);
    driver = json_pack("{s:s, s:O, s:O, s:O, s:O}", "kind", "model", "model", json_object_get(m0, "model"),
                       "provider", json_object_get(m0, "provider"), "cost_usd", json_object_get(m0, "cost_usd"),
                       "share", json_object_get(m0, "share"));
  }
  free(a);
  a = aggregate(s, (gsrc_t){.col = d->prov}, d->providers.n, 0);
  json_object_set_new(o, "by_provider", share_list(s, a, d->providers.n, total, 1, top, &tr));
  free(a);
  a = aggregate(s, (gsrc_t){.col = d->feat}, d->features.n, 0);
  json_object_set_new(o, "by_feature", share_list(s, a, d->features.n, total, 2, top, &tr));
  json_object_set_new(o, "by_feature_truncated", json_boolean(tr));
  free(a);
  json_object_set_new(o, "top_cost_driver", driver);
  return o;
}

int workloads_cost_breakdown(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, cost_of);
}

/* ---- latency analysis --------------------------------------------------------------------- */

static void lat_fill(json_t *o, const agg_t *a) {
  json_object_set_new(o, "calls", json_integer(a->calls));
  json_object_set_new(o, "latency_mean_ms", a->calls ? json_real(a->lat_sum / (double)a->calls) : json_null());
  json_object_set_new(o, "latency_p50_ms", num_or_null(a->p50));
  json_object_set_new(o, "latency_p95_ms", num_or_null(a->p95));
  json_object_set_new(o, "latency_p99_ms", num_or_null(a->p99));
  json_object_set_new(o, "tail_ratio", a->calls && a->p50 > 0 ? json_real(a->p99 / a->p50) : json_null());
  json_object_set_new(o, "error_rate", json_real(a->calls ? (double)a->errors / (double)a->calls : 0));
}

static json_t *latency_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  long top = arg_int(args, "top", 5, 1, TOP_MAX);
  json_t *o = json_pack("{s:o, s:I}", "window", window_json(s), "records", (json_int_t)s->n);
  agg_t *tot = aggregate(s, (gsrc_t){0}, 1, 1);
  json_t *ov = json_object();
  lat_fill(ov, tot);
  json_object_set_new(o, "overall", ov);
  free(tot);
  agg_t *a = aggregate(s, (gsrc_t){.col = d->mp}, d->pairs.n, 1);
  double *key = xcalloc(d->pairs.n, sizeof *key);
  for (uint32_t j = 0; j < d->pairs.n; j++) key[j] = isfinite(a[j].p95) ? a[j].p95 : -1;
  size_t m;
  uint32_t *ids = order_groups(a, d->pairs.n, key, &m);
  json_t *arr = json_array();
  for (size_t q = 0; q < m; q++) {
    json_t *x = json_pack("{s:s, s:s}", "model", pair_model(d, ids[q]), "provider", pair_provider(d, ids[q]));
    lat_fill(x, &a[ids[q]]);
    json_array_append_new(arr, x);
  }
  json_object_set_new(o, "by_model", arr);
  free(ids);
  free(key);
  free(a);
  a = aggregate(s, (gsrc_t){.col = d->feat}, d->features.n, 1);
  key = xcalloc(d->features.n, sizeof *key);
  for (uint32_t j = 0; j < d->features.n; j++) key[j] = isfinite(a[j].p95) ? a[j].p95 : -1;
  ids = order_groups(a, d->features.n, key, &m);
  arr = json_array();
  for (size_t q = 0; q < m && q < (size_t)top; q++) {
    json_t *x = json_pack("{s:o}", "feature", feature_name(d, ids[q]));
    lat_fill(x, &a[ids[q]]);
    json_array_append_new(arr, x);
  }
  json_object_set_new(o, "slowest_features", arr);
  free(ids);
  free(key);
  free(a);
  return o;
}

int workloads_latency_analysis(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, latency_of);
}

/* ---- caching ---------------------------------------------------------------------------- */

typedef struct top_item {
  uint32_t id;
  double key;
} top_item_t;

/* Keep the k largest keys in t (sorted descending, *n in use). */
static void top_push(top_item_t *t, size_t *n, size_t k, uint32_t id, double key) {
  if (*n == k && (k == 0 || key <= t[k - 1].key)) return;
  size_t i = *n < k ? (*n)++ : k - 1;
  while (i > 0 && t[i - 1].key < key) {
    t[i] = t[i - 1];
    i--;
  }
  t[i] = (top_item_t){id, key};
}

static json_t *cache_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  long top = arg_int(args, "top", 10, 1, TOP_MAX);
  double min_rate = arg_num(args, "min_repeat_rate", 0.05, 0, 1);
  uint32_t nh = d->hashes.n;
  uint32_t *count = xcalloc(nh, sizeof *count);
  uint32_t *first = xcalloc(nh, sizeof *first); /* record index of the earliest call */
  double *total = xcalloc(nh, sizeof *total);
  size_t with_hash = 0;
  for (size_t k = 0; k < s->n; k++) {
    size_t i = at(s, k);
    uint32_t h = d->hash[i];
    if (h == WL_NONE) continue;
    with_hash++;
    if (count[h]++ == 0 || d->ts[i] < d->ts[first[h]]) first[h] = (uint32_t)i;
    total[h] += d->cost[i];
  }
  /* saving: every call after the first of its prompt could have been served from cache */
  uint32_t nf = d->features.n;
  long *f_calls = xcalloc(nf, sizeof *f_calls), *f_rep = xcalloc(nf, sizeof *f_rep);
  double *f_save = xcalloc(nf, sizeof *f_save);
  size_t repeated = 0, unique = 0;
  double saving = 0;
  for (size_t k = 0; k < s->n; k++) {
    size_t i = at(s, k);
    uint32_t h = d->hash[i];
    if (h == WL_NONE) continue;
    f_calls[d->feat[i]]++;
    if (first[h] == i) continue;
    repeated++;
    f_rep[d->feat[i]]++;
    f_save[d->feat[i]] += d->cost[i];
  }
  size_t ntop = 0;
  top_item_t *tops = xcalloc((size_t)top, sizeof *tops);
  for (uint32_t h = 0; h < nh; h++) {
    if (!count[h]) continue;
    unique++;
    double sv = total[h] - d->cost[first[h]];
    saving += sv;
    if (count[h] > 1) top_push(tops, &ntop, (size_t)top, h, sv);
  }
  double days = sel_days(s), rate = with_hash ? (double)repeated / (double)with_hash : 0;
  int recommended = repeated > 0 && rate >= min_rate;
  json_t *o = json_pack("{s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:b}", "window", window_json(s), "records",
                        (json_int_t)s->n, "calls_with_prompt_hash", (json_int_t)with_hash, "unique_prompts",
                        (json_int_t)unique, "repeated_calls", (json_int_t)repeated, "repeat_rate", rate,
                        "window_saving_usd", saving, "days", days, "daily_saving_usd", saving / days,
                        "monthly_saving_usd", saving / days * 30, "recommended", recommended);
  if (recommended) {
    char msg[300];
    snprintf(msg, sizeof msg,
             "Cache responses by prompt_hash: %.1f%% of calls with a prompt hash repeat an earlier prompt; serving "
             "them from a cache saves about $%.2f a month.",
             rate * 100, saving / days * 30);
    json_object_set_new(o, "recommendation", json_string(msg));
  } else {
    json_object_set_new(o, "recommendation", json_null());
  }
  json_t *arr = json_array();
  for (size_t q = 0; q < ntop; q++) {
    uint32_t h = tops[q].id;
    json_array_append_new(arr, json_pack("{s:s, s:o, s:I, s:I, s:f}", "prompt_hash", wl_dict_str(&d->hashes, h),
                                         "feature", feature_name(d, d->feat[first[h]]), "calls", (json_int_t)count[h],
                                         "repeat_calls", (json_int_t)(count[h] - 1), "saving_usd", tops[q].key));
  }
  json_object_set_new(o, "top_prompts", arr);
  arr = json_array();
  uint32_t *fids = xcalloc(nf, sizeof *fids);
  size_t m = 0;
  for (uint32_t f = 0; f < nf; f++)
    if (f_rep[f]) fids[m++] = f;
  sort_key = f_save;
  qsort(fids, m, sizeof *fids, cmp_desc);
  for (size_t q = 0; q < m; q++) {
    uint32_t f = fids[q];
    json_array_append_new(arr, json_pack("{s:o, s:I, s:I, s:f, s:f, s:f}", "feature", feature_name(d, f), "calls",
                                         (json_int_t)f_calls[f], "repeated_calls", (json_int_t)f_rep[f], "repeat_rate",
                                         (double)f_rep[f] / (double)f_calls[f], "window_saving_usd", f_save[f],
                                         "monthly_saving_usd", f_save[f] / days * 30));
  }
  json_object_set_new(o, "by_feature", arr);
  free(fids);
  free(tops);
  free(f_calls);
  free(f_rep);
  free(f_save);
  free(count);
  free(first);
  free(total);
  return o;
}

int workloads_cache_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, cache_of);
}

/* ---- cheaper models ------------------------------------------------------------------------- */

static json_t *models_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  long max_pt = arg_int(args, "max_prompt_tokens", 500, 0, 100000000);
  long max_ct = arg_int(args, "max_completion_tokens", 200, 0, 100000000);
  uint32_t np = d->pairs.n, nf = d->features.n;
  const wl_price_t **cur = xcalloc(np, sizeof *cur), **tgt = xcalloc(np, sizeof *tgt);
  for (uint32_t j = 0; j < np; j++) {
    const wl_price_t *p = wl_price_find(pair_provider(d, j), pair_model(d, j));
    if (!p || p->tier != WL_TIER_PREMIUM || !p->downgrade_to[0]) continue;
    const wl_price_t *t = wl_price_by_name(p->downgrade_to);
    if (!t || strcmp(t->provider, p->provider) != 0) continue; /* the SAME provider only */
    cur[j] = p;
    tgt[j] = t;
  }
  long *calls = xcalloc(np, sizeof *calls), *elig = xcalloc(np, sizeof *elig);
  double *now_cost = xcalloc(np, sizeof *now_cost), *new_cost = xcalloc(np, sizeof *new_cost);
  long *pf = xcalloc((size_t)np * (nf ? nf : 1), sizeof *pf); /* eligible calls per (pair, feature) */
  for (size_t k = 0; k < s->n; k++) {
    size_t i = at(s, k);
    uint32_t j = d->mp[i];
    if (!cur[j]) continue;
    calls[j]++;
    if (d->pt[i] > max_pt || d->ct[i] > max_ct) continue;
    elig[j]++;
    now_cost[j] += wl_price_cost(cur[j], d->pt[i], d->ct[i]);
    new_cost[j] += wl_price_cost(tgt[j], d->pt[i], d->ct[i]);
    pf[(size_t)j * nf + d->feat[i]]++;
  }
  double days = sel_days(s), total = 0;
  double *key = xcalloc(np, sizeof *key);
  uint32_t *ids = xcalloc(np, sizeof *ids);
  size_t m = 0;
  for (uint32_t j = 0; j < np; j++)
    if (elig[j]) {
      key[j] = now_cost[j] - new_cost[j];
      ids[m++] = j;
    }
  sort_key = key;
  qsort(ids, m, sizeof *ids, cmp_desc);
  json_t *arr = json_array();
  for (size_t q = 0; q < m; q++) {
    uint32_t j = ids[q];
    double sv = key[j];
    total += sv;
    /* the features with the most eligible calls (up to 3) */
    json_t *feats = json_array();
    int used[3] = {-1, -1, -1};
    for (int r = 0; r < 3; r++) {
      long best = 0;
      int bf = -1;
      for (uint32_t f = 0; f < nf; f++) {
        long c = pf[(size_t)j * nf + f];
        if (c > best && (int)f != used[0] && (int)f != used[1]) {
          best = c;
          bf = (int)f;
        }
      }
      if (bf < 0) break;
      used[r] = bf;
      json_array_append_new(feats, json_pack("{s:o, s:I}", "feature", feature_name(d, (uint32_t)bf), "eligible_calls",
                                             (json_int_t)best));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:o}", "model",
                          pair_model(d, j), "provider", pair_provider(d, j), "tier", wl_tier_name(cur[j]->tier),
                          "suggested_model", tgt[j]->model, "suggested_tier", wl_tier_name(tgt[j]->tier), "calls",
                          (json_int_t)calls[j], "eligible_calls", (json_int_t)elig[j], "eligible_share",
                          (double)elig[j] / (double)calls[j], "current_cost_usd", now_cost[j], "projected_cost_usd",
                          new_cost[j], "window_saving_usd", sv, "monthly_saving_usd", sv / days * 30, "features", feats);
    json_array_append_new(arr, o);
  }
  json_t *o = json_pack("{s:o, s:I, s:{s:I, s:I}, s:o, s:f, s:f, s:f, s:b}", "window", window_json(s), "records",
                        (json_int_t)s->n, "thresholds", "max_prompt_tokens", (json_int_t)max_pt,
                        "max_completion_tokens", (json_int_t)max_ct, "recommendations", arr, "days", days,
                        "window_saving_usd", total, "monthly_saving_usd", total / days * 30, "recommended", m > 0);
  free(key);
  free(ids);
  free(pf);
  free(calls);
  free(elig);
  free(now_cost);
  free(new_cost);
  free(cur);
  free(tgt);
  return o;
}

int workloads_model_recommendations(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, models_of);
}

/* ---- batch API ------------------------------------------------------------------------------ */

static const char *const batch_words[] = {"batch", "nightly", "night", "report",  "etl",    "backfill",
                                          "offline", "digest", "export", "cron",   "scheduled", "bulk",
                                          "async",  "eval",   "pipeline", "ingest", NULL};

static const char *batch_reason(const char *feature, const json_t *args) {
  json_t *list = args ? json_object_get(args, "features") : NULL;
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) if (json_is_string(v) && strcmp(json_string_value(v), feature) == 0) return "named by the caller as batchable";
  if (!feature[0]) return NULL;
  char low[STORE_WL_FEATURE_MAX];
  size_t n = 0;
  for (; feature[n] && n + 1 < sizeof low; n++) low[n] = (char)((feature[n] >= 'A' && feature[n] <= 'Z') ? feature[n] + 32 : feature[n]);
  low[n] = '\0';
  for (const char *const *w = batch_words; *w; w++)
    if (strstr(low, *w)) return "non-interactive by its name";
  return NULL;
}

static json_t *batch_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  double disc = arg_num(args, "discount", wl_batch_discount(), 0, 1);
  agg_t *a = aggregate(s, (gsrc_t){.col = d->feat}, d->features.n, 0);
  double days = sel_days(s), total = 0;
  char *batchable = xcalloc(d->features.n ? d->features.n : 1, 1);
  json_t *arr = json_array();
  double *key = xcalloc(d->features.n, sizeof *key);
  for (uint32_t f = 0; f < d->features.n; f++) key[f] = a[f].cost;
  size_t m;
  uint32_t *ids = order_groups(a, d->features.n, key, &m);
  for (size_t q = 0; q < m; q++) {
    uint32_t f = ids[q];
    const char *why = batch_reason(wl_dict_str(&d->features, f), args);
    if (!why) continue;
    batchable[f] = 1;
    double sv = a[f].cost * disc;
    total += sv;
    json_array_append_new(arr, json_pack("{s:o, s:I, s:f, s:s, s:f, s:f}", "feature", feature_name(d, f), "calls",
                                         (json_int_t)a[f].calls, "cost_usd", a[f].cost, "reason", why,
                                         "window_saving_usd", sv, "monthly_saving_usd", sv / days * 30));
  }
  free(ids);
  free(key);
  /* off-peak: the hours of day (UTC) with under half the mean hourly volume */
  long hours[24] = {0};
  double hcost[24] = {0};
  for (size_t k = 0; k < s->n; k++) {
    size_t i = at(s, k);
    time_t t = (time_t)d->ts[i];
    struct tm tm;
    gmtime_r(&t, &tm);
    hours[tm.tm_hour]++;
    if (!batchable[d->feat[i]]) hcost[tm.tm_hour] += d->cost[i];
  }
  json_t *oh = json_array();
  long off_calls = 0;
  double off_cost = 0, mean = (double)s->n / 24.0;
  for (int h = 0; h < 24; h++)
    if (s->n && (double)hours[h] < 0.5 * mean) {
      json_array_append_new(oh, json_integer(h));
      off_calls += hours[h];
      off_cost += hcost[h];
    }
  json_t *o = json_pack("{s:o, s:I, s:f, s:o, s:f, s:f, s:f, s:b}", "window", window_json(s), "records",
                        (json_int_t)s->n, "discount", disc, "batchable_features", arr, "days", days,
                        "window_saving_usd", total, "monthly_saving_usd", total / days * 30, "recommended",
                        json_array_size(arr) > 0);
  json_object_set_new(o, "offpeak",
                      json_pack("{s:o, s:I, s:f, s:f, s:f}", "hours_utc", oh, "calls", (json_int_t)off_calls,
                                "share_of_calls", s->n ? (double)off_calls / (double)s->n : 0.0,
                                "interactive_cost_usd", off_cost, "potential_monthly_saving_usd",
                                off_cost * disc / days * 30));
  free(batchable);
  free(a);
  return o;
}

int workloads_batch_opportunities(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, batch_of);
}

/* ---- anomalies ------------------------------------------------------------------------------ */

static double median_of(double *v, size_t n) {
  if (!n) return 0;
  nth(v, n, (n - 1) / 2);
  double lo = v[(n - 1) / 2];
  if (n % 2) return lo;
  nth(v, n, n / 2);
  return (lo + v[n / 2]) / 2;
}

/* Robust scale: median absolute deviation / 0.6745, or, when that is 0, the mean
 * absolute deviation × 1.2533 (both estimate σ for normal data). */
static void robust(const double *x, size_t n, double *med, double *scale) {
  double *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) abort();
  memcpy(v, x, n * sizeof *v);
  *med = median_of(v, n);
  double mean_ad = 0;
  for (size_t i = 0; i < n; i++) {
    v[i] = fabs(x[i] - *med);
    mean_ad += v[i];
  }
  double mad = median_of(v, n);
  *scale = mad > 0 ? mad / 0.6745 : (n ? mean_ad / (double)n * 1.2533 : 0);
  free(v);
}

typedef struct anom {
  json_t *list;
  double threshold;
} anom_t;

static void flag(anom_t *an, const char *gran, const char *period, const char *metric, double value, double med,
                 double scale) {
  if (scale <= 0) return;
  double z = (value - med) / scale;
  if (fabs(z) <= an->threshold) return;
  json_array_append_new(an->list, json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:s}", "granularity", gran, "period",
                                            period, "metric", metric, "value", value, "expected", med, "z", z,
                                            "direction", z > 0 ? "spike" : "drop"));
}

static int cmp_absz(const void *a, const void *b) {
  double x = fabs(json_real_value(json_object_get(*(json_t *const *)a, "z")));
  double y = fabs(json_real_value(json_object_get(*(json_t *const *)b, "z")));
  return x > y ? -1 : x < y;
}

static json_t *anomalies_of(const sel_t *s, const json_t *args) {
  const wl_data_t *d = s->d;
  anom_t an = {json_array(), arg_num(args, "threshold", 3.5, 0.5, 100)};
  double day0;
  uint32_t nd;
  uint32_t *days = day_ids(s, &day0, &nd);
  int daily_ok = nd >= 7 && nd <= 3660;
  json_t *baseline = json_object();
  if (daily_ok) {
    double *calls = xcalloc(nd, sizeof *calls), *cost = xcalloc(nd, sizeof *cost);
    for (size_t k = 0; k < s->n; k++) {
      calls[days[k]] += 1;
      cost[days[k]] += d->cost[at(s, k)];
    }
    /* weekdays and weekends are compared within their own kind when both have ≥ 4 days */
    int *wkend = xcalloc(nd, sizeof *wkend);
    size_t n_we = 0;
    for (uint32_t j = 0; j < nd; j++) {
      time_t t = (time_t)((day0 + j) * DAY);
      struct tm tm;
      gmtime_r(&t, &tm);
      wkend[j] = tm.tm_wday == 0 || tm.tm_wday == 6;
      n_we += (size_t)wkend[j];
    }
    int split = n_we >= 4 && nd - n_we >= 4;
    double *buf = xcalloc(nd, sizeof *buf);
    const char *names[2] = {"calls", "cost_usd"};
    double *series[2] = {calls, cost};
    for (int mtr = 0; mtr < 2; mtr++) {
      for (int kind = 0; kind < (split ? 2 : 1); kind++) {
        size_t m = 0;
        for (uint32_t j = 0; j < nd; j++)
          if (!split || wkend[j] == kind) buf[m++] = series[mtr][j];
        double med, scale;
        robust(buf, m, &med, &scale);
        char key[48];
        snprintf(key, sizeof key, "daily_%s_median%s", names[mtr], split ? (kind ? "_weekend" : "_weekday") : "");
        json_object_set_new(baseline, key, json_real(med));
        for (uint32_t j = 0; j < nd; j++) {
          if (split && wkend[j] != kind) continue;
          char ds[16];
          date_str((day0 + j) * DAY, ds);
          flag(&an, "day", ds, names[mtr], series[mtr][j], med, scale);
        }
      }
    }
    free(buf);
    free(wkend);
    free(calls);
    free(cost);
  }
  /* hours: each hour against the same hour of day on the other days */
  int hourly_ok = daily_ok && nd >= 7 && nd <= 92;
  if (hourly_ok) {
    size_t nh = (size_t)nd * 24;
    double *hc = xcalloc(nh, sizeof *hc);
    for (size_t k = 0; k < s->n; k++) {
      double t = d->ts[at(s, k)];
      size_t h = (size_t)days[k] * 24 + (size_t)((t - floor(t / DAY) * DAY) / 3600.0);
      if (h < nh) hc[h] += 1;
    }
    double *buf = xcalloc(nd, sizeof *buf);
    for (int hod = 0; hod < 24; hod++) {
      for (uint32_t j = 0; j < nd; j++) buf[j] = hc[(size_t)j * 24 + (size_t)hod];
      double med, scale;
      robust(buf, nd, &med, &scale);
      for (uint32_t j = 0; j < nd; j++) {
        /* skip the partial first/last days: their hours outside the data are not drops */
        double hstart = (day0 + j) * DAY + hod * 3600.0;
        if (hstart + 3600 <= s->first || hstart > s->last) continue;
        char ps[32];
        time_t tt = (time_t)hstart;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(ps, sizeof ps, "%Y-%m-%dT%H:00Z", &tm);
        flag(&an, "hour", ps, "calls", hc[(size_t)j * 24 + (size_t)hod], med, scale);
      }
    }
    free(buf);
    free(hc);
  }
  free(days);
  /* strongest first, at most 50 */
  size_t n = json_array_size(an.list);
  json_t **items = xcalloc(n, sizeof *items);
  for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(an.list, i));
  qsort(items, n, sizeof *items, cmp_absz);
  json_t *sorted = json_array();
  for (size_t i = 0; i < n; i++) {
    if (i < 50) json_array_append(sorted, items[i]);
    json_decref(items[i]);
  }
  free(items);
  json_decref(an.list);
  json_t *o = json_pack("{s:o, s:I, s:f, s:s, s:I, s:b, s:b, s:o, s:o, s:I}", "window", window_json(s), "records",
                        (json_int_t)s->n, "threshold", an.threshold, "method",
                        "robust z-score: (value - median) / (1.4826 * MAD) per series", "days", (json_int_t)nd,
                        "daily_checked", daily_ok, "hourly_checked", hourly_ok, "baseline", baseline, "anomalies",
                        sorted, "anomalies_total", (json_int_t)n);
  return o;
}

int workloads_anomalies(store_t *s, const char *user_id, const json_t *args, json_t **out) {
  return run_tool(s, user_id, args, out, anomalies_of);
}
