/* core/event_seq.h — where an event's `seq` comes from (SPEC §5: per user,
 * strictly increasing, never reused, not even across restarts).
 *
 * An allocator is a table of function pointers, so the source can change
 * without touching core/events.c: today the local one (in-process counters, each
 * seeded once from the store's last seq of that user); later the database may
 * allocate instead (several instances writing one database).
 *
 * Promise: next() gives user_id a seq greater than every seq it gave that user
 * before, never the same one twice, whichever threads call it.  Gaps are
 * allowed (an event whose emit failed after taking its seq leaves one).
 *
 * Threads: next() is called by emitting threads (run threads, workers), never by
 * the loop: it may read the store.  core/events.c calls it under the user's order
 * lock (so a user's seqs are also queued in order), but an allocator does not
 * rely on that: it is thread-safe on its own.
 *
 * Ownership: the allocator borrows the store, which must outlive it;
 * event_seq_free() releases everything it holds.
 */
#ifndef AGD_CORE_EVENT_SEQ_H
#define AGD_CORE_EVENT_SEQ_H

#include <stdint.h>

typedef struct store store_t;
typedef struct event_seq event_seq_t;

typedef struct event_seq_ops {
  /* The user's next seq into *out (> 0).  0, or a negative AGD_E* (nothing
   * taken: a later call tries again, never guessing a seq that may repeat). */
  int (*next)(event_seq_t *q, const char *user_id, int64_t *out);
  void (*free)(event_seq_t *q);
} event_seq_ops_t;

/* Implementations embed this first. */
struct event_seq {
  const event_seq_ops_t *ops;
};

static inline int event_seq_next(event_seq_t *q, const char *user_id, int64_t *out) {
  return q->ops->next(q, user_id, out);
}
static inline void event_seq_free(event_seq_t *q) {
  if (q) q->ops->free(q);
}

/* The local allocator: one counter per user in memory (64 lock stripes), loaded
 * from store_event_last_seq() on the user's first event in this process.  Right
 * while this process is the only writer of the database's events. */
event_seq_t *event_seq_local_new(store_t *store);

#endif
