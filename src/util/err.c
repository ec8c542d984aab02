/* util/err.c — the error table (util/err.h, STYLE §4).
 *
 * Pure lookups over the AGD_ERRORS rows, plus a per-thread "file:line" of the
 * last ERR() so the edge's log line can say where an error was born.
 * Any thread.
 */
#include "util/err.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  int err;
  int status;
  const char *code;
  int ws_close;
} err_row_t;

static const err_row_t err_rows[] = {
#define AGD__ROW(name, status, code, ws) {AGD_E##name, status, code, ws},
    AGD_ERRORS(AGD__ROW)
#undef AGD__ROW
};

#define ERR_NROWS (sizeof(err_rows) / sizeof(err_rows[0]))

/* The row of err; unknown codes (UV_E*, anything else) read as INTERNAL. */
static const err_row_t *err_row(int err) {
  if (err > AGD__FIRST && err < AGD__LAST) {
    const err_row_t *r = &err_rows[err - AGD__FIRST - 1];
    if (r->err == err) return r;
  }
  return &err_rows[AGD_EINTERNAL - AGD__FIRST - 1];
}

int agd_err_status(int err) {
  return err_row(err)->status;
}

const char *agd_err_code(int err) {
  return err_row(err)->code;
}

int agd_err_ws_close(int err) {
  if (err >= 0) return 0; /* success never closes a socket */
  return err_row(err)->ws_close;
}

int agd_err_from_code(const char *code) {
  if (code == NULL) return AGD_EINTERNAL;
  for (size_t i = 0; i < ERR_NROWS; i++)
    if (strcmp(err_rows[i].code, code) == 0) return err_rows[i].err;
  return AGD_EINTERNAL;
}

/* Last ERR() site of this thread; "" until one is recorded. */
static __thread char err_where[128];

int agd_err_mark(int err, const char *file, int line) {
  snprintf(err_where, sizeof err_where, "%s:%d", file ? file : "?", line);
  return err;
}

const char *agd_err_where(void) { return err_where; }
