/* core/config.c — command line and environment into a config_t (SPEC §10).
 *
 * One table describes every option (flag, environment variable, kind, bounds,
 * help text); parsing, the precedence rule (defaults < environment < flags) and
 * the --help text all come from it.  Main thread only, once, before the loop.
 * Values from argv and environ are hostile: each is length-capped and checked,
 * and an error is one line naming the option, with the offending value quoted
 * (clipped, control bytes replaced; secrets and URLs are never echoed).
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/log.h"
#include "util/xalloc.h"

#define CFG_STR_MAX 4096       /* any string value (paths, URLs) */
#define CFG_HOST_MAX 253
#define CFG_JWT_SECRET_MIN 32
#define CFG_CORS_MAX 64        /* origins in the allow-list */
#define CFG_ORIGIN_MAX 256     /* bytes per origin */
#define CFG_TEN_YEARS 315360000LL
#define KIB 1024LL
#define MIB (1024LL * 1024LL)
#define GIB (1024LL * 1024LL * 1024LL)

typedef enum {
  K_HOST,      /* non-empty host name or address */
  K_PATH,      /* non-empty string (a path) */
  K_NAME,      /* non-empty string (issuer) */
  K_INT,       /* int in [min, max] */
  K_BOOL,      /* flag without value (or =BOOL); env BOOL */
  K_SIZE,      /* size_t bytes, optional k/K/m/M suffix, in [min, max] */
  K_SECS,      /* double seconds, > 0 and <= max */
  K_SECS0,     /* double seconds, >= 0 and <= max (0: no wait) */
  K_RATE,      /* "R/B", "R" or "0" */
  K_LLM,       /* builtin | openai */
  K_LOGLEVEL,  /* log_level_parse */
  K_LOGFMT,    /* text | json */
  K_CORS,      /* comma separated origins */
  K_DB,        /* sqlite:PATH | sqlite://PATH | postgresql://… | postgres://… */
  K_BROKER,    /* redis://… | rediss://… */
  K_SECRET,    /* >= 32 bytes, never echoed */
  K_URL,       /* http(s)://… (public URL) */
} kind_t;

typedef struct opt {
  const char *flag;  /* without the leading "--" */
  const char *env;
  kind_t kind;
  size_t off;        /* offsetof(config_t, field); rate: rate_per_s */
  long long min, max;
  bool invert;       /* K_BOOL flag that switches the field off (--no-registration) */
  const char *meta;  /* value placeholder in --help; NULL for booleans */
  const char *def;   /* default, as shown in --help */
  const char *help;
} opt_t;

#define OFF(f) offsetof(config_t, f)

static const opt_t OPTS[] = {
  {"host", "AGENTD_HOST", K_HOST, OFF(host), 0, 0, false, "ADDR", "127.0.0.1", "address to listen on"},
  {"port", "AGENTD_PORT", K_INT, OFF(port), 0, 65535, false, "N", "8000", "TCP port; 0 picks a free port and prints it"},
  {"data-dir", "AGENTD_DATA_DIR", K_PATH, OFF(data_dir), 0, 0, false, "DIR", "./data", "directory for the SQLite database and jwt.secret"},
  {"database", "DATABASE_URL", K_DB, OFF(database_url), 0, 0, false, "URL", "sqlite:<data-dir>/agentd.db",
   "sqlite:PATH, sqlite://PATH, postgresql://… or postgres://…"},
  {"broker", "REDIS_URL", K_BROKER, OFF(broker_url), 0, 0, false, "URL", "none (in-process)",
   "redis://host:port to share events and limits across instances"},
  {"jwt-secret", "JWT_SECRET_KEY", K_SECRET, OFF(jwt_secret), 0, 0, false, "KEY", "generated into <data-dir>/jwt.secret",
   "HS256 signing key, at least 32 bytes"},
  {"jwt-issuer", "AGENTD_JWT_ISSUER", K_NAME, OFF(jwt_issuer), 0, 0, false, "ISS",
   "unset: any iss accepted; agentd's own tokens say netra-auth-service",
   "when set, accepted tokens must carry this iss (SPEC §2), and tokens agentd issues carry it"},
  {"access-ttl", "AGENTD_ACCESS_TTL", K_INT, OFF(access_ttl), 1, CFG_TEN_YEARS, false, "SECS", "1800", "access token lifetime"},
  {"refresh-ttl", "AGENTD_REFRESH_TTL", K_INT, OFF(refresh_ttl), 1, CFG_TEN_YEARS, false, "SECS", "1209600", "refresh token lifetime"},
  {"dev-login", "AGENTD_DEV_LOGIN", K_BOOL, OFF(dev_login), 0, 0, false, NULL, "off", "enable POST /auth/dev-login"},
  {"no-registration", "AGENTD_REGISTRATION", K_BOOL, OFF(registration), 0, 0, true, NULL, "on (POST /auth/register allowed)",
   "turn self-registration off"},
  {"rate-limit", "AGENTD_RATE_LIMIT", K_RATE, OFF(rate_per_s), 0, 0, false, "R/B", "20/40",
   "per-user requests/s and burst on /api/*; R alone means burst 2R; 0 disables every limit"},
  {"max-runs", "AGENTD_MAX_RUNS", K_INT, OFF(max_runs), 1, 100000, false, "N", "256", "concurrent agent runs"},
  {"run-timeout", "AGENTD_RUN_TIMEOUT", K_INT, OFF(run_timeout), 1, 86400, false, "SECS", "300", "longest an agent run may take"},
  {"llm", "LLM_PROVIDER", K_LLM, OFF(llm_provider), 0, 0, false, "NAME", "builtin",
   "builtin or openai (openai reads OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL)"},
  {"mcp-config", "AGENTD_MCP_CONFIG", K_PATH, OFF(mcp_config), 0, 0, false, "FILE", "none", "JSON file of MCP servers"},
  {"mcp-anonymous", "AGENTD_MCP_ANONYMOUS", K_BOOL, OFF(mcp_anonymous), 0, 0, false, NULL, "off",
   "POST /mcp without credentials acts as the dev user (needs --dev-login; for local MCP inspectors)"},
  {"mcp-test-tools", "AGENTD_MCP_TEST_TOOLS", K_BOOL, OFF(mcp_test_tools), 0, 0, false, NULL, "off",
   "register the MCP conformance suite's fixture tools test_simple_text and test_error_handling (conformance runs)"},
  {"tls-cert", "AGENTD_TLS_CERT", K_PATH, OFF(tls_cert), 0, 0, false, "FILE", "none (plain HTTP)", "PEM certificate chain; needs --tls-key"},
  {"tls-key", "AGENTD_TLS_KEY", K_PATH, OFF(tls_key), 0, 0, false, "FILE", "none", "PEM private key; needs --tls-cert"},
  {"cors-origins", "AGENTD_CORS_ORIGINS", K_CORS, OFF(cors_origins), 0, 0, false, "LIST", "none (same-origin only)",
   "comma-separated origins, e.g. https://app.example.com,http://localhost:3000"},
  {"log-level", "AGENTD_LOG_LEVEL", K_LOGLEVEL, OFF(log_level), 0, 0, false, "LEVEL", "info", "debug, info, warn, error or off"},
  {"log-format", "AGENTD_LOG_FORMAT", K_LOGFMT, OFF(log_format), 0, 0, false, "FMT", "text on a TTY, else json", "text or json"},
  {"public-url", "AGENTD_PUBLIC_URL", K_URL, OFF(public_url), 0, 0, false, "URL", "from the request's Host",
   "base URL announced by /api/discovery/services"},
  {"max-header-bytes", "AGENTD_MAX_HEADER_BYTES", K_SIZE, OFF(max_header_bytes), 256, MIB, false, "BYTES", "16384",
   "request line + headers (over: 431); k/m suffixes accepted"},
  {"max-body-bytes", "AGENTD_MAX_BODY_BYTES", K_SIZE, OFF(max_body_bytes), 1, GIB, false, "BYTES", "1m", "JSON request body (over: 413)"},
  {"max-ingest-bytes", "AGENTD_MAX_INGEST_BYTES", K_SIZE, OFF(max_ingest_bytes), 1, 16 * GIB, false, "BYTES", "64m",
   "body of ingest routes (over: 413)"},
  {"max-json-depth", "AGENTD_MAX_JSON_DEPTH", K_INT, OFF(max_json_depth), 1, 2048, false, "N", "64", "JSON nesting (over: 413)"},
  {"max-ws-frame", "AGENTD_MAX_WS_FRAME", K_SIZE, OFF(max_ws_frame), 126, 64 * MIB, false, "BYTES", "65536",
   "WebSocket message (over: close 1009)"},
  {"send-queue-limit", "AGENTD_SEND_QUEUE_LIMIT", K_SIZE, OFF(send_queue_limit), 4 * KIB, GIB, false, "BYTES", "1m",
   "queued outgoing bytes per connection (over: closed)"},
  {"request-timeout", "AGENTD_REQUEST_TIMEOUT", K_SECS, OFF(request_timeout), 0, 86400, false, "SECS", "10",
   "headers and body must arrive within this"},
  {"idle-timeout", "AGENTD_IDLE_TIMEOUT", K_SECS, OFF(idle_timeout), 0, 86400, false, "SECS", "60", "idle keep-alive connection closed after"},
  {"ws-ping-interval", "AGENTD_WS_PING_INTERVAL", K_SECS, OFF(ws_ping_interval), 0, 86400, false, "SECS", "30", "WebSocket ping period"},
  {"ws-idle-timeout", "AGENTD_WS_IDLE_TIMEOUT", K_SECS, OFF(ws_idle_timeout), 0, 86400, false, "SECS", "90",
   "WebSocket closed after this long without traffic"},
  {"sse-heartbeat", "AGENTD_SSE_HEARTBEAT", K_SECS, OFF(sse_heartbeat), 0, 86400, false, "SECS", "15", "SSE comment heartbeat period"},
  {"llm-latency-ms", "AGENTD_LLM_LATENCY_MS", K_INT, OFF(llm_latency_ms), 0, 600000, false, "MS", "0",
   "builtin provider: simulated model latency per agent step (demos, tests)"},
  {"llm-timeout", "AGENTD_LLM_TIMEOUT", K_SECS, OFF(llm_timeout), 1, 86400, false, "SECS", "60",
   "openai: longest one model call may take, retries included (connect and first byte within it)"},
  {"llm-max-output", "AGENTD_LLM_MAX_OUTPUT", K_SIZE, OFF(llm_max_output), 1024, GIB, false, "BYTES", "4m",
   "openai: streamed bytes one model call may send (over: LLM_BAD_RESPONSE)"},
  {"llm-max-steps", "AGENTD_LLM_MAX_STEPS", K_INT, OFF(llm_max_steps), 1, 100, false, "N", "8",
   "openai: model rounds of a run's tool loop (over: LLM_TOO_MANY_STEPS)"},
  {"mcp-timeout", "AGENTD_MCP_TIMEOUT", K_SECS, OFF(mcp_timeout), 0, 86400, false, "SECS", "30",
   "longest a call of an MCP server's tool (and its initialize, tools/list) may take"},
  {"record-usage", "AGENTD_RECORD_USAGE", K_BOOL, OFF(record_usage), 0, 0, false, NULL, "off",
   "add each model call to the user's workload records (feature \"agentd\")"},
  {"approve-tools", "AGENTD_APPROVE_TOOLS", K_NAME, OFF(approve_tools), 0, 0, false, "LIST", "none",
   "comma-separated tool names (`*` wildcards) whose calls by the model wait for the user's approval"},
  {"approval-timeout", "AGENTD_APPROVAL_TIMEOUT", K_SECS, OFF(approval_timeout), 1, 31536000, false, "SECS", "900",
   "a pending approval expires after this (the run stops, reason approval_timeout)"},
  {"shutdown-grace", "AGENTD_SHUTDOWN_GRACE", K_SECS0, OFF(shutdown_grace), 0, 86400, false, "SECS", "10",
   "runs may finish for this long on SIGTERM"},
};
#define N_OPTS (sizeof(OPTS) / sizeof(OPTS[0]))

/* ---- small helpers ---------------------------------------------------------- */

static void seterr(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t cap, const char *fmt, ...) {
  if (!err || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

/* A value fit to quote in a one-line message: at most 60 bytes, control bytes
 * and non-ASCII shown as '?', "..." when clipped. */
typedef struct { char s[72]; } quoted_t;
static quoted_t quote(const char *v) {
  quoted_t q;
  size_t i = 0, j = 0;
  for (; v[i] && j < 60; i++) q.s[j++] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
  if (v[i]) { memcpy(q.s + j, "...", 3); j += 3; }
  q.s[j] = 0;
  return q;
}

static void set_str(char **slot, char *v) {
  free(*slot);
  *slot = v;
}

static bool has_ctl_or_space(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || *s == 0x7f) return true;
  return false;
}

/* Decimal integer, optional leading '-', nothing else (no spaces, no '+', no hex). */
static bool parse_ll(const char *s, long long *out) {
  const char *p = s;
  if (*p == '-') p++;
  if (!isdigit((unsigned char)*p)) return false;
  for (const char *q = p; *q; q++)
    if (!isdigit((unsigned char)*q)) return false;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

/* A finite decimal number: digits, '.', exponent, optional sign; no hex, inf, nan. */
static bool parse_double(const char *s, double *out) {
  if (!*s || strlen(s) > 64) return false;
  for (const char *q = s; *q; q++)
    if (!isdigit((unsigned char)*q) && *q != '.' && *q != 'e' && *q != 'E' && *q != '-' && *q != '+') return false;
  errno = 0;
  char *end;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !isfinite(v)) return false;
  *out = v;
  return true;
}

/* 1/true/yes/on → 1, 0/false/no/off → 0, else -1 (ASCII case-insensitive). */
static int parse_bool(const char *s) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return 1;
    if (strcasecmp(s, no[i]) == 0) return 0;
  }
  return -1;
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* The scheme part of a URL-ish value, for messages that must not echo credentials. */
static quoted_t scheme_of(const char *v) {
  const char *c = strchr(v, ':');
  size_t n = c ? (size_t)(c - v) : strlen(v);
  if (n > 20) n = 20;
  char tmp[24];
  memcpy(tmp, v, n);
  tmp[n] = 0;
  return quote(tmp);
}

/* ---- CORS list -------------------------------------------------------------- */

static void free_origins(config_t *cfg) {
  if (cfg->cors_origins)
    for (size_t i = 0; cfg->cors_origins[i]; i++) free(cfg->cors_origins[i]);
  free(cfg->cors_origins);
  cfg->cors_origins = NULL;
  cfg->n_cors_origins = 0;
}

static int parse_cors(config_t *cfg, const char *v, const char *src, char *err, size_t cap) {
  char **list = calloc(CFG_CORS_MAX + 1, sizeof(char *));
  if (!list) abort();
  size_t n = 0;
  const char *p = v;
  for (;;) {
    const char *comma = strchr(p, ',');
    const char *e = comma ? comma : p + strlen(p);
    const char *b = p;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    size_t len = (size_t)(e - b);
    if (len > 0) {
      char *o = xstrndup(b, len);
      const char *rest = starts_with(o, "https://") ? o + 8 : starts_with(o, "http://") ? o + 7 : NULL;
      if (rest && rest[0] && o[len - 1] == '/') o[--len] = 0; /* an Origin never ends in '/': "https://x/" is "https://x" */
      const char *why = NULL;
      if (!rest) why = "must start with http:// or https://";
      else if (!*rest) why = "has no host";
      else if (strchr(rest, '/') || strchr(rest, '?') || strchr(rest, '#') || has_ctl_or_space(rest))
        why = "must be scheme://host[:port] without path";
      else if (len > CFG_ORIGIN_MAX) why = "is too long";
      else if (n == CFG_CORS_MAX) why = "is one too many (at most 64 origins)";
      if (why) {
        seterr(err, cap, "%s: origin '%s' %s", src, quote(o).s, why);
        free(o);
        for (size_t i = 0; i < n; i++) free(list[i]);
        free(list);
        return -1;
      }
      list[n++] = o;
    }
    if (!comma) break;
    p = comma + 1;
  }
  free_origins(cfg);
  cfg->cors_origins = list;
  cfg->n_cors_origins = n;
  return 0;
}

/* ---- one option ------------------------------------------------------------- */

/* Parse a size: digits with an optional k/K (KiB) or m/M (MiB) suffix. */
static bool parse_size(const char *s, long long *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 20) return false;
  long long mult = 1;
  char tmp[24];
  memcpy(tmp, s, n + 1);
  char last = tmp[n - 1];
  if (last == 'k' || last == 'K') mult = KIB;
  else if (last == 'm' || last == 'M') mult = MIB;
  if (mult != 1) tmp[--n] = 0;
  long long v;
  if (n == 0 || tmp[0] == '-' || !parse_ll(tmp, &v)) return false;
  if (v > (long long)(16 * GIB) / mult + 1) return false; /* caps are far below; avoid overflow */
  *out = v * mult;
  return true;
}

static void size_text(long long v, char out[32]) {
  if (v % MIB == 0) snprintf(out, 32, "%lldm", v / MIB);
  else if (v % KIB == 0) snprintf(out, 32, "%lldk", v / KIB);
  else snprintf(out, 32, "%lld", v);
}

/* Apply value v (never NULL) from src ("--port" or "AGENTD_PORT") to cfg. */
static int opt_apply(config_t *cfg, const opt_t *o, const char *v, const char *src, bool from_flag, char *err,
                     size_t cap) {
  char *base = (char *)cfg;
  char **sp = (char **)(base + o->off);
  if (strlen(v) > CFG_STR_MAX) {
    seterr(err, cap, "%s: value too long (at most %d bytes)", src, CFG_STR_MAX);
    return -1;
  }
  switch (o->kind) {
  case K_HOST:
    if (!*v || strlen(v) > CFG_HOST_MAX || has_ctl_or_space(v)) {
      seterr(err, cap, "%s: must be a host name or address (1..%d bytes, no spaces), got '%s'", src, CFG_HOST_MAX,
             quote(v).s);
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  case K_PATH:
  case K_NAME:
    if (!*v) {
      seterr(err, cap, "%s: must not be empty", src);
      return -1;
    }
    if (o->kind == K_NAME && (strlen(v) > 256 || has_ctl_or_space(v))) {
      seterr(err, cap, "%s: must be 1..256 bytes without spaces, got '%s'", src, quote(v).s);
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  case K_INT: {
    long long x;
    if (!parse_ll(v, &x) || x < o->min || x > o->max) {
      seterr(err, cap, "%s: must be an integer %lld..%lld, got '%s'", src, o->min, o->max, quote(v).s);
      return -1;
    }
    *(int *)(base + o->off) = (int)x;
    return 0;
  }
  case K_BOOL: {
    int b = parse_bool(v);
    if (b < 0) {
      seterr(err, cap, "%s: must be 1/true/yes/on or 0/false/no/off, got '%s'", src, quote(v).s);
      return -1;
    }
    if (from_flag && o->invert) b = !b;
    *(int *)(base + o->off) = b;
    return 0;
  }
  case K_SIZE: {
    long long x;
    if (!parse_size(v, &x) || x < o->min || x > o->max) {
      char lo[32], hi[32];
      size_text(o->min, lo);
      size_text(o->max, hi);
      seterr(err, cap, "%s: must be a byte count %s..%s (k/m suffix for KiB/MiB), got '%s'", src, lo, hi,
             quote(v).s);
      return -1;
    }
    *(size_t *)(base + o->off) = (size_t)x;
    return 0;
  }
  case K_SECS:
  case K_SECS0: {
    double x;
    int zero_ok = o->kind == K_SECS0;
    if (!parse_double(v, &x) || !(zero_ok ? x >= 0 : x > 0) || x > (double)o->max) {
      seterr(err, cap, "%s: must be seconds %s 0 and <= %lld, got '%s'", src, zero_ok ? ">=" : ">", o->max,
             quote(v).s);
      return -1;
    }
    *(double *)(base + o->off) = x;
    return 0;
  }
  case K_RATE: {
    double r = 0, b = 0;
    const char *slash = strchr(v, '/');
    bool ok;
    if (slash) {
      char rs[80];
      size_t n = (size_t)(slash - v);
      ok = n < sizeof rs;
      if (ok) {
        memcpy(rs, v, n);
        rs[n] = 0;
        ok = parse_double(rs, &r) && parse_double(slash + 1, &b) && r > 0 && b >= 1;
      }
    } else {
      ok = parse_double(v, &r) && r >= 0;
      b = 2 * r;
      if (ok && r > 0 && b < 1) b = 1;
    }
    if (!ok || r > 1e6 || b > 1e7) {
      seterr(err, cap, "%s: must be R/B (requests/s > 0, burst >= 1), R (burst 2R) or 0 (off), got '%s'", src,
             quote(v).s);
      return -1;
    }
    cfg->rate_per_s = r;
    cfg->rate_burst = r == 0 ? 0 : b;
    return 0;
  }
  case K_LLM:
    if (strcmp(v, "builtin") != 0 && strcmp(v, "openai") != 0) {
      seterr(err, cap, "%s: must be builtin or openai, got '%s'", src, quote(v).s);
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  case K_LOGLEVEL: {
    log_level_t l;
    if (log_level_parse(v, &l) != 0) {
      seterr(err, cap, "%s: must be debug, info, warn, error or off, got '%s'", src, quote(v).s);
      return -1;
    }
    cfg->log_level = (int)l;
    return 0;
  }
  case K_LOGFMT:
    if (strcmp(v, "text") == 0) cfg->log_format = LOG_FMT_TEXT;
    else if (strcmp(v, "json") == 0) cfg->log_format = LOG_FMT_JSON;
    else {
      seterr(err, cap, "%s: must be text or json, got '%s'", src, quote(v).s);
      return -1;
    }
    return 0;
  case K_CORS:
    return parse_cors(cfg, v, src, err, cap);
  case K_DB: {
    const char *path = NULL;
    if (starts_with(v, "sqlite://")) path = v + 9;
    else if (starts_with(v, "sqlite:")) path = v + 7;
    if (path) {
      if (!*path) {
        seterr(err, cap, "%s: sqlite URL needs a file path (sqlite:PATH)", src);
        return -1;
      }
    } else if (!(starts_with(v, "postgresql://") && v[13]) && !(starts_with(v, "postgres://") && v[11])) {
      seterr(err, cap, "%s: must be sqlite:PATH, sqlite://PATH, postgresql://… or postgres://…, got scheme '%s'", src,
             scheme_of(v).s);
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  }
  case K_BROKER:
    if (!(starts_with(v, "redis://") && v[8]) && !(starts_with(v, "rediss://") && v[9])) {
      seterr(err, cap, "%s: must be redis://host[:port], got scheme '%s'", src, scheme_of(v).s);
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  case K_SECRET:
    if (strlen(v) < CFG_JWT_SECRET_MIN) {
      seterr(err, cap, "%s: must be at least %d bytes, got %zu", src, CFG_JWT_SECRET_MIN, strlen(v));
      return -1;
    }
    set_str(sp, xstrdup(v));
    return 0;
  case K_URL: {
    const char *rest = starts_with(v, "https://") ? v + 8 : starts_with(v, "http://") ? v + 7 : NULL;
    if (!rest || !*rest || *rest == '/' || has_ctl_or_space(v)) {
      seterr(err, cap, "%s: must be an http:// or https:// URL, got '%s'", src, quote(v).s);
      return -1;
    }
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/') n--; /* stored without trailing '/' */
    set_str(sp, xstrndup(v, n));
    return 0;
  }
  }
  return -1;
}

/* ---- defaults, argv scan ---------------------------------------------------- */

static void set_defaults(config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->command = CFG_CMD_SERVE;
  cfg->host = xstrdup("127.0.0.1");
  cfg->port = 8000;
  cfg->data_dir = xstrdup("./data");
  cfg->jwt_issuer = xstrdup("netra-auth-service");
  cfg->access_ttl = 1800;
  cfg->refresh_ttl = 1209600;
  cfg->dev_login = 0;
  cfg->registration = 1;
  cfg->rate_per_s = 20;
  cfg->rate_burst = 40;
  cfg->max_runs = 256;
  cfg->run_timeout = 300;
  cfg->llm_provider = xstrdup("builtin");
  cfg->cors_origins = calloc(1, sizeof(char *));
  if (!cfg->cors_origins) abort();
  cfg->log_level = LOG_INFO;
  cfg->log_format = isatty(2) ? LOG_FMT_TEXT : LOG_FMT_JSON;
  cfg->max_header_bytes = 16384;
  cfg->max_body_bytes = 1 * MIB;
  cfg->max_ingest_bytes = 64 * MIB;
  cfg->max_json_depth = 64;
  cfg->max_ws_frame = 65536;
  cfg->send_queue_limit = 1 * MIB;
  cfg->request_timeout = 10;
  cfg->idle_timeout = 60;
  cfg->ws_ping_interval = 30;
  cfg->ws_idle_timeout = 90;
  cfg->sse_heartbeat = 15;
  cfg->shutdown_grace = 10;
  cfg->llm_timeout = 60;
  cfg->mcp_timeout = 30;
  cfg->llm_max_output = 4 * MIB;
  cfg->llm_max_steps = 8;
  cfg->approval_timeout = 900;
}

static const opt_t *find_opt(const char *name, size_t n) {
  for (size_t i = 0; i < N_OPTS; i++)
    if (strlen(OPTS[i].flag) == n && memcmp(OPTS[i].flag, name, n) == 0) return &OPTS[i];
  return NULL;
}

typedef struct flagval {
  const opt_t *opt;
  const char *val;  /* borrowed from argv */
  const char *name; /* argv element, for messages */
  size_t name_len;
} flagval_t;

int config_parse(config_t *cfg, int argc, char **argv, char *err, size_t err_cap) {
  set_defaults(cfg);
  if (err && err_cap) err[0] = 0;

  /* Pass 1: syntax only.  --help/--version win over any other problem. */
  flagval_t *flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof *flags);
  const char **pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pos);
  if (!flags || !pos) abort();
  size_t nflags = 0, npos = 0;
  bool help = false, version = false, bad = false, dashdash = false;
  char first_err[512] = "";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (dashdash || a[0] != '-' || a[1] == 0) {
      pos[npos++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) { dashdash = true; continue; }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { help = true; continue; }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) { version = true; continue; }
    const opt_t *o = NULL;
    const char *eq = NULL;
    size_t nlen = 0;
    if (a[1] == '-') {
      eq = strchr(a + 2, '=');
      nlen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
      o = find_opt(a + 2, nlen);
    }
    if (!o) {
      if (!bad) {
        size_t shown = a[1] == '-' ? nlen + 2 : strlen(a);
        char name[80];
        if (shown > 60) shown = 60;
        memcpy(name, a, shown);
        name[shown] = 0;
        snprintf(first_err, sizeof first_err, "unknown option '%s' (see agentd --help)", quote(name).s);
      }
      bad = true;
      continue;
    }
    const char *val;
    if (eq) val = eq + 1;
    else if (o->kind == K_BOOL) val = "1";
    else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) val = argv[++i]; /* "--x --y": x lacks a value */
    else {
      if (!bad) snprintf(first_err, sizeof first_err, "--%s: missing value (--%s %s)", o->flag, o->flag, o->meta);
      bad = true;
      continue;
    }
    flags[nflags++] = (flagval_t){o, val, a, 2 + nlen};
  }

  int rc = -1;
  if (help || (npos > 0 && strcmp(pos[0], "help") == 0)) {
    cfg->command = CFG_CMD_HELP;
    rc = 0;
    goto out;
  }
  if (version || (npos > 0 && strcmp(pos[0], "version") == 0)) {
    cfg->command = CFG_CMD_VERSION;
    rc = 0;
    goto out;
  }
  if (bad) {
    seterr(err, err_cap, "%s", first_err);
    goto out;
  }

  /* Subcommand. */
  size_t used = 0;
  if (npos > 0) {
    const char *c = pos[0];
    used = 1;
    if (strcmp(c, "serve") == 0) cfg->command = CFG_CMD_SERVE;
    else if (strcmp(c, "migrate") == 0) cfg->command = CFG_CMD_MIGRATE;
    else if (strcmp(c, "user") == 0) {
      if (npos < 2 || strcmp(pos[1], "add") != 0) {
        seterr(err, err_cap, "user: expected 'agentd user add EMAIL'");
        goto out;
      }
      if (npos < 3) {
        seterr(err, err_cap, "user add: missing EMAIL (agentd user add EMAIL)");
        goto out;
      }
      const char *email = pos[2];
      const char *at = strchr(email, '@');
      if (strlen(email) > 254 || !at || at == email || !at[1] || strchr(at + 1, '@') || has_ctl_or_space(email)) {
        seterr(err, err_cap, "user add: EMAIL must look like name@domain, got '%s'", quote(email).s);
        goto out;
      }
      cfg->command = CFG_CMD_USER_ADD;
      cfg->user_add_email = xstrdup(email);
      used = 3;
    } else {
      seterr(err, err_cap, "unknown command '%s' (see agentd --help)", quote(c).s);
      goto out;
    }
  }
  if (npos > used) {
    seterr(err, err_cap, "unexpected argument '%s' (see agentd --help)", quote(pos[used]).s);
    goto out;
  }

  /* Environment, then flags.  An empty environment variable counts as unset. */
  bool given[N_OPTS] = {0};
  for (size_t i = 0; i < N_OPTS; i++) {
    const char *v = getenv(OPTS[i].env);
    if (!v || !*v) continue;
    if (opt_apply(cfg, &OPTS[i], v, OPTS[i].env, false, err, err_cap) != 0) goto out;
    given[i] = true;
  }
  for (size_t i = 0; i < nflags; i++) {
    char src[80];
    snprintf(src, sizeof src, "--%s", flags[i].opt->flag);
    if (flags[i].opt->kind == K_BOOL && flags[i].val[0] == 0) {
      seterr(err, err_cap, "%s: empty value (use %s alone or %s=true|false)", src, src, src);
      goto out;
    }
    if (opt_apply(cfg, flags[i].opt, flags[i].val, src, true, err, err_cap) != 0) goto out;
    given[flags[i].opt - OPTS] = true;
  }

  /* Cross-option rules. */
  if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
    seterr(err, err_cap, "%s: --tls-cert and --tls-key must be given together",
           cfg->tls_cert ? "--tls-key" : "--tls-cert");
    goto out;
  }
  if (cfg->mcp_anonymous && !cfg->dev_login) { /* SPEC §7: anonymous MCP is a local dev convenience only */
    seterr(err, err_cap, "--mcp-anonymous: allowed only together with --dev-login");
    goto out;
  }
  for (size_t i = 0; i < N_OPTS; i++)
    if (given[i] && OPTS[i].off == OFF(jwt_issuer)) cfg->jwt_issuer_enforced = 1;
  if (!cfg->database_url) {
    size_t n = strlen(cfg->data_dir);
    while (n > 1 && cfg->data_dir[n - 1] == '/') n--;
    size_t len = 7 + n + 11 + 1;
    cfg->database_url = malloc(len);
    if (!cfg->database_url) abort();
    snprintf(cfg->database_url, len, "sqlite:%.*s/agentd.db", (int)n, cfg->data_dir);
    if (n == 1 && cfg->data_dir[0] == '/') snprintf(cfg->database_url, len, "sqlite:/agentd.db");
  }
  rc = 0;

out:
  free(flags);
  free(pos);
  if (rc != 0) config_dispose(cfg); /* nothing to free on failure; disposing again is harmless */
  return rc;
}

void config_dispose(config_t *cfg) {
  if (!cfg) return;
  free(cfg->user_add_email);
  free(cfg->host);
  free(cfg->data_dir);
  free(cfg->database_url);
  free(cfg->broker_url);
  free(cfg->jwt_secret);
  free(cfg->jwt_issuer);
  free(cfg->llm_provider);
  free(cfg->approve_tools);
  free(cfg->mcp_config);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->public_url);
  free_origins(cfg);
  memset(cfg, 0, sizeof *cfg);
}

int config_cors_allowed(const config_t *cfg, const char *origin, size_t n) {
  if (!cfg->cors_origins || !origin) return 0;
  for (size_t i = 0; i < cfg->n_cors_origins; i++) {
    const char *o = cfg->cors_origins[i];
    if (strlen(o) == n && memcmp(o, origin, n) == 0) return 1;
  }
  return 0;
}

/* ---- --help ----------------------------------------------------------------- */

static char usage_text[12288];
static pthread_once_t usage_once = PTHREAD_ONCE_INIT;

static void usage_build(void) {
  size_t cap = sizeof usage_text, n = 0;
#define PUT(...)                                                   \
  do {                                                             \
    int w_ = snprintf(usage_text + n, cap - n, __VA_ARGS__);       \
    if (w_ > 0) n = (size_t)w_ < cap - n ? n + (size_t)w_ : cap - 1; \
  } while (0)
  PUT("Usage:\n"
      "  agentd [serve] [options]      run the server (default)\n"
      "  agentd migrate [options]      apply database migrations and exit\n"
      "  agentd user add EMAIL [options]\n"
      "                                create a user (password read from stdin)\n"
      "  agentd --version | -V | version\n"
      "  agentd --help | -h | help\n"
      "\n"
      "Every option also reads an environment variable; the flag wins.  Options take\n"
      "'--name value' or '--name=value'.  Sizes are bytes (suffix k/m for KiB/MiB);\n"
      "timeouts are seconds (fractions allowed).\n"
      "\n"
      "Options:\n");
  for (size_t i = 0; i < N_OPTS; i++) {
    const opt_t *o = &OPTS[i];
    char lhs[64];
    if (o->meta) snprintf(lhs, sizeof lhs, "--%s %s", o->flag, o->meta);
    else snprintf(lhs, sizeof lhs, "--%s", o->flag);
    PUT("  %-28s %s\n", lhs, o->help);
    PUT("  %-28s env %s%s, default: %s\n", "", o->env, o->kind != K_BOOL ? "" : o->invert ? "=0" : "=1", o->def);
  }
#undef PUT
}

const char *config_usage(void) {
  pthread_once(&usage_once, usage_build);
  return usage_text;
}
