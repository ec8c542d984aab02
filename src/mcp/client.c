/* mcp/client.c — see client.h; the transports are stdio.c and http.c.
 *
 * This file holds the server table (from the config file), the status every
 * transport reports into, the registration of a server's tools in the
 * registry, and the bridge from a calling thread to the loop:
 *
 *   caller (run thread / worker)              loop
 *   ----------------------------              ----
 *   call = {params}; queue it; async_send  →  on_async: write the request,
 *   wait on call->cond in 50 ms slices         remember it as pending
 *     (cancel probe, deadline)             ←  answer line: complete(call)
 *   cancel/timeout: mark abandoned, queue  →  on_async: forget it, send
 *     on the cancel queue, return at once      notifications/cancelled
 *
 * A call never waits for the loop to agree to its leaving: the caller returns
 * as soon as it decides to, and the reference counts keep the call alive for
 * the side that still holds it.
 */
#include "mcp/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcp/client_int.h"
#include "mcp/mcp.h"
#include "tools/schema.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define MCP_MAX_SERVERS 64
#define MCP_CONFIG_MAX (1u << 20)
#define MCP_WAIT_SLICE_MS 50 /* a waiting caller looks at its cancel probe this often */
#define MCP_TICK_MS 250

extern char **environ;

mcp_client_t g_mcp = {.mu = PTHREAD_MUTEX_INITIALIZER, .timeout_s = 30};

static const char *state_name(mcp_state_t s) {
  switch (s) {
  case MCP_S_READY: return "connected";
  case MCP_S_FAILED: return "failed";
  case MCP_S_RESTARTING: return "restarting";
  case MCP_S_STOPPED: return "stopped";
  default: return "connecting";
  }
}

/* ---- configuration ---- */

static void strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static void server_dispose(mcp_server_t *s) {
  strv_free(s->argv);
  strv_free(s->env);
  strv_free(s->headers);
  free(s->url);
  free(s->cwd);
}

static int name_ok(const char *n) {
  size_t len = strlen(n);
  if (len == 0 || len > MCP_SERVER_NAME_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = n[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* The child's environment: agentd's own, with the config's entries replacing or adding. */
static int build_env(mcp_server_t *s, const json_t *env, char *err, size_t cap) {
  size_t n0 = 0;
  while (environ && environ[n0]) n0++;
  size_t extra = json_is_object(env) ? json_object_size(env) : 0;
  char **v = xcalloc(n0 + extra + 1, sizeof(char *));
  size_t k = 0;
  for (size_t i = 0; i < n0; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int replaced = 0;
    const char *key;
    json_t *val;
    if (extra) json_object_foreach((json_t *)env, key, val) {
        if (strlen(key) == klen && memcmp(key, environ[i], klen) == 0) replaced = 1;
      }
    if (!replaced) v[k++] = xstrdup(environ[i]);
  }
  const char *key;
  json_t *val;
  if (extra) json_object_foreach((json_t *)env, key, val) {
      if (!json_is_string(val) || !*key || strchr(key, '=') || strlen(json_string_value(val)) != json_string_length(val)) {
        snprintf(err, cap, "servers.%s.env.%.64s: must be a string (and the name must not contain '=')", s->name, key);
        v[k] = NULL;
        strv_free(v);
        return -1;
      }
      size_t len = strlen(key) + 1 + json_string_length(val) + 1;
      char *e = xmalloc(len);
      snprintf(e, len, "%s=%s", key, json_string_value(val));
      v[k++] = e;
    }
  v[k] = NULL;
  s->env = v;
  return 0;
}

static int load_stdio(mcp_server_t *s, const json_t *cfg, char *err, size_t cap) {
  const json_t *cmd = json_object_get(cfg, "command"), *args = json_object_get(cfg, "args");
  size_t n = json_is_array(cmd) ? json_array_size(cmd) : 1;
  size_t na = json_is_array(args) ? json_array_size(args) : 0;
  if ((json_is_array(cmd) && (n == 0 || args)) || (!json_is_array(cmd) && !json_is_string(cmd)) ||
      (args && !json_is_array(args))) {
    snprintf(err, cap, "servers.%s.command: must be a non-empty array of strings (or a string with an args array)",
             s->name);
    return -1;
  }
  s->argv = xcalloc(n + na + 1, sizeof(char *));
  for (size_t i = 0; i < n + na; i++) {
    const json_t *a = json_is_array(cmd) ? json_array_get(cmd, i) : i == 0 ? cmd : json_array_get(args, i - 1);
    if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) || (i == 0 && !*json_string_value(a))) {
      snprintf(err, cap, "servers.%s.command[%zu]: must be a string%s", s->name, i, i == 0 ? " naming a program" : "");
      return -1;
    }
    s->argv[i] = xstrdup(json_string_value(a));
  }
  const json_t *cwd = json_object_get(cfg, "cwd");
  if (cwd && (!json_is_string(cwd) || !*json_string_value(cwd) ||
              strlen(json_string_value(cwd)) != json_string_length(cwd))) {
    snprintf(err, cap, "servers.%s.cwd: must be a directory path", s->name);
    return -1;
  }
  if (cwd) s->cwd = xstrdup(json_string_value(cwd));
  const json_t *env = json_object_get(cfg, "env");
  if (env && !json_is_object(env)) {
    snprintf(err, cap, "servers.%s.env: must be an object of strings", s->name);
    return -1;
  }
  return build_env(s, env, err, cap);
}

static int load_http(mcp_server_t *s, const json_t *cfg, char *err, size_t cap) {
  const char *url = json_string_value(json_object_get(cfg, "url"));
  if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strlen(url) > 2048 ||
      strpbrk(url, " \r\n\t")) {
    snprintf(err, cap, "servers.%s.url: must be an http:// or https:// URL", s->name);
    return -1;
  }
  s->url = xstrdup(url);
  const json_t *h = json_object_get(cfg, "headers");
  if (h && !json_is_object(h)) {
    snprintf(err, cap, "servers.%s.headers: must be an object of strings", s->name);
    return -1;
  }
  s->headers = xcalloc((h ? json_object_size(h) : 0) + 1, sizeof(char *));
  size_t k = 0;
  const char *key;
  json_t *val;
  if (h) json_object_foreach((json_t *)h, key, val) {
      const char *v = json_string_value(val);
      if (!v || !*key || strpbrk(key, ": \r\n") || strpbrk(v, "\r\n") || strlen(v) != json_string_length(val)) {
        snprintf(err, cap, "servers.%s.headers.%.64s: must be a string without line breaks", s->name, key);
        return -1;
      }
      size_t len = strlen(key) + 2 + strlen(v) + 1;
      s->headers[k] = xmalloc(len);
      snprintf(s->headers[k++], len, "%s: %s", key, v);
    }
  return 0;
}

static int load_doc(const json_t *doc, char *err, size_t cap) {
  const json_t *servers = json_object_get(doc, "servers");
  if (!servers) servers = json_object_get(doc, "mcpServers"); /* the name other MCP clients use */
  if (!json_is_object(doc) || !json_is_object(servers)) {
    snprintf(err, cap, "must be a JSON object with a \"servers\" object");
    return -1;
  }
  if (json_object_size(servers) > MCP_MAX_SERVERS) {
    snprintf(err, cap, "servers: at most %d", MCP_MAX_SERVERS);
    return -1;
  }
  g_mcp.servers = xcalloc(json_object_size(servers) + 1, sizeof(mcp_server_t));
  const char *name;
  json_t *cfg;
  json_object_foreach((json_t *)servers, name, cfg) {
    mcp_server_t *s = &g_mcp.servers[g_mcp.n];
    if (!name_ok(name) || strcmp(name, MCP_SELF_NAME) == 0) {
      snprintf(err, cap, "servers.%.80s: a name is 1-%d of [A-Za-z0-9_-] and not \"agentd\" (the built-in server)",
               name, MCP_SERVER_NAME_MAX);
      return -1;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->source, sizeof(s->source), "mcp:%s", name);
    g_mcp.n++;
    int has_cmd = json_object_get(cfg, "command") != NULL, has_url = json_object_get(cfg, "url") != NULL;
    if (!json_is_object(cfg) || has_cmd == has_url) {
      snprintf(err, cap, "servers.%s: needs exactly one of \"command\" (stdio) or \"url\" (Streamable HTTP)", name);
      return -1;
    }
    s->transport = has_cmd ? MCP_T_STDIO : MCP_T_HTTP;
    if ((has_cmd ? load_stdio(s, cfg, err, cap) : load_http(s, cfg, err, cap)) != 0) return -1;
  }
  return 0;
}

static size_t provide_servers(void *arg, mcp_server_status_t *out, size_t cap);

static void servers_free(void) {
  for (size_t i = 0; i < g_mcp.n; i++) server_dispose(&g_mcp.servers[i]);
  free(g_mcp.servers);
  g_mcp.servers = NULL;
  g_mcp.n = 0;
}

int mcp_client_load(const char *path, double call_timeout_s, char *err, size_t cap) {
  if (call_timeout_s > 0) g_mcp.timeout_s = call_timeout_s;
  if (!path) return 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, cap, "--mcp-config: cannot read '%s': %s", path, strerror(errno));
    return -1;
  }
  buf_t b;
  buf_init(&b, MCP_CONFIG_MAX);
  char chunk[8192];
  size_t got;
  int too_big = 0;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
    if (buf_append(&b, chunk, got) != 0) {
      too_big = 1;
      break;
    }
  fclose(f);
  json_error_t jerr;
  json_t *doc = too_big ? NULL : json_loadb(b.base ? b.base : "", b.len, JSON_REJECT_DUPLICATES, &jerr);
  buf_dispose(&b);
  if (!doc) {
    if (too_big) snprintf(err, cap, "--mcp-config: '%s' is over 1 MiB", path);
    else snprintf(err, cap, "--mcp-config: '%s' line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
    return -1;
  }
  char why[400] = "";
  int rc = load_doc(doc, why, sizeof(why));
  json_decref(doc);
  if (rc != 0) {
    snprintf(err, cap, "--mcp-config: '%s': %s", path, why);
    servers_free();
    return -1;
  }
  static const mcp_client_provider_t prov = {.servers = provide_servers};
  mcp_client_provide(&prov);
  return 0;
}

/* ---- status ---- */

void mcp__set_state(mcp_server_t *s, mcp_state_t st, const char *err) {
  pthread_mutex_lock(&g_mcp.mu);
  s->state = st;
  if (err) snprintf(s->last_error, sizeof(s->last_error), "%s", err);
  pthread_mutex_unlock(&g_mcp.mu);
}

void mcp__set_error(mcp_server_t *s, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_mcp.mu);
  snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
  pthread_mutex_unlock(&g_mcp.mu);
  log_warn("mcp server '%s': %s", s->name, msg);
}

void mcp__set_info(mcp_server_t *s, const char *proto, const json_t *info) {
  const char *n = json_string_value(json_object_get(info, "name"));
  const char *v = json_string_value(json_object_get(info, "version"));
  pthread_mutex_lock(&g_mcp.mu);
  snprintf(s->proto, sizeof(s->proto), "%s", proto ? proto : "");
  snprintf(s->sname, sizeof(s->sname), "%s", n ? n : "");
  snprintf(s->sver, sizeof(s->sver), "%s", v ? v : "");
  s->connected_at = time_now();
  pthread_mutex_unlock(&g_mcp.mu);
}

void mcp__count_restart(mcp_server_t *s) {
  pthread_mutex_lock(&g_mcp.mu);
  s->restarts++;
  pthread_mutex_unlock(&g_mcp.mu);
}

void mcp__count(mcp_server_t *s, unsigned long long *field) {
  pthread_mutex_lock(&g_mcp.mu);
  (*field)++;
  pthread_mutex_unlock(&g_mcp.mu);
}

/* mcp/mcp.h's provider: a copy of each server's status under the lock. */
static size_t provide_servers(void *arg, mcp_server_status_t *out, size_t cap) {
  pthread_mutex_lock(&g_mcp.mu);
  size_t n = g_mcp.n;
  for (size_t i = 0; i < n && i < cap; i++) {
    const mcp_server_t *s = &g_mcp.servers[i];
    mcp_server_status_t *o = &out[i];
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", s->name);
    o->transport = s->transport == MCP_T_STDIO ? "stdio" : "http";
    o->status = state_name(s->state);
    o->tools = s->ntools;
    o->restarts = s->restarts;
    o->connected_at = s->state == MCP_S_READY ? s->connected_at : 0;
    snprintf(o->protocol_version, sizeof(o->protocol_version), "%.15s", s->proto);
    snprintf(o->error, sizeof(o->error), "%s", s->last_error);
  }
  pthread_mutex_unlock(&g_mcp.mu);
  return n;
}

/* ---- tools in the registry ---- */

typedef struct proxy {
  char *server, *tool; /* MCP names */
} proxy_t;

static void proxy_free(void *p) {
  proxy_t *x = p;
  free(x->server);
  free(x->tool);
  free(x);
}

static int proxy_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  const proxy_t *x = self->user_data;
  return mcp_client_call(x->server, x->tool, args, ctx, result);
}

/* 1 when the registry would take this schema (checked here so that one bad
 * tool is skipped instead of failing the server's whole list). */
static int schema_ok(const mcp_server_t *s, const char *tool, const json_t *schema) {
  char err[300];
  schema_t *c = NULL;
  if (!json_is_object(schema)) {
    log_warn("mcp server '%s': tool '%.100s' skipped: its inputSchema is not an object", s->name, tool);
    return 0;
  }
  if (schema_compile(schema, &c, err, sizeof(err)) != 0) {
    log_warn("mcp server '%s': tool '%.100s' skipped: inputSchema %s", s->name, tool, err);
    return 0;
  }
  schema_free(c);
  return 1;
}

size_t mcp__register_tools(mcp_server_t *s, const json_t *tools) {
  size_t n = json_array_size(tools), k = 0;
  tool_t *descs = xcalloc(n ? n : 1, sizeof(*descs));
  const tool_t **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
  char **names = xcalloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    const json_t *t = json_array_get(tools, i);
    const char *tname = json_string_value(json_object_get(t, "name"));
    if (!tname || !*tname || strlen(tname) > 128 || strlen(tname) != json_string_length(json_object_get(t, "name"))) {
      log_warn("mcp server '%s': a tool without a usable name skipped", s->name);
      continue;
    }
    char full[MCP_SERVER_NAME_MAX + 1 + 129];
    snprintf(full, sizeof(full), "%s.%s", s->name, tname);
    int dup = 0;
    for (size_t j = 0; j < k; j++) dup |= strcmp(names[j], full) == 0;
    if (dup) {
      log_warn("mcp server '%s': tool '%s' listed twice; the first kept", s->name, tname);
      continue;
    }
    const json_t *schema = json_object_get(t, "inputSchema");
    if (!schema_ok(s, tname, schema)) continue;
    proxy_t *x = xcalloc(1, sizeof(*x));
    x->server = xstrdup(s->name);
    x->tool = xstrdup(tname);
    names[k] = xstrdup(full);
    descs[k] = (tool_t){
        .name = names[k],
        .description = json_string_value(json_object_get(t, "description")),
        .input_schema = (json_t *)schema,
        .source = s->source,
        .destructive = json_is_true(json_object_get(json_object_get(t, "annotations"), "destructiveHint")),
        .call = proxy_call,
        .user_data = x,
        .user_data_free = proxy_free,
    };
    ptrs[k] = &descs[k];
    k++;
  }
  int rc = tool_replace_source(s->source, ptrs, k);
  if (rc != 0) {
    log_warn("mcp server '%s': its %zu tools were refused by the registry (%s)", s->name, k, agd_err_code(rc));
    for (size_t i = 0; i < k; i++) proxy_free(descs[i].user_data);
    tool_unregister_source(s->source);
    k = 0;
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  free(ptrs);
  free(descs);
  pthread_mutex_lock(&g_mcp.mu);
  size_t before = s->ntools;
  s->ntools = k;
  pthread_mutex_unlock(&g_mcp.mu);
  if (k != before || !k) log_info("mcp server '%s': %zu tools", s->name, k);
  else log_debug("mcp server '%s': %zu tools (listed again)", s->name, k); /* list_changed can come often */
  return k;
}

/* ---- calls ---- */

void mcp__call_unref(mcp_call_t *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
  pthread_cond_destroy(&c->cond);
  free(c->params);
  free(c->raw);
  free(c);
}

void mcp__complete(mcp_call_t *c, int rc, char *raw, size_t raw_len, const char *errmsg) {
  pthread_mutex_lock(&g_mcp.mu);
  if (!c->done) {
    c->done = 1;
    c->rc = rc;
    c->raw = raw;
    c->raw_len = raw_len;
    raw = NULL;
    if (errmsg) snprintf(c->errmsg, sizeof(c->errmsg), "%s", errmsg);
    pthread_cond_signal(&c->cond);
  }
  pthread_mutex_unlock(&g_mcp.mu);
  free(raw);
}

static mcp_server_t *find_server(const char *name) {
  for (size_t i = 0; i < g_mcp.n; i++)
    if (strcmp(g_mcp.servers[i].name, name) == 0) return &g_mcp.servers[i];
  return NULL;
}

static void abs_deadline(struct timespec *ts, uint64_t ms_from_now) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms_from_now / 1000);
  ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Queue a call for the loop and wait for its outcome (stdio servers).
 * Returns 0 with *raw, or an AGD_E* with errmsg. */
static int bridge_call(mcp_server_t *s, char *params, const tool_call_ctx_t *ctx, uint64_t deadline_ms,
                       char **raw, size_t *raw_len, char *errmsg, size_t errcap) {
  mcp_call_t *c = xcalloc(1, sizeof(*c));
  atomic_init(&c->refs, 2); /* the caller's and the loop's */
  c->srv = s;
  c->params = params;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);

  pthread_mutex_lock(&g_mcp.mu);
  if (!g_mcp.accepting || s->state != MCP_S_READY) {
    snprintf(errmsg, errcap, "mcp server '%s' is %s", s->name, g_mcp.accepting ? state_name(s->state) : "stopping");
    pthread_mutex_unlock(&g_mcp.mu);
    atomic_store(&c->refs, 1);
    mcp__call_unref(c);
    return AGD_EUNAVAILABLE;
  }
  if (s->sub_tail) s->sub_tail->qnext = c;
  else s->sub_head = c;
  s->sub_tail = c;
  uv_async_send(&g_mcp.async);
  int rc = 0;
  for (;;) {
    if (c->done) break;
    uint64_t now = time_mono_ms();
    int left_cancel = 0;
    if (now >= deadline_ms) {
      rc = AGD_ETIMEOUT;
    } else {
      pthread_mutex_unlock(&g_mcp.mu);
      left_cancel = tool_call_cancelled(ctx);
      pthread_mutex_lock(&g_mcp.mu);
      if (c->done) break;
      if (left_cancel) rc = AGD_ECANCELLED;
    }
    if (rc != 0) {
      /* Leave now; the loop forgets the request and tells the server. */
      c->abandoned = 1;
      if (g_mcp.accepting) {
        atomic_fetch_add(&c->refs, 1);
        c->cnext = s->can_head;
        s->can_head = c;
        uv_async_send(&g_mcp.async);
      }
      break;
    }
    uint64_t slice = deadline_ms - now < MCP_WAIT_SLICE_MS ? deadline_ms - now : MCP_WAIT_SLICE_MS;
    struct timespec ts;
    abs_deadline(&ts, slice);
    pthread_cond_timedwait(&c->cond, &g_mcp.mu, &ts);
  }
  if (rc == 0) {
    rc = c->rc;
    if (rc == 0) {
      *raw = c->raw;
      *raw_len = c->raw_len;
      c->raw = NULL;
    } else {
      snprintf(errmsg, errcap, "%s", c->errmsg);
    }
  } else if (rc == AGD_ETIMEOUT) {
    snprintf(errmsg, errcap, "mcp server '%s' did not answer within %g s", s->name, g_mcp.timeout_s);
  } else {
    snprintf(errmsg, errcap, "cancelled");
  }
  pthread_mutex_unlock(&g_mcp.mu);
  mcp__call_unref(c);
  return rc;
}

int mcp_client_call(const char *server, const char *tool, const json_t *args, const tool_call_ctx_t *ctx,
                    json_t **result) {
  *result = NULL;
  mcp_server_t *s = server ? find_server(server) : NULL;
  if (!s || !tool) {
    *result = json_pack("{s:s++}", "error", "no mcp server '", server ? server : "", "'");
    return AGD_ENOT_FOUND;
  }
  if (g_mcp.loop && uv_thread_equal(&(uv_thread_t){uv_thread_self()}, &g_mcp.loop_thread)) { /* would wait for itself */
    *result = json_pack("{s:s}", "error", "an mcp tool cannot be called on the event loop");
    return ERR(AGD_EINTERNAL);
  }
  json_t *p = args ? json_pack("{s:s,s:O}", "name", tool, "arguments", (json_t *)args)
                   : json_pack("{s:s,s:{}}", "name", tool, "arguments");
  char *params = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  if (!params) {
    *result = json_pack("{s:s}", "error", "arguments cannot be serialised");
    return AGD_EVALIDATION;
  }
  mcp__count(s, &s->calls);
  uint64_t deadline = time_mono_ms() + (uint64_t)(g_mcp.timeout_s * 1000.0);
  char *raw = NULL, errmsg[256] = "";
  size_t raw_len = 0;
  int rc;
  if (s->transport == MCP_T_STDIO) {
    rc = bridge_call(s, params, ctx, deadline, &raw, &raw_len, errmsg, sizeof(errmsg));
  } else {
    rc = mcp_http_call(s, params, ctx, deadline, &raw, &raw_len, errmsg, sizeof(errmsg));
    free(params);
  }
  if (rc == 0) rc = mcp_rpc_tool_result(raw, raw_len, s->name, tool, result);
  else *result = json_pack("{s:s}", "error", errmsg[0] ? errmsg : agd_err_code(rc));
  free(raw);
  if (rc != 0) mcp__count(s, &s->call_errors);
  return rc;
}

/* ---- the loop side ---- */

static void on_async(uv_async_t *h) {
  for (size_t i = 0; i < g_mcp.n; i++) {
    mcp_server_t *s = &g_mcp.servers[i];
    pthread_mutex_lock(&g_mcp.mu);
    mcp_call_t *sub = s->sub_head, *can = s->can_head;
    s->sub_head = s->sub_tail = NULL;
    s->can_head = NULL;
    pthread_mutex_unlock(&g_mcp.mu);
    while (sub) {
      mcp_call_t *next = sub->qnext;
      mcp_stdio_submit(s, sub);
      sub = next;
    }
    while (can) {
      mcp_call_t *next = can->cnext;
      mcp_stdio_cancel(s, can);
      can = next;
    }
  }
}

static void on_tick(uv_timer_t *t) {
  uint64_t now = time_mono_ms();
  for (size_t i = 0; i < g_mcp.n; i++)
    if (g_mcp.servers[i].transport == MCP_T_STDIO) mcp_stdio_tick(&g_mcp.servers[i], now);
}

int mcp_client_start(uv_loop_t *loop) {
  if (g_mcp.started || g_mcp.n == 0) return 0;
  g_mcp.loop = loop;
  g_mcp.loop_thread = uv_thread_self();
  for (size_t i = 0; i < g_mcp.n; i++)
    if (g_mcp.servers[i].transport == MCP_T_HTTP && !g_mcp.curl_init) {
      curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread uses libcurl */
      g_mcp.curl_init = 1;
    }
  uv_async_init(loop, &g_mcp.async, on_async);
  uv_timer_init(loop, &g_mcp.tick);
  uv_timer_start(&g_mcp.tick, on_tick, MCP_TICK_MS, MCP_TICK_MS);
  uv_unref((uv_handle_t *)&g_mcp.tick);
  pthread_mutex_lock(&g_mcp.mu);
  g_mcp.accepting = 1;
  pthread_mutex_unlock(&g_mcp.mu);
  g_mcp.started = 1;
  for (size_t i = 0; i < g_mcp.n; i++) {
    mcp_server_t *s = &g_mcp.servers[i];
    s->state = MCP_S_CONNECTING;
    if (s->transport == MCP_T_STDIO) mcp_stdio_start(s, loop);
    else mcp_http_start(s);
  }
  return 0;
}

void mcp_client_stop(void) {
  if (!g_mcp.started || g_mcp.stopping) return;
  g_mcp.stopping = 1;
  pthread_mutex_lock(&g_mcp.mu);
  g_mcp.accepting = 0; /* no caller queues or sends async any more */
  pthread_mutex_unlock(&g_mcp.mu);
  on_async(&g_mcp.async); /* calls queued before: each fails at once (the server is stopping) */
  for (size_t i = 0; i < g_mcp.n; i++) {
    mcp_server_t *s = &g_mcp.servers[i];
    if (s->transport == MCP_T_STDIO) mcp_stdio_stop(s);
    else mcp_http_stop(s);
  }
  uv_close((uv_handle_t *)&g_mcp.async, NULL);
  uv_timer_stop(&g_mcp.tick);
  uv_close((uv_handle_t *)&g_mcp.tick, NULL);
}

void mcp_client_free(void) {
  if (g_mcp.started) {
    if (!g_mcp.stopping) { /* no signal stopped it: stop and let the children go now */
      mcp_client_stop();
      uv_run(g_mcp.loop, UV_RUN_DEFAULT);
    }
    for (size_t i = 0; i < g_mcp.n; i++) {
      mcp_server_t *s = &g_mcp.servers[i];
      tool_unregister_source(s->source);
      if (s->transport == MCP_T_STDIO) mcp_stdio_free(s);
      else mcp_http_free(s); /* joins its thread */
    }
  }
  /* A tool a holder still calls finds no server and answers NOT_FOUND. */
  mcp_client_provide(NULL);
  pthread_mutex_lock(&g_mcp.mu);
  servers_free();
  pthread_mutex_unlock(&g_mcp.mu);
  g_mcp.started = g_mcp.stopping = 0;
  g_mcp.loop = NULL;
  if (g_mcp.curl_init) curl_global_cleanup();
  g_mcp.curl_init = 0;
}
