/* util/utf8.c — see utf8.h. */
#include "util/utf8.h"

#include <string.h>

static int is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

int utf8_valid(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;      /* overlong */
      else if (c == 0xED) hi = 0x9F; /* surrogates U+D800..DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;      /* overlong */
      else if (c == 0xF4) hi = 0x8F; /* > U+10FFFF */
    } else return 0;                 /* 0x80..0xC1 (continuation, overlong 2-byte), 0xF5..0xFF */
    if (n - i < len) return 0;       /* truncated */
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
      if (!is_continuation(s[i + k])) return 0;
    i += len;
  }
  return 1;
}

size_t utf8_seq_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

size_t utf8_chars(const char *p, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < n; i++)
    if (!is_continuation((unsigned char)p[i])) chars++;
  return chars;
}

size_t utf8_floor(const char *p, size_t k) {
  size_t j = k;
  while (j > 0 && is_continuation((unsigned char)p[j])) j--;
  return j > 0 || !is_continuation((unsigned char)p[0]) ? j : k;
}

size_t utf8_cut(const char *s, size_t max) {
  size_t n = strlen(s);
  return n <= max ? n : utf8_floor(s, max);
}

void utf8_trim_tail(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && is_continuation((unsigned char)s[i - 1]) && n - i < 4) i--;
  if (i == 0) return;
  unsigned char lead = (unsigned char)s[i - 1];
  if (lead >= 0x80 && n - (i - 1) < utf8_seq_len(lead)) s[i - 1] = '\0';
}
