/* util/ids.c — opaque ids and random bytes (util/ids.h, SPEC conventions).
 *
 * All randomness is the kernel's CSPRNG (getrandom(2)), thread-safe and
 * with no state in the process.  Not OpenSSL's RAND_bytes: it keeps a DRBG
 * per thread (~2.3 KiB), and every run thread makes ids (its tool calls), so
 * 1,000 runs in flight paid 2.3 MiB for state a system call does not need
 * (issue 14).  Any thread.
 */
#include "util/ids.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ID_RAND_CHARS 22 /* 62^22 > 2^128 */

void id_random_bytes(void *p, size_t n) {
  unsigned char *q = p;
  while (n > 0) { /* up to 256 bytes never come back short; more may, and a signal may interrupt */
    ssize_t r = getrandom(q, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      fputs("agentd: getrandom failed\n", stderr);
      abort();
    }
    q += r;
    n -= (size_t)r;
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

/* Request ids only need to be unique, not secret, and one is made per request
 * on the hot path: a per-thread xorshift128+ seeded once from the CSPRNG
 * avoids a RAND_bytes call (and its getpid() fork check) per request. */
static uint64_t request_rng_next(void) {
  static __thread uint64_t s[2];
  if (s[0] == 0 && s[1] == 0) {
    id_random_bytes(s, sizeof s);
    s[0] |= 1;
  }
  uint64_t x = s[0], y = s[1];
  s[0] = y;
  x ^= x << 23;
  s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s[1] + y;
}

char *id_request(char out[17]) {
  static const char hex[] = "0123456789abcdef";
  uint64_t v = request_rng_next();
  for (size_t i = 0; i < 16; i++) {
    out[i] = hex[(v >> (60 - 4 * i)) & 15];
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
