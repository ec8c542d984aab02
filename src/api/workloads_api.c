/* api/workloads_api.c — SPEC §8 over REST: POST /api/workloads (streamed ingest),
 * POST /api/workloads/synthetic, GET /api/workloads/summary, DELETE /api/workloads,
 * GET /api/models/prices.  See workloads_api.h.
 *
 * Loop thread, except the *_work functions (worker pool).  An upload is never held
 * whole: the router's begin hook authenticates it, picks the parser from its
 * Content-Type (415 otherwise; 413 comes from Content-Length in net/) and asks for
 * the body in 1 MiB chunks; each chunk is parsed on a worker job and its records are
 * stored by a second, serialised chain of insert jobs, so parsing and storing overlap;
 * the next chunk is read only when the parse is done and at most INSERT_QUEUE_MAX
 * batches wait (http_req_chunk_done: backpressure).  The upload's state (upload_t)
 * lives on a loop-thread list until the route's handler answers from it (after the
 * last batch is stored); an abort (client gone, 413) frees it once no job points at
 * it, and entries whose handler never ran (auth or rate limit refused at dispatch)
 * are swept after a minute.
 */
#include "api/workloads_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/auth_api.h"
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
/* Pipeline of one upload: chunk jobs parse (one at a time, in order) and hand their
 * records to a FIFO of batches; insert jobs store the batches (one at a time, in order),
 * so chunk N+1 is parsed while chunk N is stored.  The next chunk is asked for only
 * while fewer than INSERT_QUEUE_MAX batches wait (backpressure reaches the socket). */

#define INSERT_QUEUE_MAX 2

typedef struct batch {
  struct batch *next;
  workload_rec_t *recs;   /* malloc'd, room for cap */
  size_t n, cap;
} batch_t;

typedef struct upload {
  struct upload *next;    /* on uploads (loop thread) */
  http_req_t *req;        /* key only */
  char user_id[ID_MAX];
  workloads_ingest_t *in; /* owned; touched by one chunk job at a time */
  int refs;               /* jobs in flight that point here */
  int aborted;            /* the request died: free once refs is 0 */
  int parsed;             /* the last chunk was parsed */
  batch_t *queue, *queue_tail;
  size_t queued;          /* batches waiting + the one being stored */
  int inserting;
  long inserted;
  int insert_err;
  http_req_t *held;       /* a consumed chunk not yet acknowledged (queue full) */
  http_req_t *waiting;    /* the handler ran: answer once everything is stored */
  batch_t *spare;         /* a stored batch whose memory the parser may reuse */
  double finished_at;
} upload_t;

static upload_t *uploads;

static void upload_free(upload_t *u) {
  workloads_ingest_free(u->in);
  if (u->spare) {
    free(u->spare->recs);
    free(u->spare);
  }
  while (u->queue) {
    batch_t *b = u->queue;
    u->queue = b->next;
    free(b->recs);
    free(b);
  }
  free(u);
}

static void upload_unlink(upload_t *u) {
  for (upload_t **pp = &uploads; *pp; pp = &(*pp)->next)
    if (*pp == u) {
      *pp = u->next;
      return;
    }
}

/* Drop uploads no handler came for (auth or rate limit refused at dispatch). */
static void uploads_sweep(double now) {
  for (upload_t **pp = &uploads; *pp;) {
    upload_t *u = *pp;
    if (u->parsed && !u->refs && !u->waiting && u->finished_at > 0 && now - u->finished_at > STALE_S) {
      *pp = u->next;
      upload_free(u);
    } else {
      pp = &u->next;
    }
  }
}

static upload_t *upload_find(http_req_t *r) {
  for (upload_t *u = uploads; u; u = u->next)
    if (u->req == r && !u->aborted) return u;
  return NULL;
}

static void insert_next(upload_t *u);

/* Everything parsed and stored and the handler waiting: answer.  Frees u. */
static void upload_maybe_answer(upload_t *u) {
  if (!u->waiting || !u->parsed || u->queued || u->refs) return;
  http_req_t *r = u->waiting;
  upload_unlink(u);
  const char *msg = NULL;
  int fatal = workloads_ingest_error(u->in, &msg);
  if (fatal) {
    http_respond_error(r, fatal, msg, NULL);
  } else if (u->insert_err) {
    http_respond_error(r, u->insert_err, "the database refused the records", NULL);
  } else {
    json_t *res = workloads_ingest_result(u->in);
    json_object_set_new(res, "inserted", json_integer(u->inserted));
    respond_text(r, 201, dump(res));
    json_decref(res);
  }
  upload_free(u);
}

/* ---- insert jobs ---- */

typedef struct insert_job {
  upload_t *up;
  batch_t *b;
  char user_id[ID_MAX];
  long inserted;
} insert_job_t;

static int insert_work(void *p) {
  insert_job_t *j = p;
  return workloads_insert(g_app->store, j->user_id, j->b->recs, j->b->n, &j->inserted);
}

static void insert_done(http_req_t *r, void *p, int rc) {
  (void)r;
  insert_job_t *j = p;
  upload_t *u = j->up;
  if (!u->spare) {
    u->spare = j->b; /* its memory goes back to the parser with the next chunk */
  } else {
    free(j->b->recs);
    free(j->b);
  }
  u->refs--;
  u->inserting = 0;
  u->queued--;
  u->inserted += j->inserted;
  if (rc && !u->insert_err) u->insert_err = rc;
  if (u->aborted) {
    if (!u->refs) upload_free(u);
    return;
  }
  insert_next(u);
  if (u->held && u->queued < INSERT_QUEUE_MAX) {
    http_req_t *h = u->held;
    u->held = NULL;
    http_req_chunk_done(h); /* may run the handler (and free u) or abort (and free u) */
    return;
  }
  upload_maybe_answer(u);
}

/* Start storing the oldest waiting batch unless one is being stored. */
static void insert_next(upload_t *u) {
  if (u->inserting || !u->queue) return;
  batch_t *b = u->queue;
  u->queue = b->next;
  if (!u->queue) u->queue_tail = NULL;
  if (u->insert_err) { /* the store failed: drop the rest */
    free(b->recs);
    free(b);
    u->queued--;
    insert_next(u);
    return;
  }
  insert_job_t *j = job_new(sizeof *j);
  j->up = u;
  j->b = b;
  memcpy(j->user_id, u->user_id, sizeof j->user_id);
  u->inserting = 1;
  u->refs++;
  job_run(NULL, j, insert_work, insert_done);
}

/* ---- chunk jobs ---- */

typedef struct chunk_job {
  upload_t *up;
  char *data;
  size_t n;
  int last;
  workload_rec_t *recs; /* parsed, for the insert queue */
  size_t nrecs, cap;
  batch_t *spare;       /* memory for the parser to reuse (given to the ingest) */
} chunk_job_t;

static int chunk_work(void *p) {
  chunk_job_t *j = p;
  if (j->spare) {
    workloads_ingest_give(j->up->in, j->spare->recs, j->spare->cap);
    j->spare->recs = NULL;
  }
  workloads_ingest_feed(j->up->in, j->data, j->n, j->last);
  free(j->data);
  j->data = NULL;
  j->nrecs = workloads_ingest_take(j->up->in, &j->recs, &j->cap);
  return 0;
}

static void chunk_done(http_req_t *r, void *p, int rc) {
  chunk_job_t *j = p;
  upload_t *u = j->up;
  free(j->data); /* only when the work never ran */
  u->refs--;
  if (rc && !u->insert_err) u->insert_err = rc;
  if (j->spare) { /* its memory went to the ingest (or, if the work never ran, goes now) */
    free(j->spare->recs);
    free(j->spare);
  }
  if (j->nrecs) {
    batch_t *b = calloc(1, sizeof *b);
    if (!b) abort();
    b->recs = j->recs;
    b->n = j->nrecs;
    b->cap = j->cap;
    if (u->queue_tail) u->queue_tail->next = b;
    else u->queue = b;
    u->queue_tail = b;
    u->queued++;
    insert_next(u);
  }
  if (j->last) {
    u->parsed = 1;
    u->finished_at = time_now();
  }
  if (!j->last && u->queued >= INSERT_QUEUE_MAX) {
    u->held = r; /* acknowledged by insert_done once the queue shrinks */
    return;
  }
  http_req_chunk_done(r); /* may free r and, through on_abort, the upload, or run the handler */
}

static void on_chunk(http_req_t *r, char *data, size_t n, int last, void *arg) {
  upload_t *u = arg;
  chunk_job_t *j = job_new(sizeof *j);
  j->up = u;
  j->data = data;
  j->n = n;
  j->last = last;
  j->spare = u->spare;
  u->spare = NULL;
  u->refs++;
  job_run(r, j, chunk_work, chunk_done);
}

/* The request died before its handler (client gone, 413): jobs still in flight keep the
 * upload until they are back. */
static void on_abort(void *arg) {
  upload_t *u = arg;
  upload_unlink(u);
  u->aborted = 1;
  u->held = NULL;
  u->waiting = NULL;
  if (!u->refs) upload_free(u);
}

/* ---- POST /api/workloads -------------------------------------------------------------------- */


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
  if (!api_bearer_token(r, &tok)) return AGD_EAUTH_REQUIRED;
  auth_identity_t id; /* core/auth: the one verifier (signature, claims, cache, revocation) */
  if (auth_verify_access(tok.p, tok.n, time_now(), &id) != 0) return AGD_EAUTH_INVALID;
  int fmt = upload_format(r);
  if (fmt < 0) return AGD_EUNSUPPORTED_MEDIA;
  uploads_sweep(time_now());
  upload_t *old = upload_find(r); /* a stale entry of an earlier request at this address */
  if (old) on_abort(old);
  upload_t *u = calloc(1, sizeof *u);
  if (!u) abort();
  u->req = r;
  memcpy(u->user_id, id.user_id, strlen(id.user_id) + 1); /* < ID_MAX: auth_verify_access */
  u->in = workloads_ingest_new(g_app->store, u->user_id, (workloads_format_t)fmt);
  workloads_ingest_set_deferred(u->in, 1);
  u->next = uploads;
  uploads = u;
  http_req_stream_body(r, CHUNK_BYTES, on_chunk, on_abort, u);
  return 0;
}

static void h_ingest(http_req_t *r, route_ctx_t *ctx) {
  upload_t *u = upload_find(r);
  if (!u || !u->parsed) {
    http_respond_error(r, AGD_EINTERNAL, "upload state lost", NULL);
    return;
  }
  u->waiting = r; /* answered once the last batch is stored */
  upload_maybe_answer(u);
}

/* ---- jobs of the other routes ------------------------------------------------------------ */

typedef struct wl_job {
  char user_id[ID_MAX];
  workload_window_t w;
  long n;
  int by_day; /* summary: group_by=day */
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

/* GET /api/workloads/summary?from=&to=&group_by= */
static int summary_work(void *p) {
  wl_job_t *j = p;
  return job_finish(j, workloads_summary_ex(g_app->store, j->user_id, &j->w, j->by_day, &j->out));
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
  /* group_by=day adds the per-day, per-model rows (the dashboard's cost by model per day) */
  const char *g;
  int by_day = 0;
  if (http_req_query(r, "group_by", &g)) {
    if (strcmp(g, "day") != 0) {
      http_respond_error(r, AGD_EBAD_REQUEST, "query parameter group_by: expected day", NULL);
      return;
    }
    by_day = 1;
  }
  wl_job_t *j = job_for(ctx);
  j->w = w;
  j->by_day = by_day;
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
  workloads_ingest_shutdown(); /* no chunk job runs any more: join the parser's helpers */
  workloads_cache_clear();
}
