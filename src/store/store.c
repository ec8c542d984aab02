/* store/store.c — the backend-neutral half of store.h: URL dispatch, argument checks.
 *
 * Every public store_* call lands here, is checked (NULLs, sizes: the backends rely on
 * it) and goes through s->ops to the backend (sqlite_*.c; postgres later), by OP(): the
 * one place where each store operation begins and ends, so where a borrower thread's
 * connection goes back to the pool (ops->release).  The migration runner the backends
 * share is migrate.c.  Any thread except the event loop; no state but two per-thread
 * variables (borrower or not, how deep in store calls).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/timeutil.h"

/* store_thread_borrow was called on this thread. */
static _Thread_local int t_borrower;
/* Store calls this thread is inside: > 1 in a call made by a callback of a store call
 * (workload_scan, revoked_load, approvals_pending) or by store_tx's fn. */
static _Thread_local int t_depth;

void store_thread_borrow(void) { t_borrower = 1; }

int store__thread_borrows(void) { return t_borrower; }

static inline store_t *op_begin(store_t *s) {
  t_depth++;
  return s;
}

/* The end of a store call: at the outermost one a borrower gives its connection back,
 * so it never keeps one between calls (nor across whatever it waits for next). */
static inline int op_end(store_t *s, int rc) {
  if (--t_depth == 0 && t_borrower && s->ops->release) s->ops->release(s);
  return rc;
}

/* s->ops->name(...) between op_begin and op_end (the arguments are evaluated before
 * the call, op_end's after it returns). */
#define OP(s, name, ...) op_end((s), op_begin(s)->ops->name(__VA_ARGS__))

void store__errf(char *err, size_t cap, const char *fmt, ...) {
  if (!err || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

int store_open(store_t **out, const char *url, char *err, size_t cap) {
  if (!out) return ERR(AGD_EINTERNAL);
  *out = NULL;
  if (err && cap) err[0] = '\0';
  if (!url || !*url) {
    store__errf(err, cap, "database url is empty");
    return AGD_EBAD_REQUEST;
  }
  const char *path = NULL;
  if (strncmp(url, "sqlite://", 9) == 0) path = url + 9;
  else if (strncmp(url, "sqlite:", 7) == 0) path = url + 7;
  if (path) {
    if (!*path) {
      store__errf(err, cap, "database url %s has no file path", url);
      return AGD_EBAD_REQUEST;
    }
    return store__sqlite_open(out, path, err, cap);
  }
  if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
    store__errf(err, cap, "PostgreSQL is not supported by this build yet (use sqlite:PATH)");
    return AGD_EBAD_REQUEST;
  }
  store__errf(err, cap, "unsupported database url (expected sqlite:PATH or postgresql://...)");
  return AGD_EBAD_REQUEST;
}

void store_close(store_t *s) {
  if (s) s->ops->close(s);
}

int store_migrate(store_t *s, int *version_out, char *err, size_t cap) {
  int v = 0;
  if (err && cap) err[0] = '\0';
  int rc = OP(s, migrate, s, &v, err, cap);
  if (version_out) *version_out = v;
  return rc;
}

int store_ping(store_t *s, double *latency_ms) {
  uint64_t t0 = time_mono_ns();
  int rc = OP(s, ping, s);
  if (latency_ms) *latency_ms = (double)(time_mono_ns() - t0) / 1e6;
  return rc;
}

const char *store_kind(const store_t *s) { return s->ops->kind; }

int store_tx(store_t *s, int (*fn)(store_t *s, void *arg), void *arg) {
  if (!fn) return ERR(AGD_EINTERNAL);
  return OP(s, tx, s, fn, arg);
}

/* 1 when p is a non-empty string shorter than cap bytes (so it fits with its NUL). */
static int fits(const char *p, size_t cap) { return p && *p && strnlen(p, cap) < cap; }
/* As fits(), empty allowed. */
static int fits0(const char *p, size_t cap) { return p && strnlen(p, cap) < cap; }

int store_user_create(store_t *s, const store_user_t *u) {
  if (!u || !fits(u->id, sizeof u->id) || !fits(u->email, sizeof u->email) ||
      !fits0(u->name, sizeof u->name) || !fits0(u->plan_tier, sizeof u->plan_tier) ||
      !fits0(u->permissions_json, sizeof u->permissions_json) ||
      !fits0(u->password_hash, sizeof u->password_hash))
    return AGD_EBAD_REQUEST;
  return OP(s, user_create, s, u);
}

int store_user_by_email(store_t *s, const char *email, store_user_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  if (!fits(email, STORE_EMAIL_MAX)) return AGD_ENOT_FOUND; /* cannot exist */
  return OP(s, user_by_email, s, email, out);
}

int store_user_get(store_t *s, const char *user_id, store_user_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  if (!fits(user_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, user_get, s, user_id, out);
}

int store_user_ensure(store_t *s, const char *user_id, const char *email_or_NULL,
                      store_user_t *out) {
  if (!fits(user_id, ID_MAX)) return AGD_EBAD_REQUEST;
  /* An unusable email falls back to the placeholder (store.h). */
  if (email_or_NULL && !fits(email_or_NULL, STORE_EMAIL_MAX)) email_or_NULL = NULL;
  store_user_t tmp;
  return OP(s, user_ensure, s, user_id, email_or_NULL, out ? out : &tmp);
}

int store_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out) {
  if (!fits0(name, STORE_NAME_MAX)) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX)) return AGD_ENOT_FOUND;
  store_user_t tmp;
  return OP(s, user_set_name, s, user_id, name, out ? out : &tmp);
}

int store_user_count(store_t *s, long *n) {
  if (!n) return ERR(AGD_EINTERNAL);
  return OP(s, user_count, s, n);
}

int store_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id,
                      double expires_at) {
  if (!fits(jti, ID_MAX) || !fits(family_id, ID_MAX) || !fits(user_id, ID_MAX))
    return AGD_EBAD_REQUEST;
  return OP(s, refresh_add, s, jti, family_id, user_id, expires_at);
}

int store_refresh_consume(store_t *s, const char *jti, const char *user_id, double now,
                          char family_out[ID_MAX]) {
  char tmp[ID_MAX];
  char *fam = family_out ? family_out : tmp;
  fam[0] = '\0';
  if (!fits(jti, ID_MAX) || !fits(user_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, refresh_consume, s, jti, user_id, now, fam);
}

int store_refresh_revoke_family(store_t *s, const char *family_id) {
  if (!fits(family_id, ID_MAX)) return 0; /* matches nothing */
  return OP(s, refresh_revoke_family, s, family_id);
}

int store_refresh_revoke_user(store_t *s, const char *user_id) {
  if (!fits(user_id, ID_MAX)) return 0;
  return OP(s, refresh_revoke_user, s, user_id);
}

int store_revoke_access(store_t *s, const char *jti, double expires_at) {
  if (!fits(jti, STORE_JTI_MAX)) return AGD_EBAD_REQUEST;
  return OP(s, revoke_access, s, jti, expires_at);
}

int store_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg) {
  if (!cb) return ERR(AGD_EINTERNAL);
  return OP(s, revoked_load, s, now, cb, arg);
}

int store_revoked_purge(store_t *s, double now) { return OP(s, revoked_purge, s, now); }

/* ---- threads and messages ------------------------------------------------------------ */

void store_thread_dispose(store_thread_t *t) {
  if (!t) return;
  free(t->title);
  free(t->metadata);
  t->title = t->metadata = NULL;
}

void store_thread_list_dispose(store_thread_list_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) store_thread_dispose(&l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

void store_message_dispose(store_message_t *m) {
  if (!m) return;
  free(m->content);
  free(m->metadata);
  m->content = m->metadata = NULL;
}

void store_message_list_dispose(store_message_list_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) store_message_dispose(&l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

/* NULL, or a string of at most max bytes. */
static int opt_fits(const char *p, size_t max) { return !p || strnlen(p, max + 1) <= max; }
static int page_ok(int limit, long offset) {
  return limit >= 1 && limit <= STORE_PAGE_MAX && offset >= 0;
}

int store_thread_create(store_t *s, const char *user_id, const char *title, const char *metadata,
                        store_thread_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!opt_fits(title, STORE_TITLE_MAX) || !opt_fits(metadata, STORE_METADATA_MAX))
    return AGD_EBAD_REQUEST;
  return OP(s, thread_create, s, user_id, title, metadata, out);
}

int store_thread_get(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, thread_get, s, user_id, thread_id, out);
}

int store_thread_list(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                      store_thread_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!page_ok(limit, offset)) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX)) return 0; /* nobody: no threads */
  return OP(s, thread_list, s, user_id, include_archived != 0, limit, offset, out);
}

int store_thread_update(store_t *s, const char *user_id, const char *thread_id, int set_title,
                        const char *title, const char *metadata, store_thread_t *out) {
  store_thread_t tmp;
  store_thread_t *o = out ? out : &tmp;
  memset(o, 0, sizeof *o);
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!opt_fits(title, STORE_TITLE_MAX) || !opt_fits(metadata, STORE_METADATA_MAX))
    return AGD_EBAD_REQUEST;
  int rc = OP(s, thread_update, s, user_id, thread_id, set_title != 0, set_title ? title : NULL,
                                 metadata, o);
  if (!out) store_thread_dispose(&tmp);
  return rc;
}

int store_thread_archive(store_t *s, const char *user_id, const char *thread_id) {
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, thread_archive, s, user_id, thread_id);
}

int store_thread_delete(store_t *s, const char *user_id, const char *thread_id) {
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, thread_delete, s, user_id, thread_id);
}

int store_message_check(const char *user_id, const store_message_new_t *in) {
  if (!fits(user_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (in->thread_id && !fits(in->thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!in->role || !in->content || !opt_fits(in->content, STORE_CONTENT_MAX) ||
      !opt_fits(in->new_thread_title, STORE_TITLE_MAX) || !opt_fits(in->metadata, STORE_METADATA_MAX) ||
      (in->run_id && !fits0(in->run_id, ID_MAX)) || (in->id && !fits(in->id, ID_MAX)))
    return AGD_EBAD_REQUEST;
  if (strnlen(in->role, 16) >= 16) return AGD_EVALIDATION;
  return 0;
}

int store_message_add(store_t *s, const char *user_id, const store_message_new_t *in,
                      store_message_t *out) {
  if (!out || !in) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  int rc = store_message_check(user_id, in);
  if (rc) return rc;
  return OP(s, message_add, s, user_id, in, out);
}

int store_message_get(store_t *s, const char *user_id, const char *message_id, store_message_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX) || !fits(message_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, message_get, s, user_id, message_id, out);
}

int store_message_delete(store_t *s, const char *user_id, const char *message_id) {
  if (!fits(user_id, ID_MAX) || !fits(message_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, message_delete, s, user_id, message_id);
}

int store_message_list(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                       store_message_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!page_ok(limit, offset)) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, message_list, s, user_id, thread_id, limit, offset, out);
}

int store_message_history(store_t *s, const char *user_id, const char *thread_id,
                          const char *before_id, int limit, store_message_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  out->total = -1;
  if (!page_ok(limit, 0)) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (before_id && !*before_id) before_id = NULL;
  if (before_id && !fits(before_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, message_history, s, user_id, thread_id, before_id, limit, out);
}

int store_message_list_user(store_t *s, const char *user_id, const char *thread_id, int limit,
                            long offset, store_message_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!page_ok(limit, offset)) return AGD_EBAD_REQUEST;
  if (thread_id && !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!fits(user_id, ID_MAX)) return thread_id ? AGD_ENOT_FOUND : 0;
  return OP(s, message_list_user, s, user_id, thread_id, limit, offset, out);
}

/* ---- runs and events ---- */

void store_run_dispose(store_run_t *r) {
  if (!r) return;
  free(r->input);
  free(r->result);
  free(r->error);
  free(r->usage);
  r->input = r->result = r->error = r->usage = NULL;
}

void store_run_list_dispose(store_run_list_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) store_run_dispose(&l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

void store_event_list_free(store_event_list_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) free(l->items[i].json);
  free(l->items);
  memset(l, 0, sizeof *l);
}

static int status_ok(const char *st) {
  static const char *const ok[] = {"queued", "running", "completed", "failed", "cancelled", NULL};
  for (const char *const *p = ok; st && *p; p++)
    if (strcmp(st, *p) == 0) return 1;
  return 0;
}

int store_run_create(store_t *s, const char *user_id, const char *run_id, const char *thread_id, const char *agent,
                     const char *input, double created_at) {
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX) || !fits(thread_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!agent || !agent[0] || strlen(agent) >= 32 || !input) return AGD_EBAD_REQUEST;
  return OP(s, run_create, s, user_id, run_id, thread_id, agent, input, created_at);
}

int store_run_set_status(store_t *s, const char *user_id, const char *run_id, const char *status, double started_at,
                         double completed_at, const char *result_json, const char *error_json) {
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX)) return AGD_ENOT_FOUND;
  if (!status_ok(status)) return AGD_EBAD_REQUEST;
  return OP(s, run_set_status, s, user_id, run_id, status, started_at, completed_at, result_json, error_json);
}

int store_run_get(store_t *s, const char *user_id, const char *run_id, store_run_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, run_get, s, user_id, run_id, out);
}

int store_run_set_usage(store_t *s, const char *user_id, const char *run_id, const char *usage_json) {
  if (!s || !user_id || !run_id || !usage_json) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, run_set_usage, s, user_id, run_id, usage_json);
}

int store_run_list(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit, long offset,
                   store_run_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!page_ok(limit, offset)) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX) || (thread_id && !fits(thread_id, ID_MAX))) return AGD_ENOT_FOUND;
  return OP(s, run_list, s, user_id, thread_id, active_only, limit, offset, out);
}

int store_runs_fail_inflight(store_t *s, double now, long *n) { return OP(s, runs_fail_inflight, s, now, n); }

int store_event_append(store_t *s, const store_event_t *ev) {
  if (!ev || !fits(ev->user_id, ID_MAX) || ev->seq <= 0 || !ev->type || !ev->json) return AGD_EBAD_REQUEST;
  if ((ev->run_id && ev->run_id[0] && !fits(ev->run_id, ID_MAX)) ||
      (ev->thread_id && ev->thread_id[0] && !fits(ev->thread_id, ID_MAX)))
    return AGD_EBAD_REQUEST;
  return OP(s, event_append, s, ev);
}

int store_event_append_batch(store_t *s, const store_event_t *evs, size_t n) {
  if (n == 0) return 0;
  if (!evs) return AGD_EBAD_REQUEST;
  for (size_t i = 0; i < n; i++) {
    const store_event_t *ev = &evs[i];
    if (!fits(ev->user_id, ID_MAX) || ev->seq <= 0 || !ev->type || !ev->json) return AGD_EBAD_REQUEST;
    if ((ev->run_id && ev->run_id[0] && !fits(ev->run_id, ID_MAX)) ||
        (ev->thread_id && ev->thread_id[0] && !fits(ev->thread_id, ID_MAX)))
      return AGD_EBAD_REQUEST;
  }
  return OP(s, event_append_batch, s, evs, n);
}

int store_event_last_seq(store_t *s, const char *user_id, int64_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  *out = 0;
  if (!fits(user_id, ID_MAX)) return AGD_EBAD_REQUEST;
  return OP(s, event_last_seq, s, user_id, out);
}

int store_event_list(store_t *s, const char *user_id, int64_t after_seq, const char *run_id, const char *thread_id,
                     int limit, store_event_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (limit < 1 || limit > 1000 || after_seq < 0) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX)) return 0;
  if ((run_id && !fits(run_id, ID_MAX)) || (thread_id && !fits(thread_id, ID_MAX))) return 0;
  return OP(s, event_list, s, user_id, after_seq, run_id, thread_id, limit, out);
}

/* ---- approvals ---- */

void store_approval_dispose(store_approval_t *a) {
  if (!a) return;
  free(a->parameters);
  free(a->checkpoint);
  free(a->reason);
  a->parameters = a->checkpoint = a->reason = NULL;
}

void store_approval_list_dispose(store_approval_list_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) store_approval_dispose(&l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

int store_approval_create(store_t *s, const store_approval_t *a) {
  if (!a) return ERR(AGD_EINTERNAL);
  if (!fits(a->user_id, ID_MAX) || !fits(a->run_id, ID_MAX) || !fits(a->call_id, STORE_CALL_ID_MAX) ||
      !fits(a->tool_name, STORE_TOOL_NAME_MAX))
    return AGD_EBAD_REQUEST;
  if (!a->parameters) return AGD_EBAD_REQUEST; /* its JSON is checked by the backend */
  if (!(a->expires_at >= a->created_at)) return AGD_EBAD_REQUEST;
  return OP(s, approval_create, s, a);
}

int store_approval_get(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                       store_approval_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX) || !fits(call_id, STORE_CALL_ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, approval_get, s, user_id, run_id, call_id, out);
}

int store_approval_list(store_t *s, const char *user_id, const char *run_id, store_approval_list_t *out) {
  if (!out) return ERR(AGD_EINTERNAL);
  memset(out, 0, sizeof *out);
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, approval_list, s, user_id, run_id, out);
}

int store_approval_decide(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                          const char *status, const char *reason, double now, store_approval_t *out) {
  if (out) memset(out, 0, sizeof *out);
  if (!status || (strcmp(status, "approved") != 0 && strcmp(status, "denied") != 0 && strcmp(status, "expired") != 0))
    return AGD_EBAD_REQUEST;
  if (reason && strnlen(reason, STORE_REASON_MAX) >= STORE_REASON_MAX) return AGD_EBAD_REQUEST;
  if (!fits(user_id, ID_MAX) || !fits(run_id, ID_MAX) || !fits(call_id, STORE_CALL_ID_MAX)) return AGD_ENOT_FOUND;
  return OP(s, approval_decide, s, user_id, run_id, call_id, status, reason, now, out);
}

int store_approvals_pending(store_t *s, store_approval_cb cb, void *arg) {
  if (!cb) return ERR(AGD_EINTERNAL);
  return OP(s, approvals_pending, s, cb, arg);
}

/* ---- workload records ---- */

static int cstr_fits(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static int wl_rec_ok(const store_workload_t *r) {
  if (!cstr_fits(r->model, sizeof r->model) || !cstr_fits(r->provider, sizeof r->provider) ||
      !cstr_fits(r->feature, sizeof r->feature) || !cstr_fits(r->prompt_hash, sizeof r->prompt_hash))
    return 0;
  if (!r->model[0] || !r->provider[0]) return 0;
  /* !(x >= 0) also catches NaN */
  if (!(r->timestamp >= 0) || !(r->latency_ms >= 0) || !(r->cost_usd >= 0)) return 0;
  if (r->timestamp > 1e12 || r->latency_ms > 1e15 || r->cost_usd > 1e15) return 0;
  return r->prompt_tokens >= 0 && r->completion_tokens >= 0;
}

int store_workload_insert(store_t *s, const char *user_id, const store_workload_t *recs, size_t n,
                          int64_t *first_seq, int64_t *gen) {
  if (!fits(user_id, ID_MAX) || !recs || n == 0 || n > STORE_WL_BATCH_MAX) return AGD_EBAD_REQUEST;
  for (size_t i = 0; i < n; i++)
    if (!wl_rec_ok(&recs[i])) return AGD_EBAD_REQUEST;
  int64_t fs = 0, g = 0;
  int rc = OP(s, workload_insert, s, user_id, recs, n, &fs, &g);
  if (first_seq) *first_seq = fs;
  if (gen) *gen = g;
  return rc;
}

int store_workload_state(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen) {
  int64_t ns = 1, g = 0;
  int rc = fits(user_id, ID_MAX) ? OP(s, workload_state, s, user_id, &ns, &g) : AGD_EBAD_REQUEST;
  if (next_seq) *next_seq = ns;
  if (gen) *gen = g;
  return rc;
}

int store_workload_scan(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                        int64_t *next_seq, int64_t *gen) {
  if (!fits(user_id, ID_MAX) || !cb || after_seq < 0) return AGD_EBAD_REQUEST;
  int64_t ns = 1, g = 0;
  int rc = OP(s, workload_scan, s, user_id, after_seq, cb, arg, &ns, &g);
  if (next_seq) *next_seq = ns;
  if (gen) *gen = g;
  return rc;
}

int store_workload_delete(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen) {
  long d = 0;
  int64_t ns = 1, g = 0;
  int rc = fits(user_id, ID_MAX) ? OP(s, workload_delete, s, user_id, &d, &ns, &g) : AGD_EBAD_REQUEST;
  if (deleted) *deleted = d;
  if (next_seq) *next_seq = ns;
  if (gen) *gen = g;
  return rc;
}
