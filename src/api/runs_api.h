/* api/runs_api.h — agent runs and the event stream over REST, SSE and the
 * WebSocket (SPEC §4, §5, §6 run frames).  Loop thread. */
#ifndef AGD_API_RUNS_API_H
#define AGD_API_RUNS_API_H

#include <jansson.h>

#include "net/net.h"

/* Register the routes of SPEC §4 and the run frames of SPEC §6 (user_message,
 * start_agent, stop_agent, resume and their aliases) in api/ws_frames. */
void api_runs_register(void);
/* A WebSocket opened / closed: subscribe it to the user's live events. */
void api_runs_ws_open(conn_t *c);

#endif
