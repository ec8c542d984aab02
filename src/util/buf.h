/* util/buf.h — a growable byte buffer with a ceiling (STYLE §5).
 *
 * buf_t is embedded by its owner (no malloc for the struct).  It reserves,
 * commits and consumes; it never grows past the limit given at init, so a
 * SPEC size limit is enforced where bytes are stored.  Any thread, but one
 * buffer is used by one thread at a time.  Out of memory aborts.
 */
#ifndef AGD_UTIL_BUF_H
#define AGD_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
  char *base;    /* bytes [0, len) are the content; NUL-terminated when len < _cap */
  size_t len;
  size_t _cap;   /* private: allocated bytes */
  size_t _limit; /* private: max len; 0 means SIZE_MAX */
} buf_t;

/* Empty buffer that may hold at most `limit` bytes (0: unlimited). Allocates nothing. */
void buf_init(buf_t *b, size_t limit);
/* Free the storage; the buffer is empty and reusable (same limit) afterwards. */
void buf_dispose(buf_t *b);
/* Empty without freeing. */
void buf_reset(buf_t *b);
/* An empty buffer whose storage is over `keep` bytes frees it (a buffer grown
 * for one burst does not keep its peak for good); otherwise nothing changes. */
void buf_trim(buf_t *b, size_t keep);
/* Make room for n more bytes. Returns a pointer to base+len, or NULL when
 * len+n would pass the limit (nothing changed). May move base. */
char *buf_reserve(buf_t *b, size_t n);
/* Count n bytes written after buf_reserve() as content. */
void buf_commit(buf_t *b, size_t n);
/* Append; 0 or AGD_ETOO_LARGE (nothing appended). */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_appendf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(buf_t *b, const char *fmt, va_list ap);
/* Drop the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* Hand the storage to the caller (who must free() it); the buffer becomes empty.
 * Returns NULL for an empty buffer that never allocated. *len_out gets the length. */
char *buf_steal(buf_t *b, size_t *len_out);

/* A borrowed view of bytes; never assume a NUL (STYLE §5). */
typedef struct slice {
  const char *p;
  size_t n;
} slice_t;

#define SLICE_LIT(s) ((slice_t){(s), sizeof(s) - 1})
static inline slice_t slice_of(const char *p, size_t n) { return (slice_t){p, n}; }
slice_t slice_cstr(const char *s);
int slice_eq(slice_t a, slice_t b);
int slice_eq_cstr(slice_t a, const char *s);
int slice_casecmp_cstr(slice_t a, const char *s); /* 1 when equal ignoring ASCII case */

#endif
