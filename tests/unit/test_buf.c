/* tests/unit/test_buf.c — util/buf.c: growable buffer with a ceiling, slices (STYLE §5). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

Test(buf, init_allocates_nothing) {
  buf_t b;
  buf_init(&b, 100);
  cr_assert_null(b.base);
  cr_assert_eq(b.len, 0);
  size_t n = 99;
  cr_assert_null(buf_steal(&b, &n));
  cr_assert_eq(n, 0);
  buf_dispose(&b); /* no-op */
}

Test(buf, append_keeps_nul) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(buf_append(&b, "abc", 3), 0);
  cr_assert_eq(b.len, 3);
  cr_assert_str_eq(b.base, "abc");
  cr_assert_eq(buf_append_str(&b, "def"), 0);
  cr_assert_str_eq(b.base, "abcdef");
  cr_assert_eq(buf_append(&b, NULL, 0), 0);
  cr_assert_eq(b.len, 6);
  buf_dispose(&b);
  cr_assert_null(b.base);
  cr_assert_eq(b.len, 0);
}

Test(buf, limit_minus_one_equal_plus_one) {
  buf_t b;
  buf_init(&b, 10);
  cr_assert_eq(buf_append(&b, "123456789", 9), 0); /* limit - 1 */
  cr_assert_eq(buf_append(&b, "0", 1), 0);         /* = limit */
  cr_assert_eq(b.len, 10);
  cr_assert_str_eq(b.base, "1234567890");
  cr_assert_eq(buf_append(&b, "x", 1), AGD_ETOO_LARGE); /* limit + 1 */
  cr_assert_eq(b.len, 10);
  cr_assert_str_eq(b.base, "1234567890");
  cr_assert_null(buf_reserve(&b, 1));
  cr_assert_not_null(buf_reserve(&b, 0));
  buf_dispose(&b);

  buf_init(&b, 10);
  cr_assert_eq(buf_append(&b, "12345678901", 11), AGD_ETOO_LARGE); /* nothing appended */
  cr_assert_eq(b.len, 0);
  cr_assert_eq(buf_appendf(&b, "%s", "12345678901"), AGD_ETOO_LARGE);
  cr_assert_eq(b.len, 0);
  cr_assert_eq(buf_appendf(&b, "%s", "1234567890"), 0);
  cr_assert_eq(b.len, 10);
  cr_assert_str_eq(b.base, "1234567890");
  cr_assert_eq(buf_appendf(&b, "%d", 1), AGD_ETOO_LARGE);
  cr_assert_str_eq(b.base, "1234567890");
  buf_dispose(&b);
}

Test(buf, limit_survives_dispose) {
  buf_t b;
  buf_init(&b, 4);
  cr_assert_eq(buf_append(&b, "abcd", 4), 0);
  buf_dispose(&b);
  cr_assert_eq(buf_append(&b, "abcde", 5), AGD_ETOO_LARGE);
  cr_assert_eq(buf_append(&b, "abcd", 4), 0);
  buf_dispose(&b);
}

Test(buf, huge_reserve_fails_without_overflow) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(buf_append(&b, "a", 1), 0);
  cr_assert_null(buf_reserve(&b, SIZE_MAX));
  cr_assert_null(buf_reserve(&b, SIZE_MAX - 1));
  cr_assert_eq(b.len, 1);
  buf_dispose(&b);
  buf_init(&b, 1000);
  cr_assert_null(buf_reserve(&b, SIZE_MAX));
  buf_dispose(&b);
}

Test(buf, reserve_commit) {
  buf_t b;
  buf_init(&b, 0);
  char *p = buf_reserve(&b, 5);
  cr_assert_not_null(p);
  memcpy(p, "hello", 5);
  buf_commit(&b, 5);
  cr_assert_str_eq(b.base, "hello");
  p = buf_reserve(&b, 1000); /* grows, may move */
  cr_assert_eq(p, b.base + 5);
  memset(p, 'x', 1000);
  buf_commit(&b, 1000);
  cr_assert_eq(b.len, 1005);
  cr_assert_eq(b.base[1005], '\0');
  cr_assert_eq(strlen(b.base), 1005);
  buf_dispose(&b);
}

Test(buf, growth_many_appends) {
  buf_t b;
  buf_init(&b, 0);
  for (int i = 0; i < 10000; i++) cr_assert_eq(buf_appendf(&b, "%d,", i % 10), 0);
  cr_assert_eq(b.len, 20000);
  cr_assert_eq(strlen(b.base), 20000);
  cr_assert_eq(memcmp(b.base, "0,1,2,", 6), 0);
  buf_dispose(&b);
}

Test(buf, appendf_long_and_exact) {
  buf_t b;
  buf_init(&b, 0);
  char big[5000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(buf_appendf(&b, "<%s>", big), 0);
  cr_assert_eq(b.len, 5001);
  cr_assert_eq(b.base[0], '<');
  cr_assert_eq(b.base[5000], '>');
  cr_assert_eq(b.base[5001], '\0');
  buf_reset(&b);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.base, "");
  cr_assert_eq(buf_appendf(&b, "%s-%d", "x", 42), 0);
  cr_assert_str_eq(b.base, "x-42");
  buf_dispose(&b);
}

Test(buf, appendf_fills_storage_exactly) {
  /* The first allocation is 256 bytes: content of 255 fits with its NUL. */
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(buf_append(&b, "a", 1), 0);
  char s[300];
  memset(s, 'b', sizeof s);
  for (int n = 250; n < 260; n++) {
    buf_reset(&b);
    cr_assert_eq(buf_append(&b, "a", 1), 0);
    cr_assert_eq(buf_appendf(&b, "%.*s", n, s), 0);
    cr_assert_eq(b.len, (size_t)n + 1);
    cr_assert_eq(b.base[n + 1], '\0');
    cr_assert_eq(b.base[n], 'b');
  }
  buf_dispose(&b);
}

Test(buf, consume) {
  buf_t b;
  buf_init(&b, 0);
  buf_append_str(&b, "hello world");
  buf_consume(&b, 0);
  cr_assert_str_eq(b.base, "hello world");
  buf_consume(&b, 6);
  cr_assert_eq(b.len, 5);
  cr_assert_str_eq(b.base, "world");
  buf_consume(&b, 5);
  cr_assert_eq(b.len, 0);
  cr_assert_str_eq(b.base, "");
  buf_dispose(&b);
}

Test(buf, steal) {
  buf_t b;
  buf_init(&b, 0);
  buf_append_str(&b, "take me");
  size_t n = 0;
  char *p = buf_steal(&b, &n);
  cr_assert_eq(n, 7);
  cr_assert_str_eq(p, "take me");
  cr_assert_null(b.base);
  cr_assert_eq(b.len, 0);
  free(p);
  cr_assert_eq(buf_append_str(&b, "again"), 0); /* reusable */
  cr_assert_str_eq(b.base, "again");
  buf_dispose(&b);
}

Test(buf, slices) {
  slice_t a = SLICE_LIT("Content-Type");
  cr_assert_eq(a.n, 12);
  cr_assert(slice_eq(a, slice_cstr("Content-Type")));
  cr_assert_not(slice_eq(a, slice_cstr("Content-Typ")));
  cr_assert(slice_eq_cstr(a, "Content-Type"));
  cr_assert_not(slice_eq_cstr(a, "content-type"));
  cr_assert(slice_casecmp_cstr(a, "content-type"));
  cr_assert(slice_casecmp_cstr(a, "CONTENT-TYPE"));
  cr_assert_not(slice_casecmp_cstr(a, "content-typ"));
  cr_assert_not(slice_casecmp_cstr(a, "content-typex"));
  cr_assert_not(slice_casecmp_cstr(slice_of("a\0b", 3), "a"));
  cr_assert_not(slice_casecmp_cstr(slice_of("[", 1), "{")); /* ASCII folding only on letters */
  slice_t e = slice_of(NULL, 0);
  cr_assert(slice_eq(e, slice_cstr("")));
  cr_assert(slice_eq_cstr(e, ""));
  cr_assert(slice_casecmp_cstr(e, ""));
  cr_assert_eq(slice_cstr(NULL).n, 0);
  /* Slices are not NUL-terminated: only n bytes count. */
  cr_assert(slice_eq_cstr(slice_of("abcdef", 3), "abc"));
}

Test(buf, trim_frees_only_an_empty_buffer_over_keep) {
  buf_t b;
  buf_init(&b, 0);
  buf_trim(&b, 0); /* never allocated: nothing to do */
  cr_assert_null(b.base);
  char big[3000];
  memset(big, 'x', sizeof(big));
  cr_assert_eq(buf_append(&b, big, sizeof(big)), 0);
  buf_trim(&b, 1024); /* not empty: kept */
  cr_assert_eq(b.len, sizeof(big));
  cr_assert_eq(memcmp(b.base, big, sizeof(big)), 0);
  buf_consume(&b, b.len);
  buf_trim(&b, 1 << 20); /* empty, but within keep: kept */
  cr_assert_not_null(b.base);
  cr_assert_geq(b._cap, sizeof(big));
  buf_trim(&b, 1024); /* empty and over keep: freed */
  cr_assert_null(b.base);
  cr_assert_eq(b._cap, 0);
  cr_assert_eq(buf_append_str(&b, "again"), 0); /* reusable */
  cr_assert_str_eq(b.base, "again");
  buf_consume(&b, b.len);
  buf_trim(&b, 1024); /* small storage stays for the next use */
  cr_assert_not_null(b.base);
  buf_dispose(&b);
}
