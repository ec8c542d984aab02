/* tests/unit/test_ids.c — util/ids.c: opaque ids, request ids, CSPRNG (SPEC conventions). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "util/ids.h"

static int is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

Test(ids, id_new_shape) {
  char id[ID_MAX];
  const char *prefixes[] = {"usr", "thr", "msg", "run", "abcdefgh"};
  for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
    const char *pre = prefixes[k];
    size_t pl = strlen(pre);
    cr_assert_eq(id_new(id, pre), id);
    cr_assert_eq(strlen(id), pl + 1 + 22, "%s", id);
    cr_assert_eq(strncmp(id, pre, pl), 0);
    cr_assert_eq(id[pl], '_');
    for (size_t i = pl + 1; i < pl + 23; i++) cr_assert(is_base62(id[i]), "%s", id);
  }
}

Test(ids, id_new_long_prefix_is_bounded) {
  char id[ID_MAX + 8];
  memset(id, '#', sizeof id);
  id_new(id, "waytoolongprefix");
  cr_assert_lt(strlen(id), ID_MAX);
  cr_assert_eq(id[ID_MAX], '#'); /* nothing written past ID_MAX */
}

Test(ids, id_new_empty_prefix) {
  char id[ID_MAX];
  id_new(id, "");
  cr_assert_eq(strlen(id), 22);
  id_new(id, NULL);
  cr_assert_eq(strlen(id), 22);
}

Test(ids, id_new_unique_and_spread) {
  enum { N = 2000 };
  static char ids[N][ID_MAX];
  int seen[62 * 4] = {0};
  for (int i = 0; i < N; i++) {
    id_new(ids[i], "x");
    seen[(unsigned char)ids[i][2 + 21]]++; /* last char covers all 62 digits */
  }
  qsort(ids, N, ID_MAX, cmp_str);
  for (int i = 1; i < N; i++) cr_assert_str_neq(ids[i - 1], ids[i]);
  int distinct = 0;
  for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) distinct += seen[i] > 0;
  cr_assert_geq(distinct, 55); /* all 62 expected; tolerate bad luck */
}

Test(ids, request_id_shape) {
  char r[17], r2[17];
  memset(r, '#', sizeof r);
  cr_assert_eq(id_request(r), r);
  cr_assert_eq(strlen(r), 16);
  for (int i = 0; i < 16; i++) cr_assert((r[i] >= '0' && r[i] <= '9') || (r[i] >= 'a' && r[i] <= 'f'), "%s", r);
  id_request(r2);
  cr_assert_str_neq(r, r2);
  cr_assert(id_request_valid(r, 16));
}

Test(ids, random_bytes) {
  unsigned char a[64] = {0}, b[64] = {0}, z[64] = {0};
  id_random_bytes(a, sizeof a);
  id_random_bytes(b, sizeof b);
  cr_assert_neq(memcmp(a, z, sizeof a), 0);
  cr_assert_neq(memcmp(a, b, sizeof a), 0);
  id_random_bytes(a, 0); /* no-op */
}

Test(ids, request_valid_lengths) {
  char s[200];
  memset(s, 'a', sizeof s);
  cr_assert_not(id_request_valid(s, 0));
  cr_assert(id_request_valid(s, 1));
  cr_assert(id_request_valid(s, 127));
  cr_assert(id_request_valid(s, 128));
  cr_assert_not(id_request_valid(s, 129));
  cr_assert_not(id_request_valid(NULL, 5));
}

Test(ids, request_valid_charset) {
  cr_assert(id_request_valid("AZaz09._:-", 10));
  const char *bad = " /\"'\\@#%+=,;!?<>{}[]()~`$^&*|\t\r\n";
  for (const char *c = bad; *c; c++) {
    char s[4] = {'a', *c, 'b', 0};
    cr_assert_not(id_request_valid(s, 3), "char 0x%02x", (unsigned char)*c);
  }
  cr_assert_not(id_request_valid("a\0b", 3));
  cr_assert_not(id_request_valid("\xc3\xa9", 2)); /* non-ASCII */
  cr_assert_not(id_request_valid("\x7f", 1));
  /* Only n bytes count: a bad byte past n is ignored. */
  cr_assert(id_request_valid("ab cd", 2));
}
