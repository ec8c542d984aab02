/* broker/broker.h — what sits between the event writer and the fan-out
 * (DESIGN.md: broker/ local | redis pub/sub across instances).
 *
 * The writer publishes each committed batch (core/event_item.h) to the broker;
 * the broker hands batches to its downstream sink — the fan-out of this process
 * (core/fanout.h) — in the order they were published.  The local broker hands
 * each batch straight on; a broker across instances (Redis) would publish the
 * events to the other instances' fan-outs too, and keep this process's
 * write-behind and run-end items behind its own events.
 *
 * Threads: publish is called by the event writer thread (one publisher; it must
 * not block); the downstream sink runs on the thread the broker chooses (the
 * local one: the publisher's).  new/free on the main thread.
 *
 * Ownership: publish takes the batch over and passes it to the sink, which
 * takes it over in turn.  The broker borrows the sink's arg (it outlives it).
 */
#ifndef AGD_BROKER_BROKER_H
#define AGD_BROKER_BROKER_H

#include "core/event_item.h"

typedef struct broker broker_t;

typedef struct broker_ops {
  void (*publish)(broker_t *b, event_item_t *batch);
  void (*free)(broker_t *b);
} broker_ops_t;

/* Implementations embed this first. */
struct broker {
  const broker_ops_t *ops;
};

static inline void broker_publish(broker_t *b, event_item_t *batch) { b->ops->publish(b, batch); }
static inline void broker_free(broker_t *b) {
  if (b) b->ops->free(b);
}

/* The broker as a sink (what the event writer publishes to). */
static inline void broker__on_batch(void *arg, event_item_t *batch) { broker_publish(arg, batch); }
static inline event_sink_t broker_sink(broker_t *b) { return (event_sink_t){.publish = broker__on_batch, .arg = b}; }

/* One process, no other instance: batches go to `downstream` at once, in order. */
broker_t *broker_local_new(event_sink_t downstream);

#endif
