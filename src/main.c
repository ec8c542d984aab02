/* main.c — agentd's entry point: configuration (SPEC §10), start-up order,
 * signals and graceful shutdown (DESIGN.md "Shutdown").
 *
 * Start: parse config (exit 2 on a bad option) → logging → RLIMIT_NOFILE →
 * data dir and JWT secret → store (migrations) → routes → listen → print the
 * "listening" line.  SIGTERM/SIGINT: stop accepting, close sockets with 1001,
 * finish in-flight answers within the grace period, close the store, exit 0.
 * A second signal exits at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/app.h"
#include "api/ws_api.h"
#include "api/router.h"
#include "api/workloads_api.h"
#include "build_info.h"
#include "core/auth.h"
#include "core/config.h"
#include "core/events.h"
#include "core/metrics.h"
#include "core/runs.h"
#include "mcp/client.h"
#include "net/net.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

static app_t app;
static uv_signal_t sig_term, sig_int;
static int signals_seen;

static void raise_nofile_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
  }
}

static int setup_auth(const config_t *cfg, char *err, size_t cap) {
  char *secret = NULL;
  size_t len = 0;
  if (cfg->jwt_secret) {
    secret = strdup(cfg->jwt_secret);
    len = strlen(secret);
  } else if (auth_secret_load_or_create(cfg->data_dir, &secret, &len, err, cap) != 0) {
    return -1;
  }
  auth_config_t ac;
  auth_config_defaults(&ac);
  ac.secret = (const unsigned char *)secret;
  ac.secret_len = len;
  ac.issuer = cfg->jwt_issuer;
  ac.enforce_issuer = cfg->jwt_issuer_enforced;
  ac.access_ttl = cfg->access_ttl;
  ac.refresh_ttl = cfg->refresh_ttl;
  int rc = auth_init(&ac);
  free(secret);
  if (rc != 0) {
    snprintf(err, cap, "--jwt-secret: must be at least %d bytes", AUTH_SECRET_MIN);
    return -1;
  }
  return 0;
}

static void on_revoked_row(const char *jti, double exp, void *arg) { auth_revoke(jti, exp); }

static void on_shutdown_done(server_t *s, void *arg) {
  /* Every connection is gone: stop the loop's remaining handles. */
  uv_stop(app.loop);
}

/* A second SIGTERM/SIGINT exits at once, whatever phase shutdown is in (the
 * loop may no longer run, so this is a plain async-signal-safe handler). */
static void on_second_signal(int signum) {
  static const char msg[] = "agentd: second signal: exiting now\n";
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  (void)w;
  _exit(1);
}

static void on_signal(uv_signal_t *h, int signum) {
  if (++signals_seen > 1) {
    log_warn("second signal: exiting now");
    _exit(1);
  }
  uv_signal_stop(&sig_term);
  uv_signal_stop(&sig_int);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_second_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  log_info("signal %d: shutting down (grace %.0fs)", signum, app.cfg->shutdown_grace);
  atomic_store(&app.ready, 0);
  mcp_client_stop(); /* calls of MCP tools fail now, so no answer waits for a server; children get SIGTERM */
  server_shutdown(app.srv, app.cfg->shutdown_grace, on_shutdown_done, NULL);
}

static int cmd_migrate(const config_t *cfg) {
  char err[512] = "";
  store_t *st = NULL;
  if (store_open(&st, cfg->database_url, err, sizeof(err)) != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    return 1;
  }
  int version = 0;
  int rc = store_migrate(st, &version, err, sizeof(err));
  store_close(st);
  if (rc != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    return 1;
  }
  printf("database at schema version %d\n", version);
  return 0;
}

static int serve(config_t *cfg) {
  char err[512] = "";
  int rc0;
  app.cfg = cfg;
  app.started_at = time_now();
  g_app = &app;
  /* The provider first: a provider this build cannot run is bad
   * configuration (one line, exit 2), found before anything is created or
   * migrated on disk. */
  /* The openai provider's server comes from the environment (SPEC §10). */
  const char *base_url = getenv("OPENAI_BASE_URL"), *model = getenv("OPENAI_MODEL");
  const llm_options_t llm_opt = {
      .base_url = base_url && *base_url ? base_url : LLM_OPENAI_DEFAULT_BASE_URL,
      .api_key = getenv("OPENAI_API_KEY"),
      .model = model && *model ? model : LLM_OPENAI_DEFAULT_MODEL,
      .timeout_s = cfg->llm_timeout,
      .max_output_bytes = cfg->llm_max_output,
  };
  app.llm = llm_open(cfg->llm_provider, &llm_opt, err, sizeof(err));
  if (!app.llm) {
    fprintf(stderr, "agentd: --llm: %s\n", err);
    return 2;
  }
  if (mcp_client_load(cfg->mcp_config, cfg->mcp_timeout, err, sizeof(err)) != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    llm_close(app.llm);
    return 2;
  }
  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "agentd: --data-dir: cannot create '%s': %s\n", cfg->data_dir, strerror(errno));
    llm_close(app.llm);
    mcp_client_free();
    return 2;
  }
  if (setup_auth(cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    llm_close(app.llm);
    mcp_client_free();
    return 2;
  }
  if (store_open(&app.store, cfg->database_url, err, sizeof(err)) != 0) {
    fprintf(stderr, "agentd: --database: %s\n", err);
    auth_shutdown();
    llm_close(app.llm);
    mcp_client_free();
    return 1;
  }
  store_revoked_load(app.store, time_now(), on_revoked_row, NULL);
  tools_register_builtin();
  if (cfg->mcp_test_tools) tools_register_conformance();
  atomic_store(&app.db_ok, 1);

  app.loop = uv_default_loop();
  events_init(app.loop, app.store);
  rc0 = runs_init(app.loop, app.store, app.llm, cfg);
  if (rc0 != 0) {
    fprintf(stderr, "agentd: --database: cannot recover runs: %s\n", agd_err_code(rc0));
    store_close(app.store);
    auth_shutdown();
    llm_close(app.llm);
    mcp_client_free();
    return 1;
  }
  api_register_routes();
  net_callbacks_t cb = {
      .on_request_head = router_on_request_head,
      .on_request = router_on_request,
      .ws_on_open = api_ws_on_open,
      .ws_on_text = api_ws_on_text,
      .on_stream_close = api_stream_on_close,
  };
  int rc = server_open(&app.srv, app.loop, cfg, &cb, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    store_close(app.store);
    auth_shutdown();
    router_reset();
    llm_close(app.llm);
    mcp_client_free();
    return 2;
  }
  mcp_client_start(app.loop); /* each server connects and lists its tools in the background */
  uv_signal_init(app.loop, &sig_term);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_init(app.loop, &sig_int);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  api_health_start(app.loop);
  api_ws_start(app.loop);
  api_auth_start(app.loop);
  atomic_store(&app.ready, 1);

  printf("agentd listening on %s://%s:%d\n", server_is_tls(app.srv) ? "https" : "http", cfg->host,
         server_port(app.srv));
  fflush(stdout);
  log_info("agentd %s (%s) serving; database %s, llm %s", AGENTD_VERSION, AGENTD_GIT_SHA, store_kind(app.store),
           cfg->llm_provider);

  uv_run(app.loop, UV_RUN_DEFAULT);

  /* Runs still going get the grace period, then are cancelled (agent_stopped). */
  runs_shutdown(cfg->shutdown_grace);
  /* Drain: close remaining handles, wait for workers' after-callbacks. */
  server_close(app.srv);
  api_health_stop();
  api_ws_stop();
  api_auth_stop();
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_run(app.loop, UV_RUN_DEFAULT);
  /* Deliver what runs emitted last (run ends answer waiting requests), then drain again. */
  events_shutdown();
  uv_run(app.loop, UV_RUN_DEFAULT);
  api_workloads_stop(); /* no worker uses the record cache any more */
  mcp_client_free();
  store_close(app.store);
  auth_shutdown();
  router_reset();
  metrics_reset();
  tool_registry_reset();
  llm_close(app.llm);
  int lrc = uv_loop_close(app.loop);
  if (lrc != 0) log_warn("loop closed with handles still open: %s", uv_strerror(lrc));
  log_info("agentd stopped");
  return 0;
}

int main(int argc, char **argv) {
  config_t cfg;
  char err[512] = "";
  signal(SIGPIPE, SIG_IGN);
  /* libuv's pool runs store queries and argon2: more threads than its default
   * 4 keeps slow hashes from delaying reads.  Must be set before first use. */
  setenv("UV_THREADPOOL_SIZE", "8", 0);
  if (config_parse(&cfg, argc, argv, err, sizeof(err)) != 0) {
    fprintf(stderr, "agentd: %s\n", err);
    config_dispose(&cfg);
    return 2;
  }
  int rc = 0;
  switch (cfg.command) {
  case CFG_CMD_HELP: fputs(config_usage(), stdout); break;
  case CFG_CMD_VERSION: printf("agentd %s (%s, built %s)\n", AGENTD_VERSION, AGENTD_GIT_SHA, AGENTD_BUILD_TIME); break;
  case CFG_CMD_MIGRATE:
    log_init((log_level_t)cfg.log_level, (log_format_t)cfg.log_format);
    rc = cmd_migrate(&cfg);
    break;
  case CFG_CMD_USER_ADD:
    log_init((log_level_t)cfg.log_level, (log_format_t)cfg.log_format);
    rc = api_cmd_user_add(&cfg, cfg.user_add_email);
    break;
  case CFG_CMD_SERVE:
  default:
    log_init((log_level_t)cfg.log_level, (log_format_t)cfg.log_format);
    raise_nofile_limit();
    rc = serve(&cfg);
    break;
  }
  config_dispose(&cfg);
  return rc;
}
