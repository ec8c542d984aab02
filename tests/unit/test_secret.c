/* tests/unit/test_secret.c — core/secret: the JWT secret file in the data directory. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secret.h"
#include "util/err.h"

Test(secret, load_or_create)
{
  char base[] = "/tmp/agd_secret_XXXXXX";
  cr_assert_not_null(mkdtemp(base));
  char dir[256], path[300], err[256];
  snprintf(dir, sizeof dir, "%s/nested/data", base);
  char *s1 = NULL, *s2 = NULL;
  size_t n1 = 0, n2 = 0;
  cr_assert_eq(secret_load_or_create(dir, &s1, &n1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n1, 128);
  cr_assert_eq(strlen(s1), 128);
  cr_assert_eq(strspn(s1, "0123456789abcdef"), 128);
  snprintf(path, sizeof path, "%s/jwt.secret", dir);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(secret_load_or_create(dir, &s2, &n2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n2, n1);
  cr_assert_str_eq(s1, s2);
  free(s1);
  free(s2);

  /* an operator-provided file is used as is (trailing newline trimmed) */
  FILE *f = fopen(path, "w");
  fputs("my-own-secret-that-is-long-enough-1234\n", f);
  fclose(f);
  cr_assert_eq(secret_load_or_create(dir, &s1, &n1, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(s1, "my-own-secret-that-is-long-enough-1234");
  cr_assert_eq(n1, strlen(s1));
  free(s1);

  /* too short */
  f = fopen(path, "w");
  fputs("short\n", f);
  fclose(f);
  s1 = NULL;
  cr_assert_neq(secret_load_or_create(dir, &s1, &n1, err, sizeof err), 0);
  cr_assert_null(s1);
  cr_assert_neq(strstr(err, "fewer than 32"), NULL, "%s", err);
  unlink(path);
  cr_assert_eq(secret_load_or_create(NULL, &s1, &n1, err, sizeof err), AGD_EBAD_REQUEST);

  /* no temp files left behind */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s | grep -v '^$')\" && rm -rf %s", dir, base);
  cr_assert_eq(system(cmd), 0);
}

Test(secret, refuses_nul_and_oversized_files)
{
  char base[] = "/tmp/agd_secret_XXXXXX";
  cr_assert_not_null(mkdtemp(base));
  char path[300], err[256];
  snprintf(path, sizeof path, "%s/jwt.secret", base);
  char *s = NULL;
  size_t n = 0;
  FILE *f = fopen(path, "w");
  fwrite("0123456789abcdef\0" "0123456789abcdef0123", 1, 37, f);
  fclose(f);
  cr_assert_neq(secret_load_or_create(base, &s, &n, err, sizeof err), 0);
  cr_assert_null(s);
  cr_assert_neq(strstr(err, "NUL"), NULL, "%s", err);
  f = fopen(path, "w");
  for (int i = 0; i < 5000; i++) fputc('a', f);
  fclose(f);
  cr_assert_neq(secret_load_or_create(base, &s, &n, err, sizeof err), 0);
  cr_assert_null(s);
  cr_assert_neq(strstr(err, "4 KiB"), NULL, "%s", err);
  unlink(path);
  cr_assert_eq(rmdir(base), 0);
}
