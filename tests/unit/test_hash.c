/* tests/unit/test_hash.c — util/hash.h: FNV-1a and its finaliser.
 *
 * Published FNV-1a 64 test vectors, the string and byte forms agreeing, the seed
 * changing the result, and the finaliser spreading a one-bit change.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "util/hash.h"

Test(hash, fnv1a_known_vectors) {
  /* From the FNV reference test suite (fnv-1a, 64 bit). */
  cr_expect_eq(hash_fnv1a_str("", 0), 0xcbf29ce484222325ULL);
  cr_expect_eq(hash_fnv1a_str("a", 0), 0xaf63dc4c8601ec8cULL);
  cr_expect_eq(hash_fnv1a_str("foobar", 0), 0x85944171f73967e8ULL);
  cr_expect_eq(hash_fnv1a("foobar", 6, 0), 0x85944171f73967e8ULL);
}

Test(hash, str_and_bytes_agree_and_seed_matters) {
  const char *k = "usr_2x9Qk4mZsLbD1yV0aWc3eF";
  for (uint64_t seed = 0; seed < 5; seed++) cr_expect_eq(hash_fnv1a_str(k, seed), hash_fnv1a(k, strlen(k), seed));
  cr_expect_neq(hash_fnv1a_str(k, 0), hash_fnv1a_str(k, 0x9e3779b97f4a7c15ULL));
  /* Bytes past a NUL count in the byte form. */
  cr_expect_neq(hash_fnv1a("a\0b", 3, 0), hash_fnv1a_str("a", 0));
}

Test(hash, mix64_spreads_low_bits) {
  /* Keys differing in one late byte: the plain FNV values share their low bits
   * more often than chance; after the finaliser, about half of 64 bits differ. */
  uint64_t a = hash_mix64(hash_fnv1a_str("user@example.com", 7));
  uint64_t b = hash_mix64(hash_fnv1a_str("user@example.con", 7));
  int diff = __builtin_popcountll(a ^ b);
  cr_expect(diff > 16 && diff < 48, "%d bits differ", diff);
  cr_expect_eq(hash_mix64(0), 0);
}
