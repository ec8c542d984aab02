/* mcp/mcp.h — what agentd knows of MCP servers (SPEC §7), shared by the two
 * sides of MCP and the REST routes that show them (api/mcp_api.c):
 *
 *   - the built-in server `agentd` (agentd AS an MCP server, POST /mcp,
 *     mcp/server.h), always present;
 *   - the servers of --mcp-config (agentd AS an MCP client).  The client side
 *     owns them: it starts/connects them, registers their tools in the tool
 *     registry (tools/tool.h) as `<server>.<tool>` with source "mcp:<server>",
 *     and describes them to everyone else through the provider below.
 *
 * The REST side never includes the client side's headers: it asks
 * mcp_client_servers(), which answers 0 servers until a provider is plugged in
 * (no --mcp-config, or the client side not built).  Tools are not part of this
 * interface: they are in the registry (tool_list_acquire / tool_find /
 * tool_call), where /api/mcp/tools and POST /api/mcp/tools/call find them by
 * their source.
 */
#ifndef AGD_MCP_MCP_H
#define AGD_MCP_MCP_H

#include <stddef.h>

/* The name of the built-in server (a configured server may not take it). */
#define MCP_SELF_NAME "agentd"

#define MCP_NAME_MAX 128    /* a configured server's name, NUL included */
#define MCP_ERROR_MAX 256   /* its last error, NUL included */

/* One configured server as the client side sees it at one moment. */
typedef struct mcp_server_status {
  char name[MCP_NAME_MAX];   /* the key of --mcp-config's "servers" object */
  const char *transport;     /* "stdio" or "http" (static strings) */
  const char *status;        /* "connecting" (starting, initialize not answered yet), "connected",
                                "restarting" (died or lost; waiting out the backoff), "failed" (gave up
                                or misconfigured), "stopped" (shutting down); static strings */
  size_t tools;              /* tools it has in the registry now */
  unsigned restarts;         /* restarts / reconnections since boot */
  double connected_at;       /* epoch seconds of the current connection; 0 when not connected */
  char protocol_version[16]; /* negotiated MCP revision, "" before initialize */
  char error[MCP_ERROR_MAX]; /* the last error in words ("exited with status 1", "timed out"), "" if none */
} mcp_server_status_t;

/* What the client side provides.  `servers` fills out[0..cap) with the
 * configured servers in configuration order and returns how many there are
 * (which may exceed cap: the caller asks again with more room).  Any thread;
 * it must not block (a copy under a lock), since the loop calls it. */
typedef struct mcp_client_provider {
  size_t (*servers)(void *arg, mcp_server_status_t *out, size_t cap);
  void *arg;
} mcp_client_provider_t;

/* Plug the client side in (main thread, before the loop runs; p is copied).
 * NULL unplugs it (shutdown, tests). */
void mcp_client_provide(const mcp_client_provider_t *p);
/* The provider's answer; 0 without one.  Any thread. */
size_t mcp_client_servers(mcp_server_status_t *out, size_t cap);

/* The registry source of a configured server's tools: "mcp:<name>" into buf. */
void mcp_source_name(char *buf, size_t cap, const char *server);

#endif
