/* tests/unit/test_timeutil.c — util/timeutil.c: clocks and RFC 3339 formatting. */
#include <criterion/criterion.h>
#include <math.h>
#include <time.h>

#include "util/timeutil.h"

Test(timeutil, now_is_wall_clock) {
  double a = (double)time(NULL);
  double n = time_now();
  cr_assert(n >= a - 1 && n <= a + 2, "now=%f time=%f", n, a);
  cr_assert(n > 1.7e9); /* after 2023 */
}

Test(timeutil, now_has_subsecond_precision) {
  /* Within 200 samples at least one has a non-zero fraction. */
  int frac = 0;
  for (int i = 0; i < 200 && !frac; i++) {
    double t = time_now();
    frac = t != floor(t);
  }
  cr_assert(frac);
}

Test(timeutil, mono_is_monotonic_and_consistent) {
  uint64_t ms0 = time_mono_ms();
  uint64_t ns0 = time_mono_ns();
  uint64_t prev = ns0;
  for (int i = 0; i < 1000; i++) {
    uint64_t ns = time_mono_ns();
    cr_assert_geq(ns, prev);
    prev = ns;
  }
  struct timespec d = {0, 20 * 1000000L};
  nanosleep(&d, NULL);
  uint64_t ms1 = time_mono_ms();
  uint64_t ns1 = time_mono_ns();
  cr_assert_geq(ms1 - ms0, 19);
  cr_assert_lt(ms1 - ms0, 5000);
  cr_assert_geq(ns1 - ns0, 19000000u);
  uint64_t diff = ns1 / 1000000u > ms1 ? ns1 / 1000000u - ms1 : ms1 - ns1 / 1000000u;
  cr_assert_leq(diff, 1);
}

Test(timeutil, iso8601_known_values) {
  char out[32];
  cr_assert_str_eq(time_iso8601(0, out), "1970-01-01T00:00:00Z");
  cr_assert_str_eq(time_iso8601(1795606636.0, out), "2026-11-25T11:37:16Z");
  cr_assert_str_eq(time_iso8601(1795606636.999, out), "2026-11-25T11:37:16Z"); /* floor, not round */
  cr_assert_str_eq(time_iso8601(951868799.5, out), "2000-02-29T23:59:59Z");
  cr_assert_eq(time_iso8601(1.0, out), out);
}

Test(timeutil, iso8601_hostile_values_clamped) {
  char out[32];
  cr_assert_str_eq(time_iso8601(-5, out), "1970-01-01T00:00:00Z");
  cr_assert_str_eq(time_iso8601(NAN, out), "1970-01-01T00:00:00Z");
  cr_assert_str_eq(time_iso8601(INFINITY, out), "9999-12-31T23:59:59Z");
  cr_assert_str_eq(time_iso8601(1e300, out), "9999-12-31T23:59:59Z");
  cr_assert_str_eq(time_iso8601(253402300799.0, out), "9999-12-31T23:59:59Z");
}

Test(timeutil, iso8601_now_shape) {
  char out[32];
  time_iso8601(time_now(), out);
  cr_assert_eq(strlen(out), 20);
  cr_assert_eq(out[4], '-');
  cr_assert_eq(out[10], 'T');
  cr_assert_eq(out[19], 'Z');
}
