/* tests/unit/test_log.c — util/log.c: level/format parsing and one-line output (SPEC §10). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

/* stderr capture: point fd 2 at a temp file, run, restore, read it back. */
static FILE *cap_file;
static int cap_saved = -1;
static char cap_out[65536];

static void cap_begin(void) {
  fflush(stderr);
  cap_file = tmpfile();
  cr_assert_not_null(cap_file);
  cap_saved = dup(STDERR_FILENO);
  dup2(fileno(cap_file), STDERR_FILENO);
}

static const char *cap_end(void) {
  dup2(cap_saved, STDERR_FILENO);
  close(cap_saved);
  rewind(cap_file);
  size_t n = fread(cap_out, 1, sizeof cap_out - 1, cap_file);
  cap_out[n] = '\0';
  fclose(cap_file);
  return cap_out;
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* Parse one JSON line (must end in exactly one '\n'); caller decrefs. */
static json_t *json_line(const char *s) {
  size_t n = strlen(s);
  cr_assert(n > 0 && s[n - 1] == '\n', "line: %s", s);
  cr_assert_eq(count_lines(s), 1, "lines: %s", s);
  json_error_t e;
  json_t *v = json_loadb(s, n - 1, 0, &e);
  cr_assert_not_null(v, "bad JSON (%s): %s", e.text, s);
  return v;
}

/* "2026-11-25T11:37:16.123Z" */
static void assert_ts(const char *ts) {
  cr_assert_eq(strlen(ts) >= 24, 1, "ts: %s", ts);
  cr_assert_eq(ts[4], '-');
  cr_assert_eq(ts[10], 'T');
  cr_assert_eq(ts[19], '.');
  cr_assert_eq(ts[23], 'Z');
}

Test(log, level_parse) {
  log_level_t l;
  cr_assert_eq(log_level_parse("debug", &l), 0);
  cr_assert_eq(l, LOG_DEBUG);
  cr_assert_eq(log_level_parse("info", &l), 0);
  cr_assert_eq(l, LOG_INFO);
  cr_assert_eq(log_level_parse("warn", &l), 0);
  cr_assert_eq(l, LOG_WARN);
  cr_assert_eq(log_level_parse("warning", &l), 0);
  cr_assert_eq(l, LOG_WARN);
  cr_assert_eq(log_level_parse("error", &l), 0);
  cr_assert_eq(l, LOG_ERROR);
  cr_assert_eq(log_level_parse("off", &l), 0);
  cr_assert_eq(l, LOG_OFF);
  l = LOG_INFO;
  cr_assert_eq(log_level_parse("verbose", &l), -1);
  cr_assert_eq(log_level_parse("", &l), -1);
  cr_assert_eq(log_level_parse("info ", &l), -1);
  cr_assert_eq(log_level_parse(NULL, &l), -1);
  cr_assert_eq(l, LOG_INFO);
}

Test(log, format_parse) {
  log_format_t f;
  cr_assert_eq(log_format_parse("text", &f), 0);
  cr_assert_eq(f, LOG_FMT_TEXT);
  cr_assert_eq(log_format_parse("json", &f), 0);
  cr_assert_eq(f, LOG_FMT_JSON);
  cr_assert_eq(log_format_parse("yaml", &f), -1);
  cr_assert_eq(log_format_parse("", &f), -1);
  cr_assert_eq(log_format_parse(NULL, &f), -1);
}

Test(log, enabled_by_level) {
  log_init(LOG_WARN, LOG_FMT_TEXT);
  cr_assert_not(log_enabled(LOG_DEBUG));
  cr_assert_not(log_enabled(LOG_INFO));
  cr_assert(log_enabled(LOG_WARN));
  cr_assert(log_enabled(LOG_ERROR));
  log_init(LOG_OFF, LOG_FMT_TEXT);
  cr_assert_not(log_enabled(LOG_ERROR));
  cr_assert_not(log_enabled(LOG_OFF));
}

Test(log, text_line) {
  log_init(LOG_INFO, LOG_FMT_TEXT);
  cap_begin();
  log_info("hello %s %d", "world", 42);
  const char *s = cap_end();
  assert_ts(s);
  cr_assert_str_eq(s + 24, " INFO hello world 42\n", "got: %s", s);
}

Test(log, text_escapes_control_bytes) {
  log_init(LOG_DEBUG, LOG_FMT_TEXT);
  cap_begin();
  log_warn("a\nFAKE 2026 ERROR x\r\t\x01");
  const char *s = cap_end();
  cr_assert_eq(count_lines(s), 1, "got: %s", s);
  cr_assert_str_eq(s + 24, " WARN a\\nFAKE 2026 ERROR x\\r\\t\\x01\n", "got: %s", s);
}

Test(log, level_filter) {
  log_init(LOG_WARN, LOG_FMT_TEXT);
  cap_begin();
  log_debug("no");
  log_info("no");
  log_access("GET", "/", 200, 1, "r", NULL); /* access lines are INFO */
  log_error("yes");
  const char *s = cap_end();
  cr_assert_eq(count_lines(s), 1, "got: %s", s);
  cr_assert_str_eq(s + 24, " ERROR yes\n");
  log_init(LOG_OFF, LOG_FMT_JSON);
  cap_begin();
  log_error("never");
  log_msg(LOG_OFF, "never");
  cr_assert_str_eq(cap_end(), "");
}

static const char *jstr(json_t *v, const char *k) {
  json_t *m = json_object_get(v, k);
  cr_assert(json_is_string(m), "field %s", k);
  return json_string_value(m);
}

Test(log, json_line_escapes) {
  log_init(LOG_DEBUG, LOG_FMT_JSON);
  cap_begin();
  log_debug("q\"b\\s\nnl\x01 \xc3\xa9 bad\xff end");
  const char *s = cap_end();
  cr_assert_eq(strncmp(s, "{\"ts\":\"", 7), 0, "got: %s", s);
  json_t *v = json_line(s);
  assert_ts(jstr(v, "ts"));
  cr_assert_str_eq(jstr(v, "level"), "debug");
  cr_assert_str_eq(jstr(v, "msg"), "q\"b\\s\nnl\x01 \xc3\xa9 bad\xef\xbf\xbd end"); /* bad byte -> U+FFFD */
  cr_assert_eq(json_object_size(v), 3);
  json_decref(v);
}

Test(log, json_levels) {
  log_init(LOG_DEBUG, LOG_FMT_JSON);
  const char *want[] = {"debug", "info", "warn", "error"};
  for (int l = LOG_DEBUG; l <= LOG_ERROR; l++) {
    cap_begin();
    log_msg((log_level_t)l, "x");
    json_t *v = json_line(cap_end());
    cr_assert_str_eq(jstr(v, "level"), want[l]);
    json_decref(v);
  }
}

Test(log, long_message_one_line) {
  log_init(LOG_INFO, LOG_FMT_JSON);
  char *big = malloc(20000);
  memset(big, 'm', 19999);
  big[19999] = '\0';
  cap_begin();
  log_info("%s", big);
  json_t *v = json_line(cap_end());
  size_t n = strlen(jstr(v, "msg"));
  cr_assert(n >= 1000 && n <= 19999, "n=%zu", n);
  json_decref(v);
  free(big);
}

Test(log, access_text) {
  log_init(LOG_INFO, LOG_FMT_TEXT);
  cap_begin();
  log_access("GET", "/v1/threads", 200, 1.2344, "abc123", NULL);
  log_access("POST", "/v1/x\nINJECT", 500, 12.5, "r2", "src/api/x.c:42");
  log_access("GET", "/", 404, 0.5, "r3", "");
  const char *s = cap_end();
  cr_assert_eq(count_lines(s), 3, "got: %s", s);
  const char *l2 = strchr(s, '\n') + 1;
  const char *l3 = strchr(l2, '\n') + 1;
  assert_ts(s);
  cr_assert_eq(strncmp(s + 24, " INFO GET /v1/threads 200 1.234ms rid=abc123\n", 45), 0, "got: %s", s);
  cr_assert_eq(strncmp(l2 + 24, " INFO POST /v1/x\\nINJECT 500 12.500ms rid=r2 at=src/api/x.c:42\n", 63), 0,
               "got: %s", l2);
  cr_assert_str_eq(l3 + 24, " INFO GET / 404 0.500ms rid=r3\n");
}

Test(log, access_json) {
  log_init(LOG_INFO, LOG_FMT_JSON);
  cap_begin();
  log_access("GET", "/v1/t?q=\"x\"", 201, 3.5, "rid-1", NULL);
  json_t *v = json_line(cap_end());
  assert_ts(jstr(v, "ts"));
  cr_assert_str_eq(jstr(v, "level"), "info");
  cr_assert_str_eq(jstr(v, "method"), "GET");
  cr_assert_str_eq(jstr(v, "path"), "/v1/t?q=\"x\"");
  cr_assert_eq(json_integer_value(json_object_get(v, "status")), 201);
  cr_assert(json_is_number(json_object_get(v, "duration_ms")));
  cr_assert_float_eq(json_number_value(json_object_get(v, "duration_ms")), 3.5, 1e-9);
  cr_assert_str_eq(jstr(v, "request_id"), "rid-1");
  cr_assert_null(json_object_get(v, "error_at"));
  json_decref(v);

  cap_begin();
  int line = __LINE__ + 1;
  (void)ERR(AGD_EINTERNAL);
  log_access("PUT", "/p", 500, 0, "rid-2", agd_err_where());
  v = json_line(cap_end());
  char want[256];
  snprintf(want, sizeof want, "%s:%d", __FILE__, line);
  cr_assert_str_eq(jstr(v, "error_at"), want);
  cr_assert_eq(json_integer_value(json_object_get(v, "status")), 500);
  json_decref(v);
}

Test(log, access_tolerates_null_and_nan) {
  log_init(LOG_INFO, LOG_FMT_JSON);
  cap_begin();
  log_access(NULL, NULL, 0, NAN, NULL, NULL);
  json_t *v = json_line(cap_end());
  cr_assert_str_eq(jstr(v, "method"), "");
  cr_assert(json_is_number(json_object_get(v, "duration_ms")));
  json_decref(v);
}
