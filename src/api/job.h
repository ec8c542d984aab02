/* api/job.h — run blocking work (store queries, password hashing) for a
 * request on libuv's worker pool and finish on the loop (DESIGN.md: the loop
 * never blocks; STYLE §7: a job owns what it touches).
 *
 * A handler allocates its job state with job_new() (zeroed, `size` bytes of
 * the caller's struct), fills it with copies (never loop pointers other than
 * the request), and calls job_run().  `work` runs on a worker thread and
 * returns 0 or an AGD_E* code; `done` runs on the loop thread with that code
 * and must answer the request (answering a request whose client left is fine).
 * The job memory is freed after `done` returns.
 */
#ifndef AGD_API_JOB_H
#define AGD_API_JOB_H

#include <stddef.h>

#include "net/net.h"
#include "store/store.h"

typedef int (*job_work_fn)(void *job);
typedef void (*job_done_fn)(http_req_t *r, void *job, int rc);

/* Zeroed memory for the caller's job struct; owned by the job system. */
void *job_new(size_t size);
/* Free a job that will not be run (validation failed after job_new). */
void job_discard(void *job);
/* Queue it.  r may be NULL for work no request waits for (done gets NULL). */
void job_run(http_req_t *r, void *job, job_work_fn work, job_done_fn done);

#endif
