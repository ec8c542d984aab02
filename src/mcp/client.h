/* mcp/client.h — agentd as an MCP client (SPEC §7, §10 --mcp-config,
 * docs/protocol.md "MCP client").
 *
 * The servers of the --mcp-config file are started (stdio: a child process
 * speaking newline-delimited JSON-RPC on its stdin/stdout) or connected
 * (Streamable HTTP) at boot; each one's tools join the tool registry as
 * `<server>.<tool>` with source "mcp:<server>", their inputSchema and their
 * destructiveHint, and follow notifications/tools/list_changed.  Calling such
 * a tool (tool_t.call, from a run thread or a worker) blocks only the calling
 * thread, honours the call's cancel probe within 100 ms, times out after
 * --mcp-timeout and refuses a result over MCP_RESULT_MAX.
 *
 * The servers' status reaches the REST side through mcp/mcp.h's provider,
 * which mcp_client_load() plugs in (mcp_client_servers() there).
 *
 * Threads: mcp_client_load() on the main thread before the loop; start and
 * stop on the loop thread; mcp_client_call() from any thread but the loop's
 * (a call waits for the loop).
 */
#ifndef AGD_MCP_CLIENT_H
#define AGD_MCP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "tools/tool.h"

#define MCP_RESULT_MAX (1u << 20)     /* bytes of one message from a server (a tools/call answer) */
#define MCP_PROTOCOL_VERSION "2025-11-25" /* what agentd asks for; 2025-06-18 and 2025-03-26 answers are accepted */
#define MCP_SERVER_NAME_MAX 64

/* Read and check the config file (JSON, see docs/protocol.md).  path NULL: no
 * servers.  Returns 0, or -1 with one line in err saying what is wrong
 * ("servers.fs: needs exactly one of command or url"); the caller exits 2. */
int mcp_client_load(const char *path, double call_timeout_s, char *err, size_t errcap);
/* Start every configured server on loop (asynchronous: each connects and
 * lists its tools in the background).  0 (no servers is fine). */
int mcp_client_start(uv_loop_t *loop);
/* Begin shutdown (on the loop): calls in flight fail at once, stdio children
 * get their stdin closed and SIGTERM, SIGKILL after a 2 s grace; handles close
 * as the loop runs on.  Idempotent; no-op when not started. */
void mcp_client_stop(void);
/* After the loop has drained: free everything (the registry may still hold
 * the tools: calling one then answers UNAVAILABLE). */
void mcp_client_free(void);

/* Call `tool` of `server` (the MCP names, not the registry name) with args
 * (an object, borrowed).  Returns 0 with *result (structuredContent, or
 * {"text": joined text content[, "content": the items when some are not
 * text]}), or a negative AGD_E* with *result {"error": "..."}:
 *   AGD_EVALIDATION  the tool answered isError, or the server refused the
 *                    arguments (JSON-RPC -32602)
 *   AGD_ENOT_FOUND   no such server
 *   AGD_EUNAVAILABLE the server is not connected, died during the call, or
 *                    answered another JSON-RPC error
 *   AGD_ETIMEOUT     no answer within --mcp-timeout
 *   AGD_ECANCELLED   ctx's cancel probe said stop (notifications/cancelled sent)
 *   AGD_ETOO_LARGE   the answer is over MCP_RESULT_MAX
 * ctx may be NULL. */
int mcp_client_call(const char *server, const char *tool, const json_t *args, const tool_call_ctx_t *ctx,
                    json_t **result);

#endif
