/* api/health.c — health, version, metrics and service info (SPEC §1).
 *
 * /health answers from memory (the database state is refreshed every few
 * seconds on a worker), so it costs almost nothing and never blocks the loop.
 * /health/ready and /api/health/deep ping the database on a worker now.
 * Loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/router.h"
#include "build_info.h"
#include "core/metrics.h"
#include "util/err.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define DB_CHECK_INTERVAL_MS 5000

static uv_timer_t db_timer;
static int db_check_running;

/* ---- background database check ---- */

typedef struct db_ping_job {
  uv_work_t work;
  int rc;
  double latency_ms;
  http_req_t *req; /* NULL for the periodic check */
  int deep;
} db_ping_job_t;

static void db_ping_work(uv_work_t *w) {
  db_ping_job_t *j = w->data;
  j->rc = g_app->store ? store_ping(g_app->store, &j->latency_ms) : AGD_EUNAVAILABLE;
}

static void respond_ready(db_ping_job_t *j);

static void db_ping_done(uv_work_t *w, int status) {
  db_ping_job_t *j = w->data;
  if (status != 0) j->rc = AGD_EINTERNAL;
  atomic_store(&g_app->db_ok, j->rc == 0);
  atomic_store(&g_app->db_checked_ms, (long long)uv_now(g_app->loop));
  if (j->req) respond_ready(j);
  else db_check_running = 0;
  free(j);
}

static void db_ping_submit(http_req_t *r) {
  db_ping_job_t *j = calloc(1, sizeof(*j));
  if (!j) abort();
  j->req = r;
  j->work.data = j;
  uv_queue_work(g_app->loop, &j->work, db_ping_work, db_ping_done);
}

static void on_db_timer(uv_timer_t *t) {
  if (db_check_running) return;
  db_check_running = 1;
  db_ping_submit(NULL);
}

void api_health_start(uv_loop_t *loop) {
  uv_timer_init(loop, &db_timer);
  uv_timer_start(&db_timer, on_db_timer, DB_CHECK_INTERVAL_MS, DB_CHECK_INTERVAL_MS);
  uv_unref((uv_handle_t *)&db_timer);
}

void api_health_stop(void) {
  uv_timer_stop(&db_timer);
  uv_close((uv_handle_t *)&db_timer, NULL);
}

/* ---- handlers ---- */

static void h_health(http_req_t *r, route_ctx_t *ctx) {
  int healthy = atomic_load(&g_app->ready) && atomic_load(&g_app->db_ok);
  json_t *o = json_object();
  json_object_set_new(o, "status", json_string(healthy ? "healthy" : "unhealthy"));
  json_object_set_new(o, "service", json_string("agentd"));
  json_object_set_new(o, "version", json_string(AGENTD_VERSION));
  json_object_set_new(o, "uptime_seconds", json_real(time_now() - g_app->started_at));
  json_object_set_new(o, "timestamp", json_real(time_now()));
  if (!healthy)
    json_object_set_new(o, "reason",
                        json_string(!atomic_load(&g_app->ready) ? "starting or stopping" : "database unreachable"));
  http_resp_header(r, "Cache-Control", "no-store");
  http_respond_json(r, healthy ? 200 : 503, o);
}

static void h_live(http_req_t *r, route_ctx_t *ctx) {
  json_t *o = json_pack("{s:s,s:f}", "status", "alive", "timestamp", time_now());
  http_respond_json(r, 200, o);
}

static void respond_ready(db_ping_job_t *j) {
  http_req_t *r = j->req;
  int ok = j->rc == 0;
  json_t *checks = json_object();
  json_t *db = json_object();
  json_object_set_new(db, "status", json_string(ok ? "healthy" : "unhealthy"));
  json_object_set_new(db, "latency_ms", json_real(j->latency_ms));
  json_object_set_new(db, "kind", json_string(g_app->store ? store_kind(g_app->store) : "none"));
  if (!ok) json_object_set_new(db, "error", json_string(agd_err_code(j->rc)));
  json_object_set_new(checks, "database", db);
  const config_t *cfg = g_app->cfg;
  json_object_set_new(checks, "broker", json_pack("{s:s,s:s,s:b}", "status", "healthy", "mode",
                                                  cfg->broker_url ? "redis" : "local", "required", 0));
  json_object_set_new(checks, "llm", json_pack("{s:s,s:s,s:b}", "status", "healthy", "provider", cfg->llm_provider,
                                               "required", 0));
  int ready = ok && atomic_load(&g_app->ready);
  json_t *o = json_object();
  json_object_set_new(o, "status", json_string(ready ? "healthy" : "unhealthy"));
  json_object_set_new(o, "checks", checks);
  json_object_set_new(o, "timestamp", json_real(time_now()));
  http_respond_json(r, ready ? 200 : 503, o);
}

static void h_ready(http_req_t *r, route_ctx_t *ctx) { db_ping_submit(r); }

static void h_version(http_req_t *r, route_ctx_t *ctx) {
  json_t *o = json_pack("{s:s,s:s,s:s}", "version", AGENTD_VERSION, "git_sha", AGENTD_GIT_SHA, "build_time",
                        AGENTD_BUILD_TIME);
  http_respond_json(r, 200, o);
}

static void h_metrics(http_req_t *r, route_ctx_t *ctx) {
  buf_t b;
  buf_init(&b, 0);
  metrics_render(&b);
  http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.base, b.len);
  buf_dispose(&b);
}

/* The base URL clients should use: the configured public URL, else the request's Host. */
static char *base_url(http_req_t *r, int ws) {
  const config_t *cfg = g_app->cfg;
  pool_t *pool = http_req_pool(r);
  int tls = http_req_is_tls(r);
  if (cfg->public_url) {
    const char *u = cfg->public_url;
    if (!ws) return pool_strdup(pool, u);
    if (strncmp(u, "https://", 8) == 0) return pool_sprintf(pool, "wss://%s", u + 8);
    if (strncmp(u, "http://", 7) == 0) return pool_sprintf(pool, "ws://%s", u + 7);
    return pool_strdup(pool, u);
  }
  slice_t host;
  char hostbuf[300];
  if (http_req_header(r, "host", &host) && host.n > 0 && host.n < 256) {
    size_t i;
    for (i = 0; i < host.n; i++)
      if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]", host.p[i])) break;
    if (i == host.n) {
      memcpy(hostbuf, host.p, host.n);
      hostbuf[host.n] = 0;
    } else {
      snprintf(hostbuf, sizeof(hostbuf), "%s:%d", cfg->host, server_port(g_app->srv));
    }
  } else {
    snprintf(hostbuf, sizeof(hostbuf), "%s:%d", cfg->host, server_port(g_app->srv));
  }
  const char *scheme = ws ? (tls ? "wss" : "ws") : (tls ? "https" : "http");
  return pool_sprintf(pool, "%s://%s", scheme, hostbuf);
}

static void h_discovery(http_req_t *r, route_ctx_t *ctx) {
  const char *base = base_url(r, 0), *wsb = base_url(r, 1);
  pool_t *pool = http_req_pool(r);
  json_t *backend = json_pack("{s:s,s:s,s:s}", "url", base, "api_url", pool_sprintf(pool, "%s/api", base), "ws_url",
                              pool_sprintf(pool, "%s/ws", wsb));
  json_t *auth = json_pack("{s:s}", "url", pool_sprintf(pool, "%s/auth", base));
  json_t *o = json_pack("{s:{s:o,s:o},s:b,s:f}", "services", "backend", backend, "auth", auth, "available", 1,
                        "timestamp", time_now());
  http_respond_json(r, 200, o);
}

static void h_config_public(http_req_t *r, route_ctx_t *ctx) {
  const config_t *cfg = g_app->cfg;
  json_t *features = json_pack("{s:b,s:b,s:b,s:b,s:b,s:b}", "websocket", 1, "sse", 1, "agents", 1, "mcp", 1,
                               "workloads", 1, "tls", server_is_tls(g_app->srv));
  json_t *o = json_pack("{s:s,s:s,s:o,s:{s:b,s:b},s:{s:s,s:i}}", "app_name", "agentd", "version", AGENTD_VERSION,
                        "features", features, "auth", "dev_login", cfg->dev_login, "registration", cfg->registration,
                        "llm", "provider", cfg->llm_provider, "max_message_size", (int)cfg->max_ws_frame);
  http_respond_json(r, 200, o);
}

void api_health_register(void) {
  unsigned pub = ROUTE_PUBLIC | ROUTE_NO_RATELIMIT;
  router_add("/health", HTTP_M_GET, h_health, pub);
  router_add("/api/health", HTTP_M_GET, h_health, pub);
  router_add("/health/live", HTTP_M_GET, h_live, pub);
  router_add("/health/ready", HTTP_M_GET, h_ready, pub);
  router_add("/api/health/deep", HTTP_M_GET, h_ready, pub);
  router_add("/version", HTTP_M_GET, h_version, pub);
  router_add("/api/version", HTTP_M_GET, h_version, ROUTE_PUBLIC);
  router_add("/metrics", HTTP_M_GET, h_metrics, pub);
  router_add("/api/discovery/services", HTTP_M_GET, h_discovery, ROUTE_PUBLIC);
  router_add("/api/config/public", HTTP_M_GET, h_config_public, ROUTE_PUBLIC);
}
