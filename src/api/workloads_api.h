/* api/workloads_api.h — workload data over REST (SPEC §8): streamed ingest, synthetic
 * data, summary, delete, and the model price table.  Loop thread. */
#ifndef AGD_API_WORKLOADS_API_H
#define AGD_API_WORKLOADS_API_H

/* Register the routes (main thread, before the loop runs). */
void api_workloads_register(void);
/* Free what uploads left behind and the workload cache (shutdown, after the loop). */
void api_workloads_stop(void);

#endif
