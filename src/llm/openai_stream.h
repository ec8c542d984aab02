/* llm/openai_stream.h — the chunk assembler of the openai provider: turns the
 * data of each SSE event of a chat-completions stream (one
 * chat.completion.chunk JSON object, or `[DONE]`) into the llm.h stream
 * callbacks and response.
 *
 * - choices[0].delta.content → text; delta.reasoning_content (llama.cpp) and
 *   delta.reasoning (vLLM) → reasoning.  Pieces are coalesced as llm.h's
 *   coalesce_* comment says: the caller passes the monotonic time with each
 *   event, asks oai_stream_due() when a held piece is due and calls
 *   oai_stream_tick() then.  A piece is a whole JSON string, so a callback
 *   never cuts a UTF-8 character.
 * - delta.tool_calls fragments are joined by `index` (id and name may come in
 *   the first fragment only; a fragment without index that carries an id or a
 *   name is the next call — Ollama sends each call whole that way — and one
 *   with neither continues the last call).  Calls are completed, in index
 *   order, by oai_stream_finish().
 * - finish_reason: stop, length, tool_calls ("function_call", the legacy name,
 *   is tool_calls; a stream with complete calls that says "stop", as Ollama
 *   does, is tool_calls too); usage from any chunk that has it (choices may be
 *   [] or null there).
 * - An `{"error":{…}}` chunk (OpenAI reports a failure mid-stream so) is
 *   LLM_ERR_UNAVAILABLE with its message; data that is not JSON, or JSON not
 *   of the chunk shape, is LLM_ERR_BAD_RESPONSE.
 *
 * One assembler per call attempt; one thread at a time (the openai provider's
 * I/O thread).
 */
#ifndef AGD_LLM_OPENAI_STREAM_H
#define AGD_LLM_OPENAI_STREAM_H

#include <stdint.h>

#include "llm/llm.h"
#include "util/buf.h"

#define OAI_MAX_TOOL_CALLS 128 /* calls in one answer; more is a bad response */

enum { OAI_TEXT = 0, OAI_REASONING = 1 };

typedef struct oai_call {
  int index;
  char *id, *name; /* NULL until a fragment brings them */
  buf_t args;      /* the argument fragments joined */
} oai_call_t;

typedef struct oai_stream {
  const llm_stream_cb_t *cb;
  void *ud;
  int co_bytes, co_ms; /* llm_request_t's coalescing */
  struct {
    buf_t all;        /* every piece so far (the response's text / reasoning) */
    size_t sent;      /* all[0..sent) went to callbacks; the rest is held */
    uint64_t last_ms; /* when the last callback of this kind ran */
    int any;          /* a callback of this kind ran */
  } kind[2];
  oai_call_t *calls;
  size_t n_calls;
  int finish;    /* -1 until a finish_reason came, then an llm_finish_t */
  int done;      /* `data: [DONE]` came */
  int handed_on; /* a callback ran: the call can no longer be retried */
  int stopped;   /* a callback answered non-zero */
  int have_usage;
  long prompt_tokens, completion_tokens;
  llm_error_t error; /* LLM_OK unless the stream was bad */
  char error_message[200];
} oai_stream_t;

void oai_stream_init(oai_stream_t *s, const llm_stream_cb_t *cb, void *ud, int co_bytes, int co_ms);
void oai_stream_dispose(oai_stream_t *s);

/* One SSE event's data, at monotonic time now_ms.  0, or 1 when the
 * call must end: s->error says why (a bad chunk), or s->stopped (a callback
 * asked to stop).  Events after [DONE] are ignored. */
int oai_stream_event(oai_stream_t *s, const char *data, size_t n, uint64_t now_ms);

/* The monotonic time a held piece is due (0: nothing is held). */
uint64_t oai_stream_due(const oai_stream_t *s);
/* Hand on what is due at now_ms.  0, or non-zero when a callback asked to stop. */
int oai_stream_tick(oai_stream_t *s, uint64_t now_ms);

/* Maps a name the model wrote back to the tool's own name (the provider's
 * reversible name mapping); returns name itself when it maps nothing. */
typedef const char *(*oai_name_fn)(void *arg, const char *name);

/* The stream ended well ([DONE] or a finish_reason): hand on what is held,
 * complete the tool calls in index order (arguments parsed as a JSON object,
 * the text kept raw; an empty text is {}), each added to out and given to
 * on_tool_call, then move text and reasoning into out and set its finish and
 * usage.  0, AGD_ECANCELLED when a callback stopped it, or AGD_EINTERNAL. */
int oai_stream_finish(oai_stream_t *s, llm_response_t *out, oai_name_fn decode, void *arg);

/* Move the text, reasoning and usage so far into out (a call that ends in an
 * error or a cancel keeps what was produced). */
void oai_stream_take(oai_stream_t *s, llm_response_t *out);

#endif
