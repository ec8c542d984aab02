/* store/sqlite_vfs.h — the SQLite VFS agentd opens its databases with.
 *
 * A shim over the platform's default VFS (SQLite's documented extension point:
 * https://sqlite.org/vfs.html) that changes one thing: writes to the WAL file.
 * SQLite appends each WAL frame as two writes, its 24-byte header and then the
 * page (wal.c, walWriteOneFrame), so a commit costs two syscalls per page; on
 * this project's VMs a syscall is several microseconds and the event writer's
 * commits are on every event's way to its sockets.  The shim holds a frame
 * header back until the very next call on that file: when it is the page right
 * after it, both go out in one write; anything else first writes the header
 * alone.  Nothing stays held across calls into other files, so what readers and
 * the wal-index see is exactly what SQLite wrote, in the same order.
 *
 * Every other file (the database, its -shm, journals) is the default VFS's own
 * object, untouched.  Thread safety: as SQLite file objects (one connection).
 */
#ifndef AGD_STORE_SQLITE_VFS_H
#define AGD_STORE_SQLITE_VFS_H

/* Register the shim (once per process; later calls do nothing) and return its
 * name for sqlite3_open_v2, or NULL when there is no default VFS to wrap (then
 * open with the default: correct, only slower). */
const char *sqlite_vfs_name(void);

#endif
