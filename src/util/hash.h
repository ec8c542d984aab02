/* util/hash.h — FNV-1a (64-bit), the string hash of agentd's in-memory tables.
 *
 * One definition for every table that hashes ids, e-mails or keys.  The seed is
 * XORed into the offset basis: tables keyed by client-chosen text pass a random
 * per-process seed (so bucket indexes cannot be predicted from outside) and add
 * their own finaliser; 0 gives plain FNV-1a.  Pure functions: any thread.
 */
#ifndef AGD_UTIL_HASH_H
#define AGD_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_OFFSET 0xcbf29ce484222325ULL
#define HASH_FNV1A_PRIME 0x100000001b3ULL

/* FNV-1a of p[0..n), the offset basis XORed with seed. */
static inline uint64_t hash_fnv1a(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = p;
  uint64_t h = HASH_FNV1A_OFFSET ^ seed;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * HASH_FNV1A_PRIME;
  return h;
}

/* The same over a NUL-terminated string (without its NUL). */
static inline uint64_t hash_fnv1a_str(const char *s, uint64_t seed) {
  uint64_t h = HASH_FNV1A_OFFSET ^ seed;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * HASH_FNV1A_PRIME;
  return h;
}

/* MurmurHash3's 64-bit finaliser: every input bit moves every output bit, so
 * the low bits that pick a bucket depend on the whole key. */
static inline uint64_t hash_mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

#endif
