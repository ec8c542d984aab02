/* api/workloads_api.c — SPEC §8 over REST: POST /api/workloads (streamed ingest),
 * POST /api/workloads/synthetic, GET /api/workloads/summary, DELETE /api/workloads,
 * GET /api/models/prices.  See workloads_api.h.
 *
 * Loop thread, except the *_work functions (worker pool).  An upload is never held
 * whole: the router's begin hook authenticates it, picks the parser from its
 * Content-Type (415 otherwise; 413 comes from Content-Length in net/) and asks for
 * the body in 1 MiB chunks; each chunk is parsed and stored on a worker job, and the
 * next one is read only when that job is done (http_req_chunk_done: backpressure).
 * The upload's state (upload_t) lives on a loop-thread list until the route's
 * handler answers from it; an abort (client gone, 413) frees it, and entries whose
 * handler never ran (auth or rate limit refused at dispatch) are swept after a minute.
 */
#include "api/workloads_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/job.h"
#include "api/router.h"
#include "core/auth.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "workloads/workloads.h"

#define CHUNK_BYTES ((size_t)1 << 20)
#define STALE_S 60.0

/* Answers carry prices and sums of prices: 15 significant digits print 0.15 as 0.15
 * (17 would give 0.14999999999999999) and lose nothing a currency needs. */
static char *dump(json_t *o) {
  char *t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
  if (!t) abort();
  return t;
}

static void respond_text(http_req_t *r, int status, char *text) {
  http_respond(r, status, "application/json", text, strlen(text));
  free(text);
}

/* ---- uploads ------------------------------------------------------------------------------ */

typedef struct upload {
  struct upload *next;    /* on uploads (loop thread) */
  http_req_t *req;        /* key only: never dereferenced once finished */
  char user_id[ID_MAX];
  workloads_ingest_t *in; /* owned; freed when the last chunk is done */
  int finished;           /* the last chunk was consumed */
  int fatal;              /* the ingest's fatal error (AGD_E*), 0 none */
  char fatal_msg[256];
  json_t *result;         /* 201 body once finished */
  double finished_at;
} upload_t;

static upload_t *uploads;

static void upload_free(upload_t *u) {
  workloads_ingest_free(u->in);
  json_decref(u->result);
  free(u);
}

static void upload_unlink(upload_t *u) {
  for (upload_t **pp = &uploads; *pp; pp = &(*pp)->next)
    if (*pp == u) {
      *pp = u->next;
      return;
    }
}

/* Drop finished uploads no handler came for. */
static void uploads_sweep(double now) {
  for (upload_t **pp = &uploads; *pp;) {
    upload_t *u = *pp;
    if (u->finished && now - u->finished_at > STALE_S) {
      *pp = u->next;
      upload_free(u);
    } else {
      pp = &u->next;
    }
  }
}

static upload_t *upload_find(http_req_t *r) {
  for (upload_t *u = uploads; u; u = u->next)
    if (u->req == r) return u;
  return NULL;
}

/* ---- chunk jobs ---------------------------------------------------------------------------- */

typedef struct chunk_job {
  upload_t *up;
  char *data;
  size_t n;
  int last;
} chunk_job_t;

static int chunk_work(void *p) {
  chunk_job_t *j = p;
  upload_t *u = j->up;
  workloads_ingest_feed(u->in, j->data, j->n, j->last);
  free(j->data);
  j->data = NULL;
  if (j->last) {
    const char *msg = NULL;
    u->fatal = workloads_ingest_error(u->in, &msg);
    if (u->fatal) snprintf(u->fatal_msg, sizeof u->fatal_msg, "%s", msg ? msg : "upload refused");
    else u->result = workloads_ingest_result(u->in);
    workloads_ingest_free(u->in);
    u->in = NULL;
  }
  return 0;
}

static void chunk_done(http_req_t *r, void *p, int rc) {
  chunk_job_t *j = p;
  free(j->data); /* only when the work never ran */
  if (rc != 0 && !j->up->fatal) {
    j->up->fatal = rc;
    snprintf(j->up->fatal_msg, sizeof j->up->fatal_msg, "the upload could not be processed");
  }
  if (j->last) {
    j->up->finished = 1;
    j->up->finished_at = time_now();
  }
  http_req_chunk_done(r); /* may free r and, through on_abort, the upload */
}

static void on_chunk(http_req_t *r, char *data, size_t n, int last, void *arg) {
  chunk_job_t *j = job_new(sizeof *j);
  j->up = arg;
  j->data = data;
  j->n = n;
  j->last = last;
  job_run(r, j, chunk_work, chunk_done);
}

static void on_abort(void *arg) {
  upload_t *u = arg;
  upload_unlink(u);
  upload_free(u);
}

/* ---- POST /api/workloads -------------------------------------------------------------------- */

static int bearer_token(http_req_t *r, slice_t *tok) {
  slice_t v;
  if (!http_req_header(r, "authorization", &v)) return 0;
  size_t i = 0, e = v.n;
  while (i < e && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  if (e - i < 6 || strncasecmp(v.p + i, "Bearer", 6) != 0) return 0;
  i += 6;
  if (i < e && v.p[i] != ' ' && v.p[i] != '\t') return 0;
  while (i < e && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  while (e > i && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) e--;
  tok->p = v.p + i;
  tok->n = e - i;
  return 1;
}

/* The parser for the request's Content-Type (none: JSON, SPEC conventions), or -1. */
static int upload_format(http_req_t *r) {
  slice_t v;
  if (!http_req_header(r, "content-type", &v)) return WORKLOADS_FMT_JSON;
  size_t n = 0;
  while (n < v.n && v.p[n] != ';') n++;
  while (n > 0 && (v.p[n - 1] == ' ' || v.p[n - 1] == '\t')) n--;
  size_t i = 0;
  while (i < n && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  slice_t mt = slice_of(v.p + i, n - i);
  static const struct {
    const char *type;
    int fmt;
  } types[] = {{"application/json", WORKLOADS_FMT_JSON},       {"application/x-ndjson", WORKLOADS_FMT_JSONL},
               {"application/ndjson", WORKLOADS_FMT_JSONL},    {"application/jsonl", WORKLOADS_FMT_JSONL},
               {"application/x-jsonlines", WORKLOADS_FMT_JSONL}, {"application/jsonlines", WORKLOADS_FMT_JSONL},
               {"text/csv", WORKLOADS_FMT_CSV},                {"application/csv", WORKLOADS_FMT_CSV}};
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
    if (slice_casecmp_cstr(mt, types[k].type)) return types[k].fmt;
  return -1;
}

/* Head of POST /api/workloads: authenticate (the shared auth check runs only at
 * dispatch, after the body), choose the parser, start streaming. */
static int ingest_begin(http_req_t *r, route_ctx_t *ctx) {
  slice_t tok;
  if (!bearer_token(r, &tok)) return AGD_EAUTH_REQUIRED;
  if (tok.n == 0 || tok.n > AUTH_TOKEN_MAX) return AGD_EAUTH_INVALID;
  auth_claims_t *c = malloc(sizeof *c); /* ~7 KiB: not on the loop's stack */
  if (!c) abort();
  int rc = auth_verify(tok.p, tok.n, AUTH_ACCESS, time_now(), c);
  if (rc == 0 && (strlen(c->user_id) >= ID_MAX || !c->user_id[0])) rc = AGD_EAUTH_INVALID;
  if (rc != 0) {
    free(c);
    return AGD_EAUTH_INVALID;
  }
  int fmt = upload_format(r);
  if (fmt < 0) {
    free(c);
    return AGD_EUNSUPPORTED_MEDIA;
  }
  uploads_sweep(time_now());
  upload_t *old = upload_find(r); /* a stale entry of an earlier request at this address */
  if (old) {
    upload_unlink(old);
    upload_free(old);
  }
  upload_t *u = calloc(1, sizeof *u);
  if (!u) abort();
  u->req = r;
  memcpy(u->user_id, c->user_id, strlen(c->user_id) + 1); /* < ID_MAX: checked above */
  free(c);
  u->in = workloads_ingest_new(g_app->store, u->user_id, (workloads_format_t)fmt);
  u->next = uploads;
  uploads = u;
  http_req_stream_body(r, CHUNK_BYTES, on_chunk, on_abort, u);
  return 0;
}

static void h_ingest(http_req_t *r, route_ctx_t *ctx) {
  upload_t *u = upload_find(r);
  if (!u || !u->finished) {
    http_respond_error(r, AGD_EINTERNAL, "upload state lost", NULL);
    return;
  }
  upload_unlink(u);
  if (strcmp(u->user_id, ctx->user_id ? ctx->user_id : "") != 0) {
    http_respond_error(r, AGD_EAUTH_INVALID, "invalid token", NULL); /* cannot happen: same token */
  } else if (u->fatal) {
    http_respond_error(r, u->fatal, u->fatal_msg, NULL);
  } else {
    respond_text(r, 201, dump(u->result));
  }
  upload_free(u);
}

/* ---- jobs of the other routes ------------------------------------------------------------ */

typedef struct wl_job {
  char user_id[ID_MAX];
  workload_window_t w;
  long n;
  unsigned long long seed;
  json_t *out;
  char *text; /* the answer, serialised on the worker */
  int status;
} wl_job_t;

/* Worker side: the result object becomes text. */
static int job_finish(wl_job_t *j, int rc) {
  if (rc == 0 && j->out) j->text = dump(j->out);
  json_decref(j->out);
  j->out = NULL;
  return rc;
}

static void job_answer(http_req_t *r, void *p, int rc) {
  wl_job_t *j = p;
  if (rc == 0 && j->text) respond_text(r, j->status, j->text);
  else {
    free(j->text);
    http_respond_error(r, rc ? rc : AGD_EINTERNAL, NULL, NULL);
  }
}

static wl_job_t *job_for(route_ctx_t *ctx) {
  wl_job_t *j = job_new(sizeof *j);
  snprintf(j->user_id, sizeof j->user_id, "%s", ctx->user_id ? ctx->user_id : "");
  j->status = 200;
  return j;
}

/* DELETE /api/workloads */
static int delete_work(void *p) {
  wl_job_t *j = p;
  long n = 0;
  int rc = workloads_delete(g_app->store, j->user_id, &n);
  if (rc == 0) j->out = json_pack("{s:I}", "deleted", (json_int_t)n);
  return job_finish(j, rc);
}

static void h_delete(http_req_t *r, route_ctx_t *ctx) { job_run(r, job_for(ctx), delete_work, job_answer); }

/* POST /api/workloads/synthetic {"records":N,"seed"?} */
static int synthetic_work(void *p) {
  wl_job_t *j = p;
  long n = 0;
  int rc = workloads_synthetic(g_app->store, j->user_id, j->n, j->seed, &n);
  if (rc == 0) {
    j->out = json_pack("{s:I, s:I}", "inserted", (json_int_t)n, "seed", (json_int_t)j->seed);
    j->status = 201;
  }
  return job_finish(j, rc);
}

static void h_synthetic(http_req_t *r, route_ctx_t *ctx) {
  json_t *body = router_json_body(r, 0);
  if (!body) return;
  json_t *n = json_object_get(body, "records"), *seed = json_object_get(body, "seed");
  if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > WORKLOADS_SYNTHETIC_MAX) {
    json_decref(body);
    router_respond_validation(r, "records", "must be an integer from 1 to 1000000");
    return;
  }
  if (seed && !json_is_null(seed) && (!json_is_integer(seed) || json_integer_value(seed) < 0)) {
    json_decref(body);
    router_respond_validation(r, "seed", "must be a non-negative integer");
    return;
  }
  wl_job_t *j = job_for(ctx);
  j->n = (long)json_integer_value(n);
  if (seed && json_is_integer(seed)) {
    j->seed = (unsigned long long)json_integer_value(seed);
  } else {
    uint64_t x;
    id_random_bytes(&x, sizeof x);
    j->seed = x >> 1; /* fits a JSON integer */
  }
  json_decref(body);
  job_run(r, j, synthetic_work, job_answer);
}

/* GET /api/workloads/summary?from=&to= */
static int summary_work(void *p) {
  wl_job_t *j = p;
  return job_finish(j, workloads_summary(g_app->store, j->user_id, &j->w, &j->out));
}

static int query_time(http_req_t *r, const char *name, double *out) {
  const char *v;
  *out = 0;
  if (!http_req_query(r, name, &v) || !v[0]) return 0;
  if (workloads_parse_time(v, out) == 0) return 0;
  char msg[160];
  snprintf(msg, sizeof msg, "query parameter %s: expected epoch seconds or an ISO 8601 time", name);
  http_respond_error(r, AGD_EBAD_REQUEST, msg, NULL);
  return -1;
}

static void h_summary(http_req_t *r, route_ctx_t *ctx) {
  workload_window_t w;
  if (query_time(r, "from", &w.from) || query_time(r, "to", &w.to)) return;
  if (w.from > 0 && w.to > 0 && w.to < w.from) {
    http_respond_error(r, AGD_EBAD_REQUEST, "query parameter to is before from", NULL);
    return;
  }
  wl_job_t *j = job_for(ctx);
  j->w = w;
  job_run(r, j, summary_work, job_answer);
}

/* GET /api/models/prices */
static void h_prices(http_req_t *r, route_ctx_t *ctx) {
  json_t *t = workloads_price_table();
  respond_text(r, 200, dump(t));
  json_decref(t);
}

void api_workloads_register(void) {
  router_add_stream("/api/workloads", HTTP_M_POST, ingest_begin, h_ingest, ROUTE_INGEST);
  router_add("/api/workloads", HTTP_M_DELETE, h_delete, 0);
  router_add("/api/workloads/synthetic", HTTP_M_POST, h_synthetic, 0);
  router_add("/api/workloads/summary", HTTP_M_GET, h_summary, 0);
  router_add("/api/models/prices", HTTP_M_GET, h_prices, 0);
}

void api_workloads_stop(void) {
  while (uploads) {
    upload_t *u = uploads;
    uploads = u->next;
    upload_free(u);
  }
  workloads_cache_clear();
}
