/* api/query.h — strict query-string values for every route (SPEC conventions:
 * a bad value is 400, never a silent default).
 *
 * One parser instead of one per module: an integer is ASCII digits only (no
 * sign, blanks, NUL or trailing text, at most 18 digits) within [min, max].
 * A value http_req_query could not decode (a bad escape, %00) reaches these as
 * its raw text, which no strict parser accepts.  Loop thread.
 */
#ifndef AGD_API_QUERY_H
#define AGD_API_QUERY_H

#include "net/net.h"

/* Parse an integer: 1 absent (*out untouched), 0 valid (*out set), -1 not an
 * integer in [min, max] (nothing answered).  Pure: for tests too. */
int query_parse_int(const char *v, long long min, long long max, long long *out);

/* Query parameter name as an integer in [min, max]: 0 (*out = the value, or def
 * when absent) or -1 after answering 400 BAD_REQUEST "<name>: must be an integer
 * <min>..<max>". */
int query_int(http_req_t *r, const char *name, long long min, long long max, long long def, long long *out);

#endif
