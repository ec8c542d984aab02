/* core/event_item.h — what travels on the event path (core/events.h): from the
 * emitting thread through the event writer (core/event_writer.h) and the broker
 * (broker/broker.h) to the fan-out on the loop (core/fanout.h).
 *
 * Three kinds of item, each its own type with the common header first:
 *   event_rec_t          an Event: stored by the writer, then sent to the user's
 *                        subscriptions;
 *   event_write_behind_t a run's own rows: fn runs inside the writer's
 *                        transaction, done (if any) on the loop after the commit;
 *   event_run_end_t      a run's end: fn runs on the loop after the run's events.
 * A batch is a list through hdr.next in queue order, which keeps each user's
 * items in the order they were queued (for events: seq order).  Every consumer
 * (the writer's transaction, the fan-out) relies on that and on nothing else.
 *
 * Ownership: the producer (core/events.c) mallocs an item and hands it over when
 * it pushes it to the writer; the writer hands a committed batch to its sink; the
 * last consumer frees each item with event_item_free().  Strings inside an item
 * are its own (json is malloc'd and freed with it).
 */
#ifndef AGD_CORE_EVENT_ITEM_H
#define AGD_CORE_EVENT_ITEM_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ids.h"

typedef struct store store_t;

typedef enum { EVENT_ITEM_EVENT = 1, EVENT_ITEM_WRITE_BEHIND, EVENT_ITEM_RUN_END } event_item_kind_t;

typedef struct event_item {
  struct event_item *next; /* in its batch / queue */
  event_item_kind_t kind;
  char user_id[ID_MAX];    /* whose: items are ordered per user */
} event_item_t;

typedef struct event_rec {
  event_item_t hdr;
  int64_t seq;
  char *json; /* the wire text (events_encode), owned */
  size_t len;
  char type[24];
  char run_id[ID_MAX];
  char thread_id[ID_MAX];
  char agent_name[32];
  double created_at;   /* epoch seconds, as in the JSON */
  uint64_t emitted_ns; /* monotonic, for the latency histograms */
} event_rec_t;

typedef struct event_write_behind {
  event_item_t hdr;
  int (*fn)(store_t *st, void *arg); /* writer thread, in each attempt of the commit */
  void (*done)(void *arg, int rc);   /* loop thread, after the commit (NULL: none) */
  void (*release)(void *arg);        /* writer thread, after the last attempt (NULL: none) */
  void *arg;                         /* the caller's; never freed here */
  int rc;                            /* fn's result, or the transaction's error */
} event_write_behind_t;

typedef struct event_run_end {
  event_item_t hdr;
  char run_id[ID_MAX];
  void (*fn)(void *arg); /* loop thread, after the run's events (NULL: none) */
  void *arg;
} event_run_end_t;

/* Downcasts, checked in debug builds. */
static inline event_rec_t *event_item_rec(event_item_t *it) {
  assert(it->kind == EVENT_ITEM_EVENT);
  return (event_rec_t *)it;
}
static inline event_write_behind_t *event_item_wb(event_item_t *it) {
  assert(it->kind == EVENT_ITEM_WRITE_BEHIND);
  return (event_write_behind_t *)it;
}
static inline event_run_end_t *event_item_run_end(event_item_t *it) {
  assert(it->kind == EVENT_ITEM_RUN_END);
  return (event_run_end_t *)it;
}

/* New zeroed items of each kind for user_id (copied); abort on out-of-memory.
 * event_rec_new takes json (malloc'd) over. */
event_rec_t *event_rec_new(const char *user_id, char *json);
event_write_behind_t *event_write_behind_new(const char *user_id);
event_run_end_t *event_run_end_new(const char *user_id, const char *run_id);

/* Free one item (not the rest of its list); NULL is a no-op. */
void event_item_free(event_item_t *it);

/* Where a committed batch goes: publish(arg, batch) takes the batch over.  The
 * writer calls it on its thread; an implementation only queues or forwards (it
 * must not block: every later commit waits behind it). */
typedef struct event_sink {
  void (*publish)(void *arg, event_item_t *batch);
  void *arg;
} event_sink_t;

#endif
