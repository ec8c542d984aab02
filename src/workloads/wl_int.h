/* workloads/wl_int.h — PRIVATE to the .c files of src/workloads/: the price table internals and
 * the per-user columnar cache the analyses read.
 *
 * Cache (cache.c): one entry per (store, user) holding that user's records as columns
 * (wl_data_t), filled from the store on first use and brought up to date on every
 * access by fetching only rows with seq past what it holds (store.h: seq is never
 * reused, a delete bumps the generation, which makes the entry reload).  Inserts and
 * deletes made through workloads_* update the entry in place.  Each entry has its own
 * mutex, held while a reader computes; entries are dropped least recently used first
 * when the total passes the limit.  Any thread except the loop.
 */
#ifndef AGD_WORKLOADS_WL_INT_H
#define AGD_WORKLOADS_WL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "store/embedded.h"
#include "workloads/workloads.h"

/* ---- prices (prices.c) ---- */

/* src/workloads/prices.json, embedded at build time (scripts/embed.py; generated file). */
extern const embedded_file_t workloads_prices[];

typedef struct wl_price {
  char provider[32];
  char model[64];
  double in_per_m, out_per_m; /* USD per million tokens */
  int tier;                   /* WL_TIER_* */
  char downgrade_to[64];      /* "" when none: the same provider's cheaper model for simple calls */
} wl_price_t;

enum { WL_TIER_BUDGET = 0, WL_TIER_STANDARD = 1, WL_TIER_PREMIUM = 2 };
const char *wl_tier_name(int tier);

/* The table row for a record's model (provider may be NULL): exact name, else the
 * longest table name that prefixes it followed by '-', '@' or ':' (dated versions such
 * as "gpt-4o-2024-08-06"); case-insensitive, a "vendor/" prefix ignored.  NULL when none. */
const wl_price_t *wl_price_find(const char *provider, const char *model);
/* The row of exactly this model name (downgrade targets).  NULL when none. */
const wl_price_t *wl_price_by_name(const char *model);
/* The table's batch discount (0.5 when absent). */
double wl_batch_discount(void);
/* USD for the tokens at p's prices. */
static inline double wl_price_cost(const wl_price_t *p, long long pt, long long ct) {
  return ((double)pt * p->in_per_m + (double)ct * p->out_per_m) / 1e6;
}

/* ---- columnar data (cache.c) ---- */

/* Interned strings: id 0.. in first-seen order. */
typedef struct wl_dict {
  char *arena;          /* the strings, NUL-terminated, back to back */
  size_t arena_len, arena_cap;
  size_t *off;          /* off[id]: the string's offset in arena */
  uint32_t n, cap;
  uint32_t *slots;      /* open addressing: id + 1, 0 = empty */
  size_t nslots;        /* power of two */
} wl_dict_t;

static inline const char *wl_dict_str(const wl_dict_t *d, uint32_t id) { return d->arena + d->off[id]; }

#define WL_NONE UINT32_MAX /* no prompt_hash */

/* One user's records as columns, in seq order. */
typedef struct wl_data {
  size_t n, cap;
  double *ts, *lat, *cost;
  int64_t *pt, *ct;
  uint32_t *mp;       /* (model, provider) pair id: mp_model[id], mp_provider[id] */
  uint32_t *prov;     /* provider id */
  uint32_t *feat;     /* feature id ("" is an id too) */
  uint32_t *hash;     /* prompt_hash id, WL_NONE when absent */
  uint8_t *err;
  wl_dict_t pairs, providers, features, hashes;
  uint32_t *mp_model_of; /* pair id → index into models dict */
  uint32_t *mp_prov_of;  /* pair id → provider id */
  size_t mp_cap;
  wl_dict_t models;
} wl_data_t;

/* Read the user's records (brought up to date first).  fn runs with the entry locked
 * and must not call into the cache; its return value is returned. */
typedef int (*wl_read_fn)(const wl_data_t *d, void *arg);
int wl_cache_read(store_t *s, const char *user_id, wl_read_fn fn, void *arg);

/* Used by tests: the data functions alone. */
void wl_data_init(wl_data_t *d);
void wl_data_dispose(wl_data_t *d);
void wl_data_append(wl_data_t *d, const workload_rec_t *r);
size_t wl_data_bytes(const wl_data_t *d);

/* ---- helpers shared by ingest.c and analyze.c ---- */

/* The window of a tool's args: "from"/"to" as epoch numbers or time strings; 0 when
 * absent.  0, or -1 with a reason in err. */
int wl_args_window(const json_t *args, workload_window_t *w, char *err, size_t cap);

#endif
