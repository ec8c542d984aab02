/* util/buf.c — growable byte buffer with a ceiling (util/buf.h, STYLE §5).
 *
 * Storage doubles (at least 256 bytes) and never exceeds limit+1 bytes: one
 * byte past the content always holds a NUL once storage exists, so callers
 * may pass base to C string functions.  Out of memory aborts.
 */
#include "util/buf.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define BUF_MIN_CAP 256

static size_t buf__limit(const buf_t *b) { return b->_limit ? b->_limit : SIZE_MAX - 1; }

void buf_init(buf_t *b, size_t limit) {
  b->base = NULL;
  b->len = 0;
  b->_cap = 0;
  b->_limit = limit;
}

void buf_dispose(buf_t *b) {
  free(b->base);
  b->base = NULL;
  b->len = 0;
  b->_cap = 0;
}

void buf_reset(buf_t *b) {
  b->len = 0;
  if (b->base) b->base[0] = '\0';
}

void buf_trim(buf_t *b, size_t keep) {
  if (b->len == 0 && b->_cap > keep) buf_dispose(b);
}

char *buf_reserve(buf_t *b, size_t n) {
  size_t limit = buf__limit(b);
  if (n > limit - b->len) return NULL; /* len + n > limit, overflow-safe (len <= limit) */
  size_t need = b->len + n + 1;        /* + the NUL */
  if (need > b->_cap) {
    size_t cap = b->_cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->_cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->_limit && cap > b->_limit + 1) cap = b->_limit + 1; /* never hold more than the ceiling */
    char *p = realloc(b->base, cap);
    if (p == NULL) abort();
    if (b->base == NULL) p[0] = '\0';
    b->base = p;
    b->_cap = cap;
  }
  return b->base + b->len;
}

void buf_commit(buf_t *b, size_t n) {
  assert(b->base != NULL || n == 0);
  if (b->base == NULL) return;
  assert(n < b->_cap - b->len);
  b->len += n;
  b->base[b->len] = '\0';
}

int buf_append(buf_t *b, const void *p, size_t n) {
  char *dst = buf_reserve(b, n);
  if (dst == NULL) return AGD_ETOO_LARGE;
  if (n) memcpy(dst, p, n);
  buf_commit(b, n);
  return 0;
}

int buf_append_str(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_appendf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int buf_vappendf(buf_t *b, const char *fmt, va_list ap) {
  /* First try in the room already there; if short, reserve the exact size. */
  size_t room = b->_cap > b->len ? b->_cap - b->len : 0;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(room ? b->base + b->len : NULL, room, fmt, ap2);
  va_end(ap2);
  if (n < 0) return AGD_EINTERNAL; /* encoding error; content unchanged apart from the NUL */
  if ((size_t)n < room) {
    if ((size_t)n > buf__limit(b) - b->len) { /* fitted the storage but passes the limit */
      b->base[b->len] = '\0';
      return AGD_ETOO_LARGE;
    }
    buf_commit(b, (size_t)n);
    return 0;
  }
  if (room) b->base[b->len] = '\0';
  char *dst = buf_reserve(b, (size_t)n);
  if (dst == NULL) return AGD_ETOO_LARGE;
  va_copy(ap2, ap);
  vsnprintf(dst, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  buf_commit(b, (size_t)n);
  return 0;
}

void buf_consume(buf_t *b, size_t n) {
  assert(n <= b->len);
  if (n == 0) return;
  if (n > b->len) n = b->len;
  memmove(b->base, b->base + n, b->len - n);
  b->len -= n;
  b->base[b->len] = '\0';
}

char *buf_steal(buf_t *b, size_t *len_out) {
  char *p = b->base;
  if (len_out) *len_out = b->len;
  b->base = NULL;
  b->len = 0;
  b->_cap = 0;
  return p;
}

slice_t slice_cstr(const char *s) { return (slice_t){s, s ? strlen(s) : 0}; }

int slice_eq(slice_t a, slice_t b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

int slice_eq_cstr(slice_t a, const char *s) { return slice_eq(a, slice_cstr(s)); }

int slice_casecmp_cstr(slice_t a, const char *s) {
  size_t n = strlen(s);
  if (a.n != n) return 0;
  for (size_t i = 0; i < n; i++) { /* ASCII only, whatever the locale */
    unsigned char x = (unsigned char)a.p[i], y = (unsigned char)s[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
    if (x != y) return 0;
  }
  return 1;
}
