/* util/stack.c — give back the unused part of a thread's stack (util/stack.h).
 *
 * The stack's low end (past its guard) comes from pthread_getattr_np once per
 * thread; everything between it and a margin below the current frame is
 * dead by definition (the stack grows down; nothing lives below the stack
 * pointer but the 128-byte red zone of a leaf function, and signal frames,
 * which the margin covers), so MADV_DONTNEED on it is safe at any time.
 */
#include "util/stack.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Kept below stack_trim's frame: madvise's own frame (a return address) with
 * room to spare.  Whatever the caller does next (pthread_cond_wait, a signal
 * frame) may go deeper: a discarded page comes back zeroed on first touch. */
#define STACK_TRIM_KEEP 2048

static _Thread_local uintptr_t stack_lo; /* lowest usable byte; 0: not known yet, 1: not trimmable */
static _Thread_local uintptr_t stack_hi; /* one past the highest byte */

static uintptr_t find_stack_lo(void) {
  if (syscall(SYS_gettid) == getpid()) return 1; /* the main thread: its stack grows on demand */
  pthread_attr_t a;
  if (pthread_getattr_np(pthread_self(), &a) != 0) return 1;
  void *lo = NULL;
  size_t size = 0, guard = 0;
  int rc = pthread_attr_getstack(&a, &lo, &size);
  pthread_attr_getguardsize(&a, &guard);
  pthread_attr_destroy(&a);
  if (rc != 0 || !lo) return 1;
  stack_hi = (uintptr_t)lo + size;
  return (uintptr_t)lo + guard;
}

size_t stack_trim(void) {
  if (!stack_lo) stack_lo = find_stack_lo();
  if (stack_lo == 1) return 0;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  /* The frame address, not a local's: under ASan a local may live on its heap
   * "fake stack", far from the thread's real one. */
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  if (sp < stack_lo + STACK_TRIM_KEEP || sp >= stack_hi) return 0; /* not on this thread's stack: leave it */
  uintptr_t lo = (stack_lo + page - 1) & ~(page - 1);
  uintptr_t hi = (sp - STACK_TRIM_KEEP) & ~(page - 1);
  if (hi <= lo) return 0;
  if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) return 0;
  return hi - lo;
}
