/* mcp/mcp.c — see mcp.h: the one plug between the MCP client side and the
 * code that shows its servers.  A mutex guards the provider because unplugging
 * (shutdown) may race a request on the loop or a worker reading it. */
#include "mcp/mcp.h"

#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t prov_mu = PTHREAD_MUTEX_INITIALIZER;
static mcp_client_provider_t prov;

void mcp_client_provide(const mcp_client_provider_t *p) {
  pthread_mutex_lock(&prov_mu);
  if (p) prov = *p;
  else prov = (mcp_client_provider_t){0};
  pthread_mutex_unlock(&prov_mu);
}

size_t mcp_client_servers(mcp_server_status_t *out, size_t cap) {
  pthread_mutex_lock(&prov_mu);
  size_t n = prov.servers ? prov.servers(prov.arg, out, cap) : 0;
  pthread_mutex_unlock(&prov_mu);
  return n;
}

void mcp_source_name(char *buf, size_t cap, const char *server) { snprintf(buf, cap, "mcp:%s", server); }
