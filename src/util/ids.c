/* util/ids.c — opaque ids and random bytes (util/ids.h, SPEC conventions).
 *
 * All randomness is OpenSSL's CSPRNG (RAND_bytes), which is thread-safe.
 * Any thread.
 */
#include "util/ids.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_RAND_CHARS 22 /* 62^22 > 2^128 */

void id_random_bytes(void *p, size_t n) {
  unsigned char *q = p;
  while (n > 0) { /* RAND_bytes takes an int */
    int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
    if (RAND_bytes(q, chunk) != 1) {
      fputs("agentd: RAND_bytes failed\n", stderr);
      abort();
    }
    q += chunk;
    n -= (size_t)chunk;
  }
}

char *id_new(char out[ID_MAX], const char *prefix) {
  static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  unsigned char num[16];
  id_random_bytes(num, sizeof num);

  size_t pos = 0;
  if (prefix && prefix[0]) {
    size_t pl = strnlen(prefix, 8); /* header: prefix ≤ 8 */
    memcpy(out, prefix, pl);
    out[pl] = '_';
    pos = pl + 1;
  }
  /* Big-endian 128-bit number, divided by 62 repeatedly; digits fill from the right. */
  for (int i = ID_RAND_CHARS - 1; i >= 0; i--) {
    unsigned rem = 0;
    for (size_t j = 0; j < sizeof num; j++) {
      unsigned cur = (rem << 8) | num[j];
      num[j] = (unsigned char)(cur / 62);
      rem = cur % 62;
    }
    out[pos + (size_t)i] = digits[rem];
  }
  out[pos + ID_RAND_CHARS] = '\0';
  return out;
}

char *id_request(char out[17]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char r[8];
  id_random_bytes(r, sizeof r);
  for (size_t i = 0; i < sizeof r; i++) {
    out[2 * i] = hex[r[i] >> 4];
    out[2 * i + 1] = hex[r[i] & 15];
  }
  out[16] = '\0';
  return out;
}

int id_request_valid(const char *p, size_t n) {
  if (p == NULL || n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}
