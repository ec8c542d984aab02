/* api/job.c — see job.h. */
#include "api/job.h"

#include <stdlib.h>

#include "api/app.h"
#include "core/metrics.h"
#include "util/err.h"

typedef struct job_hdr {
  uv_work_t work;
  http_req_t *req;
  job_work_fn fn;
  job_done_fn done;
  int rc;
  max_align_t user[]; /* the caller's struct */
} job_hdr_t;

#define HDR_OF(job) ((job_hdr_t *)((char *)(job)-offsetof(job_hdr_t, user)))

void *job_new(size_t size) {
  job_hdr_t *h = calloc(1, sizeof(*h) + size);
  if (!h) abort();
  return h->user;
}

void job_discard(void *job) {
  if (job) free(HDR_OF(job));
}

static void on_work(uv_work_t *w) {
  job_hdr_t *h = w->data;
  h->rc = h->fn(h->user);
}

/* Jobs waiting for or on a worker (the pool's queue depth, GET /metrics). */
#define JOBS_GAUGE "agentd_jobs_in_flight"

static void on_done(uv_work_t *w, int status) {
  job_hdr_t *h = w->data;
  metrics_add(JOBS_GAUGE, NULL, -1);
  if (status != 0 && h->rc == 0) h->rc = AGD_EINTERNAL;
  h->done(h->req, h->user, h->rc);
  free(h);
}

void job_run(http_req_t *r, void *job, job_work_fn work, job_done_fn done) {
  job_hdr_t *h = HDR_OF(job);
  h->req = r;
  h->fn = work;
  h->done = done;
  h->work.data = h;
  metrics_add(JOBS_GAUGE, NULL, 1);
  if (uv_queue_work(g_app->loop, &h->work, on_work, on_done) != 0) {
    metrics_add(JOBS_GAUGE, NULL, -1);
    h->rc = AGD_EUNAVAILABLE;
    done(r, job, h->rc);
    free(h);
  }
}
