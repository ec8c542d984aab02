/* api/ws_api.h — the WebSocket protocol of SPEC §6 (api/ws_api.c): the handshake
 * on /ws and /websocket (credentials, resume point, subprotocol), the session of
 * each open socket (its user, token, event subscription and last run), frame
 * parsing, the frame rate limit and dispatch through api/ws_frames, and the
 * closes of SPEC §6 (1008 when its token is revoked or expires).
 *
 * Frame modules (threads_api, runs_api) answer through the send functions here;
 * this module does not know them (they register their frames in ws_frames).
 * Loop thread, except api_ws_register (main thread, before the loop runs).
 */
#ifndef AGD_API_WS_API_H
#define AGD_API_WS_API_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "net/net.h"

/* Routes /ws and /websocket, and the keepalive frames (ping, pong, heartbeat). */
void api_ws_register(void);
/* Timers (token expiry, the first-frame hold); stop closes them. */
void api_ws_start(uv_loop_t *loop);
void api_ws_stop(void);

/* The net callbacks: a socket opened, a text message, a WebSocket or SSE stream closed. */
void api_ws_on_open(conn_t *c);
void api_ws_on_text(conn_t *c, const char *p, size_t n);
void api_stream_on_close(conn_t *c);

/* Send a JSON frame on a WebSocket (takes the reference to o) / a SPEC §6 error frame
 * {"type":"error","code","message","data":{…}} with "reply_to" when reply_to is non-NULL
 * (borrowed). */
void api_ws_send_json(conn_t *c, json_t *o);
void api_ws_send_error(conn_t *c, const char *code, const char *message, json_t *reply_to);

/* The WebSocket's event subscription, and the run it started last (NULL: none). */
struct events_sub;
struct events_sub *api_ws_events_sub(conn_t *c);
void api_ws_remember_run(conn_t *c, const char *run_id);
const char *api_ws_last_run(conn_t *c);

/* Close every open WebSocket authenticated with that access token (1008). */
void api_ws_revoke_token(const char *jti);

#endif
