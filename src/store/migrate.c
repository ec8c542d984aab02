/* store/migrate.c — the migration runner every storage engine shares (store_int.h).
 *
 * An engine's migrations are the files src/store/migrations/<engine>/NNNN_name.sql, embedded
 * into the binary in order; every engine gives the same schema change the same NNNN, so a
 * version means the same thing whichever database holds it.  Applied migrations are recorded
 * in schema_migrations (version, name, applied_at, checksum) the same way on every engine.
 * This file decides — the order, the refusal of a schema newer than the binary, the check of
 * the recorded rows against the embedded files, what is pending — and leaves to the engine's
 * store_mig_ops_t only what needs its SQL dialect: the table, the locking, running a script.
 * Runs at open (and for `agentd migrate`) on the calling thread; no state of its own.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/log.h"

int store__migration_version(const char *name) {
  /* "NNNN_name.sql": at least one digit, then '_'. */
  int v = 0, digits = 0;
  for (; name && *name >= '0' && *name <= '9'; name++, digits++) {
    if (v > 100000000) return -1;
    v = v * 10 + (*name - '0');
  }
  if (!name || digits == 0 || *name != '_' || v <= 0) return -1;
  return v;
}

int store__migration_checksum(const embedded_file_t *m, char out[STORE_MIG_SUM_HEX]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  out[0] = '\0';
  if (EVP_Digest(m->data, m->len, md, &n, EVP_sha256(), NULL) != 1 || n * 2 + 1 != STORE_MIG_SUM_HEX) return -1;
  static const char hex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < n; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 0xf];
  }
  out[2 * n] = '\0';
  return 0;
}

/* The recorded rows, read in full before anything is written (an engine may not allow a
 * write while its cursor over the same table is open). */
typedef struct mig_rows {
  store_mig_row_t *v;
  size_t n, cap;
} mig_rows_t;

static int rows_add(void *arg, const store_mig_row_t *row) {
  mig_rows_t *r = arg;
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 16;
    r->v = realloc(r->v, r->cap * sizeof *r->v);
    if (!r->v) abort();
  }
  r->v[r->n++] = *row;
  return 0;
}

static const embedded_file_t *mig_find(const embedded_file_t *migs, int version) {
  for (const embedded_file_t *m = migs; m->name; m++)
    if (store__migration_version(m->name) == version) return m;
  return NULL;
}

/* The binary's list must be well-named and strictly increasing (our bug if not).
 * *known: its last version (0 when empty). */
static int mig_list_check(const embedded_file_t *migs, int *known, char *err, size_t cap) {
  *known = 0;
  for (const embedded_file_t *m = migs; m->name; m++) {
    int v = store__migration_version(m->name);
    if (v <= *known || strlen(m->data) != m->len) {
      store__errf(err, cap, "embedded migration %s is malformed or out of order", m->name);
      return ERR(AGD_EINTERNAL);
    }
    *known = v;
  }
  return 0;
}

/* Checks of the recorded rows against the binary's files: a row without a checksum (written
 * before checksums were recorded, by a binary that applied this same file) gets it; a row
 * whose name or checksum differs is reported, not refused — the database keeps the schema
 * it has, and refusing would lock its owner out over an edited comment. */
static int mig_rows_check(const embedded_file_t *migs, const store_mig_ops_t *ops, void *db, const mig_rows_t *rows,
                          char *err, size_t cap) {
  for (size_t i = 0; i < rows->n; i++) {
    const store_mig_row_t *r = &rows->v[i];
    const embedded_file_t *m = mig_find(migs, r->version);
    if (!m) continue; /* a version this binary never had (a number left out) */
    char sum[STORE_MIG_SUM_HEX];
    if (store__migration_checksum(m, sum) != 0) {
      store__errf(err, cap, "cannot compute the checksum of migration %s", m->name);
      return ERR(AGD_EINTERNAL);
    }
    int same_name = strcmp(r->name, m->name) == 0;
    if (!r->checksum[0] && same_name) {
      int e = ops->set_checksum(db, r->version, sum, err, cap);
      if (e) return e;
      log_debug("store: recorded the checksum of migration %s", m->name);
    } else if (!same_name || strcmp(r->checksum, sum) != 0) {
      log_warn("store: migration %d was applied as %s (sha256 %s) but this agentd has %s (sha256 %s):"
               " a released migration was edited; the database keeps the schema it has",
               r->version, r->name, r->checksum[0] ? r->checksum : "not recorded", m->name, sum);
    }
  }
  return 0;
}

/* The highest recorded version (0 when none). */
static int mig_current(const store_mig_ops_t *ops, void *db, mig_rows_t *rows, int *cur, char *err, size_t cap) {
  rows->n = 0;
  int e = ops->each_applied(db, rows_add, rows, err, cap);
  *cur = 0;
  for (size_t i = 0; !e && i < rows->n; i++)
    if (rows->v[i].version > *cur) *cur = rows->v[i].version;
  return e;
}

int store__migrate(const embedded_file_t *migs, const store_mig_ops_t *ops, void *db, int *version_out,
                   char *err, size_t cap) {
  *version_out = 0;
  int known = 0, cur = 0;
  int e = mig_list_check(migs, &known, err, cap);
  if (e) return e;
  e = ops->prepare(db, err, cap);
  if (e) return e;
  mig_rows_t rows = {0};
  e = mig_current(ops, db, &rows, &cur, err, cap);
  if (!e && cur > known) {
    store__errf(err, cap,
                "database schema version %d is newer than this agentd (knows up to %d); "
                "upgrade agentd", cur, known);
    e = AGD_ECONFLICT;
  }
  if (!e) e = mig_rows_check(migs, ops, db, &rows, err, cap);
  for (const embedded_file_t *m = migs; !e && m->name; m++) {
    int v = store__migration_version(m->name);
    if (v <= cur) continue;
    char sum[STORE_MIG_SUM_HEX];
    if (store__migration_checksum(m, sum) != 0) {
      store__errf(err, cap, "cannot compute the checksum of migration %s", m->name);
      e = ERR(AGD_EINTERNAL);
      break;
    }
    e = ops->apply(db, m, v, sum, err, cap);
  }
  if (!e) e = mig_current(ops, db, &rows, version_out, err, cap);
  free(rows.v);
  return e;
}
