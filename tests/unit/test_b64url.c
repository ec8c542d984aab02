/* tests/unit/test_b64url.c — util/b64url: the one strict base64url decoder.
 *
 * RFC 4648 §10 vectors in the URL alphabet, and every form the two decoders it
 * replaced disagreed on (issue 13, defect 5): '+', '/', '=' and blanks refused,
 * a 4k+1 length refused, a too-small buffer refused.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "util/b64url.h"

static int dec(const char *in, char *out, size_t cap, size_t *n) {
  return b64url_decode(in, strlen(in), (unsigned char *)out, cap, n);
}

Test(b64url, rfc4648_vectors_without_padding) {
  static const struct { const char *enc, *plain; } v[] = {
      {"Zg", "f"}, {"Zm8", "fo"}, {"Zm9v", "foo"}, {"Zm9vYg", "foob"}, {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    char out[16];
    size_t n = 99;
    cr_expect_eq(dec(v[i].enc, out, sizeof(out), &n), 0, "%s", v[i].enc);
    cr_expect_eq(n, strlen(v[i].plain), "%s", v[i].enc);
    cr_expect_eq(memcmp(out, v[i].plain, n), 0, "%s", v[i].enc);
  }
}

Test(b64url, url_alphabet_decodes_high_bytes) {
  /* 0xfb 0xff 0xbf is "+/+/" in standard base64 and "-_-_" in base64url. */
  char out[8];
  size_t n = 0;
  cr_assert_eq(dec("-_-_", out, sizeof(out), &n), 0);
  cr_expect_eq(n, 3);
  cr_expect_eq((unsigned char)out[0], 0xfb);
  cr_expect_eq((unsigned char)out[1], 0xff);
  cr_expect_eq((unsigned char)out[2], 0xbf);
}

Test(b64url, refuses_what_is_not_strict_base64url) {
  const char *bad[] = {"", "+/+/", "Zm9v=", "Zg==", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zm9v%", "Zm\x80v"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char out[16];
    size_t n = 0;
    cr_expect_eq(dec(bad[i], out, sizeof(out), &n), -1, "case %zu", i);
  }
}

Test(b64url, bounds) {
  char out[3];
  size_t n = 0;
  cr_expect_eq(dec("Zm9vYg", out, sizeof(out), &n), -1, "output buffer too small");
  cr_expect_eq(dec("Zm9v", out, sizeof(out), &n), 0);
  static char big[B64URL_MAX_IN + 5];
  memset(big, 'A', sizeof(big) - 1);
  static unsigned char sink[B64URL_MAX_IN];
  cr_expect_eq(b64url_decode(big, B64URL_MAX_IN + 4, sink, sizeof(sink), &n), -1, "over the input bound");
}
