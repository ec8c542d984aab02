/* api/mcp_api.c — see mcp_api.h.
 *
 * The servers shown are agentd's own (`agentd`, transport "http", its
 * built-in tools, always present) followed by the configured ones the MCP
 * client side reports through mcp/mcp.h (none until it is plugged in).  The
 * tools of /api/mcp/tools are those of the registry whose source is
 * "mcp:<server>", taken from one snapshot; calling one shares POST
 * /api/tools/execute's code (agents_api.h), so its answers are the same
 * (200, 404, 422, the tool's failure status).  agentd's built-in tools are
 * not listed there: they are /api/tools's, and over MCP /mcp's.
 */
#include "api/mcp_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/agents_api.h"
#include "api/app.h"
#include "api/router.h"
#include "mcp/mcp.h"
#include "mcp/server.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/jsonx.h"

#define MAX_SERVERS 256 /* configured servers shown (a config file is not a DoS vector, but bound it) */

static size_t builtin_tool_count(void) {
  tool_list_t *l = tool_list_acquire();
  size_t n = tool_list_size(l), k = 0;
  for (size_t i = 0; i < n; i++) {
    const tool_t *t = tool_list_get(l, i);
    if (!t->source || strcmp(t->source, "builtin") == 0) k++;
  }
  tool_list_release(l);
  return k;
}

/* A snapshot of the configured servers (malloc'd; *n set). */
static mcp_server_status_t *client_servers(size_t *n) {
  size_t cap = 8;
  for (;;) {
    mcp_server_status_t *v = calloc(cap, sizeof(*v));
    if (!v) abort();
    size_t got = mcp_client_servers(v, cap);
    if (got <= cap || cap >= MAX_SERVERS) {
      *n = got < cap ? got : cap;
      return v;
    }
    free(v);
    cap = got < MAX_SERVERS ? got : MAX_SERVERS;
  }
}

/* One server for /servers (full = 0) or /status (full = 1). */
static json_t *self_json(int full) {
  json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:b}", "name", MCP_SELF_NAME, "transport", "http", "status", "connected",
                        "tools", (json_int_t)builtin_tool_count(), "builtin", 1);
  if (full) {
    json_object_set_new(o, "endpoint", json_string("/mcp"));
    json_object_set_new(o, "protocol_version", json_string(MCP_REVISION));
    json_object_set_new(o, "sessions", json_integer((json_int_t)mcp_server_session_count()));
  }
  return o;
}

static json_t *client_json(const mcp_server_status_t *s, int full) {
  json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:b}", "name", s->name, "transport", s->transport ? s->transport : "stdio",
                        "status", s->status ? s->status : "connecting", "tools", (json_int_t)s->tools, "builtin", 0);
  if (full) {
    json_object_set_new(o, "protocol_version", s->protocol_version[0] ? json_string(s->protocol_version) : json_null());
    json_object_set_new(o, "restarts", json_integer(s->restarts));
    json_object_set_new(o, "connected_at", s->connected_at > 0 ? json_real(s->connected_at) : json_null());
    json_object_set_new(o, "error", s->error[0] ? json_string(s->error) : json_null());
  }
  return o;
}

static json_t *servers_json(int full) {
  json_t *arr = json_array();
  json_array_append_new(arr, self_json(full));
  size_t n = 0;
  mcp_server_status_t *v = client_servers(&n);
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, client_json(&v[i], full));
  free(v);
  return arr;
}

/* GET /api/mcp/servers (public: the product's staging suite reads it without credentials). */
static void h_servers(http_req_t *r, route_ctx_t *ctx) {
  json_t *arr = servers_json(0);
  http_respond_json(r, 200, json_pack("{s:O,s:o,s:I}", "servers", arr, "data", arr, "total",
                                      (json_int_t)json_array_size(arr)));
}

/* GET /api/mcp/status: per-server connection state. */
static void h_status(http_req_t *r, route_ctx_t *ctx) {
  json_t *arr = servers_json(1);
  size_t up = 0;
  for (size_t i = 0; i < json_array_size(arr); i++)
    if (strcmp(json_string_value(json_object_get(json_array_get(arr, i), "status")), "connected") == 0) up++;
  http_respond_json(r, 200, json_pack("{s:o,s:I,s:I}", "servers", arr, "total", (json_int_t)json_array_size(arr),
                                      "connected", (json_int_t)up));
}

/* GET /api/mcp/config: how an MCP client reaches agentd.  The base is
 * --public-url, else this request's scheme and Host. */
static void h_config(http_req_t *r, route_ctx_t *ctx) {
  const char *pub = g_app->cfg->public_url;
  char endpoint[600];
  if (pub) {
    size_t n = strlen(pub);
    while (n > 0 && pub[n - 1] == '/') n--;
    snprintf(endpoint, sizeof endpoint, "%.*s/mcp", (int)(n < 500 ? n : 500), pub);
  } else {
    slice_t host;
    if (!http_req_header(r, "host", &host) || host.n == 0 || host.n > 255) host = slice_of("localhost", 9);
    snprintf(endpoint, sizeof endpoint, "%s://%.*s/mcp", http_req_is_tls(r) ? "https" : "http", (int)host.n, host.p);
  }
  http_respond_json(r, 200, json_pack("{s:{s:{s:{s:s,s:s}}}}", "mcp", "servers", MCP_SELF_NAME, "transport", "http",
                                      "endpoint", endpoint));
}

static const char *mcp_server_of(const tool_t *t) {
  return t->source && strncmp(t->source, "mcp:", 4) == 0 ? t->source + 4 : NULL;
}

/* GET /api/mcp/tools[?server=NAME]: the tools of the connected MCP servers. */
static void h_tools(http_req_t *r, route_ctx_t *ctx) {
  const char *want = NULL;
  http_req_query(r, "server", &want);
  tool_list_t *l = tool_list_acquire();
  size_t n = tool_list_size(l);
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const tool_t *t = tool_list_get(l, i);
    const char *srv = mcp_server_of(t);
    if (!srv || (want && strcmp(want, srv) != 0)) continue;
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:O,s:b}", "name", t->name, "server", srv, "description",
                                         t->description ? t->description : "", "input_schema", tool_schema(t),
                                         "destructive", t->destructive));
  }
  tool_list_release(l);
  http_respond_json(r, 200, json_pack("{s:o,s:I}", "tools", arr, "total", (json_int_t)json_array_size(arr)));
}

/* POST /api/mcp/tools/call {"tool_name"|"name", "server"?, "arguments"?}: the
 * name is the registry's "<server>.<tool>", or the bare tool with "server". */
static void h_call(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  const char *name = NULL, *server = NULL;
  int rc = jsonx_get_cstr(body, "tool_name", &name);
  if (rc == 0 && !name) rc = jsonx_get_cstr(body, "name", &name);
  if (rc != 0 || !name || !name[0]) {
    json_decref(body);
    router_respond_validation(r, "tool_name", rc ? jsonx_cstr_why(rc) : "is required");
    return;
  }
  if (jsonx_get_cstr(body, "server", &server) != 0) {
    json_decref(body);
    router_respond_validation(r, "server", "must be a string");
    return;
  }
  char full[600];
  size_t sl = server ? strlen(server) : 0;
  if (server && !(strncmp(name, server, sl) == 0 && name[sl] == '.'))
    snprintf(full, sizeof full, "%.200s.%.380s", server, name);
  else
    snprintf(full, sizeof full, "%.590s", name);
  const tool_t *t = tool_find(full);
  if (t && (!mcp_server_of(t) || (server && strcmp(mcp_server_of(t), server) != 0))) {
    tool_unref(t);
    t = NULL;
  }
  if (!t) {
    char msg[300];
    snprintf(msg, sizeof msg, "MCP tool '%.200s' not found", full);
    json_decref(body);
    http_respond_error(r, AGD_ENOT_FOUND, msg, NULL);
    return;
  }
  json_t *args = json_object_get(body, "arguments");
  if (!args || json_is_null(args)) args = json_object();
  else json_incref(args);
  json_decref(body);
  if (jsonx_has_nul(args)) {
    json_decref(args);
    tool_unref(t);
    router_respond_validation(r, "arguments", "strings must not contain NUL characters");
    return;
  }
  api_tool_run(r, ctx, t, args);
}

void api_mcp_register(void) {
  router_add("/api/mcp/servers", HTTP_M_GET, h_servers, ROUTE_PUBLIC);
  router_add("/api/mcp/status", HTTP_M_GET, h_status, 0);
  router_add("/api/mcp/config", HTTP_M_GET, h_config, 0);
  router_add("/api/mcp/tools", HTTP_M_GET, h_tools, 0);
  router_add("/api/mcp/tools/call", HTTP_M_POST, h_call, 0);
  mcp_server_register();
}
