/* tests/unit/test_query.c — the one strict query-integer parser (api/query.h). */
#include <criterion/criterion.h>
#include <stdint.h>

#include "api/query.h"

static int P(const char *v, long long min, long long max, long long *out) { return query_parse_int(v, min, max, out); }

Test(query, valid_values) {
  long long x = -7;
  cr_assert_eq(P("0", 0, 10, &x), 0);
  cr_assert_eq(x, 0);
  cr_assert_eq(P("100", 1, 100, &x), 0);
  cr_assert_eq(x, 100);
  cr_assert_eq(P("999999999999999999", 0, INT64_MAX, &x), 0);
  cr_assert_eq(x, 999999999999999999LL);
}

Test(query, absent_is_untouched) {
  long long x = 42;
  cr_assert_eq(P(NULL, 0, 10, &x), 1);
  cr_assert_eq(x, 42);
}

Test(query, everything_else_refused) {
  static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "abc", "5%00abc", "%00",
                                    "2%00x", "101", "9999999999999999999", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    long long x = 42;
    cr_assert_eq(P(bad[i], 0, 100, &x), -1, "%s", bad[i]);
    cr_assert_eq(x, 42, "%s", bad[i]);
  }
}
