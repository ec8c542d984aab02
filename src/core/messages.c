/* core/messages.c — see messages.h.
 *
 * A write is one allocation (the job and copies of its strings) handed to the event
 * writer as a write-behind: the writer runs job_fn inside its group commit, then
 * the fan-out calls job_done on the loop (events_store_then), or, with nobody
 * waiting, the writer frees it after the last attempt (events_store_later).
 */
#include "core/messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"

typedef struct msg_job {
  char user_id[ID_MAX];
  store_message_new_t in; /* its strings point into text[] */
  int (*also)(store_t *st, const store_message_t *m, void *arg);
  void (*done)(void *arg, int rc, const store_message_t *m);
  void *arg;
  store_message_t out; /* the stored row, of the last attempt */
  char text[];
} msg_job_t;

static const messages_queue_t default_queue = {.then = events_store_then, .later = events_store_later};
static const messages_queue_t *queue = &default_queue;

void messages_set_queue(const messages_queue_t *q) { queue = q ? q : &default_queue; }

static size_t size_of(const char *s) { return s ? strlen(s) + 1 : 0; }

/* Copy s to *at (advancing it) and point *dst there; NULL stays NULL. */
static void put(char **at, const char *s, const char **dst) {
  if (!s) {
    *dst = NULL;
    return;
  }
  size_t n = strlen(s) + 1;
  memcpy(*at, s, n);
  *dst = *at;
  *at += n;
}

static msg_job_t *job_new(const messages_write_t *w) {
  const store_message_new_t *m = &w->msg;
  size_t n = size_of(m->thread_id) + size_of(m->new_thread_title) + size_of(m->role) + size_of(m->content) +
             size_of(m->run_id) + size_of(m->metadata) + size_of(m->id);
  msg_job_t *j = calloc(1, sizeof(*j) + n);
  if (!j) abort();
  snprintf(j->user_id, sizeof(j->user_id), "%s", w->user_id);
  char *at = j->text;
  put(&at, m->thread_id, &j->in.thread_id);
  put(&at, m->new_thread_title, &j->in.new_thread_title);
  put(&at, m->role, &j->in.role);
  put(&at, m->content, &j->in.content);
  put(&at, m->run_id, &j->in.run_id);
  put(&at, m->metadata, &j->in.metadata);
  put(&at, m->id, &j->in.id);
  j->also = w->also;
  j->done = w->done;
  j->arg = w->arg;
  return j;
}

static void job_free(msg_job_t *j) {
  store_message_dispose(&j->out);
  free(j);
}

/* The message, then the request's other rows. */
static int job_store(store_t *st, void *arg) {
  msg_job_t *j = arg;
  int rc = store_message_add(st, j->user_id, &j->in, &j->out);
  if (rc == 0 && j->also) rc = j->also(st, &j->out, j->arg);
  return rc;
}

/* Writer thread, inside the group commit (again in each attempt of it). */
static int job_fn(store_t *st, void *arg) {
  msg_job_t *j = arg;
  store_message_dispose(&j->out); /* an earlier attempt's row: rolled back */
  memset(&j->out, 0, sizeof j->out);
  /* With more rows, all of them in one savepoint: a failing run row undoes the
   * message too (store calls nest; outside a transaction this is one of its own). */
  int rc = j->also ? store_tx(st, job_store, j) : job_store(st, j);
  if (rc != 0 && !j->done) { /* nobody to tell */
    int of_run = j->in.run_id && j->in.run_id[0];
    log_warn("messages: cannot store a %s message%s%s: %s", j->in.role, of_run ? " of " : "",
             of_run ? j->in.run_id : "", agd_err_code(rc));
  }
  return rc;
}

/* Loop thread, after the commit (rc: job_fn's, or the transaction's error). */
static void job_done(void *arg, int rc) {
  msg_job_t *j = arg;
  j->done(j->arg, rc, rc == 0 ? &j->out : NULL);
  job_free(j);
}

static void job_release(void *arg) { job_free(arg); }

int messages_write(const messages_write_t *w) {
  int rc = store_message_check(w->user_id, &w->msg);
  if (rc != 0) return rc;
  msg_job_t *j = job_new(w);
  if (j->done) queue->then(j->user_id, job_fn, job_done, j);
  else queue->later(j->user_id, job_fn, job_release, j);
  return 0;
}
