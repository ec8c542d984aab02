/* api/threads_api.h — threads and messages: the REST routes of SPEC §3 and the thread
 * frames of the WebSocket protocol (SPEC §6: switch_thread, get_thread_history,
 * create_thread, rename_thread, delete_thread, list_threads).
 *
 * Loop thread.  Handlers validate on the loop; store_* calls run on libuv's worker pool in
 * batches (at most 2 in flight; a batch takes every waiting job), where the answer's JSON
 * text is built too; the loop only sends it.  A posted message is written through the one
 * message path (core/messages.h: the event writer's group commit) and answered on the loop
 * after its commit.  A WebSocket job holds the connection's id, never the conn_t*, and
 * drops its reply when the socket is gone.
 */
#ifndef AGD_API_THREADS_API_H
#define AGD_API_THREADS_API_H

#include <jansson.h>
#include <stddef.h>

#include "net/net.h"
#include "store/store.h"

/* SPEC conventions: within the body limit no field has a smaller cap, so a message's
 * content and a thread's title have none of their own (issue 13, defect 13).  The store
 * holds each up to these many bytes, as much as the default 1 MiB body can carry; only
 * with a raised --max-body-bytes can a field pass it, and that is 413 PAYLOAD_TOO_LARGE
 * whose details name the field. */
#define THREADS_CONTENT_MAX_BYTES STORE_CONTENT_MAX
#define THREADS_TITLE_MAX_BYTES STORE_TITLE_MAX
#define THREADS_FIELD_MAX_TEXT "1 MiB" /* the two, in words, for error messages */
/* A title made from a message's first words has at most this many characters,
 * the "…" included. */
#define THREADS_AUTO_TITLE_CHARS 60

/* Register the routes of SPEC §3 and the thread frames of SPEC §6 in api/ws_frames
 * (main thread, before the loop runs).  A thread frame is answered, now or later,
 * with its reply frame carrying "reply_to": id when it had an id, or an error frame. */
void api_threads_register(void);


/* Hook for agent runs (the runs module sets it at start; NULL until then): POST
 * /api/threads/{id}/messages with "run": true, once validated, is handed to it on the
 * loop thread: it takes the run's place under the user's limits (refused: 429 and
 * nothing stored), stores the message `msg` (thread_id set; strings borrowed for the
 * call) and the run row in one transaction, starts the run and answers r with 202
 * {"message": Message, "run": Run} (or an error).  While the hook is NULL such a
 * request is answered 503 UNAVAILABLE and nothing is stored. */
typedef void (*threads_run_start_fn)(http_req_t *r, const char *user_id, const store_message_new_t *msg);
extern threads_run_start_fn threads_run_starter;

/* The Message JSON of SPEC §3 (what POST …/messages answers) for a stored row. */
json_t *threads_message_json(const store_message_t *m);

/* The title of a thread created for a first message: its first words, whitespace
 * runs collapsed to one space, at most THREADS_AUTO_TITLE_CHARS characters; when cut
 * (at a word boundary, or inside a single over-long word) "…" ends it.  content is
 * valid UTF-8.  out gets a NUL-terminated string (cap ≥ 256 bytes always suffices).
 * Returns out.  Any thread. */
char *threads_title_from(const char *content, char *out, size_t cap);

#endif
