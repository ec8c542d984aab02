/* api/api.c — the list of API modules whose routes make up the server. */
#include "api/agents_api.h"
#include "api/approvals_api.h"
#include "api/mcp_api.h"
#include "api/app.h"
#include "api/ws_api.h"
#include "api/router.h"
#include "api/runs_api.h"
#include "api/ui_api.h"
#include "api/workloads_api.h"

app_t *g_app;

void api_register_routes(void) {
  api_health_register();
  api_ws_register();
  api_threads_register();
  api_auth_register();
  api_runs_register();
  api_approvals_register();
  api_agents_register();
  api_workloads_register();
  api_mcp_register();
  api_ui_register();
}
