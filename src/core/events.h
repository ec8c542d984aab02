/* core/events.h — the one event path (DESIGN.md; SPEC §5).
 *
 * events_emit() gives an Event the user's next `seq` (core/event_seq.h) under a
 * per-user lock and queues it to the event writer (core/event_writer.h), a thread
 * that stores what is queued in one transaction (group commit) and only then
 * publishes the batch to the broker (broker/broker.h; the local one hands it
 * straight on), which hands it to the fan-out (core/fanout.h): on the loop, each
 * event is encoded once and written to every subscription (WebSocket or SSE
 * stream) of that user — never another user's — each user's events in seq order.
 * The same transaction carries the runs' own rows (events_store_later /
 * events_store_then), in order with the user's events.  What travels between
 * those parts is core/event_item.h.
 *
 * This header is the facade the rest of the server uses: emit and store-behind
 * are in events.c, the subscription functions below in fanout.c.
 *
 * Replay: a subscription created with after_seq ≥ 0 first receives the stored
 * events after that seq, page by page (fetched on a worker), then continues
 * live.  Every subscription remembers the last seq it has seen; a live event
 * that does not follow it (events stored while a page was in flight) sends it
 * back to replaying, so nothing is lost and nothing is sent twice.
 *
 * Threads: events_emit() may read the user's last seq from the store once per
 * process (so: run threads, workers — never the loop); otherwise it only
 * queues.  Subscriptions are created and dropped on the loop thread.
 */
#ifndef AGD_CORE_EVENTS_H
#define AGD_CORE_EVENTS_H

#include <jansson.h>
#include <stdint.h>

/* Declared here rather than included, so that agents/agent.h can take the
 * event types without seeing sockets or the store (identical typedefs). */
typedef struct uv_loop_s uv_loop_t;
typedef struct conn conn_t;
typedef struct store store_t;

/* Event types of SPEC §5, in the order of the table, then §11's approval_required. */
typedef enum {
  EV_AGENT_STARTED = 0,
  EV_AGENT_THINKING,
  EV_TOOL_EXECUTING,
  EV_TOOL_COMPLETED,
  EV_PARTIAL_RESULT,
  EV_AGENT_COMPLETED,
  EV_AGENT_RESPONSE,
  EV_AGENT_ERROR,
  EV_AGENT_STOPPED,
  EV_APPROVAL_REQUIRED, /* SPEC §11: a tool call waits for the user's decision */
  EV__COUNT
} event_type_t;

/* "agent_started", …; NULL for an out-of-range value.  Static strings. */
const char *event_type_name(event_type_t t);

int events_init(uv_loop_t *loop, store_t *store);
/* Deliver what is queued, then stop delivering; drop every subscription. */
void events_shutdown(void);

/* Emit one event.  data: SPEC §5 data object (reference taken).  Returns the
 * seq (> 0) or a negative AGD_E* (not stored, not delivered; AGD_EUNAVAILABLE
 * too for a run that lost a batch of its events, see EVENTS_RETRY_S).  Not on
 * the loop. */
int64_t events_emit(const char *user_id, const char *run_id, const char *thread_id, const char *agent_name,
                    event_type_t type, json_t *data);

/* Write-behind for the runs' own rows: fn(store, arg) runs on the event writer
 * thread inside its group-commit transaction (store_tx), after every event of
 * user_id emitted so far by this thread and before any emitted later, so a client
 * that sees an event also finds in the store what the run wrote before it.
 * When that transaction fails it is retried (EVENTS_RETRY_S at most), and fn runs
 * again inside each new attempt: fn only writes to the store and never frees arg.
 * release(arg) (may be NULL) runs once, on the writer thread, after the last
 * attempt; fn reports its own failures: a run never waits on the database for its
 * bookkeeping.  Any thread: it only queues (after events_shutdown, when there is
 * no writer any more, fn and release run at once on the calling thread). */
void events_store_later(const char *user_id, int (*fn)(store_t *st, void *arg), void (*release)(void *arg),
                        void *arg);

/* The same, waited for: fn(store, arg) runs in the writer's next group commit (again
 * in each retry, as above) and done(arg, rc) on the loop thread once that commit is
 * over — rc is fn's result, or the transaction's error when every attempt failed
 * and fn's writes with it.  Requests that write rows (every message, through
 * core/messages.h; a run's row) use it so their writes share the events'
 * transaction instead of queueing for the write lock beside it.  Any thread, as
 * events_store_later. */
void events_store_then(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                       void *arg);

/* How long the writer retries a group commit whose transaction failed (database
 * locked, disk full, I/O error) before it gives the batch up.  A batch given up is
 * never delivered (SPEC §5: a client never sees an event the store cannot replay):
 * its events are dropped, and every later emit of their runs fails, so those runs
 * end failed (agent_error, EVENT_FAILED) instead of going on with a hole. */
#define EVENTS_RETRY_S 30.0

typedef struct events_sub events_sub_t;

/* Run fn(arg) on the loop thread after every event of user_id emitted so far
 * by this thread has been delivered, then end the SSE streams bound to run_id
 * (end_on_final).  Used by core/runs to announce a run's end in order. */
void events_post_run_end(const char *user_id, const char *run_id, void (*fn)(void *arg), void *arg);

/* Subscribe conn c (WS or SSE, already authenticated as user_id) to the user's
 * events.  run_id/thread_id (may be NULL) filter what is sent.  after_seq < 0:
 * live only; ≥ 0: replay stored events after it first.  end_on_final: an SSE
 * stream bound to a run ends after that run's final event.  Loop thread.
 * The subscription is dropped by events_unsubscribe() or when c closes
 * (the net layer's on_stream_close must call events_conn_closed(c)). */
events_sub_t *events_subscribe(conn_t *c, const char *user_id, const char *run_id, const char *thread_id,
                               int64_t after_seq, int end_on_final);
/* Hold a live subscription's events back (they are stored meanwhile) until
 * events_release or events_resume decides where it starts: a WebSocket whose
 * first frame may be `resume` must not see live events before its replay
 * (issue 13: seq 201 then 7).  Release sends what was held, from the store, in
 * order, then goes on live.  Loop thread. */
void events_hold(events_sub_t *s);
void events_release(events_sub_t *s);
/* Start a replay on an existing subscription (WS `resume`); ends a hold. */
void events_resume(events_sub_t *s, int64_t after_seq);
void events_unsubscribe(events_sub_t *s);
/* Drop every subscription of conn c. */
void events_conn_closed(conn_t *c);

/* The JSON text of an event row as sent on the wire (for tests and GET /api/events). */
char *events_encode(int64_t seq, const char *type, const char *run_id, const char *thread_id, const char *agent_name,
                    double timestamp, const json_t *data);


#endif
