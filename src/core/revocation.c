/* core/revocation.c — the revocation set's front (one backend at a time) and
 * its in-process backend: a chained hash under a rwlock.  Lookups (every
 * request, on the loop) take the read lock and never allocate.
 */
#include "core/revocation.h"

#include <math.h> /* isfinite (a macro: no libm needed) */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/hash.h"
#include "util/ids.h"
#include "util/xalloc.h"

/* ---------------------------------------------------------------- in-process backend */

typedef struct rev_entry {
  struct rev_entry *next;
  uint64_t h;
  double until; /* epoch seconds after which the entry is dropped */
  char key[];
} rev_entry_t;

static struct {
  pthread_rwlock_t lock;
  rev_entry_t **tab; /* NULL until the first revoke */
  size_t cap;        /* power of two */
  size_t count;
  size_t purge_at;   /* opportunistic purge when count reaches this */
  uint64_t seed;
} g_rev = {.lock = PTHREAD_RWLOCK_INITIALIZER};

/* FNV-1a, seeded, then a 64-bit finaliser. */
static uint64_t rev_hash(const char *s, uint64_t seed)
{
  return hash_mix64(hash_fnv1a_str(s, seed));
}

static double wall_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Caller holds the write lock. */
static size_t rev_purge_locked(double now)
{
  size_t dropped = 0;
  for (size_t i = 0; g_rev.tab && i < g_rev.cap; i++) {
    rev_entry_t **pp = &g_rev.tab[i];
    while (*pp) {
      rev_entry_t *e = *pp;
      if (e->until < now) {
        *pp = e->next;
        free(e);
        dropped++;
      } else {
        pp = &e->next;
      }
    }
  }
  g_rev.count -= dropped;
  g_rev.purge_at = g_rev.count * 2 > 1024 ? g_rev.count * 2 : 1024;
  return dropped;
}

static void rev_grow_locked(void)
{
  size_t ncap = g_rev.cap * 2;
  rev_entry_t **nt = xcalloc(ncap, sizeof *nt);
  for (size_t i = 0; i < g_rev.cap; i++) {
    rev_entry_t *e = g_rev.tab[i];
    while (e) {
      rev_entry_t *next = e->next;
      size_t b = e->h & (ncap - 1);
      e->next = nt[b];
      nt[b] = e;
      e = next;
    }
  }
  free(g_rev.tab);
  g_rev.tab = nt;
  g_rev.cap = ncap;
}

static void mem_add(void *self, const char *key, double until)
{
  (void)self;
  if (!key || !*key || !isfinite(until)) return;
  size_t kn = strlen(key);
  if (kn >= REVOCATION_KEY_MAX) return;

  pthread_rwlock_wrlock(&g_rev.lock);
  if (!g_rev.tab) {
    id_random_bytes(&g_rev.seed, sizeof g_rev.seed);
    g_rev.cap = 256;
    g_rev.tab = xcalloc(g_rev.cap, sizeof *g_rev.tab);
    g_rev.count = 0;
    g_rev.purge_at = 1024;
  }
  uint64_t h = rev_hash(key, g_rev.seed);
  rev_entry_t *e = g_rev.tab[h & (g_rev.cap - 1)];
  for (; e; e = e->next)
    if (e->h == h && strcmp(e->key, key) == 0) break;
  if (e) {
    if (until > e->until) e->until = until;
  } else {
    if (g_rev.count >= g_rev.purge_at) rev_purge_locked(wall_now());
    if (g_rev.count >= g_rev.cap) rev_grow_locked();
    e = xmalloc(sizeof *e + kn + 1);
    e->h = h;
    e->until = until;
    memcpy(e->key, key, kn + 1);
    size_t b = h & (g_rev.cap - 1);
    e->next = g_rev.tab[b];
    g_rev.tab[b] = e;
    g_rev.count++;
  }
  pthread_rwlock_unlock(&g_rev.lock);
}

static int mem_contains(void *self, const char *key, double now)
{
  (void)self;
  if (!key || !*key) return 0;
  int found = 0;
  pthread_rwlock_rdlock(&g_rev.lock);
  if (g_rev.tab) {
    uint64_t h = rev_hash(key, g_rev.seed);
    for (rev_entry_t *e = g_rev.tab[h & (g_rev.cap - 1)]; e; e = e->next) {
      if (e->h == h && strcmp(e->key, key) == 0) {
        found = e->until >= now;
        break;
      }
    }
  }
  pthread_rwlock_unlock(&g_rev.lock);
  return found;
}

static size_t mem_purge(void *self, double now)
{
  (void)self;
  pthread_rwlock_wrlock(&g_rev.lock);
  size_t n = rev_purge_locked(now);
  pthread_rwlock_unlock(&g_rev.lock);
  return n;
}

static size_t mem_count(void *self)
{
  (void)self;
  pthread_rwlock_rdlock(&g_rev.lock);
  size_t n = g_rev.count;
  pthread_rwlock_unlock(&g_rev.lock);
  return n;
}

static void mem_clear(void *self)
{
  (void)self;
  pthread_rwlock_wrlock(&g_rev.lock);
  for (size_t i = 0; g_rev.tab && i < g_rev.cap; i++) {
    rev_entry_t *e = g_rev.tab[i];
    while (e) {
      rev_entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(g_rev.tab);
  g_rev.tab = NULL;
  g_rev.cap = g_rev.count = 0;
  pthread_rwlock_unlock(&g_rev.lock);
}

static const revocation_backend_t memory_backend = {
    .name = "memory",
    .self = NULL,
    .add = mem_add,
    .contains = mem_contains,
    .purge = mem_purge,
    .count = mem_count,
    .clear = mem_clear,
};

const revocation_backend_t *revocation_memory_backend(void) { return &memory_backend; }

/* ---------------------------------------------------------------- front */

static const revocation_backend_t *g_backend = &memory_backend;

void revocation_set_backend(const revocation_backend_t *b) { g_backend = b ? b : &memory_backend; }

const revocation_backend_t *revocation_backend(void) { return g_backend; }

void revocation_add(const char *key, double until)
{
  if (!key || !*key) return;
  g_backend->add(g_backend->self, key, until);
}

int revocation_contains(const char *key, double now)
{
  if (!key || !*key) return 0;
  return g_backend->contains(g_backend->self, key, now);
}

size_t revocation_purge(double now) { return g_backend->purge(g_backend->self, now); }

size_t revocation_count(void) { return g_backend->count(g_backend->self); }

void revocation_clear(void) { g_backend->clear(g_backend->self); }
