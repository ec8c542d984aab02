/* util/timeutil.c — clocks (util/timeutil.h).  Any thread. */
#include "util/timeutil.h"

#include <stdio.h>
#include <time.h>

double time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t time_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t time_mono_ms(void) { return time_mono_ns() / 1000000u; }

char *time_iso8601(double epoch, char out[32]) {
  /* Clamp hostile values (NaN, negative, past year 9999) before the cast. */
  if (!(epoch >= 0)) epoch = 0;
  if (epoch > 253402300799.0) epoch = 253402300799.0;
  time_t t = (time_t)epoch; /* truncation == floor for epoch >= 0 */
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, 32, "1970-01-01T00:00:00Z");
  return out;
}
