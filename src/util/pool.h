/* util/pool.h — an arena for one request's small allocations (STYLE §5).
 *
 * Everything allocated from a pool lives until pool_clear(); nothing is freed
 * one by one.  pool_t is embedded by its owner.  One thread at a time.
 * Out of memory aborts.
 */
#ifndef AGD_UTIL_POOL_H
#define AGD_UTIL_POOL_H

#include <stddef.h>

typedef struct pool_chunk pool_chunk_t;
typedef struct pool {
  pool_chunk_t *_chunks; /* private */
  size_t _used;          /* private: bytes used in the first chunk */
} pool_t;

void pool_init(pool_t *p);
/* Free all chunks; the pool is empty and reusable. */
void pool_clear(pool_t *p);
/* 16-byte aligned memory valid until pool_clear(). */
void *pool_alloc(pool_t *p, size_t n);
/* Copy of [s, s+n) with a trailing NUL. */
char *pool_strndup(pool_t *p, const char *s, size_t n);
char *pool_strdup(pool_t *p, const char *s);
char *pool_sprintf(pool_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
