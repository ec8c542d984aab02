/* llm/llm.c — provider selection and helpers shared by every provider (llm.h). */
#include "llm/llm.h"

#include <stdio.h>
#include <string.h>

static const char *const intent_names[LLM_INTENT__COUNT] = {
    [LLM_INTENT_COST] = "cost",
    [LLM_INTENT_LATENCY] = "latency",
    [LLM_INTENT_MODEL_SELECTION] = "model_selection",
    [LLM_INTENT_CACHING] = "caching",
    [LLM_INTENT_USAGE_REPORT] = "usage_report",
    [LLM_INTENT_DATA_UPLOAD_HELP] = "data_upload_help",
    [LLM_INTENT_GENERAL] = "general",
};

const char *llm_intent_name(llm_intent_t i) {
  if ((int)i < 0 || i >= LLM_INTENT__COUNT) return "general";
  return intent_names[i];
}

llm_t *llm_open(const char *provider, char *err, size_t cap) {
  if (!provider || !*provider || strcmp(provider, "builtin") == 0) return llm_builtin_new();
  if (err && cap) {
    if (strcmp(provider, "openai") == 0)
      snprintf(err, cap, "llm provider 'openai' is not available in this build yet");
    else
      snprintf(err, cap, "unknown llm provider '%.64s' (known: builtin, openai)", provider);
  }
  return NULL;
}

void llm_close(llm_t *l) {
  if (l && l->ops && l->ops->close) l->ops->close(l);
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Back off from a cut at p[k] so it does not land inside a UTF-8 sequence. */
static size_t utf8_floor(const char *p, size_t k) {
  size_t j = k;
  while (j > 0 && ((unsigned char)p[j] & 0xC0) == 0x80) j--;
  return j > 0 ? j : k; /* a lone run of continuation bytes: cut anyway */
}

size_t llm_next_delta(const char *p, size_t n) {
  /* Whole words (with their leading whitespace) until the delta has ≥ 200
   * bytes — a sentence or two: the answer still visibly streams, while each
   * delta is an event that is stored and sent to every socket of the user, so
   * word-sized deltas would multiply a run's events several times over — never
   * past LLM_DELTA_MAX; a single longer word is cut. */
  enum { MIN_DELTA = 200 };
  size_t i = 0;
  if (n == 0) return 0;
  for (;;) {
    size_t start = i;
    while (i < n && is_space((unsigned char)p[i])) i++;
    while (i < n && !is_space((unsigned char)p[i])) i++;
    if (i > LLM_DELTA_MAX) {
      if (start > 0) return start; /* this word goes into the next delta */
      return utf8_floor(p, LLM_DELTA_MAX);
    }
    if (i >= n || i >= MIN_DELTA) return i;
  }
}
