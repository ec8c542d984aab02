/* workloads/prices.c — the model price table (src/workloads/prices.json, embedded into the
 * binary by scripts/embed.py) and lookups by model name (SPEC §8: costs are computed
 * from it when a record has no cost_usd; GET /api/models/prices serves it).
 *
 * Parsed once, on first use (pthread_once), into a read-only array: any thread.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"
#include "workloads/wl_int.h"

#define PRICES_MAX 256

static pthread_once_t once = PTHREAD_ONCE_INIT;
static wl_price_t table[PRICES_MAX];
static size_t n_table;
static json_t *doc; /* the parsed file (kept: GET /api/models/prices copies from it) */
static double batch_discount = 0.5;

const char *wl_tier_name(int tier) {
  switch (tier) {
  case WL_TIER_PREMIUM: return "premium";
  case WL_TIER_STANDARD: return "standard";
  default: return "budget";
  }
}

static void lower_copy(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; i++) dst[i] = (char)tolower((unsigned char)src[i]);
  dst[i] = '\0';
}

static void load(void) {
  json_error_t jerr;
  const embedded_file_t *f = &workloads_prices[0];
  doc = f->name ? json_loadb(f->data, f->len, 0, &jerr) : NULL;
  json_t *arr = doc ? json_object_get(doc, "prices") : NULL;
  if (!json_is_array(arr)) {
    /* Our own build artefact: a broken file is a bug caught by the unit tests. */
    log_error("workloads: embedded prices.json is invalid (%s)", doc ? "no prices array" : jerr.text);
    return;
  }
  json_t *bd = json_object_get(doc, "batch_discount");
  if (json_is_number(bd) && json_number_value(bd) > 0 && json_number_value(bd) < 1)
    batch_discount = json_number_value(bd);
  size_t i;
  json_t *row;
  json_array_foreach(arr, i, row) {
    const char *prov = json_string_value(json_object_get(row, "provider"));
    const char *model = json_string_value(json_object_get(row, "model"));
    json_t *in = json_object_get(row, "input_per_million"), *out = json_object_get(row, "output_per_million");
    const char *tier = json_string_value(json_object_get(row, "tier"));
    const char *down = json_string_value(json_object_get(row, "downgrade_to"));
    if (!prov || !model || !json_is_number(in) || !json_is_number(out) || n_table == PRICES_MAX) continue;
    wl_price_t *p = &table[n_table++];
    lower_copy(p->provider, sizeof p->provider, prov);
    lower_copy(p->model, sizeof p->model, model);
    p->in_per_m = json_number_value(in);
    p->out_per_m = json_number_value(out);
    p->tier = tier && strcmp(tier, "premium") == 0 ? WL_TIER_PREMIUM
              : tier && strcmp(tier, "standard") == 0 ? WL_TIER_STANDARD
                                                       : WL_TIER_BUDGET;
    lower_copy(p->downgrade_to, sizeof p->downgrade_to, down ? down : "");
  }
}

static void ensure(void) { pthread_once(&once, load); }

const wl_price_t *wl_price_by_name(const char *model) {
  ensure();
  for (size_t i = 0; i < n_table; i++)
    if (strcmp(table[i].model, model) == 0) return &table[i];
  return NULL;
}

/* The last lookup of this thread: ingest prices runs of records of the same model. */
static _Thread_local struct {
  char model[64], provider[32];
  const wl_price_t *hit;
  int valid;
} last;

static const wl_price_t *price_find(const char *provider, const char *model);

const wl_price_t *wl_price_find(const char *provider, const char *model) {
  if (!model) return NULL;
  const char *pv = provider ? provider : "";
  if (last.valid && strcmp(last.model, model) == 0 && strcmp(last.provider, pv) == 0) return last.hit;
  const wl_price_t *p = price_find(provider, model);
  if (strlen(model) < sizeof last.model && strlen(pv) < sizeof last.provider) {
    strcpy(last.model, model);
    strcpy(last.provider, pv);
    last.hit = p;
    last.valid = 1;
  }
  return p;
}

static const wl_price_t *price_find(const char *provider, const char *model) {
  ensure();
  char m[64], pv[32] = "";
  const char *slash = strrchr(model, '/'); /* "openai/gpt-4o", "models/gemini-1.5-pro" */
  lower_copy(m, sizeof m, slash ? slash + 1 : model);
  if (provider) lower_copy(pv, sizeof pv, provider);
  const wl_price_t *best = NULL;
  size_t best_len = 0;
  int best_prov = 0;
  for (size_t i = 0; i < n_table; i++) {
    const wl_price_t *p = &table[i];
    size_t l = strlen(p->model);
    if (strncmp(m, p->model, l) != 0) continue;
    if (m[l] != '\0' && m[l] != '-' && m[l] != '@' && m[l] != ':') continue;
    int same_prov = pv[0] && strcmp(pv, p->provider) == 0;
    if (!best || l > best_len || (l == best_len && same_prov && !best_prov)) {
      best = p;
      best_len = l;
      best_prov = same_prov;
    }
  }
  return best;
}

double wl_batch_discount(void) {
  ensure();
  return batch_discount;
}

int workloads_price(const char *provider, const char *model, double *input_per_m, double *output_per_m) {
  const wl_price_t *p = wl_price_find(provider, model);
  if (!p) return AGD_ENOT_FOUND;
  if (input_per_m) *input_per_m = p->in_per_m;
  if (output_per_m) *output_per_m = p->out_per_m;
  return 0;
}

json_t *workloads_price_table(void) {
  ensure();
  json_t *prices = json_array();
  json_t *arr = doc ? json_object_get(doc, "prices") : NULL;
  size_t i;
  json_t *row;
  json_array_foreach(arr, i, row) json_array_append_new(prices, json_deep_copy(row));
  json_t *o = json_pack("{s:o, s:i}", "prices", prices, "total", (json_int_t)json_array_size(prices));
  const char *keys[] = {"source", "as_of", "currency", "unit", "batch_discount", "tiers"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    json_t *v = doc ? json_object_get(doc, keys[k]) : NULL;
    if (v) json_object_set_new(o, keys[k], json_deep_copy(v));
  }
  return o;
}
