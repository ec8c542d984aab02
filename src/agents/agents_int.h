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

/* ---- the model loop (loop.c; SPEC §11) and what it needs of the context ---- */

/* Sub-agent levels a checkpoint records (agent_run_sub nests at most this deep). */
#define AGENT__DEPTH_MAX 8

/* agent_call_tool with more say: call_id (NULL/"": a new one) is the model's call
 * id; any_tool: the current agent's tool list does not apply (the model may call
 * every registry tool); refused (reference taken, NULL: run it): the call is not
 * run, tool_completed says status error with this result (an unknown tool, bad
 * arguments, a call the user denied).  Every call is recorded (agent__calls). */
int agent__call_tool_ex(agent_ctx_t *ctx, const char *tool_name, json_t *args, const char *call_id, int any_tool,
                        json_t *refused, json_t **result);
/* This run's tool calls so far, oldest first: [{"name","call_id","args","result"}] (borrowed). */
json_t *agent__calls(const agent_ctx_t *ctx);
const agent_run_params_t *agent__params(const agent_ctx_t *ctx);
/* The name of the agent running now. */
const char *agent__agent_name(const agent_ctx_t *ctx);
/* The first emit failure (0: none): the run fails with it. */
int agent__emit_failed(const agent_ctx_t *ctx);
/* The partial_result text streamed since the last agent_respond. */
const char *agent__streamed(const agent_ctx_t *ctx, size_t *n);
/* Stop the run with agent_stopped {"reason": reason} (e.g. "approval_timeout"):
 * agent_cancelled() is 1 from now on. */
void agent__stop(agent_ctx_t *ctx, const char *reason);
/* The run's checkpoint around the loop's own state `loop` (taken): the agent
 * stack with step numbers, prior results, text streamed, usage so far. */
json_t *agent__checkpoint(agent_ctx_t *ctx, json_t *loop);

/* The tool-using model loop: answers the request with the model (history,
 * the run's tool calls, every registry tool), streams and persists the answer
 * (agent_respond).  *result gets the reporting result shape.  0 or AGD_E*
 * (agent_fail said why). */
int agents__loop_run(agent_ctx_t *ctx, json_t **result);
/* The same, continued from a checkpoint's "loop" (the pending call first,
 * asked again with resumed = 1). */
int agents__loop_resume(agent_ctx_t *ctx, const json_t *loop, json_t **result);
/* The top agent's result after a resumed sub-agent ended (supervisor: from the
 * prior results, as supervisor_run makes it).  New reference. */
json_t *agents__resumed_result(agent_ctx_t *ctx, const agent_ops_t *top);
/* The reporting result {"summary","sections","word_count"} of an answer. */
json_t *reporting__result(agent_ctx_t *ctx, const char *text);
/* Stream a provider's text delta as partial_result events (recorded as
 * streamed); 1 to stop the provider. */
int reporting__on_delta(void *ctx, const char *delta, size_t n);

#endif
