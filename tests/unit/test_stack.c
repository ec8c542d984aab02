/* tests/unit/test_stack.c — util/stack.c: a thread's stack pages below its
 * frame go back to the kernel (mincore sees them leave), and the stack works
 * as before afterwards. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/stack.h"

#define DEEP (256 * 1024)

static volatile uintptr_t deep_lo; /* lowest address the deep call touched */

/* Touches DEEP bytes of stack, then returns: the pages stay resident. */
static __attribute__((noinline)) void go_deep(void) {
  volatile char big[DEEP];
  for (size_t i = 0; i < DEEP; i += 512) big[i] = (char)i;
  deep_lo = (uintptr_t)&big[0];
}

/* Resident pages of [lo, lo + len). */
static size_t resident(uintptr_t lo, size_t len) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  lo &= ~(uintptr_t)(page - 1);
  size_t n = (len + page - 1) / page;
  unsigned char *v = calloc(n, 1);
  cr_assert_eq(mincore((void *)lo, n * page, v), 0);
  size_t r = 0;
  for (size_t i = 0; i < n; i++) r += v[i] & 1;
  free(v);
  return r;
}

typedef struct {
  size_t before, after, trimmed, again, second;
} probe_t;

static void *thread_main(void *arg) {
  probe_t *p = arg;
  go_deep();
  uintptr_t lo = deep_lo;
  p->before = resident(lo, DEEP / 2); /* the deeper half of what go_deep touched */
  p->trimmed = stack_trim();
  p->after = resident(lo, DEEP / 2);
  go_deep(); /* the discarded pages come back on use */
  p->again = resident(lo, DEEP / 2);
  p->second = stack_trim();
  return NULL;
}

Test(stack, trim_gives_back_the_pages_below_the_frame) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 1024 * 1024);
  pthread_t t;
  probe_t p = {0};
  cr_assert_eq(pthread_create(&t, &a, thread_main, &p), 0);
  pthread_attr_destroy(&a);
  pthread_join(t, NULL);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  cr_expect_geq(p.before, DEEP / 2 / page - 1, "the deep call's pages were resident: %zu", p.before);
  cr_expect_geq(p.trimmed, DEEP / 2, "trimmed %zu bytes", p.trimmed);
  cr_expect_eq(p.after, 0, "%zu pages of the deep half still resident", p.after);
  cr_expect_geq(p.again, DEEP / 2 / page - 1, "the stack is usable again: %zu pages", p.again);
  cr_expect_geq(p.second, DEEP / 2, "trims again after the stack grew again: %zu", p.second);
}

Test(stack, main_thread_left_alone) {
  /* Criterion runs each test in its own process: this is its main thread. */
  if (getpid() == (pid_t)gettid()) cr_expect_eq(stack_trim(), 0);
}
