/* util/stack.h — give back the unused part of a thread's stack.
 *
 * A thread that goes to sleep for long (a run thread waiting for its model
 * call, seconds to minutes) keeps resident every stack page it ever touched:
 * its deepest call so far (SQLite, jansson, vfprintf) costs its pages for as
 * long as the thread lives, ~16 KiB per run thread at 1,000 in-flight calls.
 * stack_trim() tells the kernel those pages below the caller's frame are
 * free (madvise MADV_DONTNEED: they read back as zeros, refaulted when the
 * stack grows again).  Any thread; the main thread's stack is left alone.
 */
#ifndef AGD_UTIL_STACK_H
#define AGD_UTIL_STACK_H

#include <stddef.h>

/* Release this thread's stack pages from 2 KiB below the caller's frame down.
 * Returns the bytes advised away (0: nothing, or not possible). */
size_t stack_trim(void);

#endif
