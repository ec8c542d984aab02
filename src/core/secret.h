/* core/secret.h — the JWT signing secret kept in the data directory (SPEC §2/§10).
 *
 * Only file handling: no knowledge of JWTs (core/jwt_hs256.h signs with the
 * bytes) and no state.  Main thread at start-up (any thread is safe: nothing
 * is shared).  Errors: 0 or a negative AGD_E* (util/err.h).
 */
#ifndef AGD_CORE_SECRET_H
#define AGD_CORE_SECRET_H

#include <stddef.h>

#define SECRET_MIN 32 /* bytes: SPEC §2 "at least 32 bytes" (AUTH_SECRET_MIN) */

/* Reads <data_dir>/jwt.secret, or creates it (64 random bytes, hex: 128 chars,
 * mode 0600, data_dir created 0700 if missing, written to a temp file then
 * linked/renamed into place so a racing process never sees half a file and
 * both end with the same secret).
 * On success *secret_out is a malloc'ed NUL-terminated string (caller frees
 * it, after wiping) and *len_out its length; 0.  On failure a negative AGD_E*
 * and a message in err (cap bytes, may be NULL).  A file holding fewer than
 * SECRET_MIN bytes (after trimming trailing whitespace), a NUL byte, or more
 * than 4 KiB is an error. */
int secret_load_or_create(const char *data_dir, char **secret_out, size_t *len_out, char *err, size_t cap);

#endif
