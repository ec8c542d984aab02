/* core/metrics.h — process metrics in Prometheus text format (SPEC §1 /metrics).
 *
 * Counters and histograms live in memory for the process lifetime.  Request
 * metrics are recorded on the loop thread; the generic counters/gauges use
 * atomics so run threads and workers may bump them too.  metrics_render() is
 * called on the loop thread.
 */
#ifndef AGD_CORE_METRICS_H
#define AGD_CORE_METRICS_H

#include <stddef.h>

#include "util/buf.h"

/* Histogram bucket upper bounds in seconds for request latency. */
#define METRICS_LATENCY_BUCKETS 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10

/* One finished HTTP request.  `route` is the route pattern ("/api/threads/{id}")
 * or "unmatched"; the string must have static storage or outlive the process
 * (route tables do).  Bounded: routes × statuses are finite. */
void metrics_observe_request(const char *method, const char *route, int status, double seconds);

/* Named counters and gauges, e.g. metrics_add("agentd_ratelimit_rejections_total", NULL, 1)
 * or metrics_add("agentd_runs_total", "state=\"completed\"", 1).  name and labels
 * must be string literals (static storage).  At most 128 distinct series. Any thread. */
void metrics_add(const char *name, const char *labels, long long delta);
void metrics_set(const char *name, const char *labels, long long value);
/* HELP text for a metric name (static storage); optional. */
void metrics_describe(const char *name, const char *type, const char *help);

/* Gauges whose value is read at render time (open connections by kind…).
 * fn runs on the loop thread during metrics_render(). */
typedef double (*metrics_gauge_fn)(void *arg);
void metrics_gauge_fn_register(const char *name, const char *labels, const char *help, metrics_gauge_fn fn, void *arg);

/* Bucket upper bounds in seconds for the latency of internal steps that take
 * microseconds to milliseconds (an event from emit to its sockets). */
#define METRICS_FINE_BUCKETS \
  0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.1, 1

/* A histogram with METRICS_FINE_BUCKETS, fed from any thread without a lock. */
typedef struct metrics_hist metrics_hist_t;

/* The histogram `name` (string literal; help too), registered on first call.
 * NULL when the table (16) is full (counted as a dropped series).  Any thread;
 * callers look it up once and keep the handle: it lives for the process. */
metrics_hist_t *metrics_hist(const char *name, const char *help);

/* The same with the caller's bucket bounds (seconds, ascending, static
 * storage, at most 13): for steps that take seconds (a model call).  The
 * bounds of the first registration of a name hold. */
metrics_hist_t *metrics_hist_bounds(const char *name, const char *help, const double *bounds, size_t n);

/* Record one observation of `seconds` (negative counts as 0).  NULL h is ignored.
 * Any thread: a few relaxed atomic adds. */
void metrics_hist_observe(metrics_hist_t *h, double seconds);

/* Append the whole exposition (text format 0.0.4) to b. 0 or AGD_ETOO_LARGE. */
int metrics_render(buf_t *b);

/* Forget everything (tests); handles from metrics_hist() are stale after it. */
void metrics_reset(void);

#endif
