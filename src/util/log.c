/* util/log.c — one-line logging to stderr, text or JSON (util/log.h, SPEC §10).
 *
 * Each line is built whole in a buffer and handed to write(2) once, so lines
 * from different threads never interleave.  Text lines escape control bytes
 * and JSON strings are escaped per RFC 8259 (invalid UTF-8 becomes U+FFFD),
 * so hostile paths or messages cannot forge extra lines.  Any thread;
 * log_init() runs once before other threads start.
 */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/utf8.h"

#define LOG_FIELD_MAX 8192 /* bytes of one message or path kept; the rest is cut */

static log_level_t log_level = LOG_INFO;
static log_format_t log_format = LOG_FMT_TEXT;

static const char *const level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};
static const char *const level_lower[] = {"debug", "info", "warn", "error", "off"};

void log_init(log_level_t level, log_format_t format) {
  log_level = level;
  log_format = format;
}

int log_enabled(log_level_t level) { return level != LOG_OFF && level >= log_level; }

int log_level_parse(const char *s, log_level_t *out) {
  static const struct { const char *name; log_level_t level; } names[] = {
      {"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warn", LOG_WARN},
      {"warning", LOG_WARN}, {"error", LOG_ERROR}, {"off", LOG_OFF},
  };
  if (s == NULL) return -1;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcasecmp(s, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  return -1;
}

int log_format_parse(const char *s, log_format_t *out) {
  if (s == NULL) return -1;
  if (strcasecmp(s, "text") == 0) *out = LOG_FMT_TEXT;
  else if (strcasecmp(s, "json") == 0) *out = LOG_FMT_JSON;
  else return -1;
  return 0;
}

/* "2026-11-25T11:37:16.123Z" */
static void log__ts(buf_t *b) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  buf_appendf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
              tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 if it is not one. */
static size_t log__utf8_seq(const unsigned char *s, size_t n) {
  size_t len = utf8_seq_len(s[0]);
  if (len > n) return 0;
  return utf8_valid((const char *)s, len) ? len : 0;
}

/* Text: printable bytes as they are, control bytes as \n \r \t \xHH. */
static void log__text(buf_t *b, const char *p, size_t n) {
  if (n > LOG_FIELD_MAX) n = LOG_FIELD_MAX;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\n') buf_append(b, "\\n", 2);
    else if (c == '\r') buf_append(b, "\\r", 2);
    else if (c == '\t') buf_append(b, "\\t", 2);
    else if (c < 0x20 || c == 0x7f) buf_appendf(b, "\\x%02x", c);
    else buf_append(b, &p[i], 1);
  }
}

/* JSON string literal, quotes included. */
static void log__json_str(buf_t *b, const char *p, size_t n) {
  if (n > LOG_FIELD_MAX) n = LOG_FIELD_MAX;
  const unsigned char *s = (const unsigned char *)p;
  buf_append(b, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c >= 0x80) {
      size_t len = log__utf8_seq(s + i, n - i);
      if (len == 0) {
        buf_append(b, "\\ufffd", 6);
        i++;
      } else {
        buf_append(b, s + i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
    case '"': buf_append(b, "\\\"", 2); break;
    case '\\': buf_append(b, "\\\\", 2); break;
    case '\n': buf_append(b, "\\n", 2); break;
    case '\r': buf_append(b, "\\r", 2); break;
    case '\t': buf_append(b, "\\t", 2); break;
    default:
      if (c < 0x20 || c == 0x7f) buf_appendf(b, "\\u%04x", c);
      else buf_append(b, &s[i], 1);
    }
    i++;
  }
  buf_append(b, "\"", 1);
}

static void log__cstr(buf_t *b, const char *s, int json) {
  if (s == NULL) s = "";
  if (json) log__json_str(b, s, strlen(s));
  else log__text(b, s, strlen(s));
}

/* One write(2) for the whole line; a partial write (pipe full) continues. */
static void log__emit(buf_t *b) {
  buf_append(b, "\n", 1);
  size_t off = 0;
  while (off < b->len) {
    ssize_t w = write(STDERR_FILENO, b->base + off, b->len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      break;
    }
    off += (size_t)w;
  }
  buf_dispose(b);
}

static void log__head(buf_t *b, log_level_t level, int json) {
  if (json) {
    buf_append_str(b, "{\"ts\":\"");
    log__ts(b);
    buf_appendf(b, "\",\"level\":\"%s\"", level_lower[level]);
  } else {
    log__ts(b);
    buf_appendf(b, " %s ", level_upper[level]);
  }
}

void log_msg(log_level_t level, const char *fmt, ...) {
  if (level < LOG_DEBUG || level >= LOG_OFF || !log_enabled(level)) return;
  char small[512];
  char *msg = small;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof small) {
    msg = malloc((size_t)n + 1);
    if (msg == NULL) abort();
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  int json = log_format == LOG_FMT_JSON;
  buf_t b;
  buf_init(&b, 0);
  log__head(&b, level, json);
  if (json) {
    buf_append_str(&b, ",\"msg\":");
    log__json_str(&b, msg, (size_t)n);
    buf_append(&b, "}", 1);
  } else {
    log__text(&b, msg, (size_t)n);
  }
  if (msg != small) free(msg);
  log__emit(&b);
}

void log_access(const char *method, const char *path, int status, double duration_ms,
                const char *request_id, const char *error_where) {
  if (!log_enabled(LOG_INFO)) return;
  if (!(duration_ms >= 0 && duration_ms < 1e12)) duration_ms = 0; /* NaN / absurd */
  int json = log_format == LOG_FMT_JSON;
  int has_where = error_where && error_where[0];
  buf_t b;
  buf_init(&b, 0);
  log__head(&b, LOG_INFO, json);
  if (json) {
    buf_append_str(&b, ",\"method\":");
    log__cstr(&b, method, 1);
    buf_append_str(&b, ",\"path\":");
    log__cstr(&b, path, 1);
    buf_appendf(&b, ",\"status\":%d,\"duration_ms\":%.3f,\"request_id\":", status, duration_ms);
    log__cstr(&b, request_id, 1);
    if (has_where) {
      buf_append_str(&b, ",\"error_at\":");
      log__cstr(&b, error_where, 1);
    }
    buf_append(&b, "}", 1);
  } else {
    log__cstr(&b, method, 0);
    buf_append(&b, " ", 1);
    log__cstr(&b, path, 0);
    buf_appendf(&b, " %d %.3fms rid=", status, duration_ms);
    log__cstr(&b, request_id, 0);
    if (has_where) {
      buf_append_str(&b, " at=");
      log__cstr(&b, error_where, 0);
    }
  }
  log__emit(&b);
}
