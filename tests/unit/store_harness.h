/* tests/unit/store_harness.h — the temporary database directory and test users
 * shared by the store unit tests (test_store.c, test_store_threads.c,
 * test_store_runs.c).
 *
 * Job: each test gets a fresh mkdtemp directory (store_h_setup) holding the
 * database at store_h_path (reached as store_h_url), removed with everything in it
 * by store_h_teardown; store_h_user() creates a user row.
 * Test-only: everything is static (each tests/unit/test_*.c is its own
 * executable); include it once per test file.  Meson globs only *.c.
 */
#ifndef AGENTD_TESTS_UNIT_STORE_HARNESS_H
#define AGENTD_TESTS_UNIT_STORE_HARNESS_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "util/log.h"

static char store_h_dir[256];
static char store_h_path[512];
static char store_h_url[600];

/* A fresh directory; the database is at <dir>/<rel> (its parents need not exist). */
static void store_h_setup(const char *rel) {
  log_init(LOG_OFF, LOG_FMT_TEXT);
  snprintf(store_h_dir, sizeof store_h_dir, "/tmp/agentd_store_XXXXXX");
  cr_assert_not_null(mkdtemp(store_h_dir));
  snprintf(store_h_path, sizeof store_h_path, "%s/%s", store_h_dir, rel);
  snprintf(store_h_url, sizeof store_h_url, "sqlite:%s", store_h_path);
}

static int store_h_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void store_h_teardown(void) { nftw(store_h_dir, store_h_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A user row `id`; email NULL: <id>@example.com; name and password hash when given. */
static inline void store_h_user(store_t *s, const char *id, const char *email, const char *name, const char *hash) {
  store_user_t u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "%s", id);
  if (email) snprintf(u.email, sizeof u.email, "%s", email);
  else snprintf(u.email, sizeof u.email, "%s@example.com", id);
  if (name) snprintf(u.name, sizeof u.name, "%s", name);
  if (hash) snprintf(u.password_hash, sizeof u.password_hash, "%s", hash);
  cr_assert_eq(store_user_create(s, &u), 0, "create %s", id);
}

#endif
