/* tests/unit/test_utf8.c — util/utf8: validation (RFC 3629 edge cases),
 * counting, and cuts on character boundaries. */
#include <criterion/criterion.h>
#include <string.h>

#include "util/utf8.h"

static int valid(const char *s) { return utf8_valid(s, strlen(s)); }

Test(utf8, valid_and_invalid_sequences) {
  cr_expect(valid("plain ascii"));
  cr_expect(valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); /* é € 😀 */
  cr_expect(valid("\xed\x9f\xbf"), "U+D7FF, just below the surrogates");
  cr_expect(valid("\xf4\x8f\xbf\xbf"), "U+10FFFF");
  cr_expect(utf8_valid("a\0b", 3), "NUL is a character");
  cr_expect_not(valid("\xc0\xaf"), "overlong 2-byte");
  cr_expect_not(valid("\xe0\x80\xaf"), "overlong 3-byte");
  cr_expect_not(valid("\xf0\x80\x80\xaf"), "overlong 4-byte");
  cr_expect_not(valid("\xed\xa0\x80"), "surrogate U+D800");
  cr_expect_not(valid("\xf4\x90\x80\x80"), "past U+10FFFF");
  cr_expect_not(valid("\xf5\x80\x80\x80"), "lead byte F5");
  cr_expect_not(valid("\x80"), "lone continuation");
  cr_expect_not(valid("\xc3"), "truncated");
  cr_expect_not(valid("\xe2\x82"), "truncated 3-byte");
  cr_expect_not(valid("\xe2\x28\xa1"), "bad continuation");
}

Test(utf8, seq_len_and_chars) {
  cr_expect_eq(utf8_seq_len('a'), 1);
  cr_expect_eq(utf8_seq_len(0xc3), 2);
  cr_expect_eq(utf8_seq_len(0xe2), 3);
  cr_expect_eq(utf8_seq_len(0xf0), 4);
  cr_expect_eq(utf8_seq_len(0x80), 1, "a continuation byte still advances");
  cr_expect_eq(utf8_seq_len(0xff), 1);
  const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  cr_expect_eq(utf8_chars(s, strlen(s)), 4);
  cr_expect_eq(utf8_chars("", 0), 0);
}

Test(utf8, cuts_land_on_boundaries) {
  const char *s = "a\xc3\xa9\xe2\x82\xac"; /* a é € : bytes 0 | 1 2 | 3 4 5 */
  cr_expect_eq(utf8_floor(s, 0), 0);
  cr_expect_eq(utf8_floor(s, 1), 1);
  cr_expect_eq(utf8_floor(s, 2), 1);
  cr_expect_eq(utf8_floor(s, 3), 3);
  cr_expect_eq(utf8_floor(s, 5), 3);
  cr_expect_eq(utf8_floor(s, 6), 6);
  cr_expect_eq(utf8_floor("\x80\x80\x80", 2), 2, "only continuation bytes: cut where asked");
  cr_expect_eq(utf8_cut(s, 100), 6);
  cr_expect_eq(utf8_cut(s, 2), 1);
  cr_expect_eq(utf8_cut(s, 4), 3);
  cr_expect_eq(utf8_cut("\xc3\xa9", 1), 0);
}

Test(utf8, trim_tail_drops_an_incomplete_sequence) {
  char a[] = "ab\xe2\x82";
  utf8_trim_tail(a);
  cr_expect_str_eq(a, "ab");
  char b[] = "ab\xe2\x82\xac";
  utf8_trim_tail(b);
  cr_expect_str_eq(b, "ab\xe2\x82\xac", "complete: kept");
  char c[] = "ab\xf0";
  utf8_trim_tail(c);
  cr_expect_str_eq(c, "ab");
  char d[] = "plain";
  utf8_trim_tail(d);
  cr_expect_str_eq(d, "plain");
}

/* The table the JSON module tested when it held the validator. */
Test(utf8, valid_table) {
  struct { const char *s; size_t n; int ok; } cases[] = {
      {"", 0, 1},
      {"plain ascii", 11, 1},
      {"\x00", 1, 1},                 /* NUL is valid UTF-8 */
      {"\xc2\x80", 2, 1},             /* U+0080, smallest 2-byte */
      {"\xdf\xbf", 2, 1},             /* U+07FF */
      {"\xe0\xa0\x80", 3, 1},         /* U+0800, smallest 3-byte */
      {"\xed\x9f\xbf", 3, 1},         /* U+D7FF, just below surrogates */
      {"\xee\x80\x80", 3, 1},         /* U+E000, just above */
      {"\xef\xbf\xbf", 3, 1},         /* U+FFFF */
      {"\xf0\x90\x80\x80", 4, 1},     /* U+10000 */
      {"\xf4\x8f\xbf\xbf", 4, 1},     /* U+10FFFF, the last one */
      {"\xf0\x9f\x98\x80", 4, 1},     /* emoji */
      {"\xc0\x80", 2, 0},             /* overlong NUL */
      {"\xc1\xbf", 2, 0},             /* overlong */
      {"\xe0\x9f\xbf", 3, 0},         /* overlong 3-byte */
      {"\xf0\x8f\xbf\xbf", 4, 0},     /* overlong 4-byte */
      {"\xed\xa0\x80", 3, 0},         /* U+D800 high surrogate */
      {"\xed\xbf\xbf", 3, 0},         /* U+DFFF low surrogate */
      {"\xed\xa0\xbd\xed\xb8\x80", 6, 0}, /* CESU-8 pair */
      {"\xf4\x90\x80\x80", 4, 0},     /* U+110000 */
      {"\xf5\x80\x80\x80", 4, 0},
      {"\xf8\x88\x80\x80\x80", 5, 0}, /* 5-byte form */
      {"\xff", 1, 0},
      {"\xfe", 1, 0},
      {"\x80", 1, 0},                 /* lone continuation */
      {"a\xbf", 2, 0},
      {"\xc3", 1, 0},                 /* truncated 2-byte */
      {"\xe2\x82", 2, 0},             /* truncated 3-byte */
      {"\xf0\x9f\x98", 3, 0},         /* truncated 4-byte */
      {"\xc3\x28", 2, 0},             /* bad continuation */
      {"\xe2\x28\xa1", 3, 0},
      {"\xe2\x82\x28", 3, 0},
      {"\xf0\x9f\x98\x28", 4, 0},
      {"\xc3\xa9x", 3, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_assert_eq(utf8_valid(cases[i].s, cases[i].n), cases[i].ok, "case %zu", i);
  /* Only n bytes are read: the valid prefix of a truncated sequence. */
  cr_assert(utf8_valid("ab\xe2\x82\xac", 2));
  cr_assert_not(utf8_valid("ab\xe2\x82\xac", 4));
  cr_assert(utf8_valid("ab\xe2\x82\xac", 5));
}
