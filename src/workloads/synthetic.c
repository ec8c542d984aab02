/* workloads/synthetic.c — POST /api/workloads/synthetic: a seeded generator of
 * realistic LLM traffic (SPEC §8), so every agent and tool can be tried without data.
 *
 * Deterministic: xoshiro256** seeded through splitmix64; the same seed on the same
 * UTC day gives the same records (the window is the 30 days before today 00:00 UTC).
 * Records are produced in time order, hour by hour, WORKLOADS_TX_RECORDS at a time,
 * and stored with workloads_insert(): memory stays one batch whatever N is.
 * Worker thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/timeutil.h"
#include "workloads/wl_int.h"

#define DAYS 30
#define HOURS (DAYS * 24)

/* ---- random numbers ---- */

typedef struct rng {
  uint64_t s[4];
} rng_t;

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

/* uniform in [0, 1) */
static double unif(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double normal(rng_t *r) {
  double u1 = unif(r), u2 = unif(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* lognormal with the given median */
static double lognorm(rng_t *r, double median, double sigma) { return median * exp(sigma * normal(r)); }

/* ---- the traffic model ---- */

typedef struct model_profile {
  const char *model, *provider;
  double ttft_ms, ms_per_token, error_rate;
} model_profile_t;

static const model_profile_t models[] = {
  {"gpt-4o", "openai", 450, 12, 0.012},         {"gpt-4o-mini", "openai", 350, 8, 0.010},
  {"gpt-4.1", "openai", 500, 14, 0.012},        {"gpt-4.1-nano", "openai", 250, 5, 0.010},
  {"o3", "openai", 2500, 25, 0.020},            {"claude-sonnet-4", "anthropic", 700, 15, 0.015},
  {"claude-opus-4", "anthropic", 1200, 28, 0.018}, {"claude-3-5-haiku", "anthropic", 400, 9, 0.010},
  {"gemini-2.0-flash", "google", 300, 5, 0.012}, {"gemini-2.5-pro", "google", 900, 13, 0.030},
  {"gemini-2.5-flash", "google", 400, 6, 0.015},
};
enum { M_4O, M_4O_MINI, M_41, M_41_NANO, M_O3, M_SONNET4, M_OPUS4, M_HAIKU35, M_GEM20F, M_GEM25P, M_GEM25F };

typedef struct feature_profile {
  const char *name;
  double share;            /* of daytime traffic */
  double prompt_median, prompt_sigma, completion_median, completion_sigma;
  double repeat;           /* chance the prompt is one of the feature's popular ones */
  int nmodels;
  int model[3];
  double model_share[3];
} feature_profile_t;

static const feature_profile_t features[] = {
  {"chat_assistant", 0.30, 1200, 0.6, 350, 0.6, 0.10, 3, {M_4O, M_SONNET4, M_GEM25F}, {0.40, 0.35, 0.25}},
  {"support_bot", 0.20, 800, 0.5, 200, 0.5, 0.45, 2, {M_4O_MINI, M_HAIKU35}, {0.60, 0.40}},
  {"classification", 0.15, 180, 0.4, 6, 0.5, 0.30, 2, {M_4O, M_41_NANO}, {0.70, 0.30}},
  {"summarization", 0.12, 3500, 0.5, 300, 0.4, 0.05, 2, {M_SONNET4, M_GEM20F}, {0.50, 0.50}},
  {"code_review", 0.08, 6000, 0.7, 900, 0.5, 0.02, 3, {M_OPUS4, M_O3, M_41}, {0.40, 0.30, 0.30}},
  {"batch_extraction", 0.15, 2500, 0.5, 400, 0.5, 0.10, 2, {M_GEM20F, M_4O_MINI}, {0.50, 0.50}},
  {"nightly_report", 0.00, 9000, 0.4, 1500, 0.4, 0.00, 2, {M_41, M_GEM25P}, {0.60, 0.40}},
};
#define NFEAT (sizeof features / sizeof features[0])
#define F_NIGHTLY (NFEAT - 1)
#define POPULAR 200 /* popular prompts per feature */

static int night_hour(int h) { return h >= 1 && h <= 4; }

/* Relative traffic of an hour of the window: a diurnal curve peaking 14:00 UTC, lower
 * weekends, the nightly report job, and one spike day chosen by the seed. */
static double hour_weight(double start, int bin, int spike_day) {
  int day = bin / 24, h = bin % 24;
  double w = 0.25 + 0.75 * exp(-((h - 14.0) * (h - 14.0)) / (2 * 16.0));
  time_t t = (time_t)(start + day * 86400.0);
  struct tm tm;
  gmtime_r(&t, &tm);
  if (tm.tm_wday == 0 || tm.tm_wday == 6) w *= 0.55;
  if (night_hour(h)) w += 0.20; /* the nightly job runs whatever the day */
  if (day == spike_day) w *= 3.0;
  return w;
}

static int pick_feature(rng_t *r, int h) {
  if (night_hour(h) && unif(r) < 0.20 / (0.20 + 0.25)) return (int)F_NIGHTLY;
  double u = unif(r), acc = 0;
  for (size_t f = 0; f < F_NIGHTLY; f++) {
    acc += features[f].share;
    if (u < acc) return (int)f;
  }
  return 0;
}

static void make_record(rng_t *r, uint64_t seed, uint64_t serial, double ts, workload_rec_t *out) {
  memset(out, 0, sizeof *out);
  time_t t = (time_t)ts;
  struct tm tm;
  gmtime_r(&t, &tm);
  int f = pick_feature(r, tm.tm_hour);
  const feature_profile_t *fp = &features[f];
  double u = unif(r), acc = 0;
  int mi = fp->model[fp->nmodels - 1];
  for (int k = 0; k < fp->nmodels; k++) {
    acc += fp->model_share[k];
    if (u < acc) {
      mi = fp->model[k];
      break;
    }
  }
  const model_profile_t *mp = &models[mi];
  out->timestamp = ts;
  snprintf(out->model, sizeof out->model, "%s", mp->model);
  snprintf(out->provider, sizeof out->provider, "%s", mp->provider);
  snprintf(out->feature, sizeof out->feature, "%s", fp->name);
  long long pt = (long long)lognorm(r, fp->prompt_median, fp->prompt_sigma);
  long long ct = (long long)lognorm(r, fp->completion_median, fp->completion_sigma);
  out->prompt_tokens = pt < 1 ? 1 : pt;
  out->completion_tokens = ct < 1 ? 1 : ct;
  /* repeated prompts: popular ones by a skewed draw, else a unique one */
  if (unif(r) < fp->repeat) {
    uint64_t x = seed ^ ((uint64_t)f << 32) ^ (uint64_t)(POPULAR * unif(r) * unif(r));
    snprintf(out->prompt_hash, sizeof out->prompt_hash, "p%016llx", (unsigned long long)splitmix(&x));
  } else {
    uint64_t x = seed ^ 0x5bd1e995ull ^ (serial * 0x9e3779b97f4a7c15ull);
    snprintf(out->prompt_hash, sizeof out->prompt_hash, "u%016llx", (unsigned long long)splitmix(&x));
  }
  double lat = lognorm(r, mp->ttft_ms, 0.35) + (double)out->completion_tokens * lognorm(r, mp->ms_per_token, 0.2);
  if (unif(r) < 0.02) { /* heavy tail: Pareto(alpha 1.5) slowdowns, capped */
    double m = 2.0 / pow(1.0 - unif(r), 1.0 / 1.5);
    lat *= m > 60 ? 60 : m;
  }
  if (unif(r) < mp->error_rate) {
    out->is_error = 1;
    out->completion_tokens = 0;
    lat = unif(r) < 0.3 ? 30000.0 : 100 + 200 * unif(r); /* timeouts, or fast failures */
  }
  out->latency_ms = round(lat * 10) / 10;
  const wl_price_t *p = wl_price_by_name(mp->model);
  out->cost_usd = p ? wl_price_cost(p, out->prompt_tokens, out->completion_tokens) : 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int workloads_synthetic(store_t *s, const char *user_id, long n, unsigned long long seed, long *inserted) {
  if (inserted) *inserted = 0;
  if (n < 1 || n > WORKLOADS_SYNTHETIC_MAX) return AGD_EBAD_REQUEST;
  double end = floor(time_now() / 86400.0) * 86400.0, start = end - DAYS * 86400.0;
  rng_t r;
  rng_seed(&r, seed);
  int spike_day = 5 + (int)(unif(&r) * 20);
  /* Records per hour: proportional to the weight, largest remainders first, so the
   * counts add up to exactly n. */
  double w[HOURS], total = 0;
  long cnt[HOURS], given = 0;
  for (int b = 0; b < HOURS; b++) total += (w[b] = hour_weight(start, b, spike_day));
  double rem[HOURS];
  for (int b = 0; b < HOURS; b++) {
    double x = (double)n * w[b] / total;
    cnt[b] = (long)floor(x);
    rem[b] = x - (double)cnt[b];
    given += cnt[b];
  }
  while (given < n) {
    int best = 0;
    for (int b = 1; b < HOURS; b++)
      if (rem[b] > rem[best]) best = b;
    cnt[best]++;
    rem[best] = -1;
    given++;
  }
  workload_rec_t *batch = malloc(WORKLOADS_TX_RECORDS * sizeof *batch);
  long max_cnt = 0;
  for (int b = 0; b < HOURS; b++)
    if (cnt[b] > max_cnt) max_cnt = cnt[b];
  double *offs = malloc((size_t)(max_cnt ? max_cnt : 1) * sizeof *offs);
  if (!batch || !offs) abort();
  size_t nb = 0;
  uint64_t serial = 0;
  int rc = 0;
  for (int b = 0; b < HOURS && rc == 0; b++) {
    for (long k = 0; k < cnt[b]; k++) offs[k] = unif(&r) * 3600.0;
    qsort(offs, (size_t)cnt[b], sizeof *offs, cmp_double);
    for (long k = 0; k < cnt[b] && rc == 0; k++) {
      double ts = round((start + b * 3600.0 + offs[k]) * 1000) / 1000;
      make_record(&r, seed, serial++, ts, &batch[nb++]);
      if (nb == WORKLOADS_TX_RECORDS) {
        long ins = 0;
        rc = workloads_insert(s, user_id, batch, nb, &ins);
        if (inserted) *inserted += ins;
        nb = 0;
      }
    }
  }
  if (rc == 0 && nb) {
    long ins = 0;
    rc = workloads_insert(s, user_id, batch, nb, &ins);
    if (inserted) *inserted += ins;
  }
  free(batch);
  free(offs);
  return rc;
}
