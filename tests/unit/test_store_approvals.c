/* tests/unit/test_store_approvals.c — store.h: approvals of tool calls (migration 0007).
 *
 * Real SQLite files in a temporary directory.  Covers create (ownership, duplicates,
 * bad JSON), one decision only (two racing threads: one wins, one conflicts), expiry
 * refusing a late decision but not the "expired" transition, another user's rows
 * invisible, the run's derived "waiting" status, and what a restart resumes or fails.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"

#include "store_harness.h"

static store_t *S;

static void setup(void) {
  store_h_setup("agentd.db");
  char err[256] = "";
  cr_assert_eq(store_open(&S, store_h_url, err, sizeof err), 0, "%s", err);
  store_h_user(S, "usr_a", NULL, NULL, NULL);
  store_h_user(S, "usr_b", NULL, NULL, NULL);
}

static void teardown(void) {
  if (S) store_close(S);
  S = NULL;
  store_h_teardown();
}

TestSuite(store_approvals, .init = setup, .fini = teardown);

/* A thread and a run of user in status; run id into id. */
static void new_run(const char *user, const char *status, char id[ID_MAX]) {
  store_thread_t t;
  cr_assert_eq(store_thread_create(S, user, "t", NULL, &t), 0);
  id_new(id, "run");
  cr_assert_eq(store_run_create(S, user, id, t.id, "supervisor", "hello", 1.0), 0);
  store_thread_dispose(&t);
  if (strcmp(status, "queued") != 0) cr_assert_eq(store_run_set_status(S, user, id, status, 2.0, 0, NULL, NULL), 0);
}

static int add(const char *user, const char *run, const char *call, double expires_at) {
  store_approval_t a = {0};
  snprintf(a.user_id, sizeof a.user_id, "%s", user);
  snprintf(a.run_id, sizeof a.run_id, "%s", run);
  snprintf(a.call_id, sizeof a.call_id, "%s", call);
  snprintf(a.tool_name, sizeof a.tool_name, "%s", "analyze_costs");
  a.parameters = "{\"days\":7}";
  a.checkpoint = "{\"step\":1,\"messages\":[]}";
  a.created_at = 10.0;
  a.expires_at = expires_at;
  return store_approval_create(S, &a);
}

static void run_status(const char *user, const char *run, char out[16]) {
  store_run_t r;
  cr_assert_eq(store_run_get(S, user, run, &r), 0);
  snprintf(out, 16, "%s", r.status);
  store_run_dispose(&r);
}

Test(store_approvals, create_get_and_waiting_status) {
  char run[ID_MAX], st[16];
  new_run("usr_a", "running", run);
  run_status("usr_a", run, st);
  cr_assert_str_eq(st, "running");
  cr_assert_eq(add("usr_a", run, "call_1", 1e12), 0);
  store_approval_t a;
  cr_assert_eq(store_approval_get(S, "usr_a", run, "call_1", &a), 0);
  cr_assert_str_eq(a.status, "pending");
  cr_assert_str_eq(a.tool_name, "analyze_costs");
  cr_assert_str_eq(a.parameters, "{\"days\":7}");
  cr_assert_str_eq(a.checkpoint, "{\"step\":1,\"messages\":[]}");
  cr_assert_null(a.reason);
  cr_assert_eq(a.decided_at, 0);
  store_approval_dispose(&a);
  run_status("usr_a", run, st);
  cr_assert_str_eq(st, "waiting");
  /* an active run still: listed among the user's active runs */
  store_run_list_t l;
  cr_assert_eq(store_run_list(S, "usr_a", NULL, 1, 10, 0, &l), 0);
  cr_assert_eq(l.n, 1);
  cr_assert_str_eq(l.items[0].status, "waiting");
  store_run_list_dispose(&l);
  /* decided: running again */
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "approved", NULL, 20.0, NULL), 0);
  run_status("usr_a", run, st);
  cr_assert_str_eq(st, "running");
}

Test(store_approvals, create_refusals) {
  char run[ID_MAX], other[ID_MAX];
  new_run("usr_a", "running", run);
  new_run("usr_b", "running", other);
  cr_assert_eq(add("usr_a", other, "call_1", 1e12), AGD_ENOT_FOUND, "another user's run");
  cr_assert_eq(add("usr_a", "run_nope", "call_1", 1e12), AGD_ENOT_FOUND);
  cr_assert_eq(add("usr_a", run, "call_1", 1e12), 0);
  cr_assert_eq(add("usr_a", run, "call_1", 1e12), AGD_ECONFLICT, "one row per call");
  cr_assert_eq(add("usr_a", run, "", 1e12), AGD_EBAD_REQUEST);
  store_approval_t a = {0};
  snprintf(a.user_id, sizeof a.user_id, "usr_a");
  snprintf(a.run_id, sizeof a.run_id, "%s", run);
  snprintf(a.call_id, sizeof a.call_id, "call_2");
  snprintf(a.tool_name, sizeof a.tool_name, "t");
  a.created_at = 1, a.expires_at = 2;
  a.parameters = "[1]";
  cr_assert_eq(store_approval_create(S, &a), AGD_EBAD_REQUEST, "parameters must be an object");
  a.parameters = "{";
  cr_assert_eq(store_approval_create(S, &a), AGD_EBAD_REQUEST);
  a.parameters = "{}";
  a.checkpoint = "not json";
  cr_assert_eq(store_approval_create(S, &a), AGD_EBAD_REQUEST);
  a.checkpoint = NULL;
  cr_assert_eq(store_approval_create(S, &a), 0);
}

Test(store_approvals, decide_once_and_other_users) {
  char run[ID_MAX];
  new_run("usr_a", "running", run);
  cr_assert_eq(add("usr_a", run, "call_1", 1e12), 0);
  store_approval_t a;
  cr_assert_eq(store_approval_decide(S, "usr_b", run, "call_1", "approved", NULL, 20.0, &a), AGD_ENOT_FOUND);
  cr_assert_eq(store_approval_get(S, "usr_b", run, "call_1", &a), AGD_ENOT_FOUND);
  store_approval_list_t l;
  cr_assert_eq(store_approval_list(S, "usr_b", run, &l), AGD_ENOT_FOUND);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_x", "approved", NULL, 20.0, &a), AGD_ENOT_FOUND);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "maybe", NULL, 20.0, &a), AGD_EBAD_REQUEST);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "denied", "too costly", 20.0, &a), 0);
  cr_assert_str_eq(a.status, "denied");
  cr_assert_str_eq(a.reason, "too costly");
  cr_assert_eq(a.decided_at, 20.0);
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "approved", NULL, 21.0, &a), AGD_ECONFLICT);
  cr_assert_str_eq(a.status, "denied", "the earlier decision stays");
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "expired", NULL, 22.0, NULL), AGD_ECONFLICT);
  cr_assert_eq(store_approval_list(S, "usr_a", run, &l), 0);
  cr_assert_eq(l.n, 1);
  cr_assert_str_eq(l.items[0].call_id, "call_1");
  store_approval_list_dispose(&l);
}

Test(store_approvals, expiry) {
  char run[ID_MAX];
  new_run("usr_a", "running", run);
  cr_assert_eq(add("usr_a", run, "call_1", 30.0), 0);
  store_approval_t a;
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "approved", NULL, 30.0, &a), AGD_ECONFLICT,
               "too late");
  cr_assert_str_eq(a.status, "pending");
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_1", "expired", "approval_timeout", 31.0, &a), 0);
  cr_assert_str_eq(a.status, "expired");
  store_approval_dispose(&a);
}

typedef struct race {
  const char *run;
  const char *status;
  int rc;
} race_t;

static void *racer(void *arg) {
  race_t *r = arg;
  r->rc = store_approval_decide(S, "usr_a", r->run, "call_1", r->status, NULL, 20.0, NULL);
  return NULL;
}

Test(store_approvals, racing_decisions_one_wins) {
  for (int round = 0; round < 10; round++) {
    char run[ID_MAX];
    new_run("usr_a", "running", run);
    cr_assert_eq(add("usr_a", run, "call_1", 1e12), 0);
    race_t a = {run, "approved", 1}, b = {run, "denied", 1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, racer, &a);
    pthread_create(&tb, NULL, racer, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert((a.rc == 0 && b.rc == AGD_ECONFLICT) || (a.rc == AGD_ECONFLICT && b.rc == 0), "%d %d", a.rc, b.rc);
  }
}

static void collect(const store_approval_t *a, void *arg) {
  char *out = arg;
  strcat(out, a->run_id);
  strcat(out, "/");
  strcat(out, a->call_id);
  strcat(out, ";");
}

Test(store_approvals, restart_resumes_waiting_runs_fails_the_rest) {
  char waiting[ID_MAX], decided[ID_MAX], plain[ID_MAX], queued[ID_MAX], ended[ID_MAX];
  new_run("usr_a", "running", waiting);
  new_run("usr_a", "running", decided);
  new_run("usr_b", "running", plain);
  new_run("usr_b", "queued", queued);
  new_run("usr_a", "completed", ended);
  cr_assert_eq(add("usr_a", waiting, "call_w", 1e12), 0);
  cr_assert_eq(add("usr_a", decided, "call_d", 1e12), 0);
  cr_assert_eq(store_approval_decide(S, "usr_a", decided, "call_d", "approved", NULL, 20.0, NULL), 0);
  cr_assert_eq(add("usr_a", ended, "call_e", 1e12), 0); /* pending but its run is over */
  char got[1024] = "";
  cr_assert_eq(store_approvals_pending(S, collect, got), 0);
  char want[256];
  snprintf(want, sizeof want, "%s/call_w;", waiting);
  cr_assert_str_eq(got, want);
  long n = -1;
  cr_assert_eq(store_runs_fail_inflight(S, 50.0, &n), 0);
  cr_assert_eq(n, 3, "decided, plain, queued");
  char st[16];
  run_status("usr_a", waiting, st);
  cr_assert_str_eq(st, "waiting");
  run_status("usr_a", decided, st);
  cr_assert_str_eq(st, "failed");
  run_status("usr_b", queued, st);
  cr_assert_str_eq(st, "failed");
  run_status("usr_a", ended, st);
  cr_assert_str_eq(st, "completed");
  /* the pending approval of the run that had ended is no longer pending */
  store_approval_t a;
  cr_assert_eq(store_approval_get(S, "usr_a", ended, "call_e", &a), 0);
  cr_assert_str_eq(a.status, "expired");
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_get(S, "usr_a", waiting, "call_w", &a), 0);
  cr_assert_str_eq(a.status, "pending");
  store_approval_dispose(&a);
}

Test(store_approvals, run_end_expires_its_pending_approvals) {
  char run[ID_MAX], other[ID_MAX];
  new_run("usr_a", "running", run);
  new_run("usr_a", "running", other);
  cr_assert_eq(add("usr_a", run, "call_1", 1e12), 0);
  cr_assert_eq(add("usr_a", run, "call_2", 1e12), 0);
  cr_assert_eq(store_approval_decide(S, "usr_a", run, "call_2", "approved", "yes", 20.0, NULL), 0);
  cr_assert_eq(add("usr_a", other, "call_1", 1e12), 0);
  /* a status that is no end leaves them */
  cr_assert_eq(store_run_set_status(S, "usr_a", run, "running", 0, 0, NULL, NULL), 0);
  store_approval_t a;
  cr_assert_eq(store_approval_get(S, "usr_a", run, "call_1", &a), 0);
  cr_assert_str_eq(a.status, "pending");
  store_approval_dispose(&a);
  cr_assert_eq(store_run_set_status(S, "usr_a", run, "cancelled", 0, 30.0, NULL, NULL), 0);
  cr_assert_eq(store_approval_get(S, "usr_a", run, "call_1", &a), 0);
  cr_assert_str_eq(a.status, "expired");
  cr_assert_str_eq(a.reason, "run ended");
  cr_assert_eq(a.decided_at, 30.0);
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_get(S, "usr_a", run, "call_2", &a), 0);
  cr_assert_str_eq(a.status, "approved", "a decision stays");
  store_approval_dispose(&a);
  cr_assert_eq(store_approval_get(S, "usr_a", other, "call_1", &a), 0);
  cr_assert_str_eq(a.status, "pending", "another run's stays");
  store_approval_dispose(&a);
  cr_assert_eq(store_run_set_status(S, "usr_b", other, "failed", 0, 30.0, NULL, NULL), AGD_ENOT_FOUND,
               "another user's run: untouched");
  cr_assert_eq(store_approval_get(S, "usr_a", other, "call_1", &a), 0);
  cr_assert_str_eq(a.status, "pending");
  store_approval_dispose(&a);
}
