#!/usr/bin/env bash
# Run every Criterion unit test binary of a build directory.  Criterion runs
# tests in child processes and does not fail a test on a sanitizer report, so
# the output is also searched for ASan/LSan/UBSan reports: any report fails.
set -uo pipefail
dir=${1:-build-test}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0
total=0
for t in "$dir"/test_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  total=$((total + 1))
  log=$(mktemp)
  "$t" --jobs 2 >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] || grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log"; then
    echo "FAIL $(basename "$t") (exit $rc)"
    cat "$log"
    fail=$((fail + 1))
  else
    echo "ok   $(basename "$t"): $(grep -E 'Synthesis' "$log" | tail -1)"
  fi
  rm -f "$log"
done
echo "unit: $((total - fail)) passed, $fail failed"
[ $fail -eq 0 ] && [ $total -gt 0 ]
