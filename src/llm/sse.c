/* llm/sse.c — the incremental SSE parser (sse.h). */
#include "llm/sse.h"

#include <string.h>

void llm_sse_init(llm_sse_t *p, size_t max_line) {
  memset(p, 0, sizeof(*p));
  p->max_line = max_line ? max_line : LLM_SSE_MAX_LINE;
  /* No buf limit: the bound is checked by hand so the answer is
   * LLM_SSE_TOO_LONG rather than a buffer error. */
  buf_init(&p->line, 0);
  buf_init(&p->data, 0);
}

void llm_sse_dispose(llm_sse_t *p) {
  buf_dispose(&p->line);
  buf_dispose(&p->data);
}

/* An event ends (a blank line): hand on its data, if it had any. */
static int dispatch(llm_sse_t *p, llm_sse_event_fn fn, void *ud) {
  int rc = 0;
  if (p->have_data) {
    size_t n = p->data.len;
    if (n > 0 && p->data.base[n - 1] == '\n') n--; /* the last field's separator */
    rc = fn(ud, n ? p->data.base : "", n);
  }
  buf_reset(&p->data);
  p->have_data = 0;
  return rc;
}

/* One complete line (p->line).  Only `data` matters to a chat stream. */
static int on_line(llm_sse_t *p, llm_sse_event_fn fn, void *ud) {
  const char *s = p->line.base;
  size_t n = p->line.len;
  int rc = 0;
  if (n == 0) rc = dispatch(p, fn, ud);
  else if (s[0] == ':') /* a comment: keep-alive pings */
    ;
  else {
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
      const char *v = colon ? colon + 1 : s + n;
      size_t vn = (size_t)(s + n - v);
      if (vn > 0 && v[0] == ' ') v++, vn--; /* one space after the colon is not part of the value */
      if (p->data.len + vn + 1 > p->max_line) rc = LLM_SSE_TOO_LONG;
      else if (buf_append(&p->data, v, vn) != 0 || buf_append(&p->data, "\n", 1) != 0) rc = LLM_SSE_TOO_LONG;
      else p->have_data = 1;
    }
  }
  buf_reset(&p->line);
  return rc;
}

int llm_sse_feed(llm_sse_t *p, const char *bytes, size_t n, llm_sse_event_fn fn, void *ud) {
  size_t i = 0;
  while (i < n) {
    if (p->after_cr && bytes[i] == '\n') { /* the LF of a CRLF */
      p->after_cr = 0;
      i++;
      continue;
    }
    p->after_cr = 0;
    /* The run of bytes up to the next line end goes into the line at once. */
    size_t j = i;
    while (j < n && bytes[j] != '\n' && bytes[j] != '\r') j++;
    if (j > i) {
      if (p->line.len + (j - i) > p->max_line) return LLM_SSE_TOO_LONG;
      if (buf_append(&p->line, bytes + i, j - i) != 0) return LLM_SSE_TOO_LONG;
    }
    if (j == n) break;
    p->after_cr = bytes[j] == '\r';
    i = j + 1;
    int rc = on_line(p, fn, ud);
    if (rc != 0) return rc;
  }
  return 0;
}

int llm_sse_end(llm_sse_t *p, llm_sse_event_fn fn, void *ud) {
  int rc = 0;
  if (p->line.len > 0) rc = on_line(p, fn, ud);
  if (rc == 0) rc = dispatch(p, fn, ud);
  return rc;
}
