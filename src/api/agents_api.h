/* api/agents_api.h — the agent and tool listings and direct tool calls over
 * REST (SPEC §4 GET /api/agents, SPEC §7 /api/tools*).  Loop thread; tool
 * calls run on the worker pool (api/job.h).
 */
#ifndef AGD_API_AGENTS_API_H
#define AGD_API_AGENTS_API_H

#include <jansson.h>

#include "api/router.h"

/* Register GET /api/agents, GET /api/tools(/list), POST /api/tools/execute and
 * POST /api/execute/tool (main thread, before the loop runs). */
void api_agents_register(void);
/* Run tool t (a reference the call takes over) with args (owned, free of NUL
 * characters) for ctx's user on a worker and answer as POST /api/tools/execute
 * does (200, 422 schema or the tool's own refusal, 404, 5xx).  POST
 * /api/mcp/tools/call shares it (api/mcp_api.c).  Loop thread. */
struct tool;
void api_tool_run(http_req_t *r, route_ctx_t *ctx, const struct tool *t, json_t *args);

#endif
