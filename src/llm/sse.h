/* llm/sse.h — an incremental, bounded parser of a server-sent event stream
 * (the WHATWG "event stream" format) as an OpenAI-compatible server sends it:
 * `data: <payload>` lines, events ended by a blank line.
 *
 * Bytes arrive in arbitrary pieces (a read may end inside a line or inside a
 * CRLF); lines end with CRLF, LF or CR; lines starting with ':' are comments
 * (llama.cpp's `: ping`) and are skipped; the `data` fields of one event are
 * joined with "\n" (SSE rules); the other fields (event, id, retry) are
 * ignored.  Each event with data is handed to the caller's function whole.
 *
 * Bounded: a line, or the data of one event, longer than max_line bytes ends
 * the parse with LLM_SSE_TOO_LONG.  Memory: the line and data buffers grow
 * only as far as the longest line / event needs and are freed by
 * llm_sse_dispose().
 *
 * One parser per stream; one thread at a time.
 */
#ifndef AGD_LLM_SSE_H
#define AGD_LLM_SSE_H

#include <stddef.h>

#include "util/buf.h"

#define LLM_SSE_MAX_LINE (1u << 20) /* 1 MiB: a line or an event's data */
#define LLM_SSE_TOO_LONG (-1)       /* llm_sse_feed()'s answer for an over-long line or event */

/* One event's data (the joined data fields, without the final "\n"; not
 * NUL-terminated; borrowed for the call).  Non-zero stops the parse: feed
 * returns it, so it must be positive (negative is the parser's own). */
typedef int (*llm_sse_event_fn)(void *ud, const char *data, size_t n);

typedef struct llm_sse {
  buf_t line;     /* the current line, without its end */
  buf_t data;     /* the data fields of the current event, each followed by "\n" */
  int have_data;  /* a data field was seen in the current event (it may be empty) */
  int after_cr;   /* the last byte was a CR: an LF right after it ends nothing */
  size_t max_line;
} llm_sse_t;

/* A parser with the bound max_line (0: LLM_SSE_MAX_LINE).  Allocates nothing. */
void llm_sse_init(llm_sse_t *p, size_t max_line);
/* Free the buffers; the parser may be initialised again. */
void llm_sse_dispose(llm_sse_t *p);
/* Parse the next n bytes, calling fn for each complete event.  0, LLM_SSE_TOO_LONG,
 * or the first non-zero answer of fn (the parse stops there). */
int llm_sse_feed(llm_sse_t *p, const char *bytes, size_t n, llm_sse_event_fn fn, void *ud);
/* The stream ended: an unterminated last line counts as a line, and an event
 * with data not yet ended by a blank line is handed on (lenient: some servers
 * end the body right after `data: [DONE]\n`).  Same answers as feed. */
int llm_sse_end(llm_sse_t *p, llm_sse_event_fn fn, void *ud);

#endif
