/* core/approvals.h — human-in-the-loop approvals of a model's tool calls (SPEC §11).
 *
 * Two things, no store access of their own (core/runs stores, api/ decides):
 *   - which calls need the user's decision: a tool whose name matches a pattern of
 *     --approve-tools (comma-separated names, `*` matching any run of characters,
 *     e.g. "analyze_*,github.*"), or whose registry entry is marked destructive
 *     (an MCP tool annotated destructiveHint: true);
 *   - the in-process registry of run threads waiting for a decision, keyed by
 *     (run id, call id): a waiter registers, then waits (until the decision, the
 *     approval's expiry, or its run's cancel flag, noticed within 100 ms);
 *     approvals_decide() hands a decision to the waiter of that call and wakes it.
 *
 * The decision itself is stored first (store_approval_decide, pending → decided
 * once), then handed here: the store says who won, this only wakes.  A waiter that
 * registers after a decision was stored (a run resumed after a restart) reads the
 * store once after registering, so no decision is missed in between.
 *
 * Threads: any.  Waiters block (run threads); the rest only takes a mutex.
 */
#ifndef AGD_CORE_APPROVALS_H
#define AGD_CORE_APPROVALS_H

#include <stdatomic.h>
#include <stddef.h>

/* 1 when name matches one of the comma-separated patterns (spaces around each are
 * ignored; `*` matches any run of characters, empty included; other characters
 * match themselves, case-sensitively).  NULL or "" patterns match nothing. */
int approvals_pattern_match(const char *patterns, const char *name);

/* 1 when a model's call of tool_name waits for the user's approval: it matches
 * patterns (--approve-tools), or the registered tool of that name is destructive. */
int approvals_tool_needs(const char *patterns, const char *tool_name);

typedef struct approval_wait approval_wait_t;

/* How a wait ended. */
typedef enum {
  APPROVAL_WAIT_DECIDED = 0, /* *approved and reason are set */
  APPROVAL_WAIT_EXPIRED,     /* expires_at passed first */
  APPROVAL_WAIT_CANCELLED,   /* the cancel flag was set (its value in *cancel_value) */
} approval_wait_end_t;

/* Register as the waiter of (run_id, call_id).  Never fails (aborts on OOM).  A
 * second waiter of the same call gets its own entry; a decision wakes the first. */
approval_wait_t *approvals_register(const char *run_id, const char *call_id);

/* Hand a decision over before waiting (the store already had it: a resumed run). */
void approvals_preset(approval_wait_t *w, int approved, const char *reason);

/* Wait (blocking) for the decision until expires_at (epoch seconds), checking
 * *cancel (may be NULL) every 50 ms.  *approved gets 1/0 and reason (cap bytes,
 * "" when none; may be NULL when cap is 0) the user's reason on DECIDED;
 * *cancel_value (may be NULL) the flag's value on CANCELLED. */
approval_wait_end_t approvals_wait(approval_wait_t *w, double expires_at, atomic_int *cancel, int *approved,
                                   char *reason, size_t cap, int *cancel_value);

/* Drop the registration (after the wait, whatever its end).  NULL is a no-op. */
void approvals_unregister(approval_wait_t *w);

/* Hand the decision of (run_id, call_id) to its waiter and wake it.  Returns 1 when
 * a waiter took it, 0 when none waits in this process (the run is gone, or waits
 * elsewhere; it finds the stored decision when it registers). */
int approvals_decide(const char *run_id, const char *call_id, int approved, const char *reason);

/* Waiters registered now (tests, metrics). */
size_t approvals_waiting(void);

#endif
