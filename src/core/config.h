/* core/config.h — command line and environment (SPEC §10).
 *
 * Every option has a flag and an environment variable; the flag wins.  Bad
 * values are refused with one clear line naming the option (exit status 2 is
 * the caller's job).  Parsed once on the main thread before the loop starts;
 * read-only afterwards, so any thread may read it.
 */
#ifndef AGD_CORE_CONFIG_H
#define AGD_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { CFG_CMD_SERVE = 0, CFG_CMD_MIGRATE, CFG_CMD_USER_ADD, CFG_CMD_VERSION, CFG_CMD_HELP } config_cmd_t;

typedef struct config {
  config_cmd_t command;
  char *user_add_email;      /* `agentd user add EMAIL` */

  /* SPEC §10 */
  char *host;                /* --host / AGENTD_HOST, "127.0.0.1" */
  int port;                  /* --port / AGENTD_PORT, 8000; 0 = pick a free port */
  char *data_dir;            /* --data-dir / AGENTD_DATA_DIR, "./data" */
  char *database_url;        /* --database / DATABASE_URL, "sqlite:<data_dir>/agentd.db" */
  char *broker_url;          /* --broker / REDIS_URL, NULL = in-process */
  char *jwt_secret;          /* --jwt-secret / JWT_SECRET_KEY, NULL = generated into <data_dir>/jwt.secret */
  char *jwt_issuer;          /* --jwt-issuer / AGENTD_JWT_ISSUER, "netra-auth-service" (issued; enforced on accept when set explicitly) */
  int jwt_issuer_enforced;   /* 1 when --jwt-issuer/AGENTD_JWT_ISSUER was given */
  int access_ttl;            /* --access-ttl / AGENTD_ACCESS_TTL, 1800 s */
  int refresh_ttl;           /* --refresh-ttl / AGENTD_REFRESH_TTL, 1209600 s */
  int dev_login;             /* --dev-login / AGENTD_DEV_LOGIN=1, 0 */
  int registration;          /* --no-registration / AGENTD_REGISTRATION=0 turns it off, 1 */
  double rate_per_s;         /* --rate-limit R/B / AGENTD_RATE_LIMIT, 20 */
  double rate_burst;         /* 40; rate_per_s == 0 disables every limit of SPEC §9 */
  int max_runs;              /* --max-runs / AGENTD_MAX_RUNS, 256 */
  int run_timeout;           /* --run-timeout / AGENTD_RUN_TIMEOUT, 300 s */
  char *llm_provider;        /* --llm / LLM_PROVIDER, "builtin" | "openai" */
  int llm_latency_ms;        /* --llm-latency-ms / AGENTD_LLM_LATENCY_MS, 0: builtin provider's simulated latency per step */
  double llm_timeout;        /* --llm-timeout / AGENTD_LLM_TIMEOUT, 60 s: one model call, retries included (SPEC §11) */
  double mcp_timeout;        /* --mcp-timeout / AGENTD_MCP_TIMEOUT, 30 s: one call of an MCP server's tool */
  size_t llm_max_output;     /* --llm-max-output / AGENTD_LLM_MAX_OUTPUT, 4 MiB: streamed bytes of one call (over: LLM_BAD_RESPONSE) */
  int llm_max_steps;         /* --llm-max-steps / AGENTD_LLM_MAX_STEPS, 8: model rounds of a run's tool loop */
  int record_usage;          /* --record-usage / AGENTD_RECORD_USAGE=1, 0: each model call joins the user's workload records */
  char *approve_tools;       /* --approve-tools / AGENTD_APPROVE_TOOLS, NULL: comma-separated tool names, `*` wildcards */
  double approval_timeout;   /* --approval-timeout / AGENTD_APPROVAL_TIMEOUT, 900 s */
  char *mcp_config;          /* --mcp-config / AGENTD_MCP_CONFIG, NULL */
  int mcp_anonymous;         /* --mcp-anonymous / AGENTD_MCP_ANONYMOUS=1, 0: /mcp without credentials acts as the dev user (needs dev_login) */
  int mcp_test_tools;        /* --mcp-test-tools / AGENTD_MCP_TEST_TOOLS=1, 0: the conformance suite's fixture tools */
  char *tls_cert;            /* --tls-cert / AGENTD_TLS_CERT, NULL */
  char *tls_key;             /* --tls-key / AGENTD_TLS_KEY, NULL */
  char **cors_origins;       /* --cors-origins / AGENTD_CORS_ORIGINS, NULL-terminated, never NULL */
  size_t n_cors_origins;
  int log_level;             /* --log-level / AGENTD_LOG_LEVEL, log_level_t, info */
  int log_format;            /* --log-format / AGENTD_LOG_FORMAT, text on a TTY else json */
  char *public_url;          /* --public-url / AGENTD_PUBLIC_URL, NULL = from the request's Host */

  /* Limits (SPEC conventions, configurable) */
  size_t max_header_bytes;   /* --max-header-bytes / AGENTD_MAX_HEADER_BYTES, 16384 */
  size_t max_body_bytes;     /* --max-body-bytes / AGENTD_MAX_BODY_BYTES, 1 MiB */
  size_t max_ingest_bytes;   /* --max-ingest-bytes / AGENTD_MAX_INGEST_BYTES, 64 MiB */
  int max_json_depth;        /* --max-json-depth / AGENTD_MAX_JSON_DEPTH, 64 */
  size_t max_ws_frame;       /* --max-ws-frame / AGENTD_MAX_WS_FRAME, 65536 */
  size_t send_queue_limit;   /* --send-queue-limit / AGENTD_SEND_QUEUE_LIMIT, 1 MiB per connection */

  /* Timeouts, seconds */
  double request_timeout;    /* --request-timeout / AGENTD_REQUEST_TIMEOUT, 10: headers+body must arrive in this */
  double idle_timeout;       /* --idle-timeout / AGENTD_IDLE_TIMEOUT, 60: idle keep-alive connection closed */
  double ws_ping_interval;   /* --ws-ping-interval / AGENTD_WS_PING_INTERVAL, 30 */
  double ws_idle_timeout;    /* --ws-idle-timeout / AGENTD_WS_IDLE_TIMEOUT, 90 */
  double sse_heartbeat;      /* --sse-heartbeat / AGENTD_SSE_HEARTBEAT, 15 */
  double shutdown_grace;     /* --shutdown-grace / AGENTD_SHUTDOWN_GRACE, 10 */
} config_t;

/* Fill cfg from argv and environ (defaults first, then env, then flags).
 * Returns 0, or -1 with a one-line reason in err ("--port: must be 0..65535, got 'x'").
 * `agentd --help` / `--version` set cfg->command and return 0. */
int config_parse(config_t *cfg, int argc, char **argv, char *err, size_t err_cap);
/* Free the strings config_parse() allocated. */
void config_dispose(config_t *cfg);
/* The --help text. */
const char *config_usage(void);
/* 1 if origin (exact, case-sensitive scheme/host/port) is in the CORS allow-list. */
int config_cors_allowed(const config_t *cfg, const char *origin, size_t n);

#endif
