/* tests/unit/test_revocation.c — core/revocation: the backend contract, the
 * in-process backend, and that auth's checks go through the current backend. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "core/auth.h"
#include "core/revocation.h"
#include "util/err.h"

#define NOW 1700000000.0

static void teardown(void)
{
  revocation_set_backend(NULL);
  revocation_clear();
  auth_shutdown();
}

TestSuite(revocation, .fini = teardown);

Test(revocation, memory_backend_contract)
{
  cr_assert_eq(revocation_backend(), revocation_memory_backend());
  cr_assert_str_eq(revocation_backend()->name, "memory");
  cr_assert_eq(revocation_contains("jti_a", NOW), 0);
  revocation_add("jti_a", NOW + 10);
  cr_assert_eq(revocation_contains("jti_a", NOW), 1);
  cr_assert_eq(revocation_contains("jti_a", NOW + 10), 1);  /* until is inclusive */
  cr_assert_eq(revocation_contains("jti_a", NOW + 11), 0);  /* past until: no longer revoked */
  revocation_add("jti_a", NOW + 5);                          /* the later until is kept */
  cr_assert_eq(revocation_contains("jti_a", NOW + 8), 1);
  revocation_add("", NOW + 10);
  revocation_add(NULL, NOW + 10);
  char longkey[REVOCATION_KEY_MAX + 1];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  revocation_add(longkey, NOW + 10);
  cr_assert_eq(revocation_contains(longkey, NOW), 0);
  cr_assert_eq(revocation_contains(NULL, NOW), 0);
  cr_assert_eq(revocation_count(), 1);
  revocation_add("jti_b", NOW - 1);
  cr_assert_eq(revocation_purge(NOW), 1);
  cr_assert_eq(revocation_count(), 1);
  revocation_clear();
  cr_assert_eq(revocation_count(), 0);
  cr_assert_eq(revocation_contains("jti_a", NOW), 0);
}

/* A backend that records its calls: what a shared (Redis, PostgreSQL) one plugs into. */
static struct {
  int adds, lookups;
  char last[REVOCATION_KEY_MAX];
  double until;
} fake;

static void fake_add(void *self, const char *key, double until)
{
  fake.adds++;
  snprintf(fake.last, sizeof fake.last, "%s", key);
  fake.until = until;
}

static int fake_contains(void *self, const char *key, double now)
{
  fake.lookups++;
  return strcmp(key, fake.last) == 0 && now <= fake.until;
}

static size_t fake_purge(void *self, double now) { return 0; }
static size_t fake_count(void *self) { return fake.last[0] ? 1 : 0; }
static void fake_clear(void *self) { fake.last[0] = '\0'; }

Test(revocation, auth_goes_through_the_current_backend)
{
  static const revocation_backend_t be = {.name = "fake", .add = fake_add, .contains = fake_contains,
                                          .purge = fake_purge, .count = fake_count, .clear = fake_clear};
  memset(&fake, 0, sizeof fake);
  revocation_set_backend(&be);
  cr_assert_eq(revocation_backend(), &be);

  auth_config_t cfg;
  auth_config_defaults(&cfg);
  cfg.secret = (const unsigned char *)"0123456789abcdef0123456789abcdef-test-secret";
  cfg.secret_len = strlen((const char *)cfg.secret);
  cr_assert_eq(auth_init(&cfg), 0);
  auth_token_t t;
  auth_identity_t id;
  cr_assert_eq(auth_issue_access("usr_rb", NULL, NULL, "fam_rb", NOW, &t), 0);
  cr_assert_eq(auth_verify_access(t.token, strlen(t.token), NOW, &id), 0);
  cr_assert_gt(fake.lookups, 0);
  /* revoked by "another instance": only the backend knows, the cache must ask it */
  snprintf(fake.last, sizeof fake.last, "fam_rb");
  fake.until = NOW + 100;
  cr_assert_eq(auth_verify_access(t.token, strlen(t.token), NOW, &id), AGD_EAUTH_INVALID);
  cr_assert_str_eq(id.error, "revoked");
  /* auth_revoke writes through, with the leeway added */
  auth_revoke("jti_rb", NOW + 50);
  cr_assert_eq(fake.adds, 1);
  cr_assert_str_eq(fake.last, "jti_rb");
  cr_assert_eq(fake.until, NOW + 50 + AUTH_DEFAULT_LEEWAY);
  cr_assert_eq(auth_is_revoked("jti_rb", NOW), 1);
  cr_assert_eq(auth_revocations_count(), 1);
}
