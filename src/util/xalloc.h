/* util/xalloc.h — allocation that cannot fail: agentd's one copy of the
 * allocate-or-abort helpers (STYLE §4: running out of memory is not an error
 * the server recovers from, so it aborts where it happens instead of every
 * caller carrying a branch it can never test).
 *
 * A size of zero allocates one byte, so a non-NULL result always means "usable".
 * xcalloc also aborts when n * size overflows (calloc checks it).  Any thread.
 */
#ifndef AGD_UTIL_XALLOC_H
#define AGD_UTIL_XALLOC_H

#include <stdlib.h>
#include <string.h>

static inline void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static inline void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) abort();
  return p;
}

static inline void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) abort();
  return q;
}

static inline char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) abort();
  return d;
}

/* An array with room for element n: arr (capacity *cap elements of elem bytes)
 * as it is when n < *cap, else reallocated to twice the capacity (8 at first);
 * returns the array to keep.  Aborts when the size overflows. */
static inline void *xgrow(void *arr, size_t n, size_t *cap, size_t elem) {
  if (n < *cap) return arr;
  size_t c = *cap ? *cap * 2 : 8;
  if (c < n + 1) c = n + 1;
  if (elem && c > (size_t)-1 / elem) abort();
  *cap = c;
  return xrealloc(arr, c * elem);
}

/* At most n bytes of s, NUL-terminated. */
static inline char *xstrndup(const char *s, size_t n) {
  char *d = strndup(s, n);
  if (!d) abort();
  return d;
}

#endif
