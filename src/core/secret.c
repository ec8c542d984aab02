/* core/secret.c — the generated JWT secret in the data directory (SPEC §2/§10).
 *
 * Runs once at start-up on the main thread (and in tests); no state.
 */
#include "core/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/ids.h"
#include "util/xalloc.h"

#define SECRET_FILE_MAX 4096

static int fail_msg(char *err, size_t cap, int code, const char *fmt, const char *a, const char *b)
{
  if (err && cap) snprintf(err, cap, fmt, a, b);
  return code;
}

/* Create dir and its parents (0700 for the ones we make). */
static int mkdir_p(const char *dir)
{
  char tmp[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] != '/' && tmp[i] != '\0') continue;
    char c = tmp[i];
    tmp[i] = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    tmp[i] = c;
  }
  struct stat st;
  return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* 1 read, 0 absent, -1 error (message written). */
static int secret_read(const char *path, char **out, size_t *len_out, char *err, size_t cap)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    fail_msg(err, cap, 0, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  char *buf = xmalloc(SECRET_FILE_MAX + 2);
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      fail_msg(err, cap, 0, "cannot read %s: %s", path, strerror(errno));
      close(fd);
      free(buf);
      return -1;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n > SECRET_FILE_MAX) break;
  }
  close(fd);
  const char *why = NULL;
  if (n > SECRET_FILE_MAX) why = "is larger than 4 KiB";
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    n--;
  if (!why && memchr(buf, '\0', n)) why = "contains a NUL byte";
  if (!why && n < SECRET_MIN) why = "holds fewer than 32 bytes";
  if (why) {
    fail_msg(err, cap, 0, "%s %s", path, why);
    OPENSSL_cleanse(buf, SECRET_FILE_MAX + 2);
    free(buf);
    return -1;
  }
  buf[n] = '\0';
  *out = buf;
  *len_out = n;
  return 1;
}

int secret_load_or_create(const char *data_dir, char **secret_out, size_t *len_out,
                               char *err, size_t cap)
{
  if (!data_dir || !*data_dir || !secret_out || !len_out)
    return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "no data directory", "");
  char path[PATH_MAX], tmp[PATH_MAX];
  int pn = snprintf(path, sizeof path, "%s/jwt.secret", data_dir);
  if (pn < 0 || (size_t)pn >= sizeof path)
    return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "data directory path too long", "");

  for (int attempt = 0; attempt < 3; attempt++) {
    int r = secret_read(path, secret_out, len_out, err, cap);
    if (r == 1) return 0;
    if (r < 0) return ERR(AGD_EINTERNAL);

    if (mkdir_p(data_dir) != 0)
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create data directory %s: %s", data_dir,
                      strerror(errno));
    unsigned char raw[64];
    id_random_bytes(raw, sizeof raw);
    char hex[2 * sizeof raw + 2];
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
      hex[2 * i] = digits[raw[i] >> 4];
      hex[2 * i + 1] = digits[raw[i] & 15];
    }
    OPENSSL_cleanse(raw, sizeof raw);
    hex[2 * sizeof raw] = '\n';
    hex[2 * sizeof raw + 1] = '\0';

    unsigned char rnd[4];
    id_random_bytes(rnd, sizeof rnd);
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%02x%02x%02x%02x", path, (long)getpid(), rnd[0],
                      rnd[1], rnd[2], rnd[3]);
    if (tn < 0 || (size_t)tn >= sizeof tmp)
      return fail_msg(err, cap, ERR(AGD_EBAD_REQUEST), "%s%s", "data directory path too long", "");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create %s: %s", tmp, strerror(errno));
    size_t want = 2 * sizeof raw + 1, done = 0;
    int werr = 0;
    while (done < want) {
      ssize_t w = write(fd, hex + done, want - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        werr = errno ? errno : EIO;
        break;
      }
      done += (size_t)w;
    }
    if (!werr && fsync(fd) != 0) werr = errno;
    if (close(fd) != 0 && !werr) werr = errno;
    if (werr) {
      unlink(tmp);
      OPENSSL_cleanse(hex, sizeof hex);
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot write %s: %s", tmp, strerror(werr));
    }
    /* link() never replaces: when another process won the race, both end up
     * with its secret.  Filesystems without hard links fall back to rename(). */
    int placed = 0;
    if (link(tmp, path) == 0) {
      placed = 1;
      unlink(tmp);
    } else if (errno == EEXIST) {
      unlink(tmp);
    } else if (rename(tmp, path) == 0) {
      placed = 1;
    } else {
      int e = errno;
      unlink(tmp);
      OPENSSL_cleanse(hex, sizeof hex);
      return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot create %s: %s", path, strerror(e));
    }
    if (placed) {
      int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
      }
      size_t n = 2 * sizeof raw;
      char *s = xmalloc(n + 1);
      memcpy(s, hex, n);
      s[n] = '\0';
      OPENSSL_cleanse(hex, sizeof hex);
      *secret_out = s;
      *len_out = n;
      return 0;
    }
    OPENSSL_cleanse(hex, sizeof hex);
    /* lost the race: read the winner's file on the next round */
  }
  return fail_msg(err, cap, ERR(AGD_EINTERNAL), "cannot settle %s%s", path, "");
}
