/* util/timeutil.h — clocks.  Any thread. */
#ifndef AGD_UTIL_TIMEUTIL_H
#define AGD_UTIL_TIMEUTIL_H

#include <stdint.h>

/* Wall clock, epoch seconds with sub-second precision (SPEC: times are epoch seconds). */
double time_now(void);
/* Monotonic milliseconds (for durations and timeouts). */
uint64_t time_mono_ms(void);
/* Monotonic nanoseconds. */
uint64_t time_mono_ns(void);
/* Format epoch seconds as RFC 3339 UTC ("2026-11-25T11:37:16Z") into out (≥ 32 bytes). */
char *time_iso8601(double epoch, char out[32]);

#endif
