/* tests/unit/test_approvals.c — core/approvals: the --approve-tools patterns, the
 * destructive flag, and the registry of waiters across threads (decided, expired,
 * cancelled; a decision with no waiter; a preset decision).  No timing assertions:
 * each test waits for the outcome, with expiries far in the future unless the
 * expiry is what is tested. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/approvals.h"
#include "tools/tool.h"
#include "util/timeutil.h"

Test(approvals, patterns) {
  cr_assert(approvals_pattern_match("get_costs", "get_costs"));
  cr_assert_not(approvals_pattern_match("get_costs", "get_cost"));
  cr_assert_not(approvals_pattern_match("get_cost", "get_costs"));
  cr_assert(approvals_pattern_match("analyze_*,github.*", "analyze_costs"));
  cr_assert(approvals_pattern_match("analyze_*,github.*", "github.create_issue"));
  cr_assert(approvals_pattern_match("analyze_*, github.*", "github."));
  cr_assert_not(approvals_pattern_match("analyze_*,github.*", "githubx"));
  cr_assert(approvals_pattern_match(" * ", "anything"));
  cr_assert(approvals_pattern_match("*_costs", "get_costs"));
  cr_assert(approvals_pattern_match("a*b*c", "aXbYbZc"));
  cr_assert_not(approvals_pattern_match("a*b*c", "aXbYbZ"));
  cr_assert_not(approvals_pattern_match("Get_*", "get_costs"), "case-sensitive");
  cr_assert_not(approvals_pattern_match("", "x"));
  cr_assert_not(approvals_pattern_match(",,", "x"));
  cr_assert_not(approvals_pattern_match(NULL, "x"));
  cr_assert(approvals_pattern_match("x,,y", "y"));
  /* many stars against a long non-match ends (no exponential backtracking) */
  char name[4096];
  memset(name, 'a', sizeof name - 1);
  name[sizeof name - 1] = 0;
  cr_assert_not(approvals_pattern_match("*a*a*a*a*a*a*a*a*a*a*b", name));
}

static int noop_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  *result = json_object();
  return 0;
}

Test(approvals, destructive_tools_need_approval) {
  tool_t d = {.name = "wipe_everything", .call = noop_call, .destructive = 1};
  tool_t s = {.name = "read_things", .call = noop_call};
  cr_assert_eq(tool_register(&d), 0);
  cr_assert_eq(tool_register(&s), 0);
  cr_assert(approvals_tool_needs(NULL, "wipe_everything"));
  cr_assert_not(approvals_tool_needs(NULL, "read_things"));
  cr_assert(approvals_tool_needs("read_*", "read_things"));
  cr_assert_not(approvals_tool_needs(NULL, "no_such_tool"));
  tool_registry_reset();
}

typedef struct waiter {
  const char *run, *call;
  double expires_at;
  atomic_int cancel;
  atomic_int registered;
  approval_wait_end_t end;
  int approved, cancel_value;
  char reason[64];
} waiter_t;

static void *wait_thread(void *arg) {
  waiter_t *w = arg;
  approval_wait_t *h = approvals_register(w->run, w->call);
  atomic_store(&w->registered, 1);
  w->end = approvals_wait(h, w->expires_at, &w->cancel, &w->approved, w->reason, sizeof w->reason, &w->cancel_value);
  approvals_unregister(h);
  return NULL;
}

static void until_registered(waiter_t *w) {
  while (!atomic_load(&w->registered)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

Test(approvals, decide_wakes_the_waiter) {
  waiter_t w = {.run = "run_1", .call = "call_1", .expires_at = time_now() + 3600};
  pthread_t t;
  pthread_create(&t, NULL, wait_thread, &w);
  until_registered(&w);
  cr_assert_eq(approvals_decide("run_1", "call_other", 1, NULL), 0, "another call: no waiter");
  cr_assert_eq(approvals_decide("run_2", "call_1", 1, NULL), 0, "another run: no waiter");
  cr_assert_eq(approvals_decide("run_1", "call_1", 0, "not now"), 1);
  pthread_join(t, NULL);
  cr_assert_eq(w.end, APPROVAL_WAIT_DECIDED);
  cr_assert_eq(w.approved, 0);
  cr_assert_str_eq(w.reason, "not now");
  cr_assert_eq(approvals_waiting(), 0);
  cr_assert_eq(approvals_decide("run_1", "call_1", 1, NULL), 0, "nobody waits any more");
}

Test(approvals, expiry_ends_the_wait) {
  waiter_t w = {.run = "run_1", .call = "call_1", .expires_at = time_now() + 0.2};
  pthread_t t;
  pthread_create(&t, NULL, wait_thread, &w);
  pthread_join(t, NULL);
  cr_assert_eq(w.end, APPROVAL_WAIT_EXPIRED);
  /* already past: at once */
  w.expires_at = time_now() - 1;
  atomic_store(&w.registered, 0);
  pthread_create(&t, NULL, wait_thread, &w);
  pthread_join(t, NULL);
  cr_assert_eq(w.end, APPROVAL_WAIT_EXPIRED);
}

Test(approvals, cancel_ends_the_wait) {
  waiter_t w = {.run = "run_1", .call = "call_1", .expires_at = time_now() + 3600};
  pthread_t t;
  pthread_create(&t, NULL, wait_thread, &w);
  until_registered(&w);
  atomic_store(&w.cancel, 2);
  pthread_join(t, NULL);
  cr_assert_eq(w.end, APPROVAL_WAIT_CANCELLED);
  cr_assert_eq(w.cancel_value, 2);
}

Test(approvals, preset_decision_is_taken_at_once) {
  approval_wait_t *h = approvals_register("run_1", "call_1");
  approvals_preset(h, 1, "ok");
  int approved = 0;
  char reason[8];
  cr_assert_eq(approvals_wait(h, time_now() + 3600, NULL, &approved, reason, sizeof reason, NULL),
               APPROVAL_WAIT_DECIDED);
  cr_assert_eq(approved, 1);
  cr_assert_str_eq(reason, "ok");
  cr_assert_eq(approvals_decide("run_1", "call_1", 0, NULL), 0, "decided already: not taken twice");
  approvals_unregister(h);
}

Test(approvals, two_runs_wait_apart) {
  waiter_t a = {.run = "run_a", .call = "call_1", .expires_at = time_now() + 3600};
  waiter_t b = {.run = "run_b", .call = "call_1", .expires_at = time_now() + 3600};
  pthread_t ta, tb;
  pthread_create(&ta, NULL, wait_thread, &a);
  pthread_create(&tb, NULL, wait_thread, &b);
  until_registered(&a);
  until_registered(&b);
  cr_assert_eq(approvals_decide("run_b", "call_1", 1, NULL), 1);
  pthread_join(tb, NULL);
  cr_assert_eq(b.end, APPROVAL_WAIT_DECIDED);
  cr_assert_eq(b.approved, 1);
  cr_assert_eq(approvals_waiting(), 1, "run_a still waits");
  atomic_store(&a.cancel, 1);
  pthread_join(ta, NULL);
  cr_assert_eq(a.end, APPROVAL_WAIT_CANCELLED);
}
