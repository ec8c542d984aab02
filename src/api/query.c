/* api/query.c — see query.h. */
#include "api/query.h"

#include <stdio.h>

#include "util/err.h"

#define QUERY_INT_DIGITS 18 /* < 2^63 whatever the digits */

int query_parse_int(const char *v, long long min, long long max, long long *out) {
  if (!v) return 1;
  long long x = 0;
  size_t i = 0;
  for (; v[i]; i++) {
    if (v[i] < '0' || v[i] > '9' || i == QUERY_INT_DIGITS) return -1;
    x = x * 10 + (v[i] - '0');
  }
  if (i == 0 || x < min || x > max) return -1;
  *out = x;
  return 0;
}

int query_int(http_req_t *r, const char *name, long long min, long long max, long long def, long long *out) {
  const char *v = NULL;
  *out = def;
  if (!http_req_query(r, name, &v)) return 0;
  if (query_parse_int(v, min, max, out) == 0) return 0;
  *out = def;
  char msg[128];
  snprintf(msg, sizeof msg, "%s: must be an integer %lld..%lld", name, min, max);
  http_respond_error(r, AGD_EBAD_REQUEST, msg, NULL);
  return -1;
}
