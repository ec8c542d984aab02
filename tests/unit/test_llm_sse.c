/* tests/unit/test_llm_sse.c — llm/sse.c, the incremental SSE parser of the
 * openai provider: the same streams fed in pieces of every size give the
 * same events; CRLF / LF / CR line ends (a CRLF split across two pieces);
 * comments; multi-line data joined with "\n"; the 1 MiB bound on a line and
 * on an event; the end of a stream without its blank line. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "llm/sse.h"
#include "util/buf.h"

/* The events seen, each followed by a '|'. */
typedef struct seen {
  buf_t b;
  int n;
  int stop_at; /* answer 7 on this event (1-based); 0: never */
} seen_t;

static int on_event(void *ud, const char *data, size_t n) {
  seen_t *s = ud;
  buf_append(&s->b, data, n);
  buf_append(&s->b, "|", 1);
  s->n++;
  return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

/* Feed stream in pieces of `piece` bytes (0: all at once), then end it.
 * Returns the events joined; *rc the first non-zero answer. */
static char *parse(const char *stream, size_t len, size_t piece, int *rc_out) {
  llm_sse_t p;
  llm_sse_init(&p, 0);
  seen_t s = {.n = 0};
  buf_init(&s.b, 0);
  int rc = 0;
  if (!piece) piece = len ? len : 1;
  for (size_t i = 0; i < len && rc == 0; i += piece) {
    size_t n = len - i < piece ? len - i : piece;
    /* a private copy, so a read past the piece would show under ASan */
    char *copy = malloc(n);
    memcpy(copy, stream + i, n);
    rc = llm_sse_feed(&p, copy, n, on_event, &s);
    free(copy);
  }
  if (rc == 0) rc = llm_sse_end(&p, on_event, &s);
  llm_sse_dispose(&p);
  if (rc_out) *rc_out = rc;
  buf_append(&s.b, "", 1);
  size_t n;
  return buf_steal(&s.b, &n);
}

static void expect_events(const char *stream, const char *want) {
  size_t len = strlen(stream);
  for (size_t piece = 0; piece <= len + 1; piece++) {
    int rc;
    char *got = parse(stream, len, piece, &rc);
    cr_expect_eq(rc, 0, "piece %zu", piece);
    cr_expect_str_eq(got, want, "piece %zu: got [%s] want [%s]", piece, got, want);
    free(got);
  }
}

Test(llm_sse, events_in_pieces_of_every_size) {
  expect_events("data: {\"a\":1}\n\ndata: [DONE]\n\n", "{\"a\":1}|[DONE]|");
}

Test(llm_sse, line_ends_crlf_lf_cr) {
  expect_events("data: one\r\n\r\ndata: two\n\ndata: three\r\rdata: four\r\n\n", "one|two|three|four|");
}

Test(llm_sse, comments_and_other_fields_are_skipped) {
  expect_events(": ping\n\n: ping\r\nevent: message\nid: 7\nretry: 100\ndata: x\n\n:\n\n", "x|");
}

Test(llm_sse, multi_line_data_is_joined) {
  expect_events("data: a\ndata: b\ndata:c\ndata\n\n", "a\nb\nc\n|");
  /* only one space after the colon is dropped */
  expect_events("data:  two spaces\n\n", " two spaces|");
  /* an event with no data field is no event; an empty data field is one */
  expect_events("event: x\n\ndata:\n\n", "|");
}

Test(llm_sse, the_end_without_a_blank_line) {
  expect_events("data: a\n\ndata: [DONE]", "a|[DONE]|");
  expect_events("data: a\n\ndata: [DONE]\n", "a|[DONE]|");
  expect_events("", "");
}

Test(llm_sse, a_callback_stops_the_parse) {
  llm_sse_t p;
  llm_sse_init(&p, 0);
  seen_t s = {.stop_at = 1};
  buf_init(&s.b, 0);
  const char *in = "data: a\n\ndata: b\n\n";
  cr_expect_eq(llm_sse_feed(&p, in, strlen(in), on_event, &s), 7);
  cr_expect_eq(s.n, 1);
  llm_sse_dispose(&p);
  buf_dispose(&s.b);
}

Test(llm_sse, bounds) {
  /* a line at the bound passes, one byte more does not — whatever the pieces */
  size_t max = 64;
  char line[200];
  for (int over = 0; over <= 1; over++) {
    size_t n = 6 + (max - 6) + (size_t)over; /* "data: " + value: the line is max(+1) bytes */
    memcpy(line, "data: ", 6);
    memset(line + 6, 'x', n - 6);
    memcpy(line + n, "\n\n", 2);
    for (size_t piece = 1; piece <= n + 2; piece += 7) {
      llm_sse_t p;
      llm_sse_init(&p, max);
      seen_t s = {0};
      buf_init(&s.b, 0);
      int rc = 0;
      for (size_t i = 0; i < n + 2 && rc == 0; i += piece)
        rc = llm_sse_feed(&p, line + i, (n + 2 - i) < piece ? n + 2 - i : piece, on_event, &s);
      cr_expect_eq(rc, over ? LLM_SSE_TOO_LONG : 0, "over %d piece %zu", over, piece);
      cr_expect_eq(s.n, over ? 0 : 1);
      llm_sse_dispose(&p);
      buf_dispose(&s.b);
    }
  }
  /* many data lines, each short, adding up past the bound */
  llm_sse_t p;
  llm_sse_init(&p, max);
  seen_t s = {0};
  buf_init(&s.b, 0);
  int rc = 0;
  for (int i = 0; i < 20 && rc == 0; i++) rc = llm_sse_feed(&p, "data: 0123456789\n", 17, on_event, &s);
  cr_expect_eq(rc, LLM_SSE_TOO_LONG);
  llm_sse_dispose(&p);
  buf_dispose(&s.b);
  /* a comment line is bounded too (it is held until its end) */
  llm_sse_init(&p, max);
  char big[100];
  memset(big, ':', sizeof(big));
  cr_expect_eq(llm_sse_feed(&p, big, sizeof(big), on_event, &s), LLM_SSE_TOO_LONG);
  llm_sse_dispose(&p);
}

Test(llm_sse, the_default_bound_is_1_mib) {
  size_t n = LLM_SSE_MAX_LINE + 16;
  char *in = malloc(n);
  memcpy(in, "data: ", 6);
  memset(in + 6, 'y', n - 6);
  llm_sse_t p;
  llm_sse_init(&p, 0);
  seen_t s = {0};
  buf_init(&s.b, 0);
  cr_expect_eq(llm_sse_feed(&p, in, n, on_event, &s), LLM_SSE_TOO_LONG);
  llm_sse_dispose(&p);
  free(in);
}
