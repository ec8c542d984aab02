/* tests/unit/test_err.c — util/err.c: the one error table (STYLE §4). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

Test(err, rows_map_status_code_ws) {
  cr_assert_eq(agd_err_status(AGD_EBAD_REQUEST), 400);
  cr_assert_str_eq(agd_err_code(AGD_EBAD_REQUEST), "BAD_REQUEST");
  cr_assert_eq(agd_err_ws_close(AGD_EBAD_REQUEST), 0);
  cr_assert_eq(agd_err_status(AGD_EAUTH_INVALID), 401);
  cr_assert_eq(agd_err_ws_close(AGD_EAUTH_INVALID), 1008);
  cr_assert_eq(agd_err_status(AGD_ETOO_LARGE), 413);
  cr_assert_str_eq(agd_err_code(AGD_ETOO_LARGE), "PAYLOAD_TOO_LARGE");
  cr_assert_eq(agd_err_ws_close(AGD_ETOO_LARGE), 1009);
  cr_assert_str_eq(agd_err_code(AGD_EUNSUPPORTED_MEDIA), "UNSUPPORTED_MEDIA_TYPE");
  cr_assert_str_eq(agd_err_code(AGD_EVALIDATION), "VALIDATION_ERROR");
  cr_assert_eq(agd_err_status(AGD_EHEADERS_TOO_LARGE), 431);
  cr_assert_eq(agd_err_status(AGD_EUNAVAILABLE), 503);
  cr_assert_eq(agd_err_ws_close(AGD_EUNAVAILABLE), 1013);
  /* a cancel is its own code, not "unavailable" */
  cr_assert_neq(AGD_ECANCELLED, AGD_EUNAVAILABLE);
  cr_assert_str_eq(agd_err_code(AGD_ECANCELLED), "CANCELLED");
  cr_assert_eq(agd_err_ws_close(AGD_ECANCELLED), 0);
  cr_assert_eq(agd_err_status(AGD_ETIMEOUT), 504);
  cr_assert_eq(agd_err_ws_close(AGD_EINTERNAL), 1011);
}

Test(err, every_row_round_trips) {
  for (int e = AGD__FIRST + 1; e < AGD__LAST; e++) {
    const char *code = agd_err_code(e);
    cr_assert(code && code[0]);
    cr_assert_eq(agd_err_from_code(code), e, "%s", code);
    int st = agd_err_status(e);
    cr_assert(st >= 400 && st < 600);
  }
}

Test(err, codes_below_libuv_range) {
  cr_assert_lt(AGD__LAST, -4096);
  cr_assert_lt(AGD_EBAD_REQUEST, 0);
}

Test(err, unknown_codes_are_internal) {
  int unknown[] = {-1, -4095, AGD__FIRST, AGD__LAST, AGD__FIRST - 1, 12345};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    cr_assert_eq(agd_err_status(unknown[i]), 500);
    cr_assert_str_eq(agd_err_code(unknown[i]), "INTERNAL");
  }
  cr_assert_eq(agd_err_ws_close(0), 0);
  cr_assert_eq(agd_err_ws_close(-4095), 1011);
  cr_assert_eq(agd_err_from_code("NOPE"), AGD_EINTERNAL);
  cr_assert_eq(agd_err_from_code(""), AGD_EINTERNAL);
  cr_assert_eq(agd_err_from_code(NULL), AGD_EINTERNAL);
  cr_assert_eq(agd_err_from_code("not_found"), AGD_EINTERNAL); /* exact match only */
}

Test(err, mark_records_where) {
  cr_assert_str_eq(agd_err_where(), "");
  int line = __LINE__ + 1;
  int e = ERR(AGD_ENOT_FOUND);
  cr_assert_eq(e, AGD_ENOT_FOUND);
  char want[256];
  snprintf(want, sizeof want, "%s:%d", __FILE__, line);
  cr_assert_str_eq(agd_err_where(), want);
  cr_assert_str_eq(agd_err_where(), want); /* reading clears nothing */
  cr_assert_eq(agd_err_mark(-7, "a.c", 3), -7);
  cr_assert_str_eq(agd_err_where(), "a.c:3");
}

Test(err, mark_long_file_is_truncated_safely) {
  char file[600];
  memset(file, 'f', sizeof file - 1);
  file[sizeof file - 1] = '\0';
  agd_err_mark(AGD_EINTERNAL, file, 1);
  cr_assert(strlen(agd_err_where()) > 0);
  cr_assert(strlen(agd_err_where()) < sizeof file);
}

static void *other_thread(void *arg) {
  (void)arg;
  const char *w = agd_err_where();
  int empty = w[0] == '\0';
  agd_err_mark(AGD_EINTERNAL, "thread.c", 9);
  return (void *)(intptr_t)empty;
}

Test(err, where_is_thread_local) {
  agd_err_mark(AGD_EINTERNAL, "main.c", 1);
  pthread_t t;
  void *res;
  cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
  pthread_join(t, &res);
  cr_assert_eq((intptr_t)res, 1);
  cr_assert_str_eq(agd_err_where(), "main.c:1");
}
