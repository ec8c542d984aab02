/* agents/agents_int.h — private to the .c files of src/agents/: the built-in agents' ops
 * tables and the helpers they share.  Not for other modules (use agent.h).
 */
#ifndef AGD_AGENTS_AGENTS_INT_H
#define AGD_AGENTS_AGENTS_INT_H

#include "agents/agent.h"

extern const agent_ops_t agent_supervisor_ops;
extern const agent_ops_t agent_triage_ops;
extern const agent_ops_t agent_reporting_ops;

/* The agents that analyse a request of this intent, in run order, whether or
 * not they are registered (NULL-terminated; empty for unknown intents). */
const char *const *triage_chain(const char *intent);

/* Write the final answer from agent_prior_results() (+ the request): compose
 * it with the llm, stream it as partial_result, persist it and emit
 * agent_response (agent_respond).  *result (may be NULL) gets
 * {"summary","sections","word_count"}.  0 or AGD_E*.  Used by reporting and
 * by agent_run_top when the top agent did not answer itself. */
int reporting_answer(agent_ctx_t *ctx, json_t **result);

/* Stream text[0..n) as partial_result deltas without recording it as streamed. */
int agent__partial_n(agent_ctx_t *ctx, const char *p, size_t n);

#endif
