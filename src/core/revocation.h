/* core/revocation.h — the set of revoked token keys (SPEC §2 logout, refresh
 * reuse): a jti, or a refresh family id, each remembered until a given time.
 *
 * The contract every backend satisfies, so that a shared one (Redis,
 * PostgreSQL) can replace the in-process set and several instances see the same
 * revocations:
 *  - add(key, until): from now on contains(key, t) is 1 for every t ≤ until;
 *    adding a key again keeps the later until.  Keys are 1..REVOCATION_KEY_MAX-1
 *    bytes (longer ones are ignored: no token we accept carries one).
 *  - contains(key, now): called for every authenticated request, WebSocket
 *    handshake and stream check, on the event loop: it must not block and must
 *    not fail (a shared backend answers from a local mirror it keeps current,
 *    e.g. by subscription, and writes through on add).
 *  - purge(now): drops entries whose until < now; count(): entries held.
 *  - clear(): drops everything (shutdown, tests).
 * Thread-safe: any thread, any time.  The module owns the entries; keys are
 * copied.  Revocations must also be stored durably by the caller (the store's
 * revoked list) when they have to survive a restart: this set is the fast path.
 */
#ifndef AGD_CORE_REVOCATION_H
#define AGD_CORE_REVOCATION_H

#include <stddef.h>

#define REVOCATION_KEY_MAX 128 /* bytes, NUL included */

typedef struct revocation_backend {
  const char *name; /* for logs: "memory", … */
  void *self;       /* the backend's state, passed back to every call */
  void (*add)(void *self, const char *key, double until);
  int (*contains)(void *self, const char *key, double now);
  size_t (*purge)(void *self, double now);
  size_t (*count)(void *self);
  void (*clear)(void *self);
} revocation_backend_t;

/* The in-process backend (a seeded chained hash under a rwlock; contains() takes
 * the read lock and never allocates; add() purges opportunistically as the set
 * grows).  The default. */
const revocation_backend_t *revocation_memory_backend(void);

/* Use b (borrowed: it must outlive its use) from now on; NULL → the in-process
 * backend.  Set it before threads start: entries of the previous backend are
 * not moved. */
void revocation_set_backend(const revocation_backend_t *b);
const revocation_backend_t *revocation_backend(void);

/* The current backend's operations (see the contract above).  NULL or "" keys:
 * add ignores them, contains answers 0. */
void revocation_add(const char *key, double until);
int revocation_contains(const char *key, double now);
size_t revocation_purge(double now);
size_t revocation_count(void);
void revocation_clear(void);

#endif
