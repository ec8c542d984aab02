/* api/app.h — the process-wide application context handlers share.
 *
 * Filled by main on the main thread before the loop runs; afterwards the
 * pointers are read-only (the objects they point to have their own rules).
 */
#ifndef AGD_API_APP_H
#define AGD_API_APP_H

#include <stdatomic.h>
#include <uv.h>

#include "core/config.h"
#include "llm/llm.h"
#include "net/net.h"
#include "store/store.h"

typedef struct app {
  const config_t *cfg;
  uv_loop_t *loop;
  server_t *srv;
  store_t *store;
  llm_t *llm;             /* the language model provider (--llm), shared by runs and tools */
  double started_at;      /* epoch seconds */
  atomic_int ready;       /* 1 once migrated and listening; 0 again while shutting down */
  atomic_int db_ok;       /* last background database check: 1 ok */
  atomic_llong db_checked_ms; /* uv_now() of that check */
} app_t;

extern app_t *g_app;

/* Register every route of the API (main calls it once). */
void api_register_routes(void);
/* Per-module registration (each api module exposes one). */
void api_health_register(void);
void api_threads_register(void);
/* The WebSocket protocol (SPEC §6) is api/ws_api.h. */
/* Auth routes, the auth and rate-limit hooks (api/auth_api.c, api/limits.c). */
void api_auth_register(void);
/* Start/stop the auth module's timers (rate-limit sweep); stop frees its state. */
void api_auth_start(uv_loop_t *loop);
void api_auth_stop(void);
/* `agentd user add EMAIL` (SPEC §10): password from stdin; 0 (prints the user id) or 1. */
int api_cmd_user_add(const config_t *cfg, const char *email);
/* Periodic background work (database health); started by main. */
void api_health_start(uv_loop_t *loop);
void api_health_stop(void);

#endif
