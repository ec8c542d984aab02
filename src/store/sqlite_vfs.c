/* store/sqlite_vfs.c — see sqlite_vfs.h. */
#include "store/sqlite_vfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define VFS_NAME "agentd"
/* WAL_FRAME_HDRSIZE in SQLite's wal.c (part of the file format). */
#define FRAME_HDR 24

typedef struct wal_file {
  sqlite3_file base;     /* first: SQLite sees a sqlite3_file */
  sqlite3_file *real;    /* the default VFS's object, in the same allocation after this */
  sqlite3_int64 hdr_off; /* offset of the held frame header; -1: none held */
  unsigned char hdr[FRAME_HDR];
  unsigned char *join; /* header + page, written in one call */
  int join_cap;
} wal_file_t;

/* Where the real file object starts inside the allocation SQLite gives us. */
#define REAL_OFF ((sizeof(wal_file_t) + 15) & ~(size_t)15)

static sqlite3_vfs *real_vfs;
static sqlite3_vfs agentd_vfs;

static sqlite3_file *real_of(sqlite3_file *f) { return ((wal_file_t *)f)->real; }

/* Write the held header by itself (the next call was not its page). */
static int flush_hdr(wal_file_t *w) {
  if (w->hdr_off < 0) return SQLITE_OK;
  sqlite3_int64 off = w->hdr_off;
  w->hdr_off = -1;
  return w->real->pMethods->xWrite(w->real, w->hdr, FRAME_HDR, off);
}

/* ---- the WAL file's methods ---- */

static int w_close(sqlite3_file *f) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  int rc2 = w->real->pMethods->xClose(w->real);
  sqlite3_free(w->join);
  w->join = NULL;
  return rc != SQLITE_OK ? rc : rc2;
}

static int w_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

static int w_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
  wal_file_t *w = (wal_file_t *)f;
  if (w->hdr_off >= 0 && off == w->hdr_off + FRAME_HDR) {
    /* The page right after the held header: one write for the frame. */
    if (w->join_cap < FRAME_HDR + n) {
      unsigned char *j = sqlite3_realloc(w->join, FRAME_HDR + n);
      if (!j) return flush_hdr(w) != SQLITE_OK ? SQLITE_IOERR_WRITE : w->real->pMethods->xWrite(w->real, p, n, off);
      w->join = j;
      w->join_cap = FRAME_HDR + n;
    }
    memcpy(w->join, w->hdr, FRAME_HDR);
    memcpy(w->join + FRAME_HDR, p, (size_t)n);
    sqlite3_int64 at = w->hdr_off;
    w->hdr_off = -1;
    return w->real->pMethods->xWrite(w->real, w->join, FRAME_HDR + n, at);
  }
  int rc = flush_hdr(w);
  if (rc != SQLITE_OK) return rc;
  if (n == FRAME_HDR) { /* a frame header: hold it for its page */
    memcpy(w->hdr, p, FRAME_HDR);
    w->hdr_off = off;
    return SQLITE_OK;
  }
  return w->real->pMethods->xWrite(w->real, p, n, off);
}

static int w_truncate(sqlite3_file *f, sqlite3_int64 size) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int w_sync(sqlite3_file *f, int flags) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int w_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int w_lock(sqlite3_file *f, int lock) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xLock(w->real, lock);
}

static int w_unlock(sqlite3_file *f, int lock) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xUnlock(w->real, lock);
}

static int w_check_reserved(sqlite3_file *f, int *out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int w_file_control(sqlite3_file *f, int op, void *arg) {
  wal_file_t *w = (wal_file_t *)f;
  int rc = flush_hdr(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int w_sector_size(sqlite3_file *f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }

static int w_device_characteristics(sqlite3_file *f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

/* Shared memory and memory-mapped reads belong to the database file, not the WAL;
 * forwarded in case a platform VFS ever asks. */
static int w_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
  sqlite3_file *r = real_of(f);
  return r->pMethods->iVersion >= 2 ? r->pMethods->xShmMap(r, pg, pgsz, extend, pp) : SQLITE_IOERR_SHMMAP;
}

static int w_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  sqlite3_file *r = real_of(f);
  return r->pMethods->iVersion >= 2 ? r->pMethods->xShmLock(r, offset, n, flags) : SQLITE_IOERR_SHMLOCK;
}

static void w_shm_barrier(sqlite3_file *f) {
  sqlite3_file *r = real_of(f);
  if (r->pMethods->iVersion >= 2) r->pMethods->xShmBarrier(r);
}

static int w_shm_unmap(sqlite3_file *f, int del) {
  sqlite3_file *r = real_of(f);
  return r->pMethods->iVersion >= 2 ? r->pMethods->xShmUnmap(r, del) : SQLITE_OK;
}

static int w_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
  wal_file_t *w = (wal_file_t *)f;
  *pp = NULL;
  int rc = flush_hdr(w);
  if (rc != SQLITE_OK || w->real->pMethods->iVersion < 3) return rc;
  return w->real->pMethods->xFetch(w->real, off, n, pp);
}

static int w_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  sqlite3_file *r = real_of(f);
  return r->pMethods->iVersion >= 3 ? r->pMethods->xUnfetch(r, off, p) : SQLITE_OK;
}

static const sqlite3_io_methods wal_methods = {
    .iVersion = 3,
    .xClose = w_close,
    .xRead = w_read,
    .xWrite = w_write,
    .xTruncate = w_truncate,
    .xSync = w_sync,
    .xFileSize = w_file_size,
    .xLock = w_lock,
    .xUnlock = w_unlock,
    .xCheckReservedLock = w_check_reserved,
    .xFileControl = w_file_control,
    .xSectorSize = w_sector_size,
    .xDeviceCharacteristics = w_device_characteristics,
    .xShmMap = w_shm_map,
    .xShmLock = w_shm_lock,
    .xShmBarrier = w_shm_barrier,
    .xShmUnmap = w_shm_unmap,
    .xFetch = w_fetch,
    .xUnfetch = w_unfetch,
};

/* ---- the VFS: WAL files wrapped, the rest and every other call forwarded ---- */

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
  if (!(flags & SQLITE_OPEN_WAL)) return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
  wal_file_t *w = (wal_file_t *)f;
  memset(w, 0, sizeof *w);
  w->real = (sqlite3_file *)((char *)f + REAL_OFF);
  w->hdr_off = -1;
  int rc = real_vfs->xOpen(real_vfs, name, w->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    /* SQLite calls xClose only when pMethods is set: release what was opened. */
    if (w->real->pMethods) w->real->pMethods->xClose(w->real);
    f->pMethods = NULL;
    return rc;
  }
  f->pMethods = &wal_methods;
  return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
  return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
  return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int v_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
  return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *v_dlopen(sqlite3_vfs *v, const char *path) { return real_vfs->xDlOpen(real_vfs, path); }
static void v_dlerror(sqlite3_vfs *v, int n, char *msg) { real_vfs->xDlError(real_vfs, n, msg); }
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) { return real_vfs->xDlSym(real_vfs, h, sym); }
static void v_dlclose(sqlite3_vfs *v, void *h) { real_vfs->xDlClose(real_vfs, h); }
static int v_randomness(sqlite3_vfs *v, int n, char *out) { return real_vfs->xRandomness(real_vfs, n, out); }
static int v_sleep(sqlite3_vfs *v, int us) { return real_vfs->xSleep(real_vfs, us); }
static int v_current_time(sqlite3_vfs *v, double *out) { return real_vfs->xCurrentTime(real_vfs, out); }
static int v_get_last_error(sqlite3_vfs *v, int n, char *out) {
  return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}
static int v_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
  if (real_vfs->iVersion >= 2 && real_vfs->xCurrentTimeInt64) return real_vfs->xCurrentTimeInt64(real_vfs, out);
  double d;
  int rc = real_vfs->xCurrentTime(real_vfs, &d);
  *out = (sqlite3_int64)(d * 86400000.0);
  return rc;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered;

static void register_vfs(void) {
  real_vfs = sqlite3_vfs_find(NULL);
  if (!real_vfs) return;
  agentd_vfs = (sqlite3_vfs){
      .iVersion = 2,
      .szOsFile = (int)(REAL_OFF + (size_t)real_vfs->szOsFile),
      .mxPathname = real_vfs->mxPathname,
      .zName = VFS_NAME,
      .xOpen = v_open,
      .xDelete = v_delete,
      .xAccess = v_access,
      .xFullPathname = v_full_pathname,
      .xDlOpen = v_dlopen,
      .xDlError = v_dlerror,
      .xDlSym = v_dlsym,
      .xDlClose = v_dlclose,
      .xRandomness = v_randomness,
      .xSleep = v_sleep,
      .xCurrentTime = v_current_time,
      .xGetLastError = v_get_last_error,
      .xCurrentTimeInt64 = v_current_time_int64,
  };
  registered = sqlite3_vfs_register(&agentd_vfs, 0) == SQLITE_OK;
}

const char *sqlite_vfs_name(void) {
  pthread_once(&once, register_vfs);
  return registered ? VFS_NAME : NULL;
}
