/* util/log.h — one-line logging, JSON or text (SPEC §10 --log-level/--log-format).
 *
 * Lines go to stderr, written with one write(2) each so threads never interleave
 * inside a line.  Any thread.  log_init() once at start, before other threads.
 */
#ifndef AGD_UTIL_LOG_H
#define AGD_UTIL_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level_t;
typedef enum { LOG_FMT_TEXT = 0, LOG_FMT_JSON } log_format_t;

void log_init(log_level_t level, log_format_t format);
int log_enabled(log_level_t level);
/* Parse "debug|info|warn|warning|error|off" → 0 and *out, or -1. */
int log_level_parse(const char *s, log_level_t *out);
/* Parse "text|json" → 0 and *out, or -1. */
int log_format_parse(const char *s, log_format_t *out);

void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* The access line: one per request (method, path, status, duration, request id).
 * `error_where` may be NULL or "" (else printed, from agd_err_where()). */
void log_access(const char *method, const char *path, int status, double duration_ms,
                const char *request_id, const char *error_where);

#endif
