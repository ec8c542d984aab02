/* util/ids.h — opaque ids (SPEC conventions: prefix + random) and random bytes.
 *
 * Random bytes come from the kernel's CSPRNG (getrandom).  Any thread.
 */
#ifndef AGD_UTIL_IDS_H
#define AGD_UTIL_IDS_H

#include <stddef.h>

/* Room for the longest id we make: prefix (≤ 8) + '_' + 22 chars + NUL. */
#define ID_MAX 40

/* Write "<prefix>_<22 chars of base62 from 128 random bits>" into out (ID_MAX bytes).
 * Returns out. */
char *id_new(char out[ID_MAX], const char *prefix);
/* Fill p with n cryptographically random bytes; aborts if the CSPRNG fails. */
void id_random_bytes(void *p, size_t n);
/* A request id: 16 hex chars. out must hold 17 bytes. */
char *id_request(char out[17]);
/* SPEC conventions: a client X-Request-ID is kept when it is 1–128 chars of
 * [A-Za-z0-9._:-]. Returns 1 if valid. */
int id_request_valid(const char *p, size_t n);

#endif
