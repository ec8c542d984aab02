/* tests/unit/test_pool.c — util/pool.c: per-request arena (STYLE §5). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "util/pool.h"

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

Test(pool, init_clear_empty) {
  pool_t p;
  pool_init(&p);
  pool_clear(&p);
  pool_clear(&p); /* twice is fine */
}

Test(pool, alignment_for_all_sizes) {
  pool_t p;
  pool_init(&p);
  for (size_t n = 0; n < 2000; n++) {
    unsigned char *q = pool_alloc(&p, n);
    cr_assert_not_null(q);
    cr_assert(aligned16(q), "n=%zu", n);
    memset(q, 0xAB, n); /* ASan catches overruns */
  }
  pool_clear(&p);
}

Test(pool, allocations_do_not_overlap) {
  pool_t p;
  pool_init(&p);
  enum { N = 500 };
  unsigned char *ptr[N];
  size_t len[N];
  for (int i = 0; i < N; i++) {
    len[i] = (size_t)(i * 37 % 1500) + 1;
    ptr[i] = pool_alloc(&p, len[i]);
    memset(ptr[i], i & 0xff, len[i]);
  }
  for (int i = 0; i < N; i++)
    for (size_t k = 0; k < len[i]; k++) cr_assert_eq(ptr[i][k], (unsigned char)(i & 0xff));
  pool_clear(&p);
}

Test(pool, big_allocations_get_own_chunk) {
  pool_t p;
  pool_init(&p);
  char *small1 = pool_alloc(&p, 16);
  char *big = pool_alloc(&p, 100000); /* far above the 4 KiB chunk */
  char *small2 = pool_alloc(&p, 16);
  cr_assert(aligned16(big));
  memset(big, 1, 100000);
  /* The small chunk keeps carving: small2 follows small1 in the same chunk. */
  cr_assert_eq(small2, small1 + 16);
  char *exact = pool_alloc(&p, 4096); /* exactly one chunk */
  memset(exact, 2, 4096);
  char *over = pool_alloc(&p, 4097);
  memset(over, 3, 4097);
  pool_clear(&p);
  /* Big allocation as the very first one. */
  big = pool_alloc(&p, 20000);
  memset(big, 4, 20000);
  small1 = pool_alloc(&p, 10);
  memset(small1, 5, 10);
  pool_clear(&p);
}

Test(pool, strdup_family) {
  pool_t p;
  pool_init(&p);
  char *s = pool_strndup(&p, "hello world", 5);
  cr_assert_str_eq(s, "hello");
  cr_assert_str_eq(pool_strdup(&p, "x"), "x");
  cr_assert_str_eq(pool_strdup(&p, ""), "");
  cr_assert_str_eq(pool_strndup(&p, "a\0b", 3), "a"); /* copies n bytes, NUL after */
  char *t = pool_strndup(&p, "a\0b", 3);
  cr_assert_eq(t[2], 'b');
  cr_assert_eq(t[3], '\0');
  cr_assert_str_eq(pool_sprintf(&p, "%s=%d", "k", 7), "k=7");
  char big[9000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  char *l = pool_sprintf(&p, "[%s]", big);
  cr_assert_eq(strlen(l), sizeof big + 1);
  cr_assert_eq(l[0], '[');
  cr_assert_eq(l[sizeof big], ']');
  pool_clear(&p);
}

Test(pool, reuse_after_clear) {
  pool_t p;
  pool_init(&p);
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 300; i++) {
      char *q = pool_alloc(&p, 100);
      memset(q, round, 100);
    }
    pool_clear(&p);
  }
}
