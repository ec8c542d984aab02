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
void api_ws_register(void);
void api_threads_register(void);
/* The net callbacks the WebSocket protocol module provides. */
void api_ws_on_open(conn_t *c);
void api_ws_on_text(conn_t *c, const char *p, size_t n);
void api_stream_on_close(conn_t *c);
/* Send a JSON frame on a WebSocket (takes the reference to o) / a SPEC §6 error frame
 * {"type":"error","code","message","data":{…}} with "reply_to" when reply_to is non-NULL
 * (borrowed).  Loop thread. */
void api_ws_send_json(conn_t *c, json_t *o);
void api_ws_send_error(conn_t *c, const char *code, const char *message, json_t *reply_to);
/* The WebSocket's event subscription, and the run it started last (NULL: none). */
struct events_sub;
struct events_sub *api_ws_events_sub(conn_t *c);
void api_ws_remember_run(conn_t *c, const char *run_id);
const char *api_ws_last_run(conn_t *c);
/* Close every open WebSocket authenticated with that access token (1008). */
void api_ws_revoke_token(const char *jti);
void api_ws_start(uv_loop_t *loop);
void api_ws_stop(void);
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
