/* tests/unit/test_mcp_client.c — mcp/client.c (config, tool registration,
 * calls that cannot reach a server) and mcp/rpc.c (the JSON-RPC framing). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcp/client.h"
#include "mcp/client_int.h"
#include "mcp/mcp.h"
#include "tools/tool.h"
#include "util/err.h"

/* ---- rpc.c ---- */

static mcp_scan_t scan(const char *s) {
  mcp_scan_t sc;
  mcp_rpc_scan(s, strlen(s), &sc);
  return sc;
}

Test(mcp_rpc, scan_finds_the_top_level_id_and_method) {
  mcp_scan_t sc = scan("{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"id\":7,\"x\":\"}{\\\"id\\\":9\"}}");
  cr_assert(sc.is_object && sc.complete && sc.has_id && !sc.has_method);
  cr_assert_eq(sc.id, 42);
  sc = scan(" {\"result\":{\"content\":[{\"id\":1}]},\"jsonrpc\":\"2.0\",\"id\":3}");
  cr_assert(sc.has_id && sc.complete);
  cr_assert_eq(sc.id, 3);
  sc = scan("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}");
  cr_assert(sc.has_method && !sc.has_id && sc.complete);
  sc = scan("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}");
  cr_assert(sc.has_method && !sc.has_id); /* a string id is not one of agentd's */
  sc = scan("{\"id\":1.5}");
  cr_assert(!sc.has_id);
}

Test(mcp_rpc, scan_refuses_what_is_no_object) {
  cr_assert(!scan("Starting server...").is_object);
  cr_assert(!scan("[1,2,3]").is_object);
  cr_assert(!scan("").is_object);
  mcp_scan_t sc = scan("{\"jsonrpc\":\"2.0\",\"id\":");
  cr_assert(sc.is_object && !sc.complete && !sc.has_id);
  sc = scan("{\"id\":5,\"result\":{\"text\":\"unterminated");
  cr_assert(sc.is_object && !sc.complete && sc.has_id && sc.id == 5); /* a head: the id is known */
}

Test(mcp_rpc, tail_id) {
  long long id = 0;
  const char *t = "xxxxx\"}]},\"jsonrpc\":\"2.0\",\"id\":42}";
  cr_assert_eq(mcp_rpc_tail_id(t, strlen(t), &id), 0);
  cr_assert_eq(id, 42);
  t = "zz\"}, \"id\" : 7 }\r";
  cr_assert_eq(mcp_rpc_tail_id(t, strlen(t), &id), 0);
  cr_assert_eq(id, 7);
  t = "zz\", \"xid\":3}";
  cr_assert_eq(mcp_rpc_tail_id(t, strlen(t), &id), -1);
  t = "zz\",\"id\":\"3\"}";
  cr_assert_eq(mcp_rpc_tail_id(t, strlen(t), &id), -1);
}

Test(mcp_rpc, versions) {
  cr_assert(mcp_rpc_version_ok("2025-11-25") && mcp_rpc_version_ok("2025-06-18") && mcp_rpc_version_ok("2025-03-26"));
  cr_assert(!mcp_rpc_version_ok("2024-11-05") && !mcp_rpc_version_ok(NULL) && !mcp_rpc_version_ok(""));
}

Test(mcp_rpc, request_lines) {
  size_t n;
  char *l = mcp_rpc_request(9, "tools/call", "{\"name\":\"x\"}", &n);
  cr_assert_str_eq(l, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}\n");
  cr_assert_eq(n, strlen(l));
  free(l);
  l = mcp_rpc_notification("notifications/initialized", NULL, &n);
  cr_assert_str_eq(l, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
  free(l);
}

static int result_of(const char *raw, json_t **out) {
  return mcp_rpc_tool_result(raw, strlen(raw), "srv", "tool", out);
}

Test(mcp_rpc, tool_results) {
  json_t *r = NULL;
  cr_assert_eq(result_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                         "{\"type\":\"text\",\"text\":\"b\"}]}}", &r), 0);
  cr_assert_str_eq(json_string_value(json_object_get(r, "text")), "a\nb");
  cr_assert_null(json_object_get(r, "content"));
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"3\"}],"
                         "\"structuredContent\":{\"sum\":3}}}", &r), 0);
  cr_assert_eq(json_integer_value(json_object_get(r, "sum")), 3);
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"result\":{\"content\":[{\"type\":\"image\",\"data\":\"AA==\","
                         "\"mimeType\":\"image/png\"}]}}", &r), 0);
  cr_assert(json_is_array(json_object_get(r, "content"))); /* items that are not text are kept */
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"bad city\"}],"
                         "\"isError\":true}}", &r), AGD_EVALIDATION);
  cr_assert_str_eq(json_string_value(json_object_get(r, "error")), "bad city");
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"error\":{\"code\":-32602,\"message\":\"unknown tool\"}}", &r), AGD_EVALIDATION);
  cr_assert(strstr(json_string_value(json_object_get(r, "error")), "unknown tool (code -32602)"));
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"error\":{\"code\":-32603,\"message\":\"boom\"}}", &r), AGD_EUNAVAILABLE);
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":", &r), AGD_EUNAVAILABLE);
  json_decref(r);
  cr_assert_eq(result_of("{\"id\":1,\"result\":7}", &r), AGD_EUNAVAILABLE);
  json_decref(r);
}

/* ---- client.c: the config file ---- */

static char cfg_path[64];

static const char *write_cfg(const char *text) {
  snprintf(cfg_path, sizeof(cfg_path), "/tmp/agentd_mcp_cfg_XXXXXX");
  int fd = mkstemp(cfg_path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return cfg_path;
}

static int load(const char *text, char *err, size_t cap) {
  int rc = mcp_client_load(write_cfg(text), 30, err, cap);
  unlink(cfg_path);
  return rc;
}

Test(mcp_client, config_loads_and_shows_servers) {
  char err[512] = "";
  cr_assert_eq(load("{\"servers\":{\"fs\":{\"command\":[\"/bin/true\",\"-x\"],\"env\":{\"A\":\"1\"}},"
                    "\"web\":{\"url\":\"https://example.com/mcp\",\"headers\":{\"Authorization\":\"Bearer t\"}}}}",
                    err, sizeof(err)), 0, "%s", err);
  mcp_server_status_t st[4];
  cr_assert_eq(mcp_client_servers(st, 4), 2);
  cr_assert_str_eq(st[0].name, "fs");
  cr_assert_str_eq(st[0].transport, "stdio");
  cr_assert_str_eq(st[0].status, "connecting");
  cr_assert_str_eq(st[1].name, "web");
  cr_assert_str_eq(st[1].transport, "http");
  /* not started: a call fails at once, without waiting */
  json_t *res = NULL;
  cr_assert_eq(mcp_client_call("fs", "x", NULL, NULL, &res), AGD_EUNAVAILABLE);
  json_decref(res);
  cr_assert_eq(mcp_client_call("nope", "x", NULL, NULL, &res), AGD_ENOT_FOUND);
  json_decref(res);
  mcp_client_free();
  cr_assert_eq(mcp_client_servers(st, 4), 0);
}

Test(mcp_client, the_claude_style_config_is_accepted) {
  char err[512] = "";
  cr_assert_eq(load("{\"mcpServers\":{\"fs\":{\"command\":\"/bin/true\",\"args\":[\"a\",\"b\"]}}}", err, sizeof(err)), 0,
               "%s", err);
  mcp_client_free();
}

Test(mcp_client, bad_configs_say_why) {
  static const struct {
    const char *doc, *why;
  } cases[] = {
      {"{nope", "line 1"},
      {"[]", "\"servers\" object"},
      {"{\"servers\":{\"agentd\":{\"command\":[\"x\"]}}}", "not \"agentd\""},
      {"{\"servers\":{\"a b\":{\"command\":[\"x\"]}}}", "[A-Za-z0-9_-]"},
      {"{\"servers\":{\"s\":{\"command\":[\"x\"],\"url\":\"http://h\"}}}", "exactly one of"},
      {"{\"servers\":{\"s\":{\"url\":\"ftp://h\"}}}", "servers.s.url"},
      {"{\"servers\":{\"s\":{\"url\":\"http://h\",\"headers\":{\"X\":\"a\\r\\nB: c\"}}}}", "servers.s.headers.X"},
      {"{\"servers\":{\"s\":{\"command\":[\"\"]}}}", "servers.s.command[0]"},
      {"{\"servers\":{\"s\":{\"command\":[\"x\"],\"env\":[]}}}", "servers.s.env"},
      {"{\"servers\":{\"s\":{\"command\":[\"x\"],\"cwd\":3}}}", "servers.s.cwd"},
      {"{\"servers\":{\"s\":{\"command\":[\"x\"]},\"s\":{\"command\":[\"y\"]}}}", "duplicate"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char err[512] = "";
    cr_assert_eq(load(cases[i].doc, err, sizeof(err)), -1, "%s", cases[i].doc);
    cr_assert(strncmp(err, "--mcp-config: ", 14) == 0 && strstr(err, cases[i].why), "%s → %s", cases[i].doc, err);
    mcp_server_status_t st[2];
    cr_assert_eq(mcp_client_servers(st, 2), 0);
  }
  char err[512] = "";
  cr_assert_eq(mcp_client_load("/nonexistent/mcp.json", 30, err, sizeof(err)), -1);
  cr_assert(strstr(err, "cannot read"), "%s", err);
}

/* ---- client.c: a server's tools in the registry ---- */

Test(mcp_client, tools_registered_under_server_dot_tool) {
  char err[512] = "";
  cr_assert_eq(load("{\"servers\":{\"fs\":{\"command\":[\"/bin/true\"]}}}", err, sizeof(err)), 0, "%s", err);
  json_t *tools = json_loads(
      "[{\"name\":\"read\",\"description\":\"Read a file\",\"inputSchema\":{\"type\":\"object\",\"properties\":"
      "{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}},"
      "{\"name\":\"rm\",\"inputSchema\":{\"type\":\"object\"},\"annotations\":{\"destructiveHint\":true}},"
      "{\"name\":\"bad\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"x\":{\"pattern\":\"((\"}}}},"
      "{\"name\":\"noschema\",\"inputSchema\":7},"
      "{\"name\":\"read\",\"inputSchema\":{\"type\":\"object\"}},"
      "{\"description\":\"no name\"}]",
      0, NULL);
  cr_assert_eq(mcp__register_tools(&g_mcp.servers[0], tools), 2);
  const tool_t *t = tool_find("fs.read");
  cr_assert_not_null(t);
  cr_assert_str_eq(t->source, "mcp:fs");
  cr_assert_str_eq(t->description, "Read a file");
  cr_assert_eq(t->destructive, 0);
  char path[64], msg[64];
  json_t *args = json_pack("{s:i}", "path", 3);
  cr_assert_eq(tool_validate(t, args, path, sizeof(path), msg, sizeof(msg)), AGD_EVALIDATION);
  cr_assert_str_eq(path, "arguments.path");
  json_decref(args);
  tool_unref(t);
  t = tool_find("fs.rm");
  cr_assert(t && t->destructive);
  tool_unref(t);
  cr_assert_null(tool_find("fs.bad"));
  cr_assert_null(tool_find("fs.noschema"));
  mcp_server_status_t st[1];
  cr_assert_eq(mcp_client_servers(st, 1), 1);
  cr_assert_eq(st[0].tools, 2);
  /* a new list replaces the old one whole */
  json_decref(tools);
  tools = json_loads("[{\"name\":\"write\",\"inputSchema\":{\"type\":\"object\"}}]", 0, NULL);
  cr_assert_eq(mcp__register_tools(&g_mcp.servers[0], tools), 1);
  json_decref(tools);
  cr_assert_null(tool_find("fs.read"));
  t = tool_find("fs.write");
  cr_assert_not_null(t);
  /* the server is not running: calling its tool answers at once */
  json_t *res = NULL;
  json_t *empty = json_object();
  cr_assert_eq(tool_call(t, NULL, empty, &res), AGD_EUNAVAILABLE);
  json_decref(empty);
  json_decref(res);
  tool_unref(t);
  tool_registry_reset();
  mcp_client_free();
}
