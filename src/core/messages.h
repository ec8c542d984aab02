/* core/messages.h — the one path that writes messages (SPEC §3; issue 13).
 *
 * Every message the server stores goes through messages_write(): a POSTed message
 * (REST /api/threads/{id}/messages, /api/messages), the user's message of a run
 * start (REST and WebSocket), the assistant answer of a run.  A write is queued to
 * the event writer (core/event_writer.h, through core/events.h's store-behind) and
 * runs inside its group commit: one thread, one transaction for whatever is queued
 * when it is free, retried with backoff while the transaction fails (EVENTS_RETRY_S).
 * That writer is the one place that decides how message writes are grouped.
 *
 * Order: writes are stored in the order they were queued (per calling thread; a
 * user's writes also in order with the events that thread emitted before and after
 * them), and each message takes the thread's next server-assigned sequence in its
 * transaction, so two messages posted in order come back in that order.  done runs
 * only after the commit, so whoever it answers can read the message (and the rows
 * `also` wrote) at once; a run's answer, queued before its agent_response event, is
 * stored before that event goes out.
 *
 * Failure: a write the store refuses (store_message_check: sizes, role) is refused
 * by messages_write before anything is queued.  A write refused in the transaction
 * (a thread that is not the caller's: AGD_ENOT_FOUND) is undone alone and done gets
 * its code; the rest of the batch commits.  A transaction that still fails after
 * the retries stores nothing of its batch, and every done of it gets the error.
 *
 * Threads: messages_write from any thread (the loop included: it only copies and
 * queues).  also runs on the writer thread, inside the transaction, in each attempt
 * of it; done on the loop thread.
 */
#ifndef AGD_CORE_MESSAGES_H
#define AGD_CORE_MESSAGES_H

#include "store/store.h"

typedef struct messages_write {
  const char *user_id;
  store_message_new_t msg; /* copied by messages_write */
  /* More rows of the same request, in the message's transaction after it is stored
   * (a run start's run row); a failure (non-zero) undoes the message too.  m is the
   * stored row.  NULL: none.  Must not keep m's strings; may run more than once. */
  int (*also)(store_t *st, const store_message_t *m, void *arg);
  /* After the commit, on the loop: rc 0 and the stored row m (valid for the call),
   * or an AGD_E* code and m NULL.  NULL: nobody waits (the run's answer: written
   * behind its events, failures logged). */
  void (*done)(void *arg, int rc, const store_message_t *m);
  void *arg; /* the caller's, passed to also and done; never freed here */
} messages_write_t;

/* Queue one message write.  0: queued, done (if any) will be called exactly once.
 * Else the refusal of store_message_check (AGD_EBAD_REQUEST, AGD_EVALIDATION,
 * AGD_ENOT_FOUND): nothing queued, done is not called. */
int messages_write(const messages_write_t *w);

/* Where writes are queued: core/events.h's events_store_then / events_store_later
 * by default.  Tests put a writer of their own here (NULL: back to the default). */
typedef struct messages_queue {
  void (*then)(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc), void *arg);
  void (*later)(const char *user_id, int (*fn)(store_t *st, void *arg), void (*release)(void *arg), void *arg);
} messages_queue_t;
void messages_set_queue(const messages_queue_t *q);

#endif
