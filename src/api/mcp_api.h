/* api/mcp_api.h — the MCP routes (SPEC §7): GET /api/mcp/servers (public),
 * /api/mcp/config, /api/mcp/status, /api/mcp/tools, POST /api/mcp/tools/call,
 * and agentd's own MCP endpoint /mcp (mcp/server.h).  Loop thread.
 */
#ifndef AGD_API_MCP_API_H
#define AGD_API_MCP_API_H

/* Register every MCP route (main thread, before the loop runs). */
void api_mcp_register(void);

#endif
