/* agents/agent.h — what an agent is and what it may do (SPEC §4, §5; DESIGN.md
 * "The built-in agents").
 *
 * An agent is a named step function.  It runs on a run thread (blocking calls
 * are fine there) and reports every step through its context: thinking, tool
 * calls (which go through the tool registry and emit tool_executing /
 * tool_completed around the call), streamed answer text, and a JSON result.
 * Agents know nothing of sockets or the store: the context's emitter (set by
 * core/runs) turns steps into Events.  The supervisor runs triage, then the
 * agents triage picked, then reporting.
 *
 * Thread: a context belongs to one run thread; agent_cancelled() may be
 * flipped from another thread (the flag is atomic).
 */
#ifndef AGD_AGENTS_AGENT_H
#define AGD_AGENTS_AGENT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/events.h" /* event_type_t, event_type_name() */

typedef struct agent_ctx agent_ctx_t;
typedef struct llm llm_t;

/* How a context reports a step.  `data` is the SPEC §5 data object (reference
 * taken).  Returns 0 or a negative AGD_E* (the run then fails). */
typedef int (*agent_emit_fn)(void *emit_arg, event_type_t type, const char *agent_name, json_t *data);

/* Persist the final answer as the thread's assistant message; fills message_id
 * (ID_MAX bytes).  Provided by core/runs. */
typedef int (*agent_persist_fn)(void *emit_arg, const char *content, char *message_id);

/* Told right before the run's last event (the top agent's agent_completed, or
 * agent_error / agent_stopped) is emitted, with that event's data, so the run's
 * end is recorded before any client can see the event.  Provided by core/runs. */
typedef void (*agent_final_fn)(void *emit_arg, event_type_t type, const json_t *data);

/* ---- approvals (SPEC §11: human in the loop) ----
 * A tool call the model asks for may need the user's decision first.  The
 * agent asks core/runs through the two callbacks below (agent_run_params_t);
 * core/runs keeps the pending approval in the store with the run's checkpoint,
 * so a run whose server restarts while it waits resumes from that point
 * (agent_run_params_t.resume). */
typedef struct agent_approval_req {
  const char *agent_name;   /* the agent asking (approval_required's agent_name) */
  const char *call_id;      /* the model's call id */
  const char *tool_name;    /* the registry's name of the tool */
  const json_t *parameters; /* the call's arguments (an object) */
  const json_t *checkpoint; /* the run's state to resume from (opaque to core/runs; stored as it is) */
  int resumed;              /* 1: asked before a restart (stored, event emitted): only wait */
} agent_approval_req_t;

typedef enum {
  AGENT_APPROVAL_APPROVED = 0,
  AGENT_APPROVAL_DENIED,    /* the user said no: the model gets an error result saying so */
  AGENT_APPROVAL_TIMED_OUT, /* --approval-timeout passed: the run stops, reason "approval_timeout" */
} agent_approval_t;

/* 1 when calls of tool_name wait for the user's approval (--approve-tools, or
 * the tool's destructive hint).  Provided by core/runs. */
typedef int (*agent_needs_approval_fn)(void *emit_arg, const char *tool_name);
/* Ask the user and wait (on the run thread): unless req->resumed, store the
 * pending approval with req->checkpoint, set the run's status to waiting and
 * emit approval_required {"call_id","tool_name","parameters"}; then wait for
 * the decision, the timeout or a cancel; set the status back to running.
 * Returns 0 with *out (and the user's reason, "" when none, in reason[cap]),
 * AGD_ECANCELLED when the run was cancelled while waiting, or another AGD_E*.
 * Provided by core/runs. */
typedef int (*agent_await_approval_fn)(void *emit_arg, const agent_approval_req_t *req, agent_approval_t *out,
                                       char *reason, size_t cap);

/* ---- model usage of a run (SPEC §11) ----
 * agent_run_top observes every llm_chat of its run thread (llm_usage_observe)
 * and sums the calls made to a model: the builtin provider is no model and is
 * not counted (its runs show zeros).  Cost from the price table
 * (workloads_price; 0 for a model it does not list). */
typedef struct agent_usage {
  long prompt_tokens, completion_tokens;
  long llm_calls;
  double cost_usd;
} agent_usage_t;

struct llm_call_usage;
/* One model call of the run (not the builtin provider's), with its cost: core/runs
 * keeps it for --record-usage.  Called on the run thread. */
typedef void (*agent_llm_call_fn)(void *emit_arg, const struct llm_call_usage *u, double cost_usd);

typedef struct agent_ops {
  const char *name;        /* "triage", "data", … */
  const char *description; /* one line for GET /api/agents */
  const char *const *tools; /* NULL-terminated names of the tools it may call (NULL: any) */
  /* Do the work: emit ≥ 1 agent_thinking, call tools, and set *result to a JSON
   * object (reference owned by the caller).  Return 0, AGD_ECANCELLED-like
   * codes via agent_cancelled() checks (return AGD_ECANCELLED when cancelled),
   * or a negative AGD_E* with agent_fail() having said why. */
  int (*run)(agent_ctx_t *ctx, json_t **result);
} agent_ops_t;

/* ---- the registry of agents ---- */

/* The agent named `name` or NULL.  "supervisor" is an agent too. */
const agent_ops_t *agent_find(const char *name);
/* All agents, NULL-terminated, in listing order (supervisor first). */
const agent_ops_t *const *agent_all(void);

/* ---- running an agent ---- */

/* What core/runs gives a run. */
typedef struct agent_run_params {
  const char *run_id, *user_id, *thread_id; /* copied */
  const char *input;                        /* the user's message, copied */
  json_t *context;                          /* optional request "context" object (borrowed, may be NULL) */
  atomic_int *cancel;                       /* set to 1 to cancel (2: server shutdown); checked at every step */
  double deadline;                          /* epoch seconds; 0 = none (past it: cancelled with reason "timeout") */
  llm_t *llm;                               /* provider for decisions and text */
  int step_latency_ms;                       /* simulated model latency before each thinking step and tool call
                                               (--llm-latency-ms); waited in slices that notice cancellation */
  struct store *store;                      /* store_t* for tools that read the caller's data (may be NULL) */
  agent_emit_fn emit;
  agent_persist_fn persist;
  agent_final_fn on_final;                  /* may be NULL */
  agent_needs_approval_fn needs_approval;   /* may be NULL: no call needs approval */
  agent_await_approval_fn await_approval;   /* required when needs_approval is set */
  const json_t *resume;                     /* a checkpoint (agent_approval_req_t) to continue the run from,
                                               after a restart; NULL: start from the beginning (borrowed) */
  int max_steps;                            /* model rounds of the tool loop (--llm-max-steps); <= 0: 8 */
  agent_usage_t *usage;                     /* may be NULL: kept up to date with the run's model usage (from
                                               the checkpoint's on resume), read by core/runs at the end */
  agent_llm_call_fn on_llm_call;            /* may be NULL: told of each model call (--record-usage) */
  void *emit_arg;
} agent_run_params_t;

/* Run agent `ops` as the top of a run (emitting agent_started … agent_completed
 * around it, or agent_error / agent_stopped last).  With p->resume (a checkpoint
 * the approval gate made, for this same top agent) nothing already done is
 * emitted again: the waiting call is asked again (resumed = 1) and the run goes
 * on to its normal end.  The run thread's llm usage observer is this run's
 * while it runs (p->usage, p->on_llm_call).  Returns 0 (completed),
 * AGD_ETIMEOUT (deadline), AGD_ECANCELLED (cancelled) or another AGD_E*
 * (failed).  *result_out (may be NULL) gets the top agent's result,
 * *response_out (may be NULL, malloc'd) the final answer text, *error_out
 * (may be NULL) {"error_message","error_code"} on failure. */
int agent_run_top(const agent_ops_t *ops, const agent_run_params_t *p, json_t **result_out, char **response_out,
                  json_t **error_out);

/* ---- what an agent may do (called from its run function) ---- */

const char *agent_input(const agent_ctx_t *ctx);
/* The input's head, for what events and tool calls carry (agent_started's "message", the
 * classifier's text): the input itself when it has at most AGENT_INPUT_HEAD_MAX bytes,
 * else its first bytes cut at a character boundary and ended with "…" (that many bytes in
 * all).  The classifier scores no more than that anyway (llm/builtin.c). */
#define AGENT_INPUT_HEAD_MAX 16384
const char *agent_input_head(const agent_ctx_t *ctx);
const char *agent_user_id(const agent_ctx_t *ctx);
const char *agent_thread_id(const agent_ctx_t *ctx);
const char *agent_run_id(const agent_ctx_t *ctx);
json_t *agent_request_context(const agent_ctx_t *ctx); /* borrowed; may be NULL */
llm_t *agent_llm(const agent_ctx_t *ctx);
/* Results of the agents that ran before in this run: {"triage":{…},"data":{…}} (borrowed). */
json_t *agent_prior_results(const agent_ctx_t *ctx);
/* 1 when the run was cancelled or passed its deadline: return promptly. */
int agent_cancelled(const agent_ctx_t *ctx);

/* agent_thinking {"reasoning","step_number","status":"thinking"}. */
int agent_think(agent_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Call a tool through the registry: validates args against its schema, emits
 * tool_executing / tool_completed (same call_id, execution_time_ms, status
 * completed|error).  args: reference taken.  *result: new reference (the tool's
 * result, or {"error": …} on failure).  Returns 0 or the tool's AGD_E*. */
int agent_call_tool(agent_ctx_t *ctx, const char *tool_name, json_t *args, json_t **result);
/* partial_result {"content": delta}. */
int agent_partial(agent_ctx_t *ctx, const char *delta);
/* Run another agent as a sub-step (agent_started … agent_completed around it);
 * its result is added to agent_prior_results().  *result borrowed from there. */
int agent_run_sub(agent_ctx_t *ctx, const agent_ops_t *ops, json_t **result);
/* Stream `text` as partial_result deltas (only the part not already sent with
 * agent_partial), persist it as the assistant message and emit agent_response
 * {"content","message_id"}.  Used by the agent that writes the final answer
 * (reporting, or a single agent run on its own).  Called from a sub-agent, the
 * persist + agent_response happen when the top agent finishes, right before
 * its agent_completed (SPEC §5 order).  If the top agent never calls it,
 * agent_run_top composes an answer from the results and responds itself. */
int agent_respond(agent_ctx_t *ctx, const char *text);
/* Record why the agent failed (becomes agent_error's error_message/error_code). */
void agent_fail(agent_ctx_t *ctx, const char *error_code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
