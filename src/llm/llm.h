/* llm/llm.h — the language model seam (DESIGN.md): agents ask for decisions and
 * text here.  Providers: `builtin` (deterministic rules and templates, works
 * offline, exact in tests) and `openai` (OpenAI-compatible chat completions,
 * later).  A provider is a const ops table (STYLE §1).
 *
 * Thread: an llm_t is shared by all run threads; ops must be reentrant.
 */
#ifndef AGD_LLM_LLM_H
#define AGD_LLM_LLM_H

#include <jansson.h>
#include <stddef.h>

typedef struct llm llm_t;

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

typedef struct llm_classification {
  llm_intent_t intent;
  double confidence;    /* 0..1 */
  char reasoning[512];  /* one or two sentences: why */
  char keywords[256];   /* comma-separated matched terms */
} llm_classification_t;

/* Called with each streamed text delta (return non-zero to stop). */
typedef int (*llm_delta_cb)(void *arg, const char *delta, size_t n);

typedef struct llm_ops {
  const char *name;
  /* Classify a user request.  0 or AGD_E*. */
  int (*classify)(llm_t *l, const char *text, llm_classification_t *out);
  /* Write an answer from a prompt and structured facts (JSON object: what the run
   * found).  Text is streamed through cb in small deltas and also returned whole
   * in *text_out (malloc'd).  0 or AGD_E*. */
  int (*compose)(llm_t *l, const char *user_request, const json_t *facts, llm_delta_cb cb, void *cb_arg,
                 char **text_out);
  void (*close)(llm_t *l);
} llm_ops_t;

struct llm {
  const llm_ops_t *ops;
};

/* The builtin provider (no network).  It has no state: every call returns the
 * same static instance and llm_close() on it is a no-op. */
llm_t *llm_builtin_new(void);
/* Open by provider name ("builtin"; "openai" later).  NULL + err when unknown. */
llm_t *llm_open(const char *provider, char *err, size_t cap);
void llm_close(llm_t *l);

/* Streaming helper shared by providers and agents: the length of the next
 * delta of p[0..n): whole words (leading whitespace included) adding up to a
 * sentence or two (≥ 200 bytes unless p is shorter), at most LLM_DELTA_MAX bytes,
 * never cutting a UTF-8 sequence.  0 only when n is 0. */
#define LLM_DELTA_MAX 512
size_t llm_next_delta(const char *p, size_t n);

#endif
