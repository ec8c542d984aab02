/* llm/llm.h — the language-model seam (DESIGN.md): a chat model with tools,
 * streaming and cancellation.  Agents (and the classify_request tool) call
 * llm_chat() and the helpers below, never a provider directly, so a provider
 * plugs in without touching them.
 *
 * Providers: `builtin` (deterministic rules and markdown templates, works
 * offline, exact in tests; builtin.c) and `openai` (OpenAI-compatible chat
 * completions over libcurl, streamed; openai.c with sse.c and
 * openai_stream.c).  A provider is
 * a const vtable (llm_provider_t, STYLE §1) plus an instance (llm_t) that a
 * provider with state embeds first in its own struct.
 *
 * The shape is the OpenAI chat-completions one: messages with roles
 * system/user/assistant/tool, function tools with a JSON-schema `parameters`,
 * tool_choice, streamed text / reasoning deltas, complete tool calls, a
 * finish reason and token usage.
 *
 * Thread: an llm_t is shared by all run threads and tool calls; chat() must be
 * reentrant.  One chat() call blocks its caller until it is over.  Its stream
 * callbacks and cancel probe run on the provider's I/O thread (openai: one
 * thread, "agentd-llm", drives every call of the process) or on the caller's
 * thread (builtin), never two at once for one call, always before chat()
 * returns; the caller is blocked in chat() meanwhile, so its state is safe to
 * touch from them.  They must not block (a slow callback delays every other
 * call's stream) and must not rely on thread-local state of the caller (the
 * usage observer below is called on the caller's thread, by llm_chat).
 * llm_close() may be called with calls in flight: they end cancelled, and it
 * returns once every caller has left chat(); no chat() may start after it.
 */
#ifndef AGD_LLM_LLM_H
#define AGD_LLM_LLM_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct llm llm_t;                   /* an open provider (instance) */
typedef struct llm_provider llm_provider_t; /* its vtable */

/* ---- a request ---- */

typedef enum { LLM_ROLE_SYSTEM = 0, LLM_ROLE_USER, LLM_ROLE_ASSISTANT, LLM_ROLE_TOOL, LLM_ROLE__COUNT } llm_role_t;
const char *llm_role_name(llm_role_t r); /* "system", "user", "assistant", "tool"; NULL when out of range */

/* One tool call of the model.  In a response (llm_response_t.tool_calls) every
 * field is owned by the response (freed by llm_response_dispose); in a
 * request (an assistant message's earlier calls) and in the on_tool_call
 * callback everything is borrowed. */
typedef struct llm_tool_call {
  char *id;            /* the model's call id ("call_…"); a tool message answers it by this id */
  char *name;          /* the function's name */
  json_t *arguments;   /* the arguments as a JSON object; NULL when the model's text is not one */
  char *arguments_raw; /* the arguments as the model wrote them (JSON text) */
} llm_tool_call_t;

/* One message of the conversation.  Everything is borrowed for the call. */
typedef struct llm_message {
  llm_role_t role;
  const char *content;               /* text; NULL only for an assistant turn made of tool calls, or with
                                        content_json */
  const json_t *content_json;        /* optional: the content as a JSON value (data the model is to read, such
                                        as the facts a report is written from); when set, content is ignored,
                                        a provider that sends text sends llm_message_text()'s, and one that
                                        reads structure takes it as it is (no text round trip per run) */
  const char *tool_call_id;          /* LLM_ROLE_TOOL: the call this result answers (required) */
  const llm_tool_call_t *tool_calls; /* LLM_ROLE_ASSISTANT: the calls it made (may be NULL) */
  size_t n_tool_calls;
} llm_message_t;

/* A function the model may call.  Borrowed for the call. */
typedef struct llm_tool {
  const char *name;         /* the registry's name: 1-128 bytes, no control bytes or spaces; a provider
                               whose API takes fewer names (OpenAI: [A-Za-z0-9_-]{1,64}, while MCP tools
                               are `server.tool`) maps it reversibly, so calls come back under this name */
  const char *description;  /* may be NULL */
  const json_t *parameters; /* JSON Schema of the arguments: an object */
} llm_tool_t;

typedef enum {
  LLM_TOOL_CHOICE_AUTO = 0, /* the model decides (the default) */
  LLM_TOOL_CHOICE_NONE,     /* answer with text only */
  LLM_TOOL_CHOICE_REQUIRED, /* call at least one of the tools */
  LLM_TOOL_CHOICE_FUNCTION, /* call the tool named tool_choice_name */
} llm_tool_choice_t;

/* What a caller asks.  Every pointer is borrowed for the duration of llm_chat(). */
typedef struct llm_request {
  const llm_message_t *messages; /* oldest first; at least one */
  size_t n_messages;
  const llm_tool_t *tools; /* may be NULL when n_tools is 0 */
  size_t n_tools;
  llm_tool_choice_t tool_choice;
  const char *tool_choice_name; /* LLM_TOOL_CHOICE_FUNCTION: one of tools[] */
  int max_output_tokens;        /* 0: the provider's default */
  double temperature;           /* 0..2; a zeroed request asks for 0 (most deterministic); < 0: the server's default */
  /* Cancellation: the provider polls llm_request_cancelled() between chunks
   * of its work (builtin: between streamed deltas; openai: at each chunk and
   * in its I/O thread's scan of all calls, at least every 50 ms) and then
   * ends with LLM_FINISH_CANCELLED.  Either or both may be set; the probe
   * must be cheap and thread-safe (it may run on another thread). */
  const atomic_int *cancel;            /* non-zero: stop (a run's cancel flag); may be NULL */
  int (*cancelled)(const void *arg);   /* 1: stop (e.g. a run's cancel flag or deadline); may be NULL */
  const void *cancel_arg;
  double deadline; /* epoch seconds, 0: none.  Past it the call ends with LLM_ERR_TIMEOUT */
  /* Coalescing of streamed deltas (SPEC §11: at most one event per 25 ms or
   * 256 bytes of a run): a piece that arrives coalesce_ms or more after the
   * previous callback of its kind (text or reasoning) is handed on at once;
   * one that arrives sooner is held, and what is held goes out in one
   * callback once coalesce_bytes are held or coalesce_ms have passed since
   * that previous callback (the provider wakes for it), and at the end of the
   * stream, before on_tool_call and before chat returns.  So a slow stream
   * adds no delay and a fast one is rate-limited.  0 and 0: each piece as it
   * arrives.  The builtin provider's deltas are whole sentences already and
   * ignore this. */
  int coalesce_bytes;
  int coalesce_ms;
} llm_request_t;

/* 1 when the request's cancel flag or probe says stop. */
int llm_request_cancelled(const llm_request_t *req);

/* ---- streaming ---- */

/* Called while chat() runs, on the provider's I/O thread or the caller's (see
 * "Thread" above), one at a time, never after chat() returned; any may be
 * NULL.  Data is borrowed for the callback.  Return non-zero to stop: the call ends with
 * LLM_FINISH_CANCELLED (what was produced so far stays in the response). */
typedef struct llm_stream_cb {
  /* The next piece of answer text (UTF-8, never cut inside a character; n > 0). */
  int (*on_text_delta)(void *ud, const char *delta, size_t n);
  /* The next piece of the model's reasoning ("thinking"), when it shows it. */
  int (*on_reasoning_delta)(void *ud, const char *delta, size_t n);
  /* A tool call, once complete (all argument fragments joined).  It is also
   * in the response; the caller runs it (or asks for approval) after chat()
   * returns, and sends the result back in a LLM_ROLE_TOOL message. */
  int (*on_tool_call)(void *ud, const llm_tool_call_t *call);
} llm_stream_cb_t;

/* ---- the response ---- */

typedef enum {
  LLM_FINISH_STOP = 0,   /* the model answered */
  LLM_FINISH_TOOL_CALLS, /* the model asks for tool calls (response.tool_calls) */
  LLM_FINISH_LENGTH,     /* cut at max_output_tokens: the text is partial */
  LLM_FINISH_CANCELLED,  /* the cancel flag/probe, or a callback, stopped it */
  LLM_FINISH_ERROR,      /* response.error says why */
  LLM_FINISH__COUNT
} llm_finish_t;
const char *llm_finish_name(llm_finish_t f); /* "stop", "tool_calls", "length", "cancelled", "error" */

typedef enum {
  LLM_OK = 0,
  LLM_ERR_BAD_REQUEST,  /* the request is malformed (no messages, unknown tool_choice_name, …) */
  LLM_ERR_BAD_RESPONSE, /* the server's answer could not be understood (malformed stream) */
  LLM_ERR_TIMEOUT,      /* the deadline passed, or the server did not answer in time */
  LLM_ERR_UNAVAILABLE,  /* the server could not be reached or failed (5xx) */
  LLM_ERR_RATE_LIMITED, /* 429 after the retries */
  LLM_ERR_INTERNAL,     /* our bug or out of resources */
  LLM_ERR__COUNT
} llm_error_t;
/* The SPEC §11 error_code for agent_error: "LLM_BAD_REQUEST", "LLM_BAD_RESPONSE",
 * "LLM_TIMEOUT", "LLM_UNAVAILABLE", "LLM_RATE_LIMITED", "LLM_INTERNAL"; NULL for LLM_OK. */
const char *llm_error_code(llm_error_t e);

/* Filled by llm_chat(); the caller owns it and frees it with
 * llm_response_dispose() whatever chat returned.  Strings are malloc'd. */
typedef struct llm_response {
  char *text;      /* the answer: the text deltas joined ("" when none; never NULL after llm_chat) */
  char *reasoning; /* the reasoning deltas joined ("" when none; never NULL after llm_chat) */
  llm_tool_call_t *tool_calls; /* the complete tool calls, in the model's order */
  size_t n_tool_calls;
  llm_finish_t finish;
  long prompt_tokens, completion_tokens; /* usage as the server reports it (builtin: 0, it is no model) */
  llm_error_t error;                     /* LLM_OK unless finish is LLM_FINISH_ERROR */
  char error_message[256];               /* one line for agent_error's error_message */
} llm_response_t;

void llm_response_dispose(llm_response_t *r);

/* The message's content as text (malloc'd; the caller frees): content_json as
 * compact JSON when set, else a copy of content; NULL when it has neither.
 * Any thread. */
char *llm_message_text(const llm_message_t *m);

/* ---- calling a provider ---- */

/* Run one chat turn: check the request (LLM_ERR_BAD_REQUEST when malformed:
 * no messages, a message without content, a tool message without
 * tool_call_id, a tool without name or parameters object, tool_choice_name
 * not among the tools), then let the provider answer, streaming through cb
 * (may be NULL) with ud.  *out is initialised here (the caller's old
 * contents are not freed).  Returns 0 when finish is stop, tool_calls or
 * length; AGD_ECANCELLED when cancelled; otherwise the AGD_E* of the error:
 * AGD_EBAD_REQUEST, AGD_ETIMEOUT, AGD_EUNAVAILABLE (the server is down, rate
 * limits us or answers garbage: a dependency failing), AGD_EINTERNAL. */
int llm_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out);

/* 1 when name is [A-Za-z0-9_-]{1,64}, OpenAI's rule for a function name: a
 * provider sends such a name as it is and maps any other (llm/openai.c). */
int llm_tool_name_wire_safe(const char *name);

/* The provider's name ("builtin", "openai"). */
const char *llm_name(const llm_t *l);
/* The model it asks ("builtin" for the builtin provider; $OPENAI_MODEL for openai). */
const char *llm_model(const llm_t *l);

/* ---- usage accounting ----
 * Every llm_chat() reports the call it made to the calling thread's observer,
 * if one is set: a run sets one for its whole duration (on its run thread), so
 * the calls its tools make (classify_request) count too.  The observer runs on
 * that thread, after the provider returned. */
typedef struct llm_call_usage {
  const char *provider, *model;          /* llm_name(), llm_model() */
  double started_at;                     /* epoch seconds */
  double latency_ms;                     /* the whole call, retries included */
  long prompt_tokens, completion_tokens; /* as the server reported them (0 when it did not) */
  llm_finish_t finish;
  llm_error_t error;
} llm_call_usage_t;
typedef void (*llm_usage_fn)(void *arg, const llm_call_usage_t *u);
/* Set (fn non-NULL) or clear (fn NULL) the calling thread's observer. */
void llm_usage_observe(llm_usage_fn fn, void *arg);

/* ---- providers ---- */

/* The vtable of one provider kind (const, static storage). */
struct llm_provider {
  const char *name;
  /* Answer req (already checked by llm_chat) into out (zeroed by llm_chat):
   * stream through cb (NULL members skipped), poll llm_request_cancelled()
   * and the deadline, add complete tool calls with llm_response_add_tool_call(),
   * set out->text / reasoning / finish / usage, or fail with
   * llm_response_fail().  Returns 0 or the AGD_E* matching out->finish. */
  int (*chat)(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out);
  /* Free the instance (llm_close); NULL when there is nothing to free. */
  void (*destroy)(llm_t *l);
  /* The model name (llm_model); NULL: the provider's name. */
  const char *(*model)(const llm_t *l);
};

/* An open provider: a provider with state (base URL, key, model, curl
 * handles) embeds this first in its own struct.  Fields are the provider's. */
struct llm {
  const llm_provider_t *provider;
};

/* For providers: record an error (finish = LLM_FINISH_ERROR) with a one-line
 * message; returns the AGD_E* llm_chat returns for it. */
int llm_response_fail(llm_response_t *out, llm_error_t e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* For providers: append a complete tool call to out (strings copied;
 * arguments: reference taken, may be NULL; arguments_raw: NULL means the
 * compact dump of arguments).  0 or AGD_EINTERNAL. */
int llm_response_add_tool_call(llm_response_t *out, const char *id, const char *name, json_t *arguments,
                               const char *arguments_raw);

/* The builtin provider (no network).  It has no state: every call returns the
 * same static instance and llm_close() on it is a no-op. */
llm_t *llm_builtin_new(void);

/* What the openai provider needs (borrowed by llm_open, which copies it).
 * NULL or 0 fields take the defaults below. */
#define LLM_OPENAI_DEFAULT_BASE_URL "https://api.openai.com/v1"
#define LLM_OPENAI_DEFAULT_MODEL "gpt-4o-mini"
#define LLM_OPENAI_DEFAULT_MAX_OUTPUT ((size_t)4 << 20)
typedef struct llm_options {
  const char *base_url;    /* $OPENAI_BASE_URL: http(s)://host[:port]/path; /chat/completions is appended */
  const char *api_key;     /* $OPENAI_API_KEY: sent as a Bearer token; NULL or "": no Authorization */
  const char *model;       /* $OPENAI_MODEL */
  double timeout_s;        /* --llm-timeout: one call, retries included; 0: 60 s */
  size_t max_output_bytes; /* --llm-max-output: streamed bytes of one call; 0: 4 MiB */
} llm_options_t;

/* The openai provider (openai.c): any OpenAI-compatible chat-completions
 * server.  NULL + one line in err when the options are bad (a base URL that
 * is not http(s)://…). */
llm_t *llm_openai_new(const llm_options_t *opt, char *err, size_t cap);

/* Open by provider name: "builtin" (NULL means builtin; opt is ignored) or
 * "openai" (with opt, which may be NULL for every default).  NULL + one line
 * in err for an unknown name or bad options: bad configuration (SPEC §10). */
llm_t *llm_open(const char *provider, const llm_options_t *opt, char *err, size_t cap);
void llm_close(llm_t *l);

/* ---- classification (triage, the classify_request tool) ---- */

/* Request categories triage distinguishes (DESIGN.md "triage"). */
typedef enum {
  LLM_INTENT_COST = 0,
  LLM_INTENT_LATENCY,
  LLM_INTENT_MODEL_SELECTION,
  LLM_INTENT_CACHING,
  LLM_INTENT_USAGE_REPORT,
  LLM_INTENT_DATA_UPLOAD_HELP,
  LLM_INTENT_GENERAL,
  LLM_INTENT__COUNT
} llm_intent_t;

const char *llm_intent_name(llm_intent_t i); /* "cost", "latency", "model_selection", … */
/* The intent named s; -1 when s names none. */
int llm_intent_parse(const char *s);

typedef struct llm_classification {
  llm_intent_t intent;
  double confidence;    /* 0..1 */
  char reasoning[512];  /* one or two sentences: why */
  char keywords[256];   /* comma-separated matched terms */
} llm_classification_t;

/* The function a classification request offers (and forces with
 * tool_choice): the model answers by calling it with
 * {"intent","confidence","reasoning","keywords":[…]}. */
#define LLM_CLASSIFY_FN "classify_intent"

/* Classify a user request through llm_chat: a system prompt, the text as the
 * user message, and LLM_CLASSIFY_FN forced.  cancelled/cancel_arg (may be
 * NULL) as in llm_request_t.  0, AGD_EBAD_REQUEST (text NULL), or the
 * chat's error; a model that does not call the function with a known intent
 * is a bad response (AGD_EUNAVAILABLE). */
int llm_classify(llm_t *l, const char *text, int (*cancelled)(const void *arg), const void *cancel_arg,
                 llm_classification_t *out);

/* ---- streaming helper shared by providers and agents ---- */

/* The length of the next delta of p[0..n): whole words (leading whitespace
 * included) adding up to a sentence or two (≥ 200 bytes unless p is shorter),
 * at most LLM_DELTA_MAX bytes, never cutting a UTF-8 sequence.  0 only when n
 * is 0. */
#define LLM_DELTA_MAX 512
size_t llm_next_delta(const char *p, size_t n);

#endif
