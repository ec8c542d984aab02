/* core/approvals.c — see approvals.h.
 *
 * The registry is a doubly linked list under one mutex: few runs wait at once, and
 * each waits for a person, so a linear search costs nothing that matters.  Each
 * entry has its own condition variable, so a decision wakes only its waiter.
 */
#include "core/approvals.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h" /* STORE_CALL_ID_MAX, STORE_REASON_MAX */
#include "tools/tool.h"
#include "util/ids.h"
#include "util/timeutil.h"

/* How often a waiter looks at its run's cancel flag (SPEC §4: a cancel is
 * noticed within 100 ms). */
#define CANCEL_POLL_MS 50

/* ---- patterns ---- */

/* Glob with `*` only, iterative with one backtrack point (no exponential blowup). */
static int glob_match(const char *p, size_t pn, const char *s) {
  size_t pi = 0, si = 0, star = (size_t)-1, mark = 0, sn = strlen(s);
  while (si < sn) {
    if (pi < pn && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < pn && p[pi] == s[si]) {
      pi++;
      si++;
    } else if (star != (size_t)-1) {
      pi = star + 1;
      si = ++mark;
    } else {
      return 0;
    }
  }
  while (pi < pn && p[pi] == '*') pi++;
  return pi == pn;
}

int approvals_pattern_match(const char *patterns, const char *name) {
  if (!patterns || !name) return 0;
  const char *p = patterns;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *a = p;
    while (n > 0 && (*a == ' ' || *a == '\t')) a++, n--;
    while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t')) n--;
    if (n > 0 && glob_match(a, n, name)) return 1;
    if (!end) return 0;
    p = end + 1;
  }
}

int approvals_tool_needs(const char *patterns, const char *tool_name) {
  if (!tool_name) return 0;
  if (approvals_pattern_match(patterns, tool_name)) return 1;
  const tool_t *t = tool_find(tool_name);
  int destructive = t && t->destructive;
  tool_unref(t);
  return destructive;
}

/* ---- the registry of waiters ---- */

struct approval_wait {
  struct approval_wait *prev, *next;
  char run_id[ID_MAX];
  char call_id[STORE_CALL_ID_MAX];
  pthread_cond_t cv;
  int decided, approved;
  char reason[STORE_REASON_MAX];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static approval_wait_t head = {.prev = &head, .next = &head};
static size_t n_waiting;

approval_wait_t *approvals_register(const char *run_id, const char *call_id) {
  approval_wait_t *w = calloc(1, sizeof(*w));
  if (!w) abort();
  snprintf(w->run_id, sizeof(w->run_id), "%s", run_id ? run_id : "");
  snprintf(w->call_id, sizeof(w->call_id), "%s", call_id ? call_id : "");
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_lock(&mu);
  w->prev = head.prev;
  w->next = &head;
  head.prev->next = w;
  head.prev = w;
  n_waiting++;
  pthread_mutex_unlock(&mu);
  return w;
}

/* mu held. */
static void set_decision_locked(approval_wait_t *w, int approved, const char *reason) {
  w->decided = 1;
  w->approved = approved ? 1 : 0;
  snprintf(w->reason, sizeof(w->reason), "%s", reason ? reason : "");
}

void approvals_preset(approval_wait_t *w, int approved, const char *reason) {
  pthread_mutex_lock(&mu);
  if (!w->decided) set_decision_locked(w, approved, reason);
  pthread_mutex_unlock(&mu);
}

approval_wait_end_t approvals_wait(approval_wait_t *w, double expires_at, atomic_int *cancel, int *approved,
                                   char *reason, size_t cap, int *cancel_value) {
  approval_wait_end_t end;
  pthread_mutex_lock(&mu);
  for (;;) {
    if (w->decided) {
      end = APPROVAL_WAIT_DECIDED;
      break;
    }
    int cv = cancel ? atomic_load(cancel) : 0;
    if (cv) {
      if (cancel_value) *cancel_value = cv;
      end = APPROVAL_WAIT_CANCELLED;
      break;
    }
    double left = expires_at - time_now();
    if (left <= 0) {
      end = APPROVAL_WAIT_EXPIRED;
      break;
    }
    /* Sleep a poll slice at most (or until the expiry, when sooner). */
    double slice = left < CANCEL_POLL_MS / 1000.0 ? left : CANCEL_POLL_MS / 1000.0;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long ns = until.tv_nsec + (long)(slice * 1e9);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&w->cv, &mu, &until);
  }
  if (end == APPROVAL_WAIT_DECIDED) {
    if (approved) *approved = w->approved;
    if (reason && cap) snprintf(reason, cap, "%s", w->reason);
  }
  pthread_mutex_unlock(&mu);
  return end;
}

void approvals_unregister(approval_wait_t *w) {
  if (!w) return;
  pthread_mutex_lock(&mu);
  w->prev->next = w->next;
  w->next->prev = w->prev;
  n_waiting--;
  pthread_mutex_unlock(&mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

int approvals_decide(const char *run_id, const char *call_id, int approved, const char *reason) {
  if (!run_id || !call_id) return 0;
  int found = 0;
  pthread_mutex_lock(&mu);
  for (approval_wait_t *w = head.next; w != &head; w = w->next) {
    if (!w->decided && strcmp(w->run_id, run_id) == 0 && strcmp(w->call_id, call_id) == 0) {
      set_decision_locked(w, approved, reason);
      pthread_cond_signal(&w->cv);
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&mu);
  return found;
}

size_t approvals_waiting(void) {
  pthread_mutex_lock(&mu);
  size_t n = n_waiting;
  pthread_mutex_unlock(&mu);
  return n;
}
