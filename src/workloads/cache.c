/* workloads/cache.c — the per-user columnar cache of workload records (wl_int.h) and
 * the write paths that keep it in step with the store (workloads_insert/_delete).
 *
 * Why: the SPEC §8 summary must answer in ≤ 200 ms over 1,000,000 records, exact
 * percentiles included; scanning SQLite for that takes seconds.  Columns of a user's
 * records (~57 bytes a record plus interned strings) are scanned in tens of ms.
 * Threads: any but the loop.  g_mu guards the entry list, refcounts and byte counts;
 * an entry's own mutex guards its data and is held across store calls for that user
 * (so a user's writes and reads are serialised here).  g_mu and an entry lock are
 * never held together, so there is no lock order to get wrong.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/hash.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "workloads/wl_int.h"

#define CACHE_DEFAULT_LIMIT ((size_t)256 << 20)

/* ---- interned strings ----------------------------------------------------------------- */

static uint64_t str_hash(const char *s) {
  uint64_t h = hash_fnv1a_str(s, 0); /* then a final mix (splitmix64) */
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

static void dict_dispose(wl_dict_t *d) {
  free(d->arena);
  free(d->off);
  free(d->slots);
  memset(d, 0, sizeof *d);
}

static void dict_rehash(wl_dict_t *d, size_t nslots) {
  free(d->slots);
  d->slots = calloc(nslots, sizeof *d->slots);
  if (!d->slots) abort();
  d->nslots = nslots;
  for (uint32_t id = 0; id < d->n; id++) {
    size_t i = (size_t)str_hash(d->arena + d->off[id]) & (nslots - 1);
    while (d->slots[i]) i = (i + 1) & (nslots - 1);
    d->slots[i] = id + 1;
  }
}

/* The id of s, added when new. */
static uint32_t dict_intern(wl_dict_t *d, const char *s) {
  if ((size_t)(d->n + 1) * 2 > d->nslots) dict_rehash(d, d->nslots ? d->nslots * 2 : 16);
  size_t i = (size_t)str_hash(s) & (d->nslots - 1);
  while (d->slots[i]) {
    uint32_t id = d->slots[i] - 1;
    if (strcmp(d->arena + d->off[id], s) == 0) return id;
    i = (i + 1) & (d->nslots - 1);
  }
  size_t len = strlen(s) + 1;
  if (d->arena_len + len > d->arena_cap) {
    d->arena_cap = (d->arena_cap + len) * 3 / 2 + 256;
    d->arena = xrealloc(d->arena, d->arena_cap);
  }
  memcpy(d->arena + d->arena_len, s, len);
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 3 / 2 + 1 : 16;
    d->off = xrealloc(d->off, d->cap * sizeof *d->off);
  }
  d->off[d->n] = d->arena_len;
  d->arena_len += len;
  d->slots[i] = d->n + 1;
  return d->n++;
}

static size_t dict_bytes(const wl_dict_t *d) {
  return d->arena_cap + d->cap * sizeof *d->off + d->nslots * sizeof *d->slots;
}

/* ---- columns ----------------------------------------------------------------------------- */

void wl_data_init(wl_data_t *d) { memset(d, 0, sizeof *d); }

void wl_data_dispose(wl_data_t *d) {
  free(d->ts);
  free(d->lat);
  free(d->cost);
  free(d->pt);
  free(d->ct);
  free(d->mp);
  free(d->prov);
  free(d->feat);
  free(d->hash);
  free(d->err);
  dict_dispose(&d->pairs);
  dict_dispose(&d->providers);
  dict_dispose(&d->features);
  dict_dispose(&d->hashes);
  dict_dispose(&d->models);
  free(d->mp_model_of);
  free(d->mp_prov_of);
  memset(d, 0, sizeof *d);
}

size_t wl_data_bytes(const wl_data_t *d) {
  size_t per = 3 * sizeof(double) + 2 * sizeof(int64_t) + 4 * sizeof(uint32_t) + 1;
  return sizeof *d + d->cap * per + dict_bytes(&d->pairs) + dict_bytes(&d->providers) +
         dict_bytes(&d->features) + dict_bytes(&d->hashes) + dict_bytes(&d->models) +
         d->mp_cap * 2 * sizeof(uint32_t);
}

static void data_grow(wl_data_t *d) {
  size_t cap = d->cap ? d->cap + d->cap / 2 : 1024;
  d->ts = xrealloc(d->ts, cap * sizeof *d->ts);
  d->lat = xrealloc(d->lat, cap * sizeof *d->lat);
  d->cost = xrealloc(d->cost, cap * sizeof *d->cost);
  d->pt = xrealloc(d->pt, cap * sizeof *d->pt);
  d->ct = xrealloc(d->ct, cap * sizeof *d->ct);
  d->mp = xrealloc(d->mp, cap * sizeof *d->mp);
  d->prov = xrealloc(d->prov, cap * sizeof *d->prov);
  d->feat = xrealloc(d->feat, cap * sizeof *d->feat);
  d->hash = xrealloc(d->hash, cap * sizeof *d->hash);
  d->err = xrealloc(d->err, cap * sizeof *d->err);
  d->cap = cap;
}

void wl_data_append(wl_data_t *d, const workload_rec_t *r) {
  if (d->n == d->cap) data_grow(d);
  size_t i = d->n++;
  d->ts[i] = r->timestamp;
  d->lat[i] = r->latency_ms;
  d->cost[i] = r->cost_usd;
  d->pt[i] = r->prompt_tokens;
  d->ct[i] = r->completion_tokens;
  d->err[i] = r->is_error ? 1 : 0;
  uint32_t prov = dict_intern(&d->providers, r->provider);
  d->prov[i] = prov;
  /* pair key: provider \x01 model (neither contains \x01 in practice; if one did, two
   * pairs could share a key — a cosmetic grouping issue, never a crossing of users) */
  char key[STORE_WL_PROVIDER_MAX + STORE_WL_MODEL_MAX + 2];
  size_t pl = strlen(r->provider), ml = strlen(r->model);
  memcpy(key, r->provider, pl);
  key[pl] = '\x01';
  memcpy(key + pl + 1, r->model, ml + 1);
  uint32_t before = d->pairs.n;
  uint32_t mp = dict_intern(&d->pairs, key);
  if (d->pairs.n != before) { /* a new pair */
    if (mp >= d->mp_cap) {
      d->mp_cap = d->mp_cap ? d->mp_cap * 2 : 16;
      d->mp_model_of = xrealloc(d->mp_model_of, d->mp_cap * sizeof *d->mp_model_of);
      d->mp_prov_of = xrealloc(d->mp_prov_of, d->mp_cap * sizeof *d->mp_prov_of);
    }
    d->mp_model_of[mp] = dict_intern(&d->models, r->model);
    d->mp_prov_of[mp] = prov;
  }
  d->mp[i] = mp;
  d->feat[i] = dict_intern(&d->features, r->feature);
  d->hash[i] = r->prompt_hash[0] ? dict_intern(&d->hashes, r->prompt_hash) : WL_NONE;
}

/* ---- entries ---------------------------------------------------------------------------- */

typedef struct wl_entry {
  struct wl_entry *prev, *next; /* LRU list, most recent first (g_mu) */
  store_t *store;
  char user_id[ID_MAX];
  int refs;                     /* threads using it (g_mu) */
  size_t acct;                  /* bytes counted in g_total (g_mu) */
  pthread_mutex_t mu;           /* guards everything below */
  int loaded;                   /* d reflects the store up to next_seq - 1 at gen */
  int64_t next_seq, gen;
  wl_data_t d;
} wl_entry_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static wl_entry_t *g_head;
static size_t g_total;
static size_t g_limit = CACHE_DEFAULT_LIMIT;

static void lru_unlink(wl_entry_t *e) {
  if (e->prev) e->prev->next = e->next;
  else g_head = e->next;
  if (e->next) e->next->prev = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_front(wl_entry_t *e) {
  e->prev = NULL;
  e->next = g_head;
  if (g_head) g_head->prev = e;
  g_head = e;
}

static void entry_free(wl_entry_t *e) {
  pthread_mutex_destroy(&e->mu);
  wl_data_dispose(&e->d);
  free(e);
}

/* The entry of (s, user_id), created when absent, with a reference taken and locked. */
static wl_entry_t *entry_acquire(store_t *s, const char *user_id) {
  pthread_mutex_lock(&g_mu);
  wl_entry_t *e = g_head;
  while (e && !(e->store == s && strcmp(e->user_id, user_id) == 0)) e = e->next;
  if (e) {
    lru_unlink(e);
  } else {
    e = calloc(1, sizeof *e);
    if (!e) abort();
    e->store = s;
    snprintf(e->user_id, sizeof e->user_id, "%s", user_id);
    pthread_mutex_init(&e->mu, NULL);
    wl_data_init(&e->d);
  }
  lru_push_front(e);
  e->refs++;
  pthread_mutex_unlock(&g_mu);
  pthread_mutex_lock(&e->mu);
  return e;
}

/* Unlock e, drop the reference, account its bytes and evict least recently used
 * entries no one uses while the total is over the limit (e itself included: a user
 * bigger than the limit is reloaded on each use rather than holding memory). */
static void entry_release(wl_entry_t *e) {
  size_t bytes = e->loaded ? wl_data_bytes(&e->d) : sizeof *e;
  pthread_mutex_unlock(&e->mu);
  wl_entry_t *victims = NULL;
  pthread_mutex_lock(&g_mu);
  e->refs--;
  g_total = g_total - e->acct + bytes;
  e->acct = bytes;
  wl_entry_t *t = g_head;
  while (t && t->next) t = t->next; /* the tail: least recently used */
  while (t && g_total > g_limit) {
    wl_entry_t *prev = t->prev;
    if (t->refs == 0) {
      lru_unlink(t);
      g_total -= t->acct;
      t->next = victims;
      victims = t;
    }
    t = prev;
  }
  pthread_mutex_unlock(&g_mu);
  while (victims) {
    wl_entry_t *n = victims->next;
    entry_free(victims);
    victims = n;
  }
}

static int append_cb(const store_workload_t *rec, int64_t seq, void *arg) {
  (void)seq;
  wl_data_append(arg, rec);
  return 0;
}

/* Bring e (locked) up to date with the store: nothing when it already is (one indexed
 * read), only the new rows after inserts made elsewhere, everything after a delete. */
static int entry_sync(wl_entry_t *e) {
  int64_t next = 1, gen = 0;
  int rc = store_workload_state(e->store, e->user_id, &next, &gen);
  if (rc) return rc;
  if (e->loaded && gen == e->gen && next == e->next_seq) return 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    int full = !e->loaded || gen != e->gen || next < e->next_seq;
    if (full) {
      wl_data_dispose(&e->d);
      wl_data_init(&e->d);
      e->loaded = 0;
    }
    int64_t after = full ? 0 : e->next_seq - 1;
    int64_t n2 = 1, g2 = 0;
    rc = store_workload_scan(e->store, e->user_id, after, append_cb, &e->d, &n2, &g2);
    if (rc) {
      wl_data_dispose(&e->d);
      wl_data_init(&e->d);
      e->loaded = 0;
      return rc;
    }
    if (full || g2 == e->gen) { /* consistent: one snapshot, or the same generation */
      e->loaded = 1;
      e->next_seq = n2;
      e->gen = g2;
      return 0;
    }
    e->loaded = 0; /* a delete came in between: reload everything */
    gen = g2;
    next = n2;
  }
  return ERR(AGD_EUNAVAILABLE);
}

int wl_cache_read(store_t *s, const char *user_id, wl_read_fn fn, void *arg) {
  if (!s || !user_id || !user_id[0] || strlen(user_id) >= ID_MAX) return AGD_EBAD_REQUEST;
  wl_entry_t *e = entry_acquire(s, user_id);
  int rc = entry_sync(e);
  if (rc == 0) rc = fn(&e->d, arg);
  entry_release(e);
  return rc;
}

int workloads_insert(store_t *s, const char *user_id, const workload_rec_t *recs, size_t n, long *inserted) {
  if (inserted) *inserted = 0;
  if (!s || !user_id || !user_id[0] || strlen(user_id) >= ID_MAX || (n && !recs)) return AGD_EBAD_REQUEST;
  if (n == 0) return 0;
  wl_entry_t *e = entry_acquire(s, user_id);
  /* In step first, so the new rows can be appended in place; if that fails the rows
   * still go to the store and the entry reloads on its next use. */
  if (entry_sync(e) != 0) e->loaded = 0;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i += WORKLOADS_TX_RECORDS) {
    size_t k = n - i < WORKLOADS_TX_RECORDS ? n - i : WORKLOADS_TX_RECORDS;
    int64_t first = 0, gen = 0;
    rc = store_workload_insert(s, user_id, recs + i, k, &first, &gen);
    if (rc) break;
    if (inserted) *inserted += (long)k;
    if (e->loaded && gen == e->gen && first == e->next_seq) {
      for (size_t j = 0; j < k; j++) wl_data_append(&e->d, &recs[i + j]);
      e->next_seq = first + (int64_t)k;
    } else {
      e->loaded = 0;
    }
  }
  entry_release(e);
  return rc;
}

int workloads_delete(store_t *s, const char *user_id, long *deleted) {
  if (deleted) *deleted = 0;
  if (!s || !user_id || !user_id[0] || strlen(user_id) >= ID_MAX) return AGD_EBAD_REQUEST;
  wl_entry_t *e = entry_acquire(s, user_id);
  int64_t next = 1, gen = 0;
  long d = 0;
  int rc = store_workload_delete(s, user_id, &d, &next, &gen);
  wl_data_dispose(&e->d);
  wl_data_init(&e->d);
  e->loaded = rc == 0;
  e->next_seq = next;
  e->gen = gen;
  entry_release(e);
  if (deleted) *deleted = d;
  return rc;
}

void workloads_cache_set_limit(size_t bytes) {
  pthread_mutex_lock(&g_mu);
  g_limit = bytes;
  pthread_mutex_unlock(&g_mu);
}

void workloads_cache_clear(void) {
  pthread_mutex_lock(&g_mu);
  wl_entry_t *e = g_head;
  g_head = NULL;
  g_total = 0;
  pthread_mutex_unlock(&g_mu);
  while (e) {
    wl_entry_t *n = e->next;
    entry_free(e);
    e = n;
  }
}

size_t workloads_cache_bytes(void) {
  pthread_mutex_lock(&g_mu);
  size_t t = g_total;
  pthread_mutex_unlock(&g_mu);
  return t;
}
