/* core/event_writer.h — the event writer: one thread that stores queued items in
 * group commits and hands each committed batch to a sink (core/event_item.h).
 *
 * Promise: items are stored in the order they were pushed.  The writer takes
 * whatever is queued the moment it is free (up to 1024 items) and runs one
 * transaction for it (store_tx): the events (store_event_append_batch) and, in
 * queue order between them, the write-behinds' fn.  A failed transaction is
 * retried with backoff (50 ms doubling to 2 s) for retry_s, every later item
 * waiting behind it, so each user's order holds.  Only after the commit is the
 * batch handed to the sink, so nothing is delivered that the store could not
 * replay.  A batch given up after retry_s: its events are dropped (on_lost is
 * told each one's run), its write-behinds get the error as rc; the rest goes
 * to the sink.  Each write-behind's release runs once, on the writer thread,
 * after the last attempt; one without done is freed then, not handed on.
 *
 * A small batch (≤ 64 items) with write-behinds is committed in two
 * transactions: first the events of users with no write-behind before them in
 * it, then the rest in order; each user's items keep their order.
 *
 * Threads: push from any thread (callers that need a user's items in order push
 * them under their own per-user lock); the sink and on_lost run on the writer
 * thread.  start/stop/free on one thread (main, at start and shutdown).
 *
 * Ownership: the writer borrows the store and the sink, which outlive it; it owns
 * pushed items until it hands them to the sink or frees them.
 */
#ifndef AGD_CORE_EVENT_WRITER_H
#define AGD_CORE_EVENT_WRITER_H

#include "core/event_item.h"

typedef struct event_writer event_writer_t;

/* store_tx's shape (store/store.h): run fn(st, arg) in one transaction. */
typedef int (*event_writer_tx_fn)(store_t *st, int (*fn)(store_t *st, void *arg), void *arg);

typedef struct event_writer_opts {
  store_t *store;
  event_sink_t sink;                               /* committed batches, in order */
  void (*on_lost)(void *arg, const char *run_id);  /* an event given up (may be NULL) */
  void *lost_arg;
  double retry_s;        /* how long a failing commit is retried; 0: EVENTS_RETRY_S */
  event_writer_tx_fn tx; /* NULL: store_tx (tests put a failing one here) */
} event_writer_opts_t;

/* Start the writer thread.  0 or AGD_EINTERNAL. */
int event_writer_start(event_writer_t **out, const event_writer_opts_t *opts);

/* Queue one item (taken over).  Any thread. */
void event_writer_push(event_writer_t *w, event_item_t *it);

/* Store and hand on everything queued, then end the thread (a failing commit
 * gets a couple of attempts only).  Items pushed after it are stored by
 * event_writer_free (core/events.c stops pushing in between). */
void event_writer_stop(event_writer_t *w);

/* After stop: store and hand on any late item, then free.  NULL: no-op. */
void event_writer_free(event_writer_t *w);

#endif
