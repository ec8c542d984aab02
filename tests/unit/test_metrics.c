/* Unit tests for core/metrics.c: exact exposition lines (text format 0.0.4),
 * cumulative buckets, label escaping, table caps, named series from threads. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "util/err.h"

static void setup(void) { metrics_reset(); }
TestSuite(metrics, .init = setup);

/* Render into a malloc'd NUL-terminated string. */
static char *render(void) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(metrics_render(&b), 0);
  cr_assert_eq(buf_append(&b, "", 1), 0);
  size_t n;
  return buf_steal(&b, &n);
}

static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
  return 0;
}
#define LINE(text, l) cr_assert(has_line(text, l), "missing line: %s\n---\n%s", l, text)
#define NO_LINE(text, l) cr_assert(!has_line(text, l), "unexpected line: %s", l)

static size_t count_prefix(const char *text, const char *prefix) {
  size_t c = 0, n = strlen(prefix);
  for (const char *p = text; p && *p;) {
    if (strncmp(p, prefix, n) == 0) c++;
    p = strchr(p, '\n');
    if (p) p++;
  }
  return c;
}

Test(metrics, request_counter_and_histogram) {
  metrics_observe_request("GET", "/api/threads/{id}", 200, 0.003);
  metrics_observe_request("GET", "/api/threads/{id}", 200, 0.02);
  metrics_observe_request("GET", "/api/threads/{id}", 404, 0.0001);
  metrics_observe_request("POST", "/api/threads", 201, 12.0);
  char *t = render();
  LINE(t, "# TYPE agentd_http_requests_total counter");
  LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"/api/threads/{id}\",status=\"200\"} 2");
  LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"/api/threads/{id}\",status=\"404\"} 1");
  LINE(t, "agentd_http_requests_total{method=\"POST\",route=\"/api/threads\",status=\"201\"} 1");
  LINE(t, "# TYPE agentd_http_request_duration_seconds histogram");
  /* 0.0001, 0.003, 0.02: cumulative */
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.0005\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.001\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.0025\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.005\"} 2");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.01\"} 2");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"0.025\"} 3");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"10\"} 3");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads/{id}\",le=\"+Inf\"} 3");
  LINE(t, "agentd_http_request_duration_seconds_sum{route=\"/api/threads/{id}\"} 0.0231");
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"/api/threads/{id}\"} 3");
  /* 12 s is past the last bound: only +Inf counts it */
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads\",le=\"10\"} 0");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads\",le=\"+Inf\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_sum{route=\"/api/threads\"} 12");
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"/api/threads\"} 1");
  cr_assert_eq(count_prefix(t, "agentd_http_request_duration_seconds_bucket{route=\"/api/threads\","), 15);
  /* process metrics always there */
  cr_assert_eq(count_prefix(t, "agentd_process_resident_memory_bytes "), 1);
  cr_assert_eq(count_prefix(t, "agentd_process_start_time_seconds "), 1);
  const char *rss = strstr(t, "\nagentd_process_resident_memory_bytes ");
  cr_assert_gt(atoll(rss + 38), 0);
  const char *st = strstr(t, "\nagentd_process_start_time_seconds ");
  cr_assert_gt(atof(st + 35), 1.7e9);
  free(t);
}

Test(metrics, buckets_cumulative_and_monotonic) {
  const double obs[] = {0, 0.0005, 0.0006, 0.001, 0.2, 0.3, 0.5, 1, 2, 4.9, 5, 100, -1};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) metrics_observe_request("GET", "/r", 200, obs[i]);
  char *t = render();
  /* le is inclusive; negative counts as 0 */
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.0005\"} 3");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.001\"} 5");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.25\"} 6");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.5\"} 8");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"1\"} 9");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"2.5\"} 10");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"5\"} 12");
  LINE(t, "agentd_http_request_duration_seconds_bucket{route=\"/r\",le=\"+Inf\"} 13");
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"/r\"} 13");
  /* monotonic over all buckets */
  unsigned long long prev = 0;
  const char *p = t;
  size_t n = 0;
  while ((p = strstr(p, "agentd_http_request_duration_seconds_bucket{route=\"/r\"")) != NULL) {
    const char *sp = strchr(p, '}');
    unsigned long long v = strtoull(sp + 2, NULL, 10);
    cr_assert_geq(v, prev);
    prev = v;
    n++;
    p = sp;
  }
  cr_assert_eq(n, 15);
  free(t);
}

Test(metrics, label_escaping_and_method_folding) {
  metrics_observe_request("GET", "/a\"b\\c\nd", 200, 0.001);
  metrics_observe_request("BREW", "/x", 418, 0.001);
  metrics_observe_request(NULL, NULL, 999, 0.001);
  char *t = render();
  LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"/a\\\"b\\\\c\\nd\",status=\"200\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"/a\\\"b\\\\c\\nd\"} 1");
  LINE(t, "agentd_http_requests_total{method=\"other\",route=\"/x\",status=\"418\"} 1");
  LINE(t, "agentd_http_requests_total{method=\"other\",route=\"unmatched\",status=\"0\"} 1");
  free(t);
}

Test(metrics, series_cap_folds_into_other) {
  static char routes[400][16];
  for (int i = 0; i < 400; i++) {
    snprintf(routes[i], sizeof routes[i], "/r%d", i);
    metrics_observe_request("GET", routes[i], 200, 0.001);
  }
  /* an already known series keeps counting by its own route */
  metrics_observe_request("GET", routes[0], 200, 0.001);
  char *t = render();
  size_t series = count_prefix(t, "agentd_http_requests_total{");
  cr_assert_leq(series, 256);
  LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"/r0\",status=\"200\"} 2");
  LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"other\",status=\"200\"} 160");
  NO_LINE(t, "agentd_http_requests_total{method=\"GET\",route=\"/r399\",status=\"200\"} 1");
  /* 63 route histograms + "other" */
  cr_assert_eq(count_prefix(t, "agentd_http_request_duration_seconds_count{"), 64);
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"/r62\"} 1");
  NO_LINE(t, "agentd_http_request_duration_seconds_count{route=\"/r63\"} 1");
  LINE(t, "agentd_http_request_duration_seconds_count{route=\"other\"} 337");
  /* the sum over all series equals the number of requests */
  unsigned long long total = 0;
  for (const char *p = t; (p = strstr(p, "\nagentd_http_requests_total{")) != NULL; p++)
    total += strtoull(strchr(p, '}') + 2, NULL, 10);
  cr_assert_eq(total, 401);
  free(t);
  /* many statuses with unknown routes: still bounded */
  for (int s = 100; s < 600; s++) metrics_observe_request("GET", "/zz", s, 0.001);
  t = render();
  cr_assert_leq(count_prefix(t, "agentd_http_requests_total{"), 257);
  free(t);
}

Test(metrics, named_counters_and_gauges) {
  metrics_describe("agentd_runs_total", "counter", "Agent runs by final state.");
  metrics_add("agentd_runs_total", "state=\"completed\"", 1);
  metrics_add("agentd_ws_connections", NULL, 1);
  metrics_add("agentd_runs_total", "state=\"failed\"", 2);
  metrics_add("agentd_runs_total", "state=\"completed\"", 3);
  metrics_add("agentd_ws_connections", NULL, 1);
  metrics_add("agentd_ws_connections", NULL, -1);
  metrics_set("agentd_db_pool_size", NULL, 8);
  metrics_set("agentd_db_pool_size", NULL, 4);
  metrics_add("agentd_ratelimit_rejections_total", NULL, 5);
  char *t = render();
  LINE(t, "# HELP agentd_runs_total Agent runs by final state.");
  LINE(t, "# TYPE agentd_runs_total counter");
  LINE(t, "agentd_runs_total{state=\"completed\"} 4");
  LINE(t, "agentd_runs_total{state=\"failed\"} 2");
  LINE(t, "# TYPE agentd_ws_connections gauge");
  LINE(t, "agentd_ws_connections 1");
  LINE(t, "# TYPE agentd_db_pool_size gauge");
  LINE(t, "agentd_db_pool_size 4");
  LINE(t, "# TYPE agentd_ratelimit_rejections_total counter");
  LINE(t, "agentd_ratelimit_rejections_total 5");
  /* one family is one contiguous group: TYPE once, samples right after it */
  cr_assert_eq(count_prefix(t, "# TYPE agentd_runs_total "), 1);
  const char *g = strstr(t, "# TYPE agentd_runs_total counter\n");
  const char *after = g + strlen("# TYPE agentd_runs_total counter\n");
  cr_assert(strncmp(after, "agentd_runs_total{state=\"completed\"} 4\nagentd_runs_total{state=\"failed\"} 2\n",
                    strlen("agentd_runs_total{state=\"completed\"} 4\nagentd_runs_total{state=\"failed\"} 2\n")) == 0,
            "%s", t);
  free(t);
}

static double gauge_cb(void *arg) { return *(double *)arg; }

Test(metrics, gauge_callbacks) {
  static double sockets = 3, sse = 0.5;
  metrics_gauge_fn_register("agentd_open_connections", "kind=\"ws\"", "Open connections by kind.", gauge_cb, &sockets);
  metrics_gauge_fn_register("agentd_open_connections", "kind=\"sse\"", "Open connections by kind.", gauge_cb, &sse);
  char *t = render();
  LINE(t, "# HELP agentd_open_connections Open connections by kind.");
  LINE(t, "# TYPE agentd_open_connections gauge");
  LINE(t, "agentd_open_connections{kind=\"ws\"} 3");
  LINE(t, "agentd_open_connections{kind=\"sse\"} 0.5");
  cr_assert_eq(count_prefix(t, "# TYPE agentd_open_connections "), 1);
  free(t);
  sockets = 7; /* read at render time */
  t = render();
  LINE(t, "agentd_open_connections{kind=\"ws\"} 7");
  free(t);
}

Test(metrics, named_cap_counts_drops) {
  static char names[140][32];
  for (int i = 0; i < 140; i++) {
    snprintf(names[i], sizeof names[i], "agentd_x%d_total", i);
    metrics_add(names[i], NULL, 1);
  }
  char *t = render();
  LINE(t, "agentd_x127_total 1");
  NO_LINE(t, "agentd_x128_total 1");
  LINE(t, "agentd_metrics_dropped_series_total 12");
  free(t);
}

Test(metrics, render_respects_buffer_limit) {
  metrics_observe_request("GET", "/r", 200, 0.001);
  buf_t b;
  buf_init(&b, 100);
  cr_assert_eq(metrics_render(&b), AGD_ETOO_LARGE);
  buf_dispose(&b);
}

static void *bump(void *arg) {
  for (int i = 0; i < 10000; i++) {
    metrics_add("agentd_events_sent_total", NULL, 1);
    metrics_add("agentd_runs_total", (i & 1) ? "state=\"a\"" : "state=\"b\"", 1);
  }
  return NULL;
}

Test(metrics, concurrent_adds) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, bump, NULL);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  char *t = render();
  LINE(t, "agentd_events_sent_total 40000");
  LINE(t, "agentd_runs_total{state=\"a\"} 20000");
  LINE(t, "agentd_runs_total{state=\"b\"} 20000");
  free(t);
}

Test(metrics, reset_forgets) {
  metrics_observe_request("GET", "/r", 200, 0.001);
  metrics_add("agentd_a_total", NULL, 1);
  metrics_reset();
  char *t = render();
  cr_assert_eq(count_prefix(t, "agentd_http_requests_total{"), 0);
  cr_assert_eq(count_prefix(t, "agentd_a_total"), 0);
  free(t);
}

Test(metrics, fine_histogram_buckets_sum_count) {
  metrics_hist_t *h = metrics_hist("agentd_step_seconds", "A step.");
  cr_assert_not_null(h);
  cr_assert_eq(metrics_hist("agentd_step_seconds", NULL), h, "the same name is the same histogram");
  metrics_hist_observe(h, 0.00003);  /* ≤ 50 µs */
  metrics_hist_observe(h, 0.0001);   /* on a bound: counted in it (le) */
  metrics_hist_observe(h, 0.0009);   /* ≤ 1 ms */
  metrics_hist_observe(h, 2.0);      /* past the last bound: only +Inf */
  metrics_hist_observe(h, -1.0);     /* a clock step back counts as 0 */
  metrics_hist_observe(NULL, 1.0);   /* ignored */
  char *t = render();
  LINE(t, "# HELP agentd_step_seconds A step.");
  LINE(t, "# TYPE agentd_step_seconds histogram");
  LINE(t, "agentd_step_seconds_bucket{le=\"5e-05\"} 2");
  LINE(t, "agentd_step_seconds_bucket{le=\"0.0001\"} 3");
  LINE(t, "agentd_step_seconds_bucket{le=\"0.00075\"} 3");
  LINE(t, "agentd_step_seconds_bucket{le=\"0.001\"} 4");
  LINE(t, "agentd_step_seconds_bucket{le=\"1\"} 4");
  LINE(t, "agentd_step_seconds_bucket{le=\"+Inf\"} 5");
  LINE(t, "agentd_step_seconds_count 5");
  LINE(t, "agentd_step_seconds_sum 2.00103");
  cr_assert_eq(count_prefix(t, "agentd_step_seconds_bucket{"), 14);
  free(t);
}

Test(metrics, histogram_with_its_own_bounds) {
  static const double bounds[] = {1, 10, 60};
  metrics_hist_t *h = metrics_hist_bounds("agentd_call_seconds", "A call.", bounds, 3);
  cr_assert_not_null(h);
  metrics_hist_observe(h, 0.5);
  metrics_hist_observe(h, 10);
  metrics_hist_observe(h, 30);
  metrics_hist_observe(h, 600);
  char *t = render();
  LINE(t, "agentd_call_seconds_bucket{le=\"1\"} 1");
  LINE(t, "agentd_call_seconds_bucket{le=\"10\"} 2");
  LINE(t, "agentd_call_seconds_bucket{le=\"60\"} 3");
  LINE(t, "agentd_call_seconds_bucket{le=\"+Inf\"} 4");
  LINE(t, "agentd_call_seconds_count 4");
  cr_assert_eq(count_prefix(t, "agentd_call_seconds_bucket{"), 4);
  free(t);
  static const double too_many[14] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  cr_expect_null(metrics_hist_bounds("agentd_x_seconds", NULL, too_many, 14));
  cr_expect_null(metrics_hist_bounds("agentd_x_seconds", NULL, bounds, 0));
}

static void *observe(void *arg) {
  metrics_hist_t *h = arg;
  for (int i = 0; i < 10000; i++) metrics_hist_observe(h, (i & 1) ? 0.0002 : 0.003);
  return NULL;
}

Test(metrics, fine_histogram_from_threads) {
  metrics_hist_t *h = metrics_hist("agentd_t_seconds", NULL);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, observe, h);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  char *t = render();
  NO_LINE(t, "# HELP agentd_t_seconds ");
  LINE(t, "agentd_t_seconds_bucket{le=\"0.00025\"} 20000");
  LINE(t, "agentd_t_seconds_bucket{le=\"0.002\"} 20000");
  LINE(t, "agentd_t_seconds_bucket{le=\"0.005\"} 40000");
  LINE(t, "agentd_t_seconds_count 40000");
  LINE(t, "agentd_t_seconds_sum 64");
  free(t);
}

Test(metrics, fine_histogram_cap_counts_drops) {
  static char names[20][32];
  for (int i = 0; i < 20; i++) {
    snprintf(names[i], sizeof names[i], "agentd_h%d_seconds", i);
    metrics_hist_t *h = metrics_hist(names[i], NULL);
    if (i < 16) cr_assert_not_null(h);
    else cr_assert_null(h);
  }
  char *t = render();
  LINE(t, "agentd_h15_seconds_count 0");
  cr_assert_eq(count_prefix(t, "agentd_h16_seconds"), 0);
  LINE(t, "agentd_metrics_dropped_series_total 4");
  free(t);
}
