/* store/embedded.h — files embedded into the binary at build time.
 *
 * scripts/embed.py turns a list of files into a `const embedded_file_t SYM[]`
 * array ending with an all-zero entry (name == NULL).  Read-only static data:
 * any thread.  Used for the SQL migrations (store/migrations/<engine>/NNNN_name.sql).
 */
#ifndef AGD_STORE_EMBEDDED_H
#define AGD_STORE_EMBEDDED_H

#include <stddef.h>

typedef struct embedded_file {
  const char *name; /* base name, e.g. "0001_init.sql"; NULL ends the array */
  const char *data; /* the file's bytes, NUL-terminated (NUL not counted in len) */
  size_t len;       /* size in bytes */
} embedded_file_t;

#endif
