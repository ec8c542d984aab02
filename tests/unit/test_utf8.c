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
