/* core/ratelimit.c — token buckets in a chained hash table with an LRU list (SPEC §9).
 *
 * Each bucket stores tokens at its last touch; refill is computed lazily on
 * the next take.  The LRU list (head = most recently used) orders buckets by
 * last touch, so eviction and sweeping work from the tail.  One mutex.
 */
#include "core/ratelimit.h"

#include <math.h> /* isfinite (a macro: no libm needed) */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/ids.h"
#include "util/xalloc.h"

/* Float slack in tokens: epoch seconds as doubles are exact to ~0.25 µs, so
 * "0.05 s at 20/s" must count as a whole token: allow 1 µs worth of refill. */
#define RL_EPS(rl) ((rl)->rate * 1e-6 + 1e-9)

typedef struct bucket {
  struct bucket *hnext;       /* hash chain */
  struct bucket *prev, *next; /* LRU list; head is the most recently used */
  uint64_t h;
  double tokens; /* tokens at `last` */
  double last;   /* time of last take, seconds */
  size_t klen;
  char key[];
} bucket_t;

struct ratelimit {
  pthread_mutex_t mu;
  double rate, burst;
  size_t max_keys;
  bucket_t **tab; /* cap slots, power of two */
  size_t cap, count;
  bucket_t *head, *tail;
  uint64_t seed;
};

/* ceil for x ≥ 0 (clamped to 1e12) without libm. */
static long ceil_pos(double x)
{
  if (!(x > 0)) return 0;
  if (x > 1e12) return 1000000000000L;
  long i = (long)x;
  return (double)i < x ? i + 1 : i;
}

ratelimit_t *ratelimit_new(double rate_per_s, double burst, size_t max_keys)
{
  ratelimit_t *rl = xcalloc(1, sizeof *rl);
  pthread_mutex_init(&rl->mu, NULL);
  rl->rate = isfinite(rate_per_s) && rate_per_s > 0 ? rate_per_s : 0;
  rl->burst = isfinite(burst) && burst >= 1 ? (double)(long)(burst < 1e9 ? burst : 1e9) : 1;
  rl->max_keys = max_keys ? max_keys : 100000;
  rl->cap = 64;
  rl->tab = xcalloc(rl->cap, sizeof *rl->tab);
  id_random_bytes(&rl->seed, sizeof rl->seed);
  return rl;
}

void ratelimit_free(ratelimit_t *rl)
{
  if (!rl) return;
  bucket_t *b = rl->head;
  while (b) {
    bucket_t *n = b->next;
    free(b);
    b = n;
  }
  free(rl->tab);
  pthread_mutex_destroy(&rl->mu);
  free(rl);
}

/* Seeded FNV-1a with a 64-bit finaliser: keys carry client-chosen text
 * (e-mails), so the bucket index is not predictable from outside. */
static uint64_t key_hash(const char *k, size_t n, uint64_t seed) { return hash_mix64(hash_fnv1a(k, n, seed)); }

static void lru_unlink(ratelimit_t *rl, bucket_t *b)
{
  if (b->prev) b->prev->next = b->next;
  else rl->head = b->next;
  if (b->next) b->next->prev = b->prev;
  else rl->tail = b->prev;
  b->prev = b->next = NULL;
}

static void lru_push_head(ratelimit_t *rl, bucket_t *b)
{
  b->prev = NULL;
  b->next = rl->head;
  if (rl->head) rl->head->prev = b;
  rl->head = b;
  if (!rl->tail) rl->tail = b;
}

static void bucket_remove(ratelimit_t *rl, bucket_t *b)
{
  bucket_t **pp = &rl->tab[b->h & (rl->cap - 1)];
  while (*pp != b) pp = &(*pp)->hnext;
  *pp = b->hnext;
  lru_unlink(rl, b);
  rl->count--;
  free(b);
}

static void grow(ratelimit_t *rl)
{
  size_t ncap = rl->cap * 2;
  bucket_t **nt = xcalloc(ncap, sizeof *nt);
  for (size_t i = 0; i < rl->cap; i++) {
    bucket_t *b = rl->tab[i];
    while (b) {
      bucket_t *n = b->hnext;
      size_t s = b->h & (ncap - 1);
      b->hnext = nt[s];
      nt[s] = b;
      b = n;
    }
  }
  free(rl->tab);
  rl->tab = nt;
  rl->cap = ncap;
}

/* Tokens b holds at time now (refill applied, capped at burst). */
static double tokens_at(const ratelimit_t *rl, const bucket_t *b, double now)
{
  double t = b->tokens;
  if (now > b->last) t += (now - b->last) * rl->rate;
  return t > rl->burst ? rl->burst : t;
}

int ratelimit_try_take(ratelimit_t *rl, const char *key, double now, ratelimit_info_t *info)
{
  if (!rl || rl->rate <= 0) {
    if (info) {
      info->limit = info->remaining = rl ? (long)rl->burst : 0;
      info->reset_s = info->retry_after_s = 0;
    }
    return 1;
  }
  if (!key) key = "";
  size_t kn = strnlen(key, RATELIMIT_KEY_MAX);
  if (!isfinite(now)) now = 0;

  pthread_mutex_lock(&rl->mu);
  uint64_t h = key_hash(key, kn, rl->seed);
  bucket_t *b = rl->tab[h & (rl->cap - 1)];
  for (; b; b = b->hnext)
    if (b->h == h && b->klen == kn && memcmp(b->key, key, kn) == 0) break;
  if (b) {
    b->tokens = tokens_at(rl, b, now);
    if (now > b->last) b->last = now;
    lru_unlink(rl, b);
    lru_push_head(rl, b);
  } else {
    if (rl->count >= rl->max_keys) {
      /* Full: first drop the refilled buckets at the idle end (they would
       * start full anyway; amortised O(1): each goes once), else the LRU one. */
      while (rl->tail && tokens_at(rl, rl->tail, now) >= rl->burst - RL_EPS(rl))
        bucket_remove(rl, rl->tail);
      while (rl->count >= rl->max_keys && rl->tail) bucket_remove(rl, rl->tail);
    }
    if (rl->count >= rl->cap) grow(rl);
    b = xcalloc(1, sizeof *b + kn + 1);
    b->h = h;
    b->klen = kn;
    memcpy(b->key, key, kn);
    b->tokens = rl->burst;
    b->last = now;
    size_t s = h & (rl->cap - 1);
    b->hnext = rl->tab[s];
    rl->tab[s] = b;
    lru_push_head(rl, b);
    rl->count++;
  }

  int allowed = b->tokens >= 1 - RL_EPS(rl);
  if (allowed) {
    b->tokens -= 1;
    if (b->tokens < 0) b->tokens = 0;
  }
  if (info) {
    info->limit = (long)rl->burst;
    info->remaining = (long)(b->tokens + RL_EPS(rl)); /* ≥ 0: truncation is floor */
    double to_full = (rl->burst - b->tokens) / rl->rate;
    info->reset_s = ceil_pos(to_full - 1e-6); /* 1 µs slack, in seconds */
    if (allowed) {
      info->retry_after_s = 0;
    } else {
      long r = ceil_pos((1 - b->tokens) / rl->rate - 1e-6);
      info->retry_after_s = r < 1 ? 1 : r;
    }
  }
  pthread_mutex_unlock(&rl->mu);
  return allowed;
}

size_t ratelimit_sweep(ratelimit_t *rl, double now)
{
  if (!rl) return 0;
  size_t dropped = 0;
  pthread_mutex_lock(&rl->mu);
  /* From the idlest end: a bucket that is full again would start full anyway.
   * Stop at the first one still refilling (those nearer the head were used
   * more recently; any full ones among them go on a later sweep or by LRU). */
  while (rl->tail && tokens_at(rl, rl->tail, now) >= rl->burst - RL_EPS(rl)) {
    bucket_remove(rl, rl->tail);
    dropped++;
  }
  pthread_mutex_unlock(&rl->mu);
  return dropped;
}

size_t ratelimit_count(ratelimit_t *rl)
{
  if (!rl) return 0;
  pthread_mutex_lock(&rl->mu);
  size_t n = rl->count;
  pthread_mutex_unlock(&rl->mu);
  return n;
}
