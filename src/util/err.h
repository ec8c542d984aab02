/* util/err.h — the one error table of agentd (STYLE §4).
 *
 * Every module returns int: 0 on success, a negative AGD_E* (or a negative
 * UV_E* passed through) on failure.  One row gives the enum, the HTTP status,
 * the SPEC error_code string and the WebSocket close code (0: socket stays open).
 * Only the edge (router, ws protocol) turns a code into an answer and logs it.
 * Thread-safe: pure functions over a const table.
 */
#ifndef AGD_UTIL_ERR_H
#define AGD_UTIL_ERR_H

#define AGD_ERRORS(X)                                                   \
  X(BAD_REQUEST,        400, "BAD_REQUEST",            0)              \
  X(AUTH_REQUIRED,      401, "AUTH_REQUIRED",          1008)           \
  X(AUTH_INVALID,       401, "AUTH_INVALID",           1008)           \
  X(FORBIDDEN,          403, "FORBIDDEN",              1008)           \
  X(NOT_FOUND,          404, "NOT_FOUND",              0)              \
  X(METHOD_NOT_ALLOWED, 405, "METHOD_NOT_ALLOWED",     0)              \
  X(CONFLICT,           409, "CONFLICT",               0)              \
  X(TOO_LARGE,          413, "PAYLOAD_TOO_LARGE",      1009)           \
  X(UNSUPPORTED_MEDIA,  415, "UNSUPPORTED_MEDIA_TYPE", 0)              \
  X(VALIDATION,         422, "VALIDATION_ERROR",       0)              \
  X(RATE_LIMITED,       429, "RATE_LIMITED",           0)              \
  X(HEADERS_TOO_LARGE,  431, "HEADERS_TOO_LARGE",      0)              \
  X(INTERNAL,           500, "INTERNAL",               1011)           \
  X(UNAVAILABLE,        503, "UNAVAILABLE",            1013)           \
  X(TIMEOUT,            504, "TIMEOUT",                0)              \
  X(CANCELLED,          499, "CANCELLED",              0)              \
  X(NOT_IMPLEMENTED,    501, "NOT_IMPLEMENTED",        0)

/* AGD_EUNAVAILABLE is a dependency that is down or full (database, worker
 * queue, a closed socket); AGD_ECANCELLED is work stopped on purpose (a user's
 * stop, a shutdown, a caller that left).  They used to share one code, so a
 * database failure during a run could read as a cancel.  CANCELLED never goes
 * on the wire as such: a cancelled run answers with its status and
 * agent_stopped; 499 (nginx's "client closed request") only shows in logs.
 * AGD_ENOT_IMPLEMENTED is a request whose framing names a transfer coding
 * agentd does not decode (RFC 9112 §6.1: 501). */

/* Codes are below libuv's range (UV_E* are > -4096) so both can travel together. */
enum agd_err {
  AGD_OK = 0,
#define AGD__ENUM(name, status, code, ws) AGD_E##name,
  AGD__FIRST = -5000,
  AGD_ERRORS(AGD__ENUM)
#undef AGD__ENUM
  AGD__LAST
};

/* HTTP status for an error (500 for anything unknown, including UV_E*). */
int agd_err_status(int err);
/* SPEC error_code string ("NOT_FOUND"…); "INTERNAL" for unknown codes. Static storage. */
const char *agd_err_code(int err);
/* WebSocket close code for an error that ends a socket, 0 when the socket stays open. */
int agd_err_ws_close(int err);
/* Inverse of agd_err_code(): AGD_E* for a SPEC code string, AGD_EINTERNAL if unknown. */
int agd_err_from_code(const char *code);

/* Where an error was born (STYLE §4): ERR(AGD_EINTERNAL) records __FILE__:__LINE__
 * in a thread-local that the edge's log line prints via agd_err_where(). */
int agd_err_mark(int err, const char *file, int line);
const char *agd_err_where(void); /* "" when nothing recorded; clears nothing */
#define ERR(e) agd_err_mark((e), __FILE__, __LINE__)

#endif
