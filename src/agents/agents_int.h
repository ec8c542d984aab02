/* agents/agents_int.h — private to the .c files of src/agents/: the built-in agents' ops
 * tables and the helpers they share.  Not for other modules (use agent.h).
 */
#ifndef AGD_AGENTS_AGENTS_INT_H
#define AGD_AGENTS_AGENTS_INT_H

#include "agents/agent.h"

extern const agent_ops_t agent_supervisor_ops;
extern const agent_ops_t agent_triage_ops;
extern const agent_ops_t agent_reporting_ops;
extern const agent_ops_t agent_data_ops;
extern const agent_ops_t agent_optimization_ops;
extern const agent_ops_t agent_actions_ops;
extern const agent_ops_t agent_data_helper_ops;

/* Records an analysis needs before its numbers mean something (triage routes
 * to data_helper below it); a usage report needs only one. */
#define AGENTS_MIN_RECORDS 50

/* The run's store (store_t*; NULL when the run has none, e.g. unit tests). */
struct store *agent__store(const agent_ctx_t *ctx);

/* Call a tool whose failure the agent can live with: 0 with *result (new
 * reference) on success; 1 when the tool failed (*result holds {"error"}, the
 * agent goes on without it); AGD_ECANCELLED when the run was cancelled (or
 * an event could not be delivered: that error), *result NULL then. */
int agent__try_tool(agent_ctx_t *ctx, const char *tool_name, json_t *args, json_t **result);

/* The analysis window from the request context {"from","to"} (epoch seconds)
 * as tool arguments: a new object, empty when the context has none. */
json_t *agent__window_args(agent_ctx_t *ctx);

/* The first member of o found along one of `paths`, '|'-separated
 * alternatives of '.'-separated keys ("totals.calls|calls"); borrowed, NULL
 * when none exists.  Reads analysis results whose optional parts may be absent. */
json_t *agent__pick(const json_t *o, const char *paths);
/* agent__pick as a number (0 when absent or not a number). */
double agent__pick_num(const json_t *o, const char *paths);

/* A JSON number rounded to `digits` decimals (money: 2 or 4). */
json_t *agent__money(double v, int digits);

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
