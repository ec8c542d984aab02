/* api/agents_api.c — see agents_api.h.
 *
 * Listings are answered on the loop: agents from their static table, tools
 * from one snapshot of the registry (MCP tools come and go meanwhile).  A tool
 * is looked up on the loop (unknown: 404); its arguments are checked against
 * its schema (422, the details naming the failing path such as
 * "arguments.items[2].name") and it runs on a worker (thread_context reads the
 * store; a schema check is bounded but not free).  The job owns copies of what
 * it uses and a reference on the tool, so an unregistration meanwhile is harmless.
 *
 * How a tool's own failure is answered (SPEC §7 only fixes 404 and 422):
 *   AGD_EVALIDATION  the tool judged its arguments wrong although they fit the
 *                    schema (calculator: "division by zero", a junk
 *                    expression) → 422 VALIDATION_ERROR, details
 *                    [{"field":"arguments","message": the tool's error}];
 *   AGD_ENOT_FOUND   what the arguments name is not the caller's (thread_context
 *                    on another user's thread) → 404 NOT_FOUND;
 *   anything else    (store down, internal) → its own status: 503 / 500.
 */
#include "api/agents_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "api/app.h"
#include "api/job.h"
#include "api/router.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

/* ---- listings ---- */

static void h_agents(http_req_t *r, route_ctx_t *ctx) {
  json_t *arr = json_array();
  for (const agent_ops_t *const *a = agent_all(); *a; a++) {
    json_t *tools = json_array();
    for (size_t i = 0; (*a)->tools && (*a)->tools[i]; i++) json_array_append_new(tools, json_string((*a)->tools[i]));
    json_array_append_new(arr, json_pack("{s:s,s:s,s:o}", "name", (*a)->name, "description", (*a)->description,
                                         "tools", tools));
  }
  http_respond_json(r, 200, json_pack("{s:o,s:I}", "agents", arr, "total", (json_int_t)json_array_size(arr)));
}

static void h_tools(http_req_t *r, route_ctx_t *ctx) {
  tool_list_t *l = tool_list_acquire(); /* one consistent snapshot while MCP tools come and go */
  size_t n = tool_list_size(l);
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const tool_t *t = tool_list_get(l, i);
    json_array_append_new(arr, json_pack("{s:s,s:s,s:O,s:s}", "name", t->name, "description",
                                         t->description ? t->description : "", "input_schema", tool_schema(t),
                                         "source", t->source ? t->source : "builtin"));
  }
  tool_list_release(l);
  http_respond_json(r, 200, json_pack("{s:o,s:I}", "tools", arr, "total", (json_int_t)n));
}

/* ---- tool calls ---- */

typedef struct tool_job {
  const tool_t *tool; /* a reference (tool_find), dropped in done */
  json_t *args;       /* owned */
  char user_id[ID_MAX];
  json_t *result;     /* set by the worker */
  double ms;
  int schema_failed;  /* the arguments failed the tool's schema: 422 naming vpath */
  char vpath[512], vmsg[320];
} tool_job_t;

static int tool_job_work(void *p) {
  tool_job_t *j = p;
  tool_call_ctx_t tc = {
      .user_id = j->user_id,
      .store = g_app ? g_app->store : NULL,
      .llm = g_app ? g_app->llm : NULL,
  };
  /* The schema check runs here, not on the loop: a server's schema and the
   * caller's arguments are both input, and checking them is bounded, not free. */
  int rc = tool_validate(j->tool, j->args, j->vpath, sizeof(j->vpath), j->vmsg, sizeof(j->vmsg));
  if (rc != 0) {
    j->schema_failed = 1;
    return rc;
  }
  uint64_t t0 = time_mono_ns();
  rc = tool_call(j->tool, &tc, j->args, &j->result);
  j->ms = (double)(long long)((double)(time_mono_ns() - t0) / 1e3 + 0.5) / 1000.0;
  return rc;
}

static void tool_job_done(http_req_t *r, void *p, int rc) {
  tool_job_t *j = p;
  if (j->schema_failed) {
    router_respond_validation(r, j->vpath, j->vmsg); /* the path names the field: "arguments.items[2].name" */
  } else if (rc == 0) {
    http_respond_json(r, 200, json_pack("{s:s,s:s,s:O,s:f}", "tool_name", j->tool->name, "status", "success",
                                        "result", j->result ? j->result : json_null(), "execution_time_ms", j->ms));
  } else {
    const char *msg = json_string_value(json_object_get(j->result, "error"));
    if (rc == AGD_EVALIDATION)
      http_respond_error(r, AGD_EVALIDATION, msg ? msg : "invalid arguments",
                         json_pack("[{s:s,s:s}]", "field", "arguments", "message", msg ? msg : "invalid arguments"));
    else
      http_respond_error(r, rc, msg, NULL);
  }
  json_decref(j->args);
  json_decref(j->result);
  tool_unref(j->tool);
}

static void h_tool_execute(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  json_t *jname = json_object_get(body, "tool_name");
  if (!jname) jname = json_object_get(body, "name"); /* MCP-style alias */
  if (!json_is_string(jname) || json_string_length(jname) == 0) {
    json_decref(body);
    router_respond_validation(r, "tool_name", jname ? "must be a non-empty string" : "is required");
    return;
  }
  if (jsonx_has_nul(jname)) { /* "\u0000" is valid JSON; a cut-short name could find another tool */
    json_decref(body);
    router_respond_validation(r, "tool_name", jsonx_cstr_why(JSONX_ENUL));
    return;
  }
  const tool_t *t = tool_find(json_string_value(jname));
  if (!t) {
    char msg[200];
    snprintf(msg, sizeof(msg), "tool '%.100s' not found", json_string_value(jname));
    json_decref(body);
    http_respond_error(r, AGD_ENOT_FOUND, msg, NULL);
    return;
  }
  json_t *args = json_object_get(body, "arguments");
  if (!args || json_is_null(args)) args = json_object_get(body, "parameters"); /* alias */
  if (!args || json_is_null(args)) args = json_object();
  else json_incref(args);
  if (jsonx_has_nul(args)) { /* tools read their arguments' strings as C strings */
    json_decref(args);
    json_decref(body);
    router_respond_validation(r, "arguments", "strings must not contain NUL characters");
    return;
  }
  json_decref(body);
  api_tool_run(r, ctx, t, args);
}

void api_tool_run(http_req_t *r, route_ctx_t *ctx, const tool_t *t, json_t *args) {
  tool_job_t *j = job_new(sizeof(*j));
  j->tool = t;
  j->args = args;
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id ? ctx->user_id : "");
  job_run(r, j, tool_job_work, tool_job_done);
}

void api_agents_register(void) {
  router_add("/api/agents", HTTP_M_GET, h_agents, 0);
  router_add("/api/tools", HTTP_M_GET, h_tools, 0);
  router_add("/api/tools/list", HTTP_M_GET, h_tools, 0);
  router_add("/api/tools/execute", HTTP_M_POST, h_tool_execute, 0);
  router_add("/api/execute/tool", HTTP_M_POST, h_tool_execute, 0);
}
