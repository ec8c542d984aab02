/* tests/unit/test_ratelimit.c — core/ratelimit (SPEC §9). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>

#include "core/ratelimit.h"

#define T0 1700000000.0

Test(ratelimit, burst_then_limited)
{
  /* SPEC §9 default: 20 req/s, burst 40 */
  ratelimit_t *rl = ratelimit_new(20, 40, 1000);
  ratelimit_info_t in;
  for (int i = 0; i < 40; i++) {
    cr_assert_eq(ratelimit_try_take(rl, "usr_1", T0, &in), 1, "take %d", i);
    cr_assert_eq(in.limit, 40);
    cr_assert_eq(in.remaining, 39 - i);
    cr_assert_eq(in.retry_after_s, 0);
  }
  cr_assert_eq(in.reset_s, 2); /* 40 tokens at 20/s */
  cr_assert_eq(ratelimit_try_take(rl, "usr_1", T0, &in), 0);
  cr_assert_eq(in.remaining, 0);
  cr_assert_eq(in.limit, 40);
  cr_assert_eq(in.retry_after_s, 1); /* 0.05 s rounds up to 1 */
  cr_assert_eq(in.reset_s, 2);
  /* another key is untouched */
  cr_assert_eq(ratelimit_try_take(rl, "ip:1.2.3.4", T0, &in), 1);
  cr_assert_eq(in.remaining, 39);
  ratelimit_free(rl);
}

Test(ratelimit, refill_over_time)
{
  ratelimit_t *rl = ratelimit_new(20, 40, 1000);
  ratelimit_info_t in;
  for (int i = 0; i < 40; i++) ratelimit_try_take(rl, "k", T0, &in);
  cr_assert_eq(ratelimit_try_take(rl, "k", T0 + 0.01, &in), 0);
  /* 0.05 s later: exactly one token */
  cr_assert_eq(ratelimit_try_take(rl, "k", T0 + 0.05, &in), 1);
  cr_assert_eq(in.remaining, 0);
  cr_assert_eq(ratelimit_try_take(rl, "k", T0 + 0.05, &in), 0);
  /* half a second: 10 tokens */
  cr_assert_eq(ratelimit_try_take(rl, "k", T0 + 0.55, &in), 1);
  cr_assert_eq(in.remaining, 9);
  cr_assert_eq(in.reset_s, 2); /* 31 missing tokens / 20 per s = 1.55 s → 2 */
  /* long idle: back to a full burst, never more */
  cr_assert_eq(ratelimit_try_take(rl, "k", T0 + 3600, &in), 1);
  cr_assert_eq(in.remaining, 39);
  /* time going backwards does not add tokens */
  cr_assert_eq(ratelimit_try_take(rl, "k", T0, &in), 1);
  cr_assert_eq(in.remaining, 38);
  ratelimit_free(rl);
}

Test(ratelimit, reset_values)
{
  ratelimit_t *rl = ratelimit_new(20, 40, 1000);
  ratelimit_info_t in;
  cr_assert_eq(ratelimit_try_take(rl, "k", T0, &in), 1);
  cr_assert_eq(in.remaining, 39);
  cr_assert_eq(in.reset_s, 1); /* one token missing: 0.05 s → 1 */
  for (int i = 0; i < 30; i++) ratelimit_try_take(rl, "k", T0, &in);
  cr_assert_eq(in.remaining, 9);
  cr_assert_eq(in.reset_s, 2); /* 31 missing: 1.55 s → 2 */
  ratelimit_free(rl);
}

Test(ratelimit, slow_rate_retry_after)
{
  /* SPEC §9: 5 failed logins per minute per email+IP */
  ratelimit_t *rl = ratelimit_new(5.0 / 60.0, 5, 1000);
  ratelimit_info_t in;
  const char *k = "login:a@b.co|1.2.3.4";
  for (int i = 0; i < 5; i++) cr_assert_eq(ratelimit_try_take(rl, k, T0, &in), 1);
  cr_assert_eq(ratelimit_try_take(rl, k, T0, &in), 0);
  cr_assert_eq(in.retry_after_s, 12);
  cr_assert_eq(in.reset_s, 60);
  cr_assert_eq(ratelimit_try_take(rl, k, T0 + 11.5, &in), 0);
  cr_assert_eq(in.retry_after_s, 1); /* 0.5 s left → 1 */
  cr_assert_eq(ratelimit_try_take(rl, k, T0 + 12, &in), 1);
  cr_assert_eq(in.retry_after_s, 0);
  ratelimit_free(rl);
}

Test(ratelimit, unlimited)
{
  ratelimit_t *rl = ratelimit_new(0, 40, 10);
  ratelimit_info_t in;
  for (int i = 0; i < 10000; i++) cr_assert_eq(ratelimit_try_take(rl, "k", T0, &in), 1);
  cr_assert_eq(in.retry_after_s, 0);
  cr_assert_eq(ratelimit_count(rl), 0);
  ratelimit_free(rl);
  cr_assert_eq(ratelimit_try_take(NULL, "k", T0, &in), 1);
  cr_assert_eq(ratelimit_try_take(NULL, "k", T0, NULL), 1);
  ratelimit_free(NULL);
}

Test(ratelimit, eviction_bounded)
{
  ratelimit_t *rl = ratelimit_new(0.5, 3, 100);
  ratelimit_info_t in;
  char k[32];
  /* drain "hot" so it matters which bucket goes */
  for (int i = 0; i < 3; i++) ratelimit_try_take(rl, "hot", T0, &in);
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "ip:%d", i);
    cr_assert_eq(ratelimit_try_take(rl, k, T0 + 0.001 * i, &in), 1);
    cr_assert_leq(ratelimit_count(rl), 100);
    ratelimit_try_take(rl, "hot", T0 + 0.001 * i, &in); /* stays recently used */
  }
  cr_assert_eq(ratelimit_count(rl), 100);
  /* the recently used key survived eviction and is still limited */
  cr_assert_eq(ratelimit_try_take(rl, "hot", T0 + 1.0, &in), 0);
  /* the most recent keys are still there (their bucket is not full) */
  cr_assert_eq(ratelimit_try_take(rl, "ip:999", T0 + 1.0, &in), 1);
  cr_assert_eq(in.remaining, 1);
  ratelimit_free(rl);
}

Test(ratelimit, eviction_prefers_refilled)
{
  ratelimit_t *rl = ratelimit_new(1, 2, 3);
  ratelimit_info_t in;
  ratelimit_try_take(rl, "a", T0, &in);
  ratelimit_try_take(rl, "b", T0 + 5, &in);
  ratelimit_try_take(rl, "b", T0 + 5, &in);
  ratelimit_try_take(rl, "c", T0 + 5, &in);
  /* full; at T0+5.5 "a" is refilled (idle 5.5 s ≥ 2 s), b and c are not */
  ratelimit_try_take(rl, "d", T0 + 5.5, &in);
  cr_assert_eq(ratelimit_count(rl), 3);
  /* b kept its state: still empty */
  cr_assert_eq(ratelimit_try_take(rl, "b", T0 + 5.5, &in), 0);
  ratelimit_free(rl);
}

Test(ratelimit, sweep)
{
  ratelimit_t *rl = ratelimit_new(10, 20, 1000);
  ratelimit_info_t in;
  char k[32];
  for (int i = 0; i < 50; i++) {
    snprintf(k, sizeof k, "u%d", i);
    ratelimit_try_take(rl, k, T0 + i * 0.01, &in);
  }
  cr_assert_eq(ratelimit_count(rl), 50);
  cr_assert_eq(ratelimit_sweep(rl, T0), 0); /* nothing refilled yet */
  /* u0 took at T0 (one token): full again at T0 + 0.1 */
  cr_assert_eq(ratelimit_sweep(rl, T0 + 0.1), 1);
  cr_assert_eq(ratelimit_sweep(rl, T0 + 10), 49);
  cr_assert_eq(ratelimit_count(rl), 0);
  /* a swept key starts with a full bucket again */
  cr_assert_eq(ratelimit_try_take(rl, "u3", T0 + 10, &in), 1);
  cr_assert_eq(in.remaining, 19);
  ratelimit_free(rl);
}

Test(ratelimit, odd_arguments)
{
  ratelimit_t *rl = ratelimit_new(1, 0.2, 0); /* burst clamped to 1, max_keys default */
  ratelimit_info_t in;
  cr_assert_eq(ratelimit_try_take(rl, NULL, T0, &in), 1);
  cr_assert_eq(in.limit, 1);
  cr_assert_eq(ratelimit_try_take(rl, "", T0, &in), 0);
  cr_assert_eq(in.retry_after_s, 1);
  /* very long keys are cut, not refused */
  static char big[4096];
  memset(big, 'x', sizeof big - 1);
  cr_assert_eq(ratelimit_try_take(rl, big, T0, &in), 1);
  ratelimit_free(rl);
}

static ratelimit_t *g_rl;
static void *hammer(void *arg)
{
  long id = (long)arg;
  char k[32];
  long allowed = 0;
  for (int i = 0; i < 20000; i++) {
    snprintf(k, sizeof k, "k%d", i % 7);
    allowed += ratelimit_try_take(g_rl, k, T0 + id * 1e-9, NULL);
    if (i % 1000 == 0) ratelimit_sweep(g_rl, T0);
  }
  return (void *)allowed;
}

Test(ratelimit, threads)
{
  g_rl = ratelimit_new(1, 100, 4);
  pthread_t th[4];
  for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, hammer, (void *)i);
  long total = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(th[i], &r);
    total += (long)r;
  }
  /* 7 keys through 4 slots: evictions hand out fresh bursts, but never unbounded */
  cr_assert_geq(total, 700);
  cr_assert_leq(ratelimit_count(g_rl), 4);
  ratelimit_free(g_rl);
}
