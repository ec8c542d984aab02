/* api/approvals_api.c — see approvals_api.h (docs/protocol.md "Approvals").
 *
 * A decision is one job on the worker pool: store it (store_approval_decide: pending →
 * approved|denied once, so of two racing decisions one gets 200 and the other 409),
 * then wake the run thread waiting for it in this process (core/approvals).  The
 * answer is the approval as stored:
 *   {"run_id","call_id","tool_name","parameters","status","approved","reason",
 *    "created_at","expires_at","decided_at"}
 * ("approved" true/false once decided by the user, null while pending or expired).
 */
#include "api/approvals_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/job.h"
#include "api/router.h"
#include "api/ws_api.h"
#include "api/ws_frames.h"
#include "core/approvals.h"
#include "store/store.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

/* ---- shapes ---- */

static json_t *approval_json(const store_approval_t *a) {
  json_t *params = json_loads(a->parameters ? a->parameters : "{}", 0, NULL);
  json_t *o = json_object();
  json_object_set_new(o, "run_id", json_string(a->run_id));
  json_object_set_new(o, "call_id", json_string(a->call_id));
  json_object_set_new(o, "tool_name", json_string(a->tool_name));
  json_object_set_new(o, "parameters", params ? params : json_object());
  json_object_set_new(o, "status", json_string(a->status));
  json_object_set_new(o, "approved", strcmp(a->status, "approved") == 0 ? json_true()
                                     : strcmp(a->status, "denied") == 0 ? json_false()
                                                                         : json_null());
  json_object_set_new(o, "reason", a->reason ? json_string(a->reason) : json_null());
  json_object_set_new(o, "created_at", json_real(a->created_at));
  json_object_set_new(o, "expires_at", json_real(a->expires_at));
  json_object_set_new(o, "decided_at", a->decided_at > 0 ? json_real(a->decided_at) : json_null());
  return o;
}

/* ---- the decision, on a worker ---- */

typedef struct decide_job {
  char user_id[ID_MAX], run_id[ID_MAX], call_id[STORE_CALL_ID_MAX];
  int approved;
  char *reason;          /* NULL: none */
  store_approval_t row;  /* the approval afterwards (or the earlier decision on 409) */
  int run_exists;        /* on 404: whether it was the call or the run that is unknown */
  uint64_t conn_id;      /* WS: the socket to answer (0: a REST request) */
  json_t *reply_to;      /* WS: the frame's id */
} decide_job_t;

static int decide_work(void *arg) {
  decide_job_t *j = arg;
  int rc = store_approval_decide(g_app->store, j->user_id, j->run_id, j->call_id,
                                 j->approved ? "approved" : "denied", j->reason, time_now(), &j->row);
  if (rc == 0) {
    /* Stored first, then woken: a waiter that registers later reads the store. */
    approvals_decide(j->run_id, j->call_id, j->approved, j->reason);
  } else if (rc == AGD_ENOT_FOUND) {
    store_run_t run;
    j->run_exists = store_run_get(g_app->store, j->user_id, j->run_id, &run) == 0;
    store_run_dispose(&run);
  }
  return rc;
}

/* What a failed decision says (static strings). */
static const char *decide_error(const decide_job_t *j, int rc) {
  if (rc == AGD_ENOT_FOUND) return j->run_exists ? "approval not found" : "run not found";
  if (rc == AGD_ECONFLICT)
    return strcmp(j->row.status, "pending") == 0 || strcmp(j->row.status, "expired") == 0
               ? "approval expired"
               : "approval already decided";
  return NULL;
}

static void decide_free(decide_job_t *j) {
  free(j->reason);
  json_decref(j->reply_to);
  store_approval_dispose(&j->row);
}

static void decide_done_http(http_req_t *r, void *arg, int rc) {
  decide_job_t *j = arg;
  if (rc == 0) http_respond_json(r, 200, approval_json(&j->row));
  else http_respond_error(r, rc, decide_error(j, rc), NULL);
  decide_free(j);
}

static void decide_done_ws(http_req_t *unused, void *arg, int rc) {
  decide_job_t *j = arg;
  conn_t *c = server_conn_lookup(g_app->srv, j->conn_id);
  if (c) {
    if (rc == 0) {
      json_t *o = json_pack("{s:s,s:o,s:f}", "type", "approval_recorded", "data", approval_json(&j->row),
                            "timestamp", time_now());
      if (j->reply_to) json_object_set(o, "reply_to", j->reply_to);
      api_ws_send_json(c, o);
    } else {
      const char *msg = decide_error(j, rc);
      api_ws_send_error(c, agd_err_code(rc), msg ? msg : "could not record the decision", j->reply_to);
    }
  }
  decide_free(j);
}

/* ---- the body, for both REST and WS ---- */

/* Check {"call_id","approved","reason"?} into j.  0, or a 422 with *field and *why
 * (static strings); AGD_ENOT_FOUND for a call id too long to exist. */
static int decide_parse(const json_t *p, decide_job_t *j, const char **field, const char **why) {
  const char *call_id, *reason;
  int rc = jsonx_get_cstr(p, "call_id", &call_id);
  if (rc || !call_id || !call_id[0]) {
    *field = "call_id";
    *why = rc ? jsonx_cstr_why(rc) : "required: the call_id of the approval_required event";
    return AGD_EVALIDATION;
  }
  json_t *approved = json_object_get(p, "approved");
  if (!json_is_boolean(approved)) {
    *field = "approved";
    *why = "required: true or false";
    return AGD_EVALIDATION;
  }
  rc = jsonx_get_cstr(p, "reason", &reason);
  if (rc) {
    *field = "reason";
    *why = jsonx_cstr_why(rc);
    return AGD_EVALIDATION;
  }
  if (reason && strlen(reason) >= STORE_REASON_MAX) {
    *field = "reason";
    *why = "too long: at most 4095 bytes";
    return AGD_EVALIDATION;
  }
  if (strlen(call_id) >= STORE_CALL_ID_MAX) return AGD_ENOT_FOUND;
  snprintf(j->call_id, sizeof(j->call_id), "%s", call_id);
  j->approved = json_is_true(approved);
  if (reason) {
    j->reason = strdup(reason);
    if (!j->reason) abort();
  }
  return 0;
}

static int id_ok(const char *id) { return id && id[0] && strlen(id) < ID_MAX; }

/* ---- REST ---- */

static void h_decide(http_req_t *r, route_ctx_t *ctx) {
  const char *run_id = route_param(ctx, "id");
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  if (!json_is_object(body)) {
    json_decref(body);
    router_respond_validation(r, "body", "must be a JSON object");
    return;
  }
  decide_job_t *j = job_new(sizeof(*j));
  const char *field = NULL, *why = NULL;
  int rc = decide_parse(body, j, &field, &why);
  json_decref(body);
  if (rc == 0 && !id_ok(run_id)) rc = AGD_ENOT_FOUND;
  if (rc) {
    decide_free(j);
    job_discard(j);
    if (rc == AGD_EVALIDATION) router_respond_validation(r, field, why);
    else http_respond_error(r, rc, "approval not found", NULL);
    return;
  }
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
  job_run(r, j, decide_work, decide_done_http);
}

typedef struct list_job {
  char user_id[ID_MAX], run_id[ID_MAX];
  store_approval_list_t list;
} list_job_t;

static int list_work(void *arg) {
  list_job_t *j = arg;
  return store_approval_list(g_app->store, j->user_id, j->run_id, &j->list);
}

static void list_done(http_req_t *r, void *arg, int rc) {
  list_job_t *j = arg;
  if (rc != 0) {
    http_respond_error(r, rc, rc == AGD_ENOT_FOUND ? "run not found" : NULL, NULL);
  } else {
    json_t *a = json_array();
    for (size_t i = 0; i < j->list.n; i++) json_array_append_new(a, approval_json(&j->list.items[i]));
    http_respond_json(r, 200, json_pack("{s:s,s:o,s:I,s:b}", "run_id", j->run_id, "approvals", a, "total",
                                        (json_int_t)j->list.n, "has_more", 0));
  }
  store_approval_list_dispose(&j->list);
}

static void h_list(http_req_t *r, route_ctx_t *ctx) {
  const char *run_id = route_param(ctx, "id");
  if (!id_ok(run_id)) {
    http_respond_error(r, AGD_ENOT_FOUND, "run not found", NULL);
    return;
  }
  list_job_t *j = job_new(sizeof(*j));
  snprintf(j->user_id, sizeof(j->user_id), "%s", ctx->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
  job_run(r, j, list_work, list_done);
}

/* ---- WebSocket: approve_tool {"run_id","call_id","approved","reason"?} ---- */

static void ws_approve(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  json_t *p = ws_frame_payload(frame);
  const char *run_id;
  char m[160];
  int rc = jsonx_get_cstr(p, "run_id", &run_id);
  if (rc || !run_id || !run_id[0]) {
    snprintf(m, sizeof m, "run_id: %s", rc ? jsonx_cstr_why(rc) : "required");
    api_ws_send_error(c, "VALIDATION_ERROR", m, id);
    return;
  }
  decide_job_t *j = job_new(sizeof(*j));
  const char *field = NULL, *why = NULL;
  rc = decide_parse(p, j, &field, &why);
  if (rc == 0 && !id_ok(run_id)) rc = AGD_ENOT_FOUND;
  if (rc) {
    decide_free(j);
    job_discard(j);
    if (rc == AGD_EVALIDATION) {
      snprintf(m, sizeof m, "%s: %s", field, why);
      api_ws_send_error(c, "VALIDATION_ERROR", m, id);
    } else {
      api_ws_send_error(c, "NOT_FOUND", "approval not found", id);
    }
    return;
  }
  snprintf(j->user_id, sizeof(j->user_id), "%s", conn_user_id(c));
  snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
  j->conn_id = conn_id(c);
  j->reply_to = id ? json_incref(id) : NULL;
  job_run(NULL, j, decide_work, decide_done_ws);
}

void api_approvals_register(void) {
  static const char *const types[] = {"approve_tool", NULL};
  if (ws_frames_add_all(types, ws_approve, NULL)) abort(); /* a type claimed twice: a bug caught at start */
  router_add("/api/runs/{id}/approvals", HTTP_M_POST, h_decide, 0);
  router_add("/api/runs/{id}/approvals", HTTP_M_GET, h_list, 0);
}
