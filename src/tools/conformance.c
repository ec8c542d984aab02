/* tools/conformance.c — the fixture tools the official MCP conformance suite
 * (@modelcontextprotocol/conformance) calls by name in its server scenarios
 * tools-call-simple-text and tools-call-error (issue 15; docs/mcp-conformance.md).
 *
 * They exist only with --mcp-test-tools: a server under that suite must offer
 * them, a server in use has no reason to (a model would be offered two tools
 * that do nothing for the user).  Each does exactly what the suite's text asks
 * of it, through the registry like any tool, so the suite checks agentd's real
 * tools/call path (arguments, the worker, the result's content / isError).
 */
#include "tools/tool.h"
#include "util/err.h"

static const char simple_text[] = "This is a simple text response for testing.";

/* test_simple_text: no arguments; one text. */
static int simple_text_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  (void)self, (void)ctx, (void)args;
  *result = json_pack("{s:s}", "text", simple_text);
  return *result ? 0 : AGD_EINTERNAL;
}

/* test_error_handling: no arguments; always fails with a message (the suite wants isError and a text). */
static int error_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  (void)self, (void)ctx, (void)args;
  *result = json_pack("{s:s}", "error", "This tool intentionally returns an error for testing");
  return AGD_EVALIDATION;
}

static const tool_t tool_simple_text = {
    .name = "test_simple_text",
    .description = "MCP conformance fixture: returns a simple text.",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
    .source = "builtin",
    .call = simple_text_call,
};

static const tool_t tool_error_handling = {
    .name = "test_error_handling",
    .description = "MCP conformance fixture: always fails with an error message.",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
    .source = "builtin",
    .call = error_call,
};

void tools_register_conformance(void) {
  tool_register(&tool_simple_text);
  tool_register(&tool_error_handling);
}
