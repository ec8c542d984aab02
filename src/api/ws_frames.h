/* api/ws_frames.h — the WebSocket frame table (SPEC §6): client frame types and
 * their handlers, registered by the modules that own them the way routes are
 * (api/router.h), so the protocol module (ws_api.c) dispatches without knowing
 * the modules and they do not know each other.
 *
 * Handlers are registered at start (main thread, before the loop runs: each
 * api_*_register adds its frames) and looked up on the loop thread afterwards;
 * the table is never changed while the loop runs, so lookups take no lock.
 * A type and each of its aliases are separate entries pointing at one handler.
 */
#ifndef AGD_API_WS_FRAMES_H
#define AGD_API_WS_FRAMES_H

#include <jansson.h>

#include "net/net.h"

/* Most frame types (aliases counted) the table holds. */
#define WS_FRAMES_MAX 64
/* Longest frame type name that can be registered (bytes). */
#define WS_FRAME_TYPE_MAX 32

/* Handle one client frame on the loop thread.  frame (the whole JSON object) and
 * id (its "id", NULL when absent) are borrowed for the call; a handler that answers
 * later takes its own references.  Every frame with an id must get a reply or an
 * error frame carrying "reply_to": id (SPEC §6).  arg is the value given at
 * registration (e.g. which of several frame kinds one handler serves). */
typedef void (*ws_frame_fn)(conn_t *c, json_t *frame, json_t *id, const void *arg);

/* Register `type` (and so each alias: one call per name).  0, or -1 when the name
 * is empty, over WS_FRAME_TYPE_MAX, already taken or the table is full: a
 * programming error the caller reports at start. */
int ws_frames_add(const char *type, ws_frame_fn fn, const void *arg);

/* Register every name of a NULL-terminated list to one handler: 0 or -1 (as above;
 * the names before the failing one stay registered). */
int ws_frames_add_all(const char *const *types, ws_frame_fn fn, const void *arg);

/* Dispatch a frame of `type`: 1 when a handler took it, 0 when no handler is
 * registered for the type (the caller answers UNKNOWN_TYPE). */
int ws_frames_dispatch(conn_t *c, const char *type, json_t *frame, json_t *id);

/* The frame's payload: its "payload" object, or the frame itself when it has none
 * (SPEC §6).  Borrowed from frame. */
json_t *ws_frame_payload(json_t *frame);

/* Forget every registration (shutdown, tests). */
void ws_frames_clear(void);

#endif
