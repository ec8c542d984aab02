/* Unit tests for core/config.c (SPEC §10): defaults, env < flag precedence,
 * every error path, subcommands, --flag=value, rate limits, CORS list. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "util/log.h"

extern char **environ;

/* Remove every variable config.c (or the OpenAI provider) reads. */
static void clean_env(void) {
  static const char *const exact[] = {"DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "LLM_PROVIDER"};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) unsetenv(exact[i]);
  for (;;) {
    char name[256] = "";
    for (char **e = environ; e && *e; e++) {
      if (strncmp(*e, "AGENTD_", 7) == 0 || strncmp(*e, "OPENAI_", 7) == 0) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, *e, n);
        name[n] = 0;
        break;
      }
    }
    if (!name[0]) break;
    unsetenv(name);
  }
}

TestSuite(config, .init = clean_env);

#define MAXARGS 32
/* Parse a NULL-terminated list of arguments (after "agentd"). */
static int parse(config_t *cfg, char *err, ...) {
  char *argv[MAXARGS];
  int argc = 0;
  argv[argc++] = "agentd";
  va_list ap;
  va_start(ap, err);
  for (char *a; (a = va_arg(ap, char *)) != NULL && argc < MAXARGS - 1;) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  err[0] = 0;
  return config_parse(cfg, argc, argv, err, 256);
}
#define P(cfg, err, ...) parse(cfg, err, ##__VA_ARGS__, (char *)NULL)

/* Expect failure with exactly this message. */
static void expect_err(const char *want, ...) {
  char *argv[MAXARGS];
  int argc = 0;
  argv[argc++] = "agentd";
  va_list ap;
  va_start(ap, want);
  for (char *a; (a = va_arg(ap, char *)) != NULL && argc < MAXARGS - 1;) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  config_t cfg;
  char err[256] = "";
  int rc = config_parse(&cfg, argc, argv, err, sizeof err);
  cr_assert_eq(rc, -1, "expected failure '%s'", want);
  cr_assert_str_eq(err, want);
  cr_assert_null(strchr(err, '\n'));
  config_dispose(&cfg);
}
#define E(want, ...) expect_err(want, ##__VA_ARGS__, (char *)NULL)

Test(config, defaults) {
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_SERVE);
  cr_assert_str_eq(c.host, "127.0.0.1");
  cr_assert_eq(c.port, 8000);
  cr_assert_str_eq(c.data_dir, "./data");
  cr_assert_str_eq(c.database_url, "sqlite:./data/agentd.db");
  cr_assert_null(c.broker_url);
  cr_assert_null(c.jwt_secret);
  cr_assert_str_eq(c.jwt_issuer, "netra-auth-service");
  cr_assert_eq(c.jwt_issuer_enforced, 0);
  cr_assert_eq(c.access_ttl, 1800);
  cr_assert_eq(c.refresh_ttl, 1209600);
  cr_assert_eq(c.dev_login, 0);
  cr_assert_eq(c.registration, 1);
  cr_assert_float_eq(c.rate_per_s, 20, 1e-9);
  cr_assert_float_eq(c.rate_burst, 40, 1e-9);
  cr_assert_eq(c.max_runs, 256);
  cr_assert_eq(c.run_timeout, 300);
  cr_assert_str_eq(c.llm_provider, "builtin");
  cr_assert_null(c.mcp_config);
  cr_assert_null(c.tls_cert);
  cr_assert_null(c.tls_key);
  cr_assert_not_null(c.cors_origins);
  cr_assert_null(c.cors_origins[0]);
  cr_assert_eq(c.n_cors_origins, 0);
  cr_assert_eq(c.log_level, LOG_INFO);
  cr_assert_eq(c.log_format, isatty(2) ? LOG_FMT_TEXT : LOG_FMT_JSON);
  cr_assert_null(c.public_url);
  cr_assert_eq(c.max_header_bytes, 16384);
  cr_assert_eq(c.max_body_bytes, 1024 * 1024);
  cr_assert_eq(c.max_ingest_bytes, 64 * 1024 * 1024);
  cr_assert_eq(c.max_json_depth, 64);
  cr_assert_eq(c.max_ws_frame, 65536);
  cr_assert_eq(c.send_queue_limit, 1024 * 1024);
  cr_assert_float_eq(c.request_timeout, 10, 1e-9);
  cr_assert_float_eq(c.idle_timeout, 60, 1e-9);
  cr_assert_float_eq(c.ws_ping_interval, 30, 1e-9);
  cr_assert_float_eq(c.ws_idle_timeout, 90, 1e-9);
  cr_assert_float_eq(c.sse_heartbeat, 15, 1e-9);
  cr_assert_float_eq(c.shutdown_grace, 10, 1e-9);
  config_dispose(&c);
}

Test(config, every_flag_both_forms) {
  config_t c;
  char err[256];
  int rc = P(&c, err, "--host", "0.0.0.0", "--port=0", "--data-dir", "/tmp/d", "--broker=redis://r:6379",
             "--jwt-secret", "0123456789abcdef0123456789abcdef", "--jwt-issuer=me", "--access-ttl", "60",
             "--refresh-ttl=120", "--dev-login", "--no-registration", "--max-runs", "4", "--run-timeout=5",
             "--llm", "openai", "--mcp-config=/m.json", "--tls-cert", "c.pem", "--tls-key=k.pem",
             "--log-level", "debug", "--log-format=json", "--public-url", "https://x.example.com/");
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_str_eq(c.host, "0.0.0.0");
  cr_assert_eq(c.port, 0);
  cr_assert_str_eq(c.data_dir, "/tmp/d");
  cr_assert_str_eq(c.database_url, "sqlite:/tmp/d/agentd.db");
  cr_assert_str_eq(c.broker_url, "redis://r:6379");
  cr_assert_str_eq(c.jwt_secret, "0123456789abcdef0123456789abcdef");
  cr_assert_str_eq(c.jwt_issuer, "me");
  cr_assert_eq(c.jwt_issuer_enforced, 1);
  cr_assert_eq(c.access_ttl, 60);
  cr_assert_eq(c.refresh_ttl, 120);
  cr_assert_eq(c.dev_login, 1);
  cr_assert_eq(c.registration, 0);
  cr_assert_eq(c.max_runs, 4);
  cr_assert_eq(c.run_timeout, 5);
  cr_assert_str_eq(c.llm_provider, "openai");
  cr_assert_str_eq(c.mcp_config, "/m.json");
  cr_assert_str_eq(c.tls_cert, "c.pem");
  cr_assert_str_eq(c.tls_key, "k.pem");
  cr_assert_eq(c.log_level, LOG_DEBUG);
  cr_assert_eq(c.log_format, LOG_FMT_JSON);
  cr_assert_str_eq(c.public_url, "https://x.example.com");
  config_dispose(&c);
}

Test(config, limits_and_timeouts) {
  config_t c;
  char err[256];
  int rc = P(&c, err, "--max-header-bytes", "8k", "--max-body-bytes=2M", "--max-ingest-bytes", "1000",
             "--max-json-depth", "10", "--max-ws-frame=128K", "--send-queue-limit", "4m", "--request-timeout", "0.5",
             "--idle-timeout=2", "--ws-ping-interval", "1e1", "--ws-idle-timeout", "3.25", "--sse-heartbeat", "0.1",
             "--shutdown-grace", "7");
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_eq(c.max_header_bytes, 8192);
  cr_assert_eq(c.max_body_bytes, 2 * 1024 * 1024);
  cr_assert_eq(c.max_ingest_bytes, 1000);
  cr_assert_eq(c.max_json_depth, 10);
  cr_assert_eq(c.max_ws_frame, 128 * 1024);
  cr_assert_eq(c.send_queue_limit, 4 * 1024 * 1024);
  cr_assert_float_eq(c.request_timeout, 0.5, 1e-12);
  cr_assert_float_eq(c.idle_timeout, 2, 1e-12);
  cr_assert_float_eq(c.ws_ping_interval, 10, 1e-12);
  cr_assert_float_eq(c.ws_idle_timeout, 3.25, 1e-12);
  cr_assert_float_eq(c.sse_heartbeat, 0.1, 1e-12);
  cr_assert_float_eq(c.shutdown_grace, 7, 1e-12);
  config_dispose(&c);
}

Test(config, env_then_flag_wins) {
  setenv("AGENTD_PORT", "9000", 1);
  setenv("AGENTD_HOST", "10.0.0.1", 1);
  setenv("AGENTD_MAX_BODY_BYTES", "2k", 1);
  setenv("LLM_PROVIDER", "openai", 1);
  setenv("AGENTD_RATE_LIMIT", "5/6", 1);
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--port", "9100"), 0, "%s", err);
  cr_assert_eq(c.port, 9100);                  /* flag wins */
  cr_assert_str_eq(c.host, "10.0.0.1");        /* env over default */
  cr_assert_eq(c.max_body_bytes, 2048);
  cr_assert_str_eq(c.llm_provider, "openai");
  cr_assert_float_eq(c.rate_per_s, 5, 1e-9);
  cr_assert_float_eq(c.rate_burst, 6, 1e-9);
  config_dispose(&c);
  /* an empty variable counts as unset */
  setenv("AGENTD_PORT", "", 1);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_eq(c.port, 8000);
  config_dispose(&c);
}

Test(config, env_bad_value_is_named) {
  setenv("AGENTD_PORT", "abc", 1);
  E("AGENTD_PORT: must be an integer 0..65535, got 'abc'");
  unsetenv("AGENTD_PORT");
  setenv("AGENTD_DEV_LOGIN", "maybe", 1);
  E("AGENTD_DEV_LOGIN: must be 1/true/yes/on or 0/false/no/off, got 'maybe'");
  /* a bad env value is an error even when a flag would override it */
  E("AGENTD_DEV_LOGIN: must be 1/true/yes/on or 0/false/no/off, got 'maybe'", "--dev-login");
}

Test(config, env_booleans) {
  static const char *const on[] = {"1", "true", "YES", "On"};
  static const char *const off[] = {"0", "false", "no", "OFF"};
  config_t c;
  char err[256];
  for (int i = 0; i < 4; i++) {
    setenv("AGENTD_DEV_LOGIN", on[i], 1);
    setenv("AGENTD_REGISTRATION", off[i], 1);
    cr_assert_eq(P(&c, err), 0, "%s", err);
    cr_assert_eq(c.dev_login, 1);
    cr_assert_eq(c.registration, 0);
    config_dispose(&c);
    setenv("AGENTD_DEV_LOGIN", off[i], 1);
    setenv("AGENTD_REGISTRATION", on[i], 1);
    cr_assert_eq(P(&c, err), 0, "%s", err);
    cr_assert_eq(c.dev_login, 0);
    cr_assert_eq(c.registration, 1);
    config_dispose(&c);
  }
  /* the flag turns dev login on over AGENTD_DEV_LOGIN=0; --dev-login=false off */
  setenv("AGENTD_DEV_LOGIN", "0", 1);
  cr_assert_eq(P(&c, err, "--dev-login"), 0, "%s", err);
  cr_assert_eq(c.dev_login, 1);
  config_dispose(&c);
  setenv("AGENTD_DEV_LOGIN", "1", 1);
  cr_assert_eq(P(&c, err, "--dev-login=false"), 0, "%s", err);
  cr_assert_eq(c.dev_login, 0);
  config_dispose(&c);
  /* a boolean flag never eats the next argument */
  cr_assert_eq(P(&c, err, "--dev-login", "migrate"), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_MIGRATE);
  cr_assert_eq(c.dev_login, 1);
  config_dispose(&c);
}

Test(config, env_every_var) {
  setenv("AGENTD_DATA_DIR", "/var/lib/a/", 1);
  setenv("REDIS_URL", "redis://localhost:6379", 1);
  setenv("JWT_SECRET_KEY", "k123456789012345678901234567890123", 1);
  setenv("AGENTD_JWT_ISSUER", "iss", 1);
  setenv("AGENTD_ACCESS_TTL", "11", 1);
  setenv("AGENTD_REFRESH_TTL", "12", 1);
  setenv("AGENTD_MAX_RUNS", "13", 1);
  setenv("AGENTD_RUN_TIMEOUT", "14", 1);
  setenv("AGENTD_MCP_CONFIG", "mcp.json", 1);
  setenv("AGENTD_TLS_CERT", "c", 1);
  setenv("AGENTD_TLS_KEY", "k", 1);
  setenv("AGENTD_CORS_ORIGINS", "http://a", 1);
  setenv("AGENTD_LOG_LEVEL", "warn", 1);
  setenv("AGENTD_LOG_FORMAT", "text", 1);
  setenv("AGENTD_PUBLIC_URL", "http://pub", 1);
  setenv("AGENTD_MAX_HEADER_BYTES", "4096", 1);
  setenv("AGENTD_MAX_INGEST_BYTES", "3m", 1);
  setenv("AGENTD_MAX_JSON_DEPTH", "9", 1);
  setenv("AGENTD_MAX_WS_FRAME", "1k", 1);
  setenv("AGENTD_SEND_QUEUE_LIMIT", "8k", 1);
  setenv("AGENTD_REQUEST_TIMEOUT", "1", 1);
  setenv("AGENTD_IDLE_TIMEOUT", "2", 1);
  setenv("AGENTD_WS_PING_INTERVAL", "3", 1);
  setenv("AGENTD_WS_IDLE_TIMEOUT", "4", 1);
  setenv("AGENTD_SSE_HEARTBEAT", "5", 1);
  setenv("AGENTD_SHUTDOWN_GRACE", "6", 1);
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_str_eq(c.data_dir, "/var/lib/a/");
  cr_assert_str_eq(c.database_url, "sqlite:/var/lib/a/agentd.db");
  cr_assert_str_eq(c.broker_url, "redis://localhost:6379");
  cr_assert_str_eq(c.jwt_secret, "k123456789012345678901234567890123");
  cr_assert_str_eq(c.jwt_issuer, "iss");
  cr_assert_eq(c.jwt_issuer_enforced, 1);
  cr_assert_eq(c.access_ttl, 11);
  cr_assert_eq(c.refresh_ttl, 12);
  cr_assert_eq(c.max_runs, 13);
  cr_assert_eq(c.run_timeout, 14);
  cr_assert_str_eq(c.mcp_config, "mcp.json");
  cr_assert_str_eq(c.tls_cert, "c");
  cr_assert_str_eq(c.tls_key, "k");
  cr_assert_eq(c.n_cors_origins, 1);
  cr_assert_eq(c.log_level, LOG_WARN);
  cr_assert_eq(c.log_format, LOG_FMT_TEXT);
  cr_assert_str_eq(c.public_url, "http://pub");
  cr_assert_eq(c.max_header_bytes, 4096);
  cr_assert_eq(c.max_ingest_bytes, 3 * 1024 * 1024);
  cr_assert_eq(c.max_json_depth, 9);
  cr_assert_eq(c.max_ws_frame, 1024);
  cr_assert_eq(c.send_queue_limit, 8192);
  cr_assert_float_eq(c.request_timeout + c.idle_timeout + c.ws_ping_interval + c.ws_idle_timeout + c.sse_heartbeat +
                         c.shutdown_grace, 21, 1e-9);
  config_dispose(&c);
}

Test(config, database) {
  config_t c;
  char err[256];
  /* default follows --data-dir, also when the env set another dir */
  setenv("AGENTD_DATA_DIR", "/env/dir", 1);
  cr_assert_eq(P(&c, err, "--data-dir=/flag/dir"), 0, "%s", err);
  cr_assert_str_eq(c.database_url, "sqlite:/flag/dir/agentd.db");
  config_dispose(&c);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_str_eq(c.database_url, "sqlite:/env/dir/agentd.db");
  config_dispose(&c);
  /* an explicit database is kept whatever the data dir */
  static const char *const ok[] = {"sqlite:/x/y.db", "sqlite:///x/y.db", "sqlite:rel.db",
                                   "postgresql://u:p@h:5432/db", "postgres://h/db"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cr_assert_eq(P(&c, err, "--database", (char *)ok[i], "--data-dir", "/z"), 0, "%s", err);
    cr_assert_str_eq(c.database_url, ok[i]);
    config_dispose(&c);
  }
  setenv("DATABASE_URL", "postgres://envhost/db", 1);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_str_eq(c.database_url, "postgres://envhost/db");
  config_dispose(&c);
  cr_assert_eq(P(&c, err, "--database=sqlite:a.db"), 0, "%s", err);
  cr_assert_str_eq(c.database_url, "sqlite:a.db");
  config_dispose(&c);
  unsetenv("DATABASE_URL");
  E("--database: must be sqlite:PATH, sqlite://PATH, postgresql://… or postgres://…, got scheme 'mysql'",
    "--database", "mysql://root:secret@h/db");
  E("--database: sqlite URL needs a file path (sqlite:PATH)", "--database", "sqlite:");
  E("--database: must be sqlite:PATH, sqlite://PATH, postgresql://… or postgres://…, got scheme 'postgres'",
    "--database", "postgres://");
  setenv("DATABASE_URL", "foo", 1);
  E("DATABASE_URL: must be sqlite:PATH, sqlite://PATH, postgresql://… or postgres://…, got scheme 'foo'");
}

Test(config, rate_limit) {
  config_t c;
  char err[256];
  struct { const char *in; double r, b; } ok[] = {
      {"20/40", 20, 40}, {"5", 5, 10}, {"0", 0, 0}, {"0.5/3", 0.5, 3}, {"100/1", 100, 1}, {"0.0", 0, 0}, {"0.2", 0.2, 1}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cr_assert_eq(P(&c, err, "--rate-limit", (char *)ok[i].in), 0, "%s: %s", ok[i].in, err);
    cr_assert_float_eq(c.rate_per_s, ok[i].r, 1e-12, "%s", ok[i].in);
    cr_assert_float_eq(c.rate_burst, ok[i].b, 1e-12, "%s", ok[i].in);
    config_dispose(&c);
  }
  static const char *const bad[] = {"-1", "abc", "", "10/", "/5", "10/0", "0/5", "10/-1", "5x", "1/2/3", "nan",
                                    "inf", "0x10", " 5", "1e400"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "--rate-limit: must be R/B (requests/s > 0, burst >= 1), R (burst 2R) or 0 (off), got '%s'", bad[i]);
    E(want, "--rate-limit", (char *)bad[i]);
  }
}

Test(config, cors) {
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--cors-origins", " https://a.example.com , http://localhost:3000/,,http://b "), 0, "%s",
               err);
  cr_assert_eq(c.n_cors_origins, 3);
  cr_assert_str_eq(c.cors_origins[0], "https://a.example.com");
  cr_assert_str_eq(c.cors_origins[1], "http://localhost:3000");
  cr_assert_str_eq(c.cors_origins[2], "http://b");
  cr_assert_null(c.cors_origins[3]);
  cr_assert_eq(config_cors_allowed(&c, "https://a.example.com", 21), 1);
  cr_assert_eq(config_cors_allowed(&c, "http://localhost:3000xyz", 21), 1); /* n bounds the compare */
  cr_assert_eq(config_cors_allowed(&c, "http://localhost:3000", 21), 1);
  cr_assert_eq(config_cors_allowed(&c, "HTTPS://a.example.com", 21), 0);
  cr_assert_eq(config_cors_allowed(&c, "https://a.example.co", 20), 0);
  cr_assert_eq(config_cors_allowed(&c, "http://localhost:300", 20), 0);
  config_dispose(&c);
  /* flag replaces env */
  setenv("AGENTD_CORS_ORIGINS", "http://env", 1);
  cr_assert_eq(P(&c, err, "--cors-origins="), 0, "%s", err);
  cr_assert_eq(c.n_cors_origins, 0);
  cr_assert_null(c.cors_origins[0]);
  cr_assert_eq(config_cors_allowed(&c, "http://env", 10), 0);
  config_dispose(&c);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_eq(config_cors_allowed(&c, "http://env", 10), 1);
  config_dispose(&c);
  unsetenv("AGENTD_CORS_ORIGINS");
  E("--cors-origins: origin 'ftp://x' must start with http:// or https://", "--cors-origins", "http://a,ftp://x");
  E("--cors-origins: origin 'example.com' must start with http:// or https://", "--cors-origins", "example.com");
  E("--cors-origins: origin 'https://' has no host", "--cors-origins", "https://");
  E("--cors-origins: origin 'https://a/b' must be scheme://host[:port] without path", "--cors-origins", "https://a/b");
  E("--cors-origins: origin '*' must start with http:// or https://", "--cors-origins", "*");
}

Test(config, cors_cap) {
  char list[64 * 16 + 64] = "";
  for (int i = 0; i < 64; i++) {
    char one[16];
    snprintf(one, sizeof one, "%shttp://h%d", i ? "," : "", i);
    strcat(list, one);
  }
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--cors-origins", list), 0, "%s", err);
  cr_assert_eq(c.n_cors_origins, 64);
  config_dispose(&c);
  strcat(list, ",http://one-more");
  E("--cors-origins: origin 'http://one-more' is one too many (at most 64 origins)", "--cors-origins", list);
}

Test(config, error_paths) {
  E("unknown option '--bogus' (see agentd --help)", "--bogus");
  E("unknown option '--bogus' (see agentd --help)", "--bogus=1");
  E("unknown option '-x' (see agentd --help)", "-x");
  E("--port: missing value (--port N)", "--port");
  E("--host: missing value (--host ADDR)", "--host", "--port", "1");
  E("--port: must be an integer 0..65535, got 'abc'", "--port", "abc");
  E("--port: must be an integer 0..65535, got '65536'", "--port", "65536");
  E("--port: must be an integer 0..65535, got '-1'", "--port=-1");
  E("--port: must be an integer 0..65535, got ''", "--port=");
  E("--port: must be an integer 0..65535, got ' 80'", "--port", " 80");
  E("--port: must be an integer 0..65535, got '99999999999999999999999'", "--port", "99999999999999999999999");
  E("--access-ttl: must be an integer 1..315360000, got '0'", "--access-ttl", "0");
  E("--refresh-ttl: must be an integer 1..315360000, got '315360001'", "--refresh-ttl", "315360001");
  E("--max-runs: must be an integer 1..100000, got '100001'", "--max-runs", "100001");
  E("--run-timeout: must be an integer 1..86400, got '1.5'", "--run-timeout", "1.5");
  E("--llm: must be builtin or openai, got 'claude'", "--llm", "claude");
  E("--log-level: must be debug, info, warn, error or off, got 'loud'", "--log-level", "loud");
  E("--log-format: must be text or json, got 'xml'", "--log-format", "xml");
  E("--tls-cert: --tls-cert and --tls-key must be given together", "--tls-key", "k.pem");
  E("--tls-key: --tls-cert and --tls-key must be given together", "--tls-cert", "c.pem");
  E("--jwt-secret: must be at least 32 bytes, got 5", "--jwt-secret", "short");
  E("--host: must be a host name or address (1..253 bytes, no spaces), got ''", "--host", "");
  E("--host: must be a host name or address (1..253 bytes, no spaces), got 'a b'", "--host", "a b");
  E("--data-dir: must not be empty", "--data-dir=");
  E("--broker: must be redis://host[:port], got scheme 'http'", "--broker", "http://x");
  E("--public-url: must be an http:// or https:// URL, got 'x.com'", "--public-url", "x.com");
  E("--dev-login: must be 1/true/yes/on or 0/false/no/off, got 'maybe'", "--dev-login=maybe");
  E("--dev-login: empty value (use --dev-login alone or --dev-login=true|false)", "--dev-login=");
  E("--max-body-bytes: must be a byte count 1..1024m (k/m suffix for KiB/MiB), got '1g'", "--max-body-bytes", "1g");
  E("--max-body-bytes: must be a byte count 1..1024m (k/m suffix for KiB/MiB), got '0'", "--max-body-bytes", "0");
  E("--max-body-bytes: must be a byte count 1..1024m (k/m suffix for KiB/MiB), got '-5'", "--max-body-bytes", "-5");
  E("--max-body-bytes: must be a byte count 1..1024m (k/m suffix for KiB/MiB), got 'k'", "--max-body-bytes", "k");
  E("--max-header-bytes: must be a byte count 256..1m (k/m suffix for KiB/MiB), got '2m'", "--max-header-bytes", "2m");
  E("--max-json-depth: must be an integer 1..2048, got '0'", "--max-json-depth", "0");
  E("--request-timeout: must be seconds > 0 and <= 86400, got '0'", "--request-timeout", "0");
  E("--idle-timeout: must be seconds > 0 and <= 86400, got '-1'", "--idle-timeout", "-1");
  E("--sse-heartbeat: must be seconds > 0 and <= 86400, got 'nan'", "--sse-heartbeat", "nan");
  E("--shutdown-grace: must be seconds >= 0 and <= 86400, got '1e9'", "--shutdown-grace", "1e9");
  /* control bytes are not echoed raw; long values are clipped */
  E("--port: must be an integer 0..65535, got '1?2'", "--port", "1\n2");
  char longv[200];
  memset(longv, 'x', sizeof longv - 1);
  longv[sizeof longv - 1] = 0;
  char want[256];
  snprintf(want, sizeof want, "--llm: must be builtin or openai, got '%.60s...'", longv);
  E(want, "--llm", longv);
}

Test(config, subcommands) {
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "serve", "--port", "1"), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_SERVE);
  config_dispose(&c);
  cr_assert_eq(P(&c, err, "--port", "1", "migrate"), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_MIGRATE);
  cr_assert_eq(c.port, 1);
  config_dispose(&c);
  cr_assert_eq(P(&c, err, "user", "add", "a@b.c", "--data-dir", "/q"), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_USER_ADD);
  cr_assert_str_eq(c.user_add_email, "a@b.c");
  cr_assert_str_eq(c.database_url, "sqlite:/q/agentd.db");
  config_dispose(&c);
  static const char *const help[] = {"--help", "-h", "help"};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(P(&c, err, (char *)help[i]), 0, "%s", err);
    cr_assert_eq(c.command, CFG_CMD_HELP);
    config_dispose(&c);
  }
  static const char *const ver[] = {"--version", "-V", "version"};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(P(&c, err, (char *)ver[i]), 0, "%s", err);
    cr_assert_eq(c.command, CFG_CMD_VERSION);
    config_dispose(&c);
  }
  /* --help works even with a broken environment or other bad flags */
  setenv("AGENTD_PORT", "junk", 1);
  cr_assert_eq(P(&c, err, "--bogus", "--help"), 0, "%s", err);
  cr_assert_eq(c.command, CFG_CMD_HELP);
  config_dispose(&c);
  unsetenv("AGENTD_PORT");
  E("unknown command 'frobnicate' (see agentd --help)", "frobnicate");
  E("user: expected 'agentd user add EMAIL'", "user");
  E("user: expected 'agentd user add EMAIL'", "user", "del", "a@b");
  E("user add: missing EMAIL (agentd user add EMAIL)", "user", "add");
  E("user add: EMAIL must look like name@domain, got 'nobody'", "user", "add", "nobody");
  E("unexpected argument 'extra' (see agentd --help)", "migrate", "extra");
  E("unexpected argument 'x' (see agentd --help)", "user", "add", "a@b", "x");
  /* "--" ends the options */
  cr_assert_eq(P(&c, err, "user", "add", "--", "-a@b"), 0, "%s", err);
  cr_assert_str_eq(c.user_add_email, "-a@b");
  config_dispose(&c);
}

Test(config, last_flag_wins_and_no_leak_on_repeat) {
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--host", "a", "--host=b", "--cors-origins", "http://x", "--cors-origins", "http://y",
                 "--database", "sqlite:1", "--database", "sqlite:2"),
               0, "%s", err);
  cr_assert_str_eq(c.host, "b");
  cr_assert_eq(c.n_cors_origins, 1);
  cr_assert_str_eq(c.cors_origins[0], "http://y");
  cr_assert_str_eq(c.database_url, "sqlite:2");
  config_dispose(&c);
}

Test(config, usage_lists_every_flag) {
  const char *u = config_usage();
  static const char *const must[] = {
      "--host", "AGENTD_HOST", "--port", "AGENTD_PORT", "--data-dir", "AGENTD_DATA_DIR", "--database",
      "DATABASE_URL", "--broker", "REDIS_URL", "--jwt-secret", "JWT_SECRET_KEY", "--jwt-issuer", "--access-ttl",
      "--refresh-ttl", "--dev-login", "AGENTD_DEV_LOGIN=1", "--no-registration", "AGENTD_REGISTRATION=0",
      "--rate-limit", "AGENTD_RATE_LIMIT", "--max-runs", "--run-timeout", "--llm", "LLM_PROVIDER", "--mcp-config",
      "--tls-cert", "--tls-key", "--cors-origins", "--log-level", "--log-format", "--public-url",
      "--max-header-bytes", "--max-body-bytes", "--max-ingest-bytes", "--max-json-depth", "--max-ws-frame",
      "--send-queue-limit", "--request-timeout", "--idle-timeout", "--ws-ping-interval", "--ws-idle-timeout",
      "--sse-heartbeat", "--shutdown-grace", "agentd migrate", "agentd user add EMAIL", "--version", "default: 8000",
      "default: 20/40"};
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) cr_assert_not_null(strstr(u, must[i]), "%s", must[i]);
  cr_assert_lt(strlen(u), 12000);
  cr_assert_eq(u, config_usage());
  /* SPEC §2: the issuer is checked only when set, so --help shows no enforced default */
  cr_assert_null(strstr(u, "default: netra-auth-service"));
  cr_assert_not_null(strstr(u, "unset: any iss accepted"));
}

Test(config, dispose_twice_and_null) {
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--cors-origins", "http://a"), 0);
  config_dispose(&c);
  config_dispose(&c);
  config_dispose(NULL);
}

/* SPEC §7/§10: --mcp-anonymous only together with --dev-login (issue 15). */
Test(config, mcp_anonymous_needs_dev_login) {
  E("--mcp-anonymous: allowed only together with --dev-login", "--mcp-anonymous");
  config_t c;
  char err[256];
  cr_assert_eq(P(&c, err, "--dev-login", "--mcp-anonymous"), 0, "%s", err);
  cr_assert_eq(c.mcp_anonymous, 1);
  config_dispose(&c);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_eq(c.mcp_anonymous, 0);
  config_dispose(&c);
  setenv("AGENTD_MCP_ANONYMOUS", "1", 1);
  setenv("AGENTD_DEV_LOGIN", "1", 1);
  cr_assert_eq(P(&c, err), 0, "%s", err);
  cr_assert_eq(c.mcp_anonymous, 1);
  config_dispose(&c);
}
