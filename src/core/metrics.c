/* core/metrics.c — in-memory metrics rendered as Prometheus text 0.0.4 (SPEC §1 /metrics).
 *
 * Everything lives in fixed-size static tables, so hostile traffic can never
 * grow memory: 256 request series (method, route, status), 64 route latency
 * histograms, 128 named counter/gauge series, 64 render-time gauge callbacks,
 * 16 fine-grained histograms (metrics_hist).
 * Past a cap, request series fold into route="other"; named series past the
 * cap are dropped and counted in agentd_metrics_dropped_series_total.
 *
 * Threads: request tables and the registries sit behind one mutex (the loop
 * thread records requests; the lock is uncontended).  Named series are looked
 * up without the lock (entries are published with a release store of the
 * count and never move), and their values are atomics, so an increment of an
 * existing series is a scan plus one atomic add from any thread.
 */
#include "core/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/hash.h"

#define MET_REQ_SERIES 256   /* (method, route, status) counters */
#define MET_REQ_RESERVED 16  /* of which kept for route="other" */
#define MET_ROUTE_HISTS 64   /* latency histograms, one per route; the last is "other" */
#define MET_NAMED 128        /* metrics_add / metrics_set series */
#define MET_DESCS 128        /* metrics_describe entries */
#define MET_GAUGE_FNS 64     /* metrics_gauge_fn_register entries */
#define MET_FINE_HISTS 16    /* metrics_hist histograms */

static const double BUCKETS[] = {METRICS_LATENCY_BUCKETS};
#define N_BUCKETS (sizeof(BUCKETS) / sizeof(BUCKETS[0]))
static const double FINE_BUCKETS[] = {METRICS_FINE_BUCKETS};
#define N_FINE (sizeof(FINE_BUCKETS) / sizeof(FINE_BUCKETS[0]))

static const char ROUTE_OTHER[] = "other";

/* ---- state ------------------------------------------------------------------- */

typedef struct req_series {
  const char *method; /* static: one of KNOWN_METHODS or "other" */
  const char *route;  /* static storage (caller's promise) */
  uint64_t route_hash;
  int status;
  unsigned long long count;
} req_series_t;

typedef struct route_hist {
  const char *route;
  uint64_t route_hash;
  unsigned long long buckets[N_BUCKETS]; /* per bucket, not cumulative; > last bound only in count */
  unsigned long long count;
  double sum;
} route_hist_t;

typedef struct named {
  const char *name;
  const char *labels; /* "" when none */
  uint64_t hash;
  _Atomic long long value;
} named_t;

typedef struct desc {
  const char *name, *type, *help;
} desc_t;

typedef struct gauge_fn {
  const char *name, *labels, *help;
  metrics_gauge_fn fn;
  void *arg;
} gauge_fn_t;

/* Fine histogram: per-bucket counts, the last slot for observations past the
 * last bound; the count is their sum, so a render is always consistent
 * (+Inf == _count) even while other threads observe. */
struct metrics_hist {
  const char *name, *help;
  const double *bounds; /* FINE_BUCKETS, or metrics_hist_bounds()'s (at most N_FINE) */
  size_t n_bounds;
  _Atomic unsigned long long buckets[N_FINE + 1];
  _Atomic unsigned long long sum_ns;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static req_series_t g_req[MET_REQ_SERIES];
static size_t g_n_req;
static unsigned long long g_req_overflow; /* requests with no series left at all */
static route_hist_t g_hist[MET_ROUTE_HISTS];
static size_t g_n_hist;
static named_t g_named[MET_NAMED];
static _Atomic size_t g_n_named;
static desc_t g_desc[MET_DESCS];
static size_t g_n_desc;
static gauge_fn_t g_gfn[MET_GAUGE_FNS];
static size_t g_n_gfn;
static metrics_hist_t g_fine[MET_FINE_HISTS];
static _Atomic size_t g_n_fine;
static _Atomic unsigned long long g_dropped;
static double g_start_time;

__attribute__((constructor)) static void metrics__start(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  g_start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- helpers ----------------------------------------------------------------- */

static const char *const KNOWN_METHODS[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"};

/* Methods are folded to a fixed set so a client cannot mint label values. */
static const char *method_norm(const char *m) {
  if (m)
    for (size_t i = 0; i < sizeof KNOWN_METHODS / sizeof KNOWN_METHODS[0]; i++)
      if (strcmp(m, KNOWN_METHODS[i]) == 0) return KNOWN_METHODS[i];
  return "other";
}

static bool same(const char *a, const char *b) { return a == b || strcmp(a, b) == 0; }

/* FNV-1a of name, its state XORed with 0xff as a separator, continued over labels. */
static uint64_t named_hash(const char *name, const char *labels) {
  return hash_fnv1a_str(labels, (hash_fnv1a_str(name, 0) ^ 0xff) ^ HASH_FNV1A_OFFSET);
}

/* Shortest decimal that reads back as v (Go-style special values). */
static void fmt_double(double v, char out[40]) {
  if (isnan(v)) { strcpy(out, "NaN"); return; }
  if (isinf(v)) { strcpy(out, v > 0 ? "+Inf" : "-Inf"); return; }
  if (v == floor(v) && fabs(v) < 1e15) { /* integers without an exponent: 10, not 1e+01 */
    snprintf(out, 40, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, 40, "%.*g", prec, v);
    if (strtod(out, NULL) == v) return;
  }
}

/* A label value with \, " and newline escaped (text format 0.0.4). */
static int append_label_value(buf_t *b, const char *s) {
  int rc = 0;
  const char *run = s;
  for (; *s && rc == 0; s++) {
    const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
    if (!esc) continue;
    rc = buf_append(b, run, (size_t)(s - run));
    if (rc == 0) rc = buf_append_str(b, esc);
    run = s + 1;
  }
  if (rc == 0) rc = buf_append_str(b, run);
  return rc;
}

/* HELP text: \ and newline escaped. */
static int append_help(buf_t *b, const char *name, const char *help) {
  int rc = buf_appendf(b, "# HELP %s ", name);
  for (const char *s = help; *s && rc == 0; s++) {
    if (*s == '\\') rc = buf_append_str(b, "\\\\");
    else if (*s == '\n') rc = buf_append_str(b, "\\n");
    else rc = buf_append(b, s, 1);
  }
  if (rc == 0) rc = buf_append_str(b, "\n");
  return rc;
}

/* ---- request metrics --------------------------------------------------------- */

static req_series_t *req_find_or_add(const char *method, const char *route, uint64_t rh, int status, size_t limit) {
  for (size_t i = 0; i < g_n_req; i++) {
    req_series_t *s = &g_req[i];
    if (s->status == status && s->method == method && s->route_hash == rh && same(s->route, route)) return s;
  }
  if (g_n_req >= limit) return NULL;
  req_series_t *s = &g_req[g_n_req++];
  *s = (req_series_t){method, route, rh, status, 0};
  return s;
}

static route_hist_t *hist_find_or_add(const char *route, uint64_t rh) {
  for (size_t i = 0; i < g_n_hist; i++)
    if (g_hist[i].route_hash == rh && same(g_hist[i].route, route)) return &g_hist[i];
  /* The last slot is kept for "other". */
  if (g_n_hist >= MET_ROUTE_HISTS - 1 && !same(route, ROUTE_OTHER))
    return hist_find_or_add(ROUTE_OTHER, hash_fnv1a_str(ROUTE_OTHER, 0));
  if (g_n_hist >= MET_ROUTE_HISTS) return NULL; /* cannot happen: "other" always fits */
  route_hist_t *h = &g_hist[g_n_hist++];
  memset(h, 0, sizeof *h);
  h->route = route;
  h->route_hash = rh;
  return h;
}

void metrics_observe_request(const char *method, const char *route, int status, double seconds) {
  const char *m = method_norm(method);
  if (!route) route = "unmatched";
  if (status < 100 || status > 599) status = 0;
  if (!(seconds >= 0) || isinf(seconds)) seconds = 0; /* NaN, negative, inf */

  uint64_t rh = hash_fnv1a_str(route, 0);

  pthread_mutex_lock(&g_mu);
  req_series_t *s = req_find_or_add(m, route, rh, status, MET_REQ_SERIES - MET_REQ_RESERVED);
  if (!s) s = req_find_or_add(m, ROUTE_OTHER, hash_fnv1a_str(ROUTE_OTHER, 0), status, MET_REQ_SERIES);
  if (s) s->count++;
  else g_req_overflow++;

  route_hist_t *h = hist_find_or_add(route, rh);
  if (h) {
    for (size_t i = 0; i < N_BUCKETS; i++)
      if (seconds <= BUCKETS[i]) { h->buckets[i]++; break; }
    h->count++;
    h->sum += seconds;
  }
  pthread_mutex_unlock(&g_mu);
}

/* ---- named counters and gauges ----------------------------------------------- */

static named_t *named_lookup(const char *name, const char *labels, uint64_t hash) {
  size_t n = atomic_load_explicit(&g_n_named, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    named_t *e = &g_named[i];
    if (e->hash == hash && same(e->name, name) && same(e->labels, labels)) return e;
  }
  return NULL;
}

static named_t *named_get(const char *name, const char *labels) {
  if (!labels) labels = "";
  uint64_t hash = named_hash(name, labels);
  named_t *e = named_lookup(name, labels, hash);
  if (e) return e;
  pthread_mutex_lock(&g_mu);
  e = named_lookup(name, labels, hash); /* another thread may have added it */
  if (!e) {
    size_t n = atomic_load_explicit(&g_n_named, memory_order_relaxed);
    if (n < MET_NAMED) {
      e = &g_named[n];
      e->name = name;
      e->labels = labels;
      e->hash = hash;
      atomic_store_explicit(&e->value, 0, memory_order_relaxed);
      atomic_store_explicit(&g_n_named, n + 1, memory_order_release);
    } else {
      atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return e;
}

void metrics_add(const char *name, const char *labels, long long delta) {
  if (!name) return;
  named_t *e = named_get(name, labels);
  if (e) atomic_fetch_add_explicit(&e->value, delta, memory_order_relaxed);
}

void metrics_set(const char *name, const char *labels, long long value) {
  if (!name) return;
  named_t *e = named_get(name, labels);
  if (e) atomic_store_explicit(&e->value, value, memory_order_relaxed);
}

void metrics_describe(const char *name, const char *type, const char *help) {
  if (!name) return;
  pthread_mutex_lock(&g_mu);
  size_t i = 0;
  while (i < g_n_desc && !same(g_desc[i].name, name)) i++;
  if (i < g_n_desc || g_n_desc < MET_DESCS) {
    if (i == g_n_desc) g_n_desc++;
    g_desc[i] = (desc_t){name, type, help};
  }
  pthread_mutex_unlock(&g_mu);
}

void metrics_gauge_fn_register(const char *name, const char *labels, const char *help, metrics_gauge_fn fn,
                               void *arg) {
  if (!name || !fn) return;
  if (!labels) labels = "";
  pthread_mutex_lock(&g_mu);
  size_t i = 0;
  while (i < g_n_gfn && !(same(g_gfn[i].name, name) && same(g_gfn[i].labels, labels))) i++;
  if (i < g_n_gfn || g_n_gfn < MET_GAUGE_FNS) {
    if (i == g_n_gfn) g_n_gfn++;
    g_gfn[i] = (gauge_fn_t){name, labels, help, fn, arg};
  } else {
    atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&g_mu);
}

/* ---- fine histograms --------------------------------------------------------- */

static metrics_hist_t *fine_lookup(const char *name) {
  size_t n = atomic_load_explicit(&g_n_fine, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (same(g_fine[i].name, name)) return &g_fine[i];
  return NULL;
}

metrics_hist_t *metrics_hist_bounds(const char *name, const char *help, const double *bounds, size_t n_bounds) {
  if (!name || !bounds || n_bounds == 0 || n_bounds > N_FINE) return NULL;
  metrics_hist_t *h = fine_lookup(name);
  if (h) return h;
  pthread_mutex_lock(&g_mu);
  h = fine_lookup(name);
  if (!h) {
    size_t n = atomic_load_explicit(&g_n_fine, memory_order_relaxed);
    if (n < MET_FINE_HISTS) {
      h = &g_fine[n];
      h->name = name;
      h->help = help;
      h->bounds = bounds;
      h->n_bounds = n_bounds;
      atomic_store_explicit(&g_n_fine, n + 1, memory_order_release);
    } else {
      atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return h;
}

metrics_hist_t *metrics_hist(const char *name, const char *help) {
  return metrics_hist_bounds(name, help, FINE_BUCKETS, N_FINE);
}

void metrics_hist_observe(metrics_hist_t *h, double seconds) {
  if (!h) return;
  if (!(seconds > 0)) seconds = 0; /* NaN too */
  size_t k = 0;
  while (k < h->n_bounds && seconds > h->bounds[k]) k++;
  atomic_fetch_add_explicit(&h->buckets[k], 1, memory_order_relaxed);
  double ns = seconds * 1e9;
  atomic_fetch_add_explicit(&h->sum_ns, ns < 1e18 ? (unsigned long long)ns : 1000000000000000000ULL,
                            memory_order_relaxed);
}

/* ---- render ------------------------------------------------------------------ */

/* Registries copied under the lock, so gauge callbacks run unlocked (they may
 * call metrics_add()). */
typedef struct snapshot {
  desc_t desc[MET_DESCS];
  size_t n_desc;
  gauge_fn_t gfn[MET_GAUGE_FNS];
  size_t n_gfn;
} snapshot_t;

static const desc_t *desc_of(const snapshot_t *sn, const char *name) {
  for (size_t i = 0; i < sn->n_desc; i++)
    if (same(sn->desc[i].name, name)) return &sn->desc[i];
  return NULL;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int sample(buf_t *b, const char *name, const char *labels, const char *value) {
  if (labels && *labels) return buf_appendf(b, "%s{%s} %s\n", name, labels, value);
  return buf_appendf(b, "%s %s\n", name, value);
}

/* One family of named series and gauge callbacks sharing `name`: HELP, TYPE, samples. */
static int render_family(buf_t *b, const snapshot_t *sn, const char *name, const char *help_fallback,
                         const char *type_fallback) {
  const desc_t *d = desc_of(sn, name);
  const char *help = d && d->help ? d->help : help_fallback;
  const char *type = d && d->type ? d->type : type_fallback;
  int rc = 0;
  if (help) rc = append_help(b, name, help);
  if (rc == 0) rc = buf_appendf(b, "# TYPE %s %s\n", name, type);
  size_t n = atomic_load_explicit(&g_n_named, memory_order_acquire);
  char v[40];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (!same(g_named[i].name, name)) continue;
    snprintf(v, sizeof v, "%lld", atomic_load_explicit(&g_named[i].value, memory_order_relaxed));
    rc = sample(b, name, g_named[i].labels, v);
  }
  for (size_t i = 0; i < sn->n_gfn && rc == 0; i++) {
    if (!same(sn->gfn[i].name, name)) continue;
    fmt_double(sn->gfn[i].fn(sn->gfn[i].arg), v);
    rc = sample(b, name, sn->gfn[i].labels, v);
  }
  return rc;
}

static int render_requests(buf_t *b) {
  int rc = buf_append_str(b,
                          "# HELP agentd_http_requests_total HTTP requests by method, route pattern and status.\n"
                          "# TYPE agentd_http_requests_total counter\n");
  for (size_t i = 0; i < g_n_req && rc == 0; i++) {
    const req_series_t *s = &g_req[i];
    rc = buf_appendf(b, "agentd_http_requests_total{method=\"%s\",route=\"", s->method);
    if (rc == 0) rc = append_label_value(b, s->route);
    if (rc == 0) rc = buf_appendf(b, "\",status=\"%d\"} %llu\n", s->status, s->count);
  }
  if (rc == 0 && g_req_overflow)
    rc = buf_appendf(b, "agentd_http_requests_total{method=\"other\",route=\"other\",status=\"0\"} %llu\n",
                     g_req_overflow);

  if (rc == 0)
    rc = buf_append_str(b,
                        "# HELP agentd_http_request_duration_seconds HTTP request latency by route pattern.\n"
                        "# TYPE agentd_http_request_duration_seconds histogram\n");
  char num[40];
  for (size_t i = 0; i < g_n_hist && rc == 0; i++) {
    const route_hist_t *h = &g_hist[i];
    unsigned long long cum = 0;
    for (size_t k = 0; k <= N_BUCKETS && rc == 0; k++) {
      if (k < N_BUCKETS) {
        cum += h->buckets[k];
        fmt_double(BUCKETS[k], num);
      } else {
        cum = h->count;
        strcpy(num, "+Inf");
      }
      rc = buf_append_str(b, "agentd_http_request_duration_seconds_bucket{route=\"");
      if (rc == 0) rc = append_label_value(b, h->route);
      if (rc == 0) rc = buf_appendf(b, "\",le=\"%s\"} %llu\n", num, cum);
    }
    fmt_double(h->sum, num);
    if (rc == 0) rc = buf_append_str(b, "agentd_http_request_duration_seconds_sum{route=\"");
    if (rc == 0) rc = append_label_value(b, h->route);
    if (rc == 0) rc = buf_appendf(b, "\"} %s\n", num);
    if (rc == 0) rc = buf_append_str(b, "agentd_http_request_duration_seconds_count{route=\"");
    if (rc == 0) rc = append_label_value(b, h->route);
    if (rc == 0) rc = buf_appendf(b, "\"} %llu\n", h->count);
  }
  return rc;
}

static int render_named(buf_t *b, const snapshot_t *sn) {
  int rc = 0;
  size_t n = atomic_load_explicit(&g_n_named, memory_order_acquire);
  /* Families in first-registration order; each rendered once, grouped. */
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *name = g_named[i].name;
    bool seen = false;
    for (size_t j = 0; j < i && !seen; j++) seen = same(g_named[j].name, name);
    if (!seen) {
      const char *help = NULL; /* a gauge callback of the same name may carry the HELP */
      for (size_t j = 0; j < sn->n_gfn && !help; j++)
        if (same(sn->gfn[j].name, name)) help = sn->gfn[j].help;
      rc = render_family(b, sn, name, help, ends_with(name, "_total") ? "counter" : "gauge");
    }
  }
  for (size_t i = 0; i < sn->n_gfn && rc == 0; i++) {
    const char *name = sn->gfn[i].name;
    bool seen = false;
    for (size_t j = 0; j < n && !seen; j++) seen = same(g_named[j].name, name);
    for (size_t j = 0; j < i && !seen; j++) seen = same(sn->gfn[j].name, name);
    if (!seen) rc = render_family(b, sn, name, sn->gfn[i].help, "gauge");
  }
  return rc;
}

static int render_fine(buf_t *b) {
  int rc = 0;
  size_t n = atomic_load_explicit(&g_n_fine, memory_order_acquire);
  char num[40];
  for (size_t i = 0; i < n && rc == 0; i++) {
    metrics_hist_t *h = &g_fine[i];
    if (h->help) rc = append_help(b, h->name, h->help);
    if (rc == 0) rc = buf_appendf(b, "# TYPE %s histogram\n", h->name);
    unsigned long long cum = 0;
    for (size_t k = 0; k <= h->n_bounds && rc == 0; k++) {
      cum += atomic_load_explicit(&h->buckets[k], memory_order_relaxed);
      if (k < h->n_bounds) fmt_double(h->bounds[k], num);
      else strcpy(num, "+Inf");
      rc = buf_appendf(b, "%s_bucket{le=\"%s\"} %llu\n", h->name, num, cum);
    }
    fmt_double((double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9, num);
    if (rc == 0) rc = buf_appendf(b, "%s_sum %s\n%s_count %llu\n", h->name, num, h->name, cum);
  }
  return rc;
}

static int render_process(buf_t *b) {
  long long rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    long long size, resident;
    if (fscanf(f, "%lld %lld", &size, &resident) == 2) rss = resident * (long long)sysconf(_SC_PAGESIZE);
    fclose(f);
  }
  char start[40];
  fmt_double(g_start_time, start);
  return buf_appendf(b,
                     "# HELP agentd_process_resident_memory_bytes Resident memory size in bytes.\n"
                     "# TYPE agentd_process_resident_memory_bytes gauge\n"
                     "agentd_process_resident_memory_bytes %lld\n"
                     "# HELP agentd_process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                     "# TYPE agentd_process_start_time_seconds gauge\n"
                     "agentd_process_start_time_seconds %s\n"
                     "# HELP agentd_metrics_dropped_series_total Metric series refused because a table was full.\n"
                     "# TYPE agentd_metrics_dropped_series_total counter\n"
                     "agentd_metrics_dropped_series_total %llu\n",
                     rss, start, (unsigned long long)atomic_load_explicit(&g_dropped, memory_order_relaxed));
}

int metrics_render(buf_t *b) {
  snapshot_t sn;
  pthread_mutex_lock(&g_mu);
  int rc = render_requests(b);
  memcpy(sn.desc, g_desc, g_n_desc * sizeof g_desc[0]);
  sn.n_desc = g_n_desc;
  memcpy(sn.gfn, g_gfn, g_n_gfn * sizeof g_gfn[0]);
  sn.n_gfn = g_n_gfn;
  pthread_mutex_unlock(&g_mu);
  if (rc == 0) rc = render_named(b, &sn);
  if (rc == 0) rc = render_fine(b);
  if (rc == 0) rc = render_process(b);
  return rc ? AGD_ETOO_LARGE : 0;
}

void metrics_reset(void) {
  pthread_mutex_lock(&g_mu);
  memset(g_req, 0, sizeof g_req);
  g_n_req = 0;
  g_req_overflow = 0;
  memset(g_hist, 0, sizeof g_hist);
  g_n_hist = 0;
  atomic_store_explicit(&g_n_named, 0, memory_order_release);
  for (size_t i = 0; i < MET_NAMED; i++) atomic_store_explicit(&g_named[i].value, 0, memory_order_relaxed);
  memset(g_desc, 0, sizeof g_desc);
  g_n_desc = 0;
  memset(g_gfn, 0, sizeof g_gfn);
  g_n_gfn = 0;
  for (size_t i = 0; i < MET_FINE_HISTS; i++) {
    for (size_t k = 0; k <= N_FINE; k++) atomic_store_explicit(&g_fine[i].buckets[k], 0, memory_order_relaxed);
    atomic_store_explicit(&g_fine[i].sum_ns, 0, memory_order_relaxed);
  }
  atomic_store_explicit(&g_n_fine, 0, memory_order_release);
  atomic_store_explicit(&g_dropped, 0, memory_order_relaxed);
  pthread_mutex_unlock(&g_mu);
}
