/* util/pool.c — per-request arena (util/pool.h, STYLE §5).
 *
 * Chunks of 4 KiB are carved front to back in 16-byte steps; the first chunk
 * in the list is the one being carved.  An allocation bigger than a quarter
 * chunk gets a chunk of its own, linked behind the current one so the current
 * chunk's free room is not wasted.  One thread at a time; OOM aborts.
 */
#include "util/pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_ALIGN 16
#define POOL_CHUNK 4096                       /* default chunk payload */
#define POOL_BIG (POOL_CHUNK / 4)             /* above this: a chunk of its own */

struct pool_chunk {
  pool_chunk_t *next;
  size_t size;                               /* payload bytes */
  _Alignas(POOL_ALIGN) unsigned char data[]; /* payload */
};

static pool_chunk_t *pool__chunk_new(size_t size) {
  if (size > SIZE_MAX - sizeof(pool_chunk_t) - POOL_ALIGN) abort();
  size_t total = (sizeof(pool_chunk_t) + size + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
  pool_chunk_t *c = aligned_alloc(POOL_ALIGN, total);
  if (c == NULL) abort();
  c->next = NULL;
  c->size = size;
  return c;
}

void pool_init(pool_t *p) {
  p->_chunks = NULL;
  p->_used = 0;
}

void pool_clear(pool_t *p) {
  pool_chunk_t *c = p->_chunks;
  while (c) {
    pool_chunk_t *next = c->next;
    free(c);
    c = next;
  }
  p->_chunks = NULL;
  p->_used = 0;
}

void *pool_alloc(pool_t *p, size_t n) {
  if (n > SIZE_MAX - 2 * POOL_ALIGN - sizeof(pool_chunk_t)) abort();
  if (n == 0) n = 1; /* a distinct, valid pointer */
  n = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);

  pool_chunk_t *cur = p->_chunks;
  if (cur && cur->size - p->_used >= n) {
    void *r = cur->data + p->_used;
    p->_used += n;
    return r;
  }
  if (n > POOL_BIG) {
    pool_chunk_t *c = pool__chunk_new(n);
    if (cur) { /* behind the current chunk, which keeps carving */
      c->next = cur->next;
      cur->next = c;
    } else {   /* first allocation: the big chunk heads the list, full */
      p->_chunks = c;
      p->_used = n;
    }
    return c->data;
  }
  pool_chunk_t *c = pool__chunk_new(POOL_CHUNK);
  c->next = cur;
  p->_chunks = c;
  p->_used = n;
  return c->data;
}

char *pool_strndup(pool_t *p, const char *s, size_t n) {
  if (n == SIZE_MAX) abort();
  char *r = pool_alloc(p, n + 1);
  if (n) memcpy(r, s, n);
  r[n] = '\0';
  return r;
}

char *pool_strdup(pool_t *p, const char *s) { return pool_strndup(p, s, strlen(s)); }

char *pool_sprintf(pool_t *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return pool_strndup(p, "", 0);
  char *r = pool_alloc(p, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(r, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return r;
}
