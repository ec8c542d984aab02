/* util/utf8.h — the UTF-8 helpers of agentd, one copy of each: validation
 * (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF), counting code
 * points, and cutting text on a character boundary.
 *
 * Pure functions over caller-owned bytes: any thread.  Lengths are in bytes
 * unless a name says "chars" (Unicode code points).
 */
#ifndef AGD_UTIL_UTF8_H
#define AGD_UTIL_UTF8_H

#include <stddef.h>

/* 1 when p[0..n) is valid UTF-8 (RFC 3629), else 0.  NUL bytes are valid. */
int utf8_valid(const char *p, size_t n);

/* Length of the sequence a lead byte starts (1–4); 1 for a byte that cannot
 * lead one (a continuation byte or 0xF8..0xFF), so a walk always advances. */
size_t utf8_seq_len(unsigned char lead);

/* Code points in p[0..n): bytes that are not continuation bytes.  Exact for
 * valid UTF-8; for invalid input, a count that never exceeds n. */
size_t utf8_chars(const char *p, size_t n);

/* The largest cut ≤ k (0 ≤ k ≤ the text's length) that does not fall inside a
 * sequence, i.e. p[k'] is not a continuation byte.  A run of continuation bytes
 * reaching back to p[0] (invalid text) is cut at k itself. */
size_t utf8_floor(const char *p, size_t k);

/* Byte length of the NUL-terminated s cut to at most max bytes on a character
 * boundary. */
size_t utf8_cut(const char *s, size_t max);

/* Drop an incomplete sequence at the end of NUL-terminated s (as a truncating
 * snprintf leaves), in place. */
void utf8_trim_tail(char *s);

#endif
