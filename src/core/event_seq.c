/* core/event_seq.c — the local seq allocator (see event_seq.h).
 *
 * 64 lock stripes keyed by the user's hash, 256 buckets each: a user's counter
 * is found and bumped under its stripe, so different users rarely share a lock.
 * The same hash picks the stripe as core/events.c's order lock does, so when
 * events.c holds a user's order stripe, this one is never contended.
 */
#include "core/event_seq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/hash.h"

#define SEQ_STRIPES 64
#define SEQ_BUCKETS 256

typedef struct seq_entry {
  struct seq_entry *next;
  int64_t last_seq; /* -1: not loaded from the store yet */
  char user_id[];
} seq_entry_t;

typedef struct seq_stripe {
  pthread_mutex_t mu;
  seq_entry_t *buckets[SEQ_BUCKETS];
} seq_stripe_t;

typedef struct local_seq {
  event_seq_t base;
  store_t *store;
  seq_stripe_t stripes[SEQ_STRIPES];
} local_seq_t;

/* The user's counter, created at -1.  Stripe lock held. */
static int64_t *seq_slot(seq_stripe_t *st, uint64_t h, const char *user_id) {
  seq_entry_t **b = &st->buckets[(h >> 8) & (SEQ_BUCKETS - 1)];
  for (seq_entry_t *e = *b; e; e = e->next)
    if (strcmp(e->user_id, user_id) == 0) return &e->last_seq;
  size_t n = strlen(user_id) + 1;
  seq_entry_t *e = calloc(1, sizeof(*e) + n);
  if (!e) abort();
  memcpy(e->user_id, user_id, n);
  e->last_seq = -1;
  e->next = *b;
  *b = e;
  return &e->last_seq;
}

static int local_next(event_seq_t *q, const char *user_id, int64_t *out) {
  local_seq_t *l = (local_seq_t *)q;
  uint64_t h = hash_fnv1a_str(user_id, 0);
  seq_stripe_t *st = &l->stripes[h % SEQ_STRIPES];
  pthread_mutex_lock(&st->mu);
  int64_t *slot = seq_slot(st, h, user_id);
  if (*slot < 0) {
    /* First event of this user in this process: continue from the stored
     * counter.  On failure the seq stays unknown and is read again next time. */
    int rc = store_event_last_seq(l->store, user_id, slot);
    if (rc != 0) {
      *slot = -1;
      pthread_mutex_unlock(&st->mu);
      return rc;
    }
  }
  *out = ++*slot;
  pthread_mutex_unlock(&st->mu);
  return 0;
}

static void local_free(event_seq_t *q) {
  local_seq_t *l = (local_seq_t *)q;
  for (int i = 0; i < SEQ_STRIPES; i++) {
    for (int b = 0; b < SEQ_BUCKETS; b++) {
      for (seq_entry_t *e = l->stripes[i].buckets[b], *n; e; e = n) {
        n = e->next;
        free(e);
      }
    }
    pthread_mutex_destroy(&l->stripes[i].mu);
  }
  free(l);
}

static const event_seq_ops_t local_ops = {.next = local_next, .free = local_free};

event_seq_t *event_seq_local_new(store_t *store) {
  local_seq_t *l = calloc(1, sizeof(*l));
  if (!l) abort();
  l->base.ops = &local_ops;
  l->store = store;
  for (int i = 0; i < SEQ_STRIPES; i++) pthread_mutex_init(&l->stripes[i].mu, NULL);
  return &l->base;
}
