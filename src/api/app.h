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
#include "net/net.h"
#include "store/store.h"

typedef struct app {
  const config_t *cfg;
  uv_loop_t *loop;
  server_t *srv;
  store_t *store;
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
/* The net callbacks the WebSocket protocol module provides. */
void api_ws_on_open(conn_t *c);
void api_ws_on_text(conn_t *c, const char *p, size_t n);
void api_stream_on_close(conn_t *c);
/* Close every open WebSocket authenticated with that access token (1008). */
void api_ws_revoke_token(const char *jti);
void api_ws_start(uv_loop_t *loop);
void api_ws_stop(void);
/* Periodic background work (database health); started by main. */
void api_health_start(uv_loop_t *loop);
void api_health_stop(void);

#endif
