/* bench/llm_provider_mem.c — the RSS per in-flight call of the openai
 * provider alone (issue 14; docs/performance.md): N threads with 64 KiB stacks
 * are created and left waiting (RSS 1), then each streams one llm_chat from
 * `llmstream --serve-only` at once; when every call has had its first delta,
 * RSS 2.  (RSS 2 - RSS 1) / N is what one call in flight costs the provider
 * (curl handle, buffers, request body, stream state), without a run.
 *
 *   make build && build/llmstream --serve-only --listen-port P --chunks 200 &
 *   cc -O2 -D_GNU_SOURCE -Isrc -Ibuild bench/llm_provider_mem.c build/libagentd_core.a build/libllhttp.a \
 *      $(pkg-config --libs libuv jansson libjwt libargon2 sqlite3 libpq hiredis libcurl openssl) -lm -lpthread \
 *      -o build/llm_provider_mem
 *   ulimit -n 8192; build/llm_provider_mem P 1000
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "llm/llm.h"

static llm_t *L;
static atomic_int started;
static pthread_barrier_t bar;

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) v = strtol(line + 6, NULL, 10);
  fclose(f);
  return v;
}

static int on_text(void *ud, const char *p, size_t n) {
  (void)p, (void)n;
  int *first = ud;
  if (!*first) { *first = 1; atomic_fetch_add(&started, 1); }
  return 0;
}

static void *one(void *arg) {
  (void)arg;
  pthread_barrier_wait(&bar);
  int first = 0;
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = "Write a long report please"};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .coalesce_bytes = 256, .coalesce_ms = 25};
  const llm_stream_cb_t cb = {.on_text_delta = on_text};
  llm_response_t r;
  int rc = llm_chat(L, &req, &cb, &first, &r);
  if (rc) fprintf(stderr, "call failed: %s\n", r.error_message);
  llm_response_dispose(&r);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3 || atoi(argv[2]) < 1) {
    fprintf(stderr, "usage: llm_provider_mem LLMSTREAM_PORT N\n");
    return 2;
  }
  int n = atoi(argv[2]);
  char url[128], err[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%s/v1", argv[1]);
  llm_options_t o = {.base_url = url, .model = "bench-model", .timeout_s = 120};
  L = llm_open("openai", &o, err, sizeof err);
  if (!L) { fprintf(stderr, "%s\n", err); return 1; }
  pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 64 * 1024);
  pthread_t *ts = calloc((size_t)n, sizeof *ts);
  for (int i = 0; i < n; i++) pthread_create(&ts[i], &at, one, NULL);
  sleep(1);
  long r1 = rss_kib();
  pthread_barrier_wait(&bar);
  while (atomic_load(&started) < n) usleep(10000);
  sleep(1);
  long r2 = rss_kib();
  printf("threads idle %ld KiB, %d calls streaming %ld KiB: %.1f KiB per in-flight call (provider only)\n", r1, n, r2,
         (double)(r2 - r1) / n);
  fflush(stdout);
  for (int i = 0; i < n; i++) pthread_join(ts[i], NULL);
  llm_close(L);
  return 0;
}
