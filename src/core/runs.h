/* core/runs.h — the run executor (SPEC §4; DESIGN.md "Cancellation").
 *
 * A bounded pool of run threads (cfg->max_runs) takes runs from a FIFO queue
 * and runs their top agent (agents/agent.h) with an emitter that turns every
 * step into an Event (core/events).  Per user at most RUNS_PER_USER run at once
 * (over that the start is refused with AGD_ERATE_LIMITED), each run has a
 * deadline (cfg->run_timeout) and a cancel flag checked at every step.
 *
 * A model's tool call that needs the user's approval (SPEC §11, core/approvals.h)
 * makes its run wait (status "waiting": still active, cancellable); runs_init
 * resumes the runs a stopped server left waiting, and runs_shutdown parks
 * waiting runs at once instead of waiting the grace for them.
 *
 * Threads: runs_submit/runs_cancel/runs_watch are called on the loop thread;
 * completions come back to the loop through a queue.  Run threads may block.
 */
#ifndef AGD_CORE_RUNS_H
#define AGD_CORE_RUNS_H

#include <jansson.h>
#include <uv.h>

#include "core/config.h"
#include "llm/llm.h"
#include "store/store.h"

#define RUNS_PER_USER_DEFAULT 10

/* What a new run needs.  Strings are copied. */
typedef struct run_request {
  const char *run_id;    /* already stored (status queued) by the caller */
  const char *user_id;
  const char *thread_id;
  const char *agent;     /* "supervisor", "triage", … */
  const char *input;
  json_t *context;       /* optional; borrowed (copied deeply) */
} run_request_t;

/* Called on the loop thread when a run reaches a final state.  status is
 * "completed" | "failed" | "cancelled"; response (may be NULL) the final answer. */
typedef void (*run_done_cb)(void *arg, const char *run_id, const char *status, const char *response);

int runs_init(uv_loop_t *loop, store_t *store, llm_t *llm, const config_t *cfg);
/* Stop taking runs; let running ones finish for up to grace seconds, then
 * cancel them (they end with agent_stopped); join the threads. */
void runs_shutdown(double grace_s);

/* A place for one run of a user, taken before anything of the run is stored,
 * so a request refused by a limit leaves no message and no queued run behind
 * (SPEC §9).  It counts against the user's concurrent runs from runs_reserve
 * until the run ends or the slot is released. */
typedef struct run run_slot_t;

/* Check every per-user limit (concurrency, then start rate, whose token it
 * takes) and hold a slot.  0 and *slot, AGD_ERATE_LIMITED, or AGD_EUNAVAILABLE
 * (shutting down).  Loop thread. */
int runs_reserve(const char *user_id, run_slot_t **slot);
/* Give back a slot whose run will not be submitted (its rows could not be
 * stored).  NULL is a no-op.  Loop thread. */
void runs_release(run_slot_t *slot);
/* Queue the run of a reserved slot (taken, on failure too).  0, or
 * AGD_EUNAVAILABLE (shutting down).  Loop thread. */
int runs_submit(run_slot_t *slot, const run_request_t *req, run_done_cb done, void *done_arg);
/* Cancel a queued or running run of user_id.  0 (will stop), AGD_ENOT_FOUND
 * (no such active run of that user).  Loop thread. */
int runs_cancel(const char *user_id, const char *run_id);
/* Watch an active run: cb runs when it ends (immediately-never: returns
 * AGD_ENOT_FOUND when the run is not active).  Loop thread. */
int runs_watch(const char *user_id, const char *run_id, run_done_cb cb, void *arg);
/* The latest active run id of user (for stop_agent without run_id), or 0 when none. */
int runs_latest_active(const char *user_id, char *run_id_out, size_t cap);
/* Number of runs queued + running. */
size_t runs_active_count(void);

#endif
