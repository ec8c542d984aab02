/* mcp/server.h — agentd AS an MCP server (SPEC §7): POST /mcp and DELETE /mcp,
 * Streamable HTTP (revision 2025-11-25; clients of 2025-06-18 and 2025-03-26
 * accepted), JSON-RPC 2.0, exposing the built-in tools of the registry.
 * docs/protocol.md "MCP server" lists every choice the SPEC leaves open.
 *
 * Thread: the loop thread (routes, sessions); tool calls run on the worker pool.
 */
#ifndef AGD_MCP_SERVER_H
#define AGD_MCP_SERVER_H

#include <stddef.h>

/* The revision agentd speaks, and the ones it accepts from clients. */
#define MCP_REVISION "2025-11-25"

/* Bounds (documented in docs/protocol.md). */
#define MCP_MAX_SESSIONS 4096         /* live sessions in the process (over: 503 at initialize) */
#define MCP_MAX_SESSIONS_PER_USER 64  /* over: the user's least recently used idle session ends */
#define MCP_SESSION_IDLE_S 3600       /* a session unused this long ends */
#define MCP_MAX_BATCH 32              /* messages in one batch (2025-03-26 sessions only) */
#define MCP_MAX_INFLIGHT 64           /* tool calls in flight per session */
#define MCP_MAX_RESULT (1u << 20)     /* bytes of a tool result's text (over: isError) */
#define MCP_PAGE_SIZE 10              /* tools per tools/list page */

/* Register POST /mcp and DELETE /mcp (GET answers 405: agentd has nothing to
 * push outside a request).  Main thread, before the loop runs. */
void mcp_server_register(void);
/* Live sessions (GET /api/mcp/status, metrics).  Loop thread. */
size_t mcp_server_session_count(void);
/* End every session (tests, shutdown): in-flight calls are cancelled and their
 * answers dropped.  Loop thread. */
void mcp_server_reset(void);
/* 1 when `v` is a revision agentd accepts. */
int mcp_revision_supported(const char *v, size_t n);

#endif
