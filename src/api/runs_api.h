/* api/runs_api.h — agent runs and the event stream over REST, SSE and the
 * WebSocket (SPEC §4, §5, §6 run frames).  Loop thread. */
#ifndef AGD_API_RUNS_API_H
#define AGD_API_RUNS_API_H

#include <jansson.h>

#include "net/net.h"

void api_runs_register(void);
/* WS frames user_message (and aliases), start_agent (and aliases), stop_agent
 * (cancel_agent), resume (session_restore).  Returns 1 when the frame was one of
 * them (and is answered), 0 otherwise. */
int api_runs_ws_frame(conn_t *c, const char *type, json_t *frame, json_t *id);
/* A WebSocket opened / closed: subscribe it to the user's live events. */
void api_runs_ws_open(conn_t *c);

#endif
