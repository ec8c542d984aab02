/* core/fanout.h — the fan-out: stored events to the user's sockets and streams.
 *
 * It takes committed batches (core/event_item.h) through its sink — from the
 * broker (broker/broker.h) — and on the loop thread sends each event to every
 * live subscription of its user (a WebSocket frame or an SSE block, each encoded
 * once per event whatever the number of subscribers), runs each write-behind's
 * done(arg, rc) and each run end (ending the SSE streams bound to that run, then
 * fn(arg)), in batch order.  It also owns the subscriptions and their replay from
 * the store: events_subscribe, events_hold, events_release, events_resume,
 * events_unsubscribe and events_conn_closed of core/events.h are implemented in
 * fanout.c.
 *
 * Promise: the items of a user are handled in the order they were published; an
 * event reaches a subscription at most once and, with the replay, without a gap.
 * It relies on its input being stored already (a gap is fetched from the store).
 *
 * Threads: the sink's publish may be called from any thread (it queues and wakes
 * the loop); everything else on the loop thread.  Ownership: the fan-out takes
 * published batches over and frees every item; it borrows the loop and the store.
 */
#ifndef AGD_CORE_FANOUT_H
#define AGD_CORE_FANOUT_H

#include "core/event_item.h"

typedef struct uv_loop_s uv_loop_t;

/* Set up on the loop (registers its metrics).  0 or a negative AGD_E*. */
int fanout_init(uv_loop_t *loop, store_t *store);

/* Where stored batches go (the broker's downstream). */
event_sink_t fanout_sink(void);

/* Handle what is queued now, on the calling (loop) thread. */
void fanout_drain(void);

/* Handle what is queued, then stop: every subscription is dropped (one whose
 * replay page is in flight is freed when the page comes back).  Loop thread. */
void fanout_shutdown(void);

#endif
