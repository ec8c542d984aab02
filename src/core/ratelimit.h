/* core/ratelimit.h — token buckets keyed by string (SPEC §9).
 *
 * One ratelimit_t per limit (e.g. "/api/ routes per user or IP", "failed logins per
 * email|ip"); keys are caller-built strings ("usr_…", "ip:1.2.3.4",
 * "login:a@b.co|1.2.3.4").  Memory is bounded: at most max_keys buckets;
 * when full, the least recently used bucket goes (it is the idlest, so a full
 * one if any is full).  O(1) average: open hashing plus an LRU list.
 * Thread-safe: one mutex per ratelimit_t, held for a few hundred ns.
 * Times are caller-supplied epoch or monotonic seconds — one clock per object.
 */
#ifndef AGD_CORE_RATELIMIT_H
#define AGD_CORE_RATELIMIT_H

#include <stddef.h>

/* Keys longer than this many bytes are cut to it (they only name a bucket). */
#define RATELIMIT_KEY_MAX 512

typedef struct ratelimit ratelimit_t;

/* What a take found, for the SPEC §9 headers.  Caller-owned. */
typedef struct ratelimit_info {
  long limit;         /* X-RateLimit-Limit: the burst */
  long remaining;     /* X-RateLimit-Remaining: whole tokens left after this take */
  long reset_s;       /* X-RateLimit-Reset: seconds until the bucket is full again (ceil) */
  long retry_after_s; /* Retry-After: seconds until one token (ceil, ≥ 1) when limited, else 0 */
} ratelimit_info_t;

/* A limiter allowing rate_per_s on average and bursts of `burst` (clamped to
 * ≥ 1).  rate_per_s ≤ 0 means unlimited: every take is allowed and nothing is
 * stored.  max_keys 0 → 100000.  Never NULL (out of memory aborts). */
ratelimit_t *ratelimit_new(double rate_per_s, double burst, size_t max_keys);
/* Free everything.  NULL is a no-op. */
void ratelimit_free(ratelimit_t *rl);

/* Take one token from key's bucket at time now (seconds).  1 allowed, 0 limited.
 * info (may be NULL) is filled either way.  rl == NULL or an unlimited rl →
 * 1 with limit = remaining = burst (0 for NULL), resets 0.  A new key starts
 * with a full bucket.  key is borrowed for the call. */
int ratelimit_try_take(ratelimit_t *rl, const char *key, double now, ratelimit_info_t *info);

/* Drop buckets that have refilled completely by now (they are
 * indistinguishable from absent ones).  Returns how many were dropped.
 * Call it periodically (e.g. once a minute from a timer). */
size_t ratelimit_sweep(ratelimit_t *rl, double now);

/* Buckets currently held (tests, metrics). */
size_t ratelimit_count(ratelimit_t *rl);

#endif
