/* workloads/ingest.c — record validation and the streaming parsers of POST
 * /api/workloads (SPEC §8): a JSON array, JSONL, or CSV with a header row, fed in
 * pieces of any size (the API hands ~1 MiB chunks, each on a worker job).
 *
 * Nothing holds the whole upload: a parser keeps only the unfinished line / element /
 * CSV record of the previous piece (≤ WORKLOADS_RECORD_MAX bytes) and a batch of
 * parsed records (≤ WORKLOADS_TX_RECORDS), stored through workloads_insert() one
 * transaction per batch.  Bad records are listed with their line (JSON array: the
 * element's index from 1) and reason; good ones are stored.  One thread at a time
 * per ingest (the API runs one chunk job at a time per request).
 *
 * A big JSONL piece is parsed in two halves, the second by one of INGEST_HELPERS threads
 * shared by every ingest: created once at first use, fed through a queue of at most
 * INGEST_QUEUE_MAX halves, stopped by workloads_ingest_shutdown().  A half that finds the
 * queue full, or is still queued when its caller is done with the first half, is parsed
 * by the caller itself, so no upload waits behind another and the thread count stays
 * fixed however many uploads run (issue 13, defect 9: a thread per piece before).
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/ids.h"
#include "workloads/wl_int.h"

#define TS_MAX 253402300799.0 /* 9999-12-31T23:59:59Z */
#define TOKENS_MAX 1e12
#define NUM_MAX 1e15
#define JSON_DEPTH_MAX 64     /* SPEC conventions: JSON depth */
#define CSV_FIELDS_MAX 256

/* ---- time --------------------------------------------------------------------------------- */

static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i])) return -1;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 0;
}

static int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return d[m - 1];
}

int workloads_parse_time(const char *s, double *out) {
  if (!s || !*s || strlen(s) > 64) return -1;
  /* epoch seconds: digits with an optional fraction */
  const char *p = s;
  while (isdigit((unsigned char)*p)) p++;
  if (p > s && (*p == '\0' || (*p == '.' && isdigit((unsigned char)p[1])))) {
    if (*p == '.') {
      p++;
      while (isdigit((unsigned char)*p)) p++;
    }
    if (*p == '\0' && p - s <= 32) {
      double v = strtod(s, NULL);
      if (!(v >= 0 && v <= TS_MAX)) return -1;
      *out = v;
      return 0;
    }
  }
  /* ISO 8601: YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|±HH[:MM]] */
  p = s;
  int y, mo, d, h = 0, mi = 0, sec = 0;
  double frac = 0;
  if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d)) return -1;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return -1;
  long offset = 0;
  if (*p == 'T' || *p == 't' || *p == ' ') {
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi)) return -1;
    if (*p == ':') {
      p++;
      if (digits(&p, 2, &sec)) return -1;
      if (*p == '.' || *p == ',') {
        p++;
        double scale = 0.1;
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) {
          frac += (*p++ - '0') * scale;
          scale /= 10;
        }
      }
    }
    if (h > 23 || mi > 59 || sec > 60) return -1; /* :60 leap second, as 60 */
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
      if (digits(&p, 2, &oh)) return -1;
      if (*p == ':') p++;
      if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) return -1;
      if (oh > 23 || om > 59) return -1;
      offset = sign * (oh * 3600L + om * 60L);
    }
  }
  if (*p != '\0') return -1;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  double v = (double)timegm(&tm) - (double)offset + frac;
  if (!(v >= 0 && v <= TS_MAX)) return -1;
  *out = v;
  return 0;
}

int wl_args_window(const json_t *args, workload_window_t *w, char *err, size_t cap) {
  w->from = w->to = 0;
  static const char *const names[] = {"from", "to"};
  for (int i = 0; i < 2; i++) {
    json_t *v = args ? json_object_get(args, names[i]) : NULL;
    double t = 0;
    if (!v || json_is_null(v)) continue;
    if (json_is_number(v)) {
      t = json_number_value(v);
      if (!(t >= 0 && t <= TS_MAX)) {
        snprintf(err, cap, "%s: out of range", names[i]);
        return -1;
      }
    } else if (json_is_string(v)) {
      if (workloads_parse_time(json_string_value(v), &t) != 0) {
        snprintf(err, cap, "%s: not epoch seconds nor an ISO 8601 time", names[i]);
        return -1;
      }
    } else {
      snprintf(err, cap, "%s: must be epoch seconds or an ISO 8601 string", names[i]);
      return -1;
    }
    if (i == 0) w->from = t;
    else w->to = t;
  }
  if (w->from && w->to && w->to < w->from) {
    snprintf(err, cap, "to is before from");
    return -1;
  }
  return 0;
}

/* ---- one record ----------------------------------------------------------------------------- */

#define FAIL(...)                          \
  do {                                     \
    snprintf(err, cap, __VA_ARGS__);       \
    return -1;                             \
  } while (0)

/* A required (req) or optional string field into dst (cap dcap). */
static int get_str(const json_t *o, const char *name, int req, char *dst, size_t dcap, char *err, size_t cap) {
  json_t *v = json_object_get(o, name);
  dst[0] = '\0';
  if (!v || json_is_null(v)) {
    if (req) FAIL("missing field: %s", name);
    return 0;
  }
  if (!json_is_string(v)) FAIL("wrong type: %s must be a string", name);
  size_t n = json_string_length(v);
  if (req && n == 0) FAIL("missing field: %s is empty", name);
  if (n >= dcap) FAIL("too long: %s exceeds %zu bytes", name, dcap - 1);
  const char *s = json_string_value(v);
  if (memchr(s, '\0', n)) FAIL("bad value: %s contains a NUL character", name);
  memcpy(dst, s, n + 1);
  return 0;
}

/* A non-negative number (integer when integral) field; *present 0 when absent/null. */
static int get_num(const json_t *o, const char *name, int req, int integral, double max, double *out,
                   int *present, char *err, size_t cap) {
  json_t *v = json_object_get(o, name);
  *present = 0;
  if (!v || json_is_null(v)) {
    if (req) FAIL("missing field: %s", name);
    return 0;
  }
  if (!json_is_number(v))
    FAIL("wrong type: %s must be a %s", name, integral ? "non-negative integer" : "non-negative number");
  double d = json_number_value(v);
  if (d < 0) FAIL("negative number: %s", name);
  if (!isfinite(d) || d > max) FAIL("too large: %s", name);
  if (integral && d != floor(d)) FAIL("wrong type: %s must be a non-negative integer", name);
  *out = d;
  *present = 1;
  return 0;
}

int workloads_rec_from_json(const json_t *o, workload_rec_t *r, char *err, size_t cap) {
  memset(r, 0, sizeof *r);
  if (!json_is_object(o)) FAIL("record is not a JSON object");
  json_t *ts = json_object_get(o, "timestamp");
  if (!ts || json_is_null(ts)) FAIL("missing field: timestamp");
  if (json_is_number(ts)) {
    double t = json_number_value(ts);
    if (t < 0) FAIL("bad timestamp: negative number");
    if (!(t <= TS_MAX)) FAIL("bad timestamp: out of range (epoch seconds expected)");
    r->timestamp = t;
  } else if (json_is_string(ts)) {
    if (memchr(json_string_value(ts), '\0', json_string_length(ts))) FAIL("bad timestamp: contains a NUL character");
    if (workloads_parse_time(json_string_value(ts), &r->timestamp) != 0)
      FAIL("bad timestamp: \"%.40s\" is neither epoch seconds nor ISO 8601", json_string_value(ts));
  } else {
    FAIL("wrong type: timestamp must be epoch seconds or an ISO 8601 string");
  }
  if (get_str(o, "model", 1, r->model, sizeof r->model, err, cap)) return -1;
  if (get_str(o, "provider", 1, r->provider, sizeof r->provider, err, cap)) return -1;
  double v;
  int present;
  if (get_num(o, "prompt_tokens", 1, 1, TOKENS_MAX, &v, &present, err, cap)) return -1;
  r->prompt_tokens = (long long)v;
  if (get_num(o, "completion_tokens", 1, 1, TOKENS_MAX, &v, &present, err, cap)) return -1;
  r->completion_tokens = (long long)v;
  if (get_num(o, "latency_ms", 1, 0, NUM_MAX, &r->latency_ms, &present, err, cap)) return -1;
  int has_cost = 0;
  if (get_num(o, "cost_usd", 0, 0, NUM_MAX, &r->cost_usd, &has_cost, err, cap)) return -1;
  json_t *st = json_object_get(o, "status");
  if (st && !json_is_null(st)) {
    if (!json_is_string(st)) FAIL("wrong type: status must be \"success\" or \"error\"");
    const char *s = json_string_value(st);
    if (memchr(s, '\0', json_string_length(st))) FAIL("bad status: contains a NUL character");
    if (strcasecmp(s, "error") == 0) r->is_error = 1;
    else if (strcasecmp(s, "success") != 0) FAIL("bad status: \"%.40s\" (expected \"success\" or \"error\")", s);
  }
  if (get_str(o, "feature", 0, r->feature, sizeof r->feature, err, cap)) return -1;
  if (get_str(o, "prompt_hash", 0, r->prompt_hash, sizeof r->prompt_hash, err, cap)) return -1;
  if (!has_cost) {
    const wl_price_t *p = wl_price_find(r->provider, r->model);
    if (!p) FAIL("unknown model for pricing: %s; give cost_usd", r->model);
    r->cost_usd = wl_price_cost(p, r->prompt_tokens, r->completion_tokens);
  }
  return 0;
}

/* ---- the streaming ingest -------------------------------------------------------------------- */

/* Where parsed records and rejections go: the ingest's own, or a helper thread's
 * while it parses its part of a JSONL piece (merged in order afterwards). */
typedef struct wl_sink {
  workload_rec_t *recs;
  size_t n, cap;
  json_t *rejected;        /* [{"line","error"}], at most WORKLOADS_REJECTED_MAX */
  long rejected_total;
} wl_sink_t;

static void sink_init(wl_sink_t *k) {
  memset(k, 0, sizeof *k);
  k->rejected = json_array();
  if (!k->rejected) abort();
}

static void sink_dispose(wl_sink_t *k) {
  free(k->recs);
  json_decref(k->rejected);
  memset(k, 0, sizeof *k);
}

/* Room for one more record; the caller fills it and commits with k->n++. */
static workload_rec_t *sink_slot(wl_sink_t *k) {
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 1024;
    k->recs = realloc(k->recs, k->cap * sizeof *k->recs);
    if (!k->recs) abort();
  }
  return &k->recs[k->n];
}

static void sink_reject(wl_sink_t *k, long line, const char *why) {
  k->rejected_total++;
  if (json_array_size(k->rejected) >= WORKLOADS_REJECTED_MAX) return;
  /* why may hold bytes of the upload: keep the entry valid UTF-8 */
  json_t *e = json_string(why);
  if (!e) e = json_string("invalid record (its text is not valid UTF-8)");
  json_array_append_new(k->rejected, json_pack("{s:I, s:o}", "line", (json_int_t)line, "error", e));
}

/* Validate one parsed record into k. */
static void sink_json(wl_sink_t *k, long line, const json_t *o) {
  char err[200];
  if (workloads_rec_from_json(o, sink_slot(k), err, sizeof err) != 0) sink_reject(k, line, err);
  else k->n++;
}

static void sink_text(wl_sink_t *k, long line, const char *p, size_t n) {
  json_error_t jerr;
  /* \u0000 is valid JSON: decoded, so the field holding it is named in the
   * rejection (get_str) rather than the record called malformed. */
  json_t *o = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!o) {
    char why[240];
    snprintf(why, sizeof why, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
    sink_reject(k, line, why);
    return;
  }
  sink_json(k, line, o);
  json_decref(o);
}

enum { J_START, J_FIRST, J_NEXT, J_ELEM, J_AFTER, J_TRAILER, J_DONE };

/* The record fields a CSV header may name (others are ignored). */
static const char *const csv_fields[] = {"timestamp", "model",   "provider", "prompt_tokens", "completion_tokens",
                                         "latency_ms", "cost_usd", "status",   "feature",       "prompt_hash"};
#define CSV_NF (sizeof csv_fields / sizeof csv_fields[0])
enum { CSV_REQUIRED = 6 }; /* the first six are required */

struct workloads_ingest {
  store_t *s;
  char user_id[ID_MAX];
  workloads_format_t fmt;
  /* the unfinished line / element / CSV record */
  char *carry;
  size_t carry_len, carry_cap;
  int overflow;            /* it passed WORKLOADS_RECORD_MAX: rejected when complete */
  long line;               /* physical line (1-based) at the current position */
  long rec_line;           /* line where the current record started */
  int started;             /* past a leading byte order mark */
  int bom;                 /* bytes of it seen so far */
  /* JSON array scanner */
  int js, depth, max_depth, in_str, esc, scalar;
  int elem_bad;            /* the element followed another without a comma */
  long index;
  /* CSV */
  int cq;                  /* 0 field start, 1 unquoted, 2 quoted, 3 quote in quoted */
  size_t field_off[CSV_FIELDS_MAX];
  int nfields;
  int too_many_fields, has_nul, row_has_data;
  int have_header, ncols;
  int col_field[CSV_FIELDS_MAX]; /* column → csv_fields index, -1 ignored */
  /* results */
  wl_sink_t out;           /* parsed records not yet stored, and the rejections */
  wl_sink_t aux;           /* the helper thread's (kept: its memory is reused) */
  int deferred;            /* records wait for workloads_ingest_take() instead of being stored */
  long inserted;
  int fatal;
  char fatal_msg[256];
};

workloads_ingest_t *workloads_ingest_new(store_t *s, const char *user_id, workloads_format_t fmt) {
  workloads_ingest_t *in = calloc(1, sizeof *in);
  if (!in) abort();
  in->s = s;
  snprintf(in->user_id, sizeof in->user_id, "%s", user_id ? user_id : "");
  in->fmt = fmt;
  in->line = 1;
  in->rec_line = 1;
  sink_init(&in->out);
  sink_init(&in->aux);
  return in;
}

void workloads_ingest_free(workloads_ingest_t *in) {
  if (!in) return;
  free(in->carry);
  sink_dispose(&in->out);
  sink_dispose(&in->aux);
  free(in);
}

int workloads_ingest_error(const workloads_ingest_t *in, const char **msg) {
  if (msg) *msg = in->fatal ? in->fatal_msg : NULL;
  return in->fatal;
}

json_t *workloads_ingest_result(const workloads_ingest_t *in) {
  return json_pack("{s:I, s:O, s:I}", "inserted", (json_int_t)in->inserted, "rejected", in->out.rejected,
                   "rejected_total", (json_int_t)in->out.rejected_total);
}

static void set_fatal(workloads_ingest_t *in, int code, const char *msg) {
  if (in->fatal) return;
  in->fatal = code;
  snprintf(in->fatal_msg, sizeof in->fatal_msg, "%s", msg);
}

static void reject(workloads_ingest_t *in, long line, const char *why) { sink_reject(&in->out, line, why); }

/* Store what was parsed (unless the caller takes it: deferred mode). */
static void flush(workloads_ingest_t *in) {
  if (in->out.n == 0 || in->fatal || in->deferred) return;
  long n = 0;
  int rc = workloads_insert(in->s, in->user_id, in->out.recs, in->out.n, &n);
  in->inserted += n;
  in->out.n = 0;
  if (rc) set_fatal(in, rc, "the database refused the records");
}

static void flush_full(workloads_ingest_t *in) {
  if (in->out.n >= WORKLOADS_TX_RECORDS) flush(in);
}

static void take_json(workloads_ingest_t *in, long line, const json_t *o) {
  sink_json(&in->out, line, o);
  flush_full(in);
}

static void take_text(workloads_ingest_t *in, long line, const char *p, size_t n) {
  sink_text(&in->out, line, p, n);
  flush_full(in);
}

void workloads_ingest_set_deferred(workloads_ingest_t *in, int on) { in->deferred = on; }

size_t workloads_ingest_take(workloads_ingest_t *in, workload_rec_t **recs, size_t *cap) {
  size_t n = in->out.n;
  *recs = n ? in->out.recs : NULL;
  if (cap) *cap = n ? in->out.cap : 0;
  if (n) {
    in->out.recs = NULL;
    in->out.n = in->out.cap = 0;
  }
  return n;
}

void workloads_ingest_give(workloads_ingest_t *in, workload_rec_t *recs, size_t cap) {
  if (!recs) return;
  if (in->out.n || in->out.cap >= cap) { /* keep what is there */
    free(recs);
    return;
  }
  free(in->out.recs);
  in->out.recs = recs;
  in->out.cap = cap;
}

static void carry_add(workloads_ingest_t *in, const char *p, size_t n) {
  if (in->overflow || n == 0) return;
  if (in->carry_len + n > WORKLOADS_RECORD_MAX) {
    in->overflow = 1;
    return;
  }
  if (in->carry_len + n + 1 > in->carry_cap) {
    size_t cap = (in->carry_len + n + 1) * 2;
    if (cap > WORKLOADS_RECORD_MAX + 1) cap = WORKLOADS_RECORD_MAX + 1;
    in->carry = realloc(in->carry, cap);
    if (!in->carry) abort();
    in->carry_cap = cap;
  }
  memcpy(in->carry + in->carry_len, p, n);
  in->carry_len += n;
}

static void carry_reset(workloads_ingest_t *in) {
  in->carry_len = 0;
  in->overflow = 0;
}

/* A UTF-8 byte order mark at the very start is skipped (it may arrive split across
 * pieces).  Returns how many bytes of p to skip. */
static size_t skip_bom(workloads_ingest_t *in, const char *p, size_t n) {
  static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
  size_t k = 0;
  while (!in->started && k < n) {
    if (p[k] != bom[in->bom]) {
      in->started = 1; /* not a BOM (a partial one before this byte is dropped: never valid UTF-8) */
      break;
    }
    k++;
    if (++in->bom == 3) in->started = 1;
  }
  return k;
}

/* ---- JSONL ---- */

static int blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)p[i])) return 0;
  return 1;
}

#define PAR_MIN (64 * 1024) /* a piece's complete lines are parsed on two threads past this size */

static void jsonl_line_to(wl_sink_t *k, long line, const char *p, size_t n, int overflow) {
  if (overflow || n > WORKLOADS_RECORD_MAX) {
    sink_reject(k, line, "line too long (over 1 MiB)");
    return;
  }
  if (n && p[n - 1] == '\r') n--;
  if (blank(p, n)) return;
  sink_text(k, line, p, n);
}

static void jsonl_line(workloads_ingest_t *in, const char *p, size_t n, int overflow) {
  jsonl_line_to(&in->out, in->line, p, n, overflow);
}

/* A run of complete lines [p, end) (end just past a '\n') starting at line `line`. */
typedef struct seg {
  const char *p, *end;
  long line;
  wl_sink_t *sink;
  int state;          /* SEG_*, under hp_mu while queued or running on a helper */
  struct seg *next;   /* the helpers' queue */
} seg_t;
enum { SEG_QUEUED, SEG_RUNNING, SEG_DONE };

static void *seg_parse(void *arg) {
  seg_t *g = arg;
  for (const char *p = g->p; p < g->end;) {
    const char *nl = memchr(p, '\n', (size_t)(g->end - p));
    jsonl_line_to(g->sink, g->line++, p, (size_t)(nl - p), 0);
    p = nl + 1;
  }
  return NULL;
}

/* ---- the helper threads ---- */

#define INGEST_HELPERS 2   /* the machine this targets has 2 cores; the callers parse too */
#define INGEST_QUEUE_MAX 4 /* halves waiting for a helper; past it the caller parses */

static pthread_mutex_t hp_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hp_work = PTHREAD_COND_INITIALIZER; /* queued work or stopping */
static pthread_cond_t hp_done = PTHREAD_COND_INITIALIZER; /* a helper finished a half */
static seg_t *hp_head, **hp_tail = &hp_head;
static size_t hp_queued;
static pthread_t hp_threads[INGEST_HELPERS];
static int hp_n;        /* helpers running */
static int hp_started;  /* hp_n was set up (0 helpers if pthread_create failed: callers parse) */
static int hp_stopping;

static void *hp_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&hp_mu);
  for (;;) {
    while (!hp_head && !hp_stopping) pthread_cond_wait(&hp_work, &hp_mu);
    if (!hp_head) break; /* stopping, and nothing left */
    seg_t *g = hp_head;
    hp_head = g->next;
    if (!hp_head) hp_tail = &hp_head;
    hp_queued--;
    g->state = SEG_RUNNING;
    pthread_mutex_unlock(&hp_mu);
    seg_parse(g);
    pthread_mutex_lock(&hp_mu);
    g->state = SEG_DONE;
    pthread_cond_broadcast(&hp_done);
  }
  pthread_mutex_unlock(&hp_mu);
  return NULL;
}

/* Queue g for a helper: 1, or 0 when the caller must parse it (no helper, queue full). */
static int hp_submit(seg_t *g) {
  pthread_mutex_lock(&hp_mu);
  if (!hp_started && !hp_stopping) {
    hp_started = 1;
    while (hp_n < INGEST_HELPERS && pthread_create(&hp_threads[hp_n], NULL, hp_main, NULL) == 0) hp_n++;
  }
  int ok = hp_n > 0 && !hp_stopping && hp_queued < INGEST_QUEUE_MAX;
  if (ok) {
    g->state = SEG_QUEUED;
    g->next = NULL;
    *hp_tail = g;
    hp_tail = &g->next;
    hp_queued++;
    pthread_cond_signal(&hp_work);
  }
  pthread_mutex_unlock(&hp_mu);
  return ok;
}

/* Wait for a submitted g; one no helper took yet is taken back and parsed here. */
static void hp_finish(seg_t *g) {
  pthread_mutex_lock(&hp_mu);
  if (g->state == SEG_QUEUED) {
    seg_t **pp = &hp_head;
    while (*pp != g) pp = &(*pp)->next;
    *pp = g->next;
    if (hp_tail == &g->next) hp_tail = pp;
    hp_queued--;
    pthread_mutex_unlock(&hp_mu);
    seg_parse(g);
    return;
  }
  while (g->state != SEG_DONE) pthread_cond_wait(&hp_done, &hp_mu);
  pthread_mutex_unlock(&hp_mu);
}

void workloads_ingest_shutdown(void) {
  pthread_mutex_lock(&hp_mu);
  hp_stopping = 1;
  pthread_cond_broadcast(&hp_work);
  int n = hp_n;
  pthread_mutex_unlock(&hp_mu);
  for (int i = 0; i < n; i++) pthread_join(hp_threads[i], NULL);
  pthread_mutex_lock(&hp_mu);
  hp_n = 0;
  hp_started = 0;
  hp_stopping = 0; /* a later ingest (tests) starts them again */
  pthread_mutex_unlock(&hp_mu);
}

int workloads_ingest_helpers(void) {
  pthread_mutex_lock(&hp_mu);
  int n = hp_n;
  pthread_mutex_unlock(&hp_mu);
  return n;
}

/* Append k's records and rejections (they come after in->out's) to in->out. */
static void sink_merge(workloads_ingest_t *in, wl_sink_t *k) {
  wl_sink_t *o = &in->out;
  if (k->n) {
    if (o->n + k->n > o->cap) {
      o->cap = (o->n + k->n) * 5 / 4;
      o->recs = realloc(o->recs, o->cap * sizeof *o->recs);
      if (!o->recs) abort();
    }
    memcpy(o->recs + o->n, k->recs, k->n * sizeof *k->recs);
    o->n += k->n;
  }
  size_t i;
  json_t *e;
  json_array_foreach(k->rejected, i, e) if (json_array_size(o->rejected) < WORKLOADS_REJECTED_MAX)
      json_array_append(o->rejected, e);
  o->rejected_total += k->rejected_total;
}

/* The complete lines [p, stop): on this thread, or split in two at a newline with the
 * second half offered to the helpers (jansson is the cost; each half has its own sink). */
static void jsonl_lines(workloads_ingest_t *in, const char *p, const char *stop) {
  seg_t a = {.p = p, .end = stop, .line = in->line, .sink = &in->out}, b = {0};
  wl_sink_t *kb = &in->aux;
  int two = 0;
  if (stop - p >= PAR_MIN) {
    const char *half = p + (stop - p) / 2;
    const char *nl = memchr(half, '\n', (size_t)(stop - half)); /* stop[-1] is one */
    if (nl + 1 < stop) {
      long first_lines = 0;
      for (const char *q = p; (q = memchr(q, '\n', (size_t)(nl + 1 - q))) != NULL; q++) first_lines++;
      kb->n = 0;
      kb->rejected_total = 0;
      json_array_clear(kb->rejected);
      b = (seg_t){.p = nl + 1, .end = stop, .line = in->line + first_lines, .sink = kb};
      a.end = nl + 1;
      two = hp_submit(&b);
      if (!two) a.end = stop;
    }
  }
  seg_parse(&a);
  in->line = a.line;
  if (two) {
    hp_finish(&b);
    sink_merge(in, kb);
    in->line = b.line;
  }
  flush_full(in);
}

static void feed_jsonl(workloads_ingest_t *in, const char *p, size_t n, int last) {
  const char *end = p + n;
  if (in->carry_len || in->overflow) { /* finish the line the previous piece began */
    const char *nl = memchr(p, '\n', n);
    carry_add(in, p, (size_t)((nl ? nl : end) - p));
    if (nl) {
      jsonl_line(in, in->carry, in->carry_len, in->overflow);
      carry_reset(in);
      in->line++;
      flush_full(in);
    }
    p = nl ? nl + 1 : end;
  }
  if (p < end && !in->fatal) {
    const char *last_nl = memrchr(p, '\n', (size_t)(end - p));
    if (last_nl) {
      jsonl_lines(in, p, last_nl + 1);
      p = last_nl + 1;
    }
    carry_add(in, p, (size_t)(end - p));
  }
  if (last && (in->carry_len || in->overflow) && !in->fatal) {
    jsonl_line(in, in->carry, in->carry_len, in->overflow);
    carry_reset(in);
  }
}

/* ---- JSON array ---- */

static void json_elem_done(workloads_ingest_t *in, const char *start, const char *stop) {
  if (in->carry_len || in->overflow) {
    carry_add(in, start, (size_t)(stop - start));
    start = in->carry;
    stop = in->carry + in->carry_len;
  }
  if (in->overflow) reject(in, in->index, "record too large (over 1 MiB)");
  else if (in->elem_bad) reject(in, in->index, "invalid JSON: missing ',' before this element");
  else if (in->max_depth > JSON_DEPTH_MAX) reject(in, in->index, "record nested too deeply (over 64 levels)");
  else take_text(in, in->index, start, (size_t)(stop - start));
  carry_reset(in);
}

static void json_elem_begin(workloads_ingest_t *in, char ch) {
  in->index++;
  in->js = J_ELEM;
  in->depth = in->max_depth = 0;
  in->in_str = in->esc = in->elem_bad = 0;
  in->scalar = !(ch == '{' || ch == '[');
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void feed_json(workloads_ingest_t *in, const char *p, size_t n, int last) {
  const char *end = p + n, *elem = in->js == J_ELEM ? p : NULL;
  for (; p < end && !in->fatal; p++) {
    char c = *p;
    switch (in->js) {
    case J_START:
      if (is_ws(c)) continue;
      if (c != '[') {
        set_fatal(in, AGD_EBAD_REQUEST, "the body is not a JSON array of records (expected '[')");
        return;
      }
      in->js = J_FIRST;
      continue;
    case J_FIRST:
    case J_NEXT:
      if (is_ws(c)) continue;
      if (c == ']') {
        if (in->js == J_NEXT) reject(in, in->index + 1, "invalid JSON: trailing comma before ']'");
        in->js = J_TRAILER;
        continue;
      }
      if (c == ',') {
        reject(in, in->index + 1, "invalid JSON: empty element");
        in->index++;
        continue;
      }
      json_elem_begin(in, c);
      elem = p;
      break; /* scan this byte as part of the element */
    case J_AFTER:
      if (is_ws(c)) continue;
      if (c == ',') {
        in->js = J_NEXT;
        continue;
      }
      if (c == ']') {
        in->js = J_TRAILER;
        continue;
      }
      /* a missing comma: the element that follows is rejected, the scan goes on */
      json_elem_begin(in, c);
      elem = p;
      in->elem_bad = 1; /* rejected when it ends; the scan goes on */
      break;
    case J_TRAILER:
      if (is_ws(c)) continue;
      reject(in, in->index + 1, "unexpected data after the end of the JSON array");
      in->js = J_DONE;
      return;
    case J_DONE:
      return;
    }
    /* J_ELEM */
    if (in->in_str) {
      if (in->esc) in->esc = 0;
      else if (c == '\\') in->esc = 1;
      else if (c == '"') in->in_str = 0;
      continue;
    }
    if (in->scalar) {
      if (c == '"' && p == elem && in->carry_len == 0) {
        in->in_str = 1;
        continue;
      }
      if (c == ',' || c == ']' || is_ws(c)) {
        json_elem_done(in, elem, p);
        elem = NULL;
        in->js = J_AFTER;
        p--; /* the delimiter again, in J_AFTER */
      }
      continue;
    }
    if (c == '"') {
      in->in_str = 1;
    } else if (c == '{' || c == '[') {
      if (++in->depth > in->max_depth) in->max_depth = in->depth;
    } else if (c == '}' || c == ']') {
      if (--in->depth == 0) {
        json_elem_done(in, elem, p + 1);
        elem = NULL;
        in->js = J_AFTER;
      }
    }
  }
  if (in->js == J_ELEM && elem) carry_add(in, elem, (size_t)(end - elem));
  if (!last || in->fatal) return;
  switch (in->js) {
  case J_START:
    set_fatal(in, AGD_EBAD_REQUEST, "the body is empty: expected a JSON array of records");
    break;
  case J_ELEM:
    if (in->scalar && !in->in_str) {
      json_elem_done(in, in->carry, in->carry); /* a scalar at the very end */
      reject(in, in->index + 1, "unexpected end of input: the JSON array is not closed");
    } else {
      reject(in, in->index, "invalid JSON: unexpected end of input inside this element");
    }
    carry_reset(in);
    break;
  case J_FIRST:
  case J_NEXT:
  case J_AFTER:
    reject(in, in->index + 1, "unexpected end of input: the JSON array is not closed");
    break;
  default:
    break;
  }
}

/* ---- CSV ---- */

static int streq_ci_trim(const char *a, const char *name) {
  while (*a == ' ' || *a == '\t') a++;
  size_t n = strlen(name);
  if (strncasecmp(a, name, n) != 0) return 0;
  a += n;
  while (*a == ' ' || *a == '\t') a++;
  return *a == '\0';
}

static void csv_header(workloads_ingest_t *in) {
  int have[CSV_NF] = {0};
  in->ncols = in->nfields;
  for (int c = 0; c < in->nfields; c++) {
    const char *name = in->carry + in->field_off[c];
    in->col_field[c] = -1;
    for (size_t f = 0; f < CSV_NF; f++)
      if (!have[f] && streq_ci_trim(name, csv_fields[f])) {
        in->col_field[c] = (int)f;
        have[f] = 1;
        break;
      }
  }
  char missing[200] = "";
  for (size_t f = 0; f < CSV_REQUIRED; f++)
    if (!have[f]) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", missing[0] ? ", " : "",
                           csv_fields[f]);
  if (missing[0]) {
    char msg[256];
    snprintf(msg, sizeof msg, "the CSV header lacks required column(s): %s", missing);
    set_fatal(in, AGD_EBAD_REQUEST, msg);
  }
  in->have_header = 1;
}

/* A CSV value as JSON: numbers for the numeric columns when the text is one. */
static json_t *csv_value(size_t f, const char *s) {
  if (f == 0 || f == 3 || f == 4 || f == 5 || f == 6) {
    const char *a = s;
    while (*a == ' ' || *a == '\t') a++;
    char *e;
    double d = strtod(a, &e);
    while (*e == ' ' || *e == '\t') e++;
    if (e != a && *e == '\0' && isfinite(d) && (isdigit((unsigned char)*a) || *a == '-' || *a == '.')) {
      if (d == floor(d) && fabs(d) < 9e15 && !strpbrk(a, ".eE")) return json_integer((json_int_t)d);
      return json_real(d);
    }
  }
  return json_string(s); /* NULL when not UTF-8 */
}

static void csv_record(workloads_ingest_t *in) {
  long line = in->rec_line;
  if (!in->row_has_data && in->nfields <= 1 && !in->overflow) return; /* blank line */
  if (in->overflow) {
    reject(in, line, "record too large (over 1 MiB)");
    return;
  }
  if (!in->have_header) {
    csv_header(in);
    return;
  }
  if (in->too_many_fields || in->nfields != in->ncols) {
    char why[96];
    snprintf(why, sizeof why, "wrong number of fields: expected %d, got %d", in->ncols,
             in->too_many_fields ? CSV_FIELDS_MAX : in->nfields);
    reject(in, line, why);
    return;
  }
  if (in->has_nul) {
    reject(in, line, "bad value: a NUL character in a field");
    return;
  }
  json_t *o = json_object();
  for (int c = 0; c < in->nfields; c++) {
    int f = in->col_field[c];
    const char *v = in->carry + in->field_off[c];
    if (f < 0 || v[0] == '\0') continue; /* ignored column, or empty: absent */
    json_t *j = csv_value((size_t)f, v);
    if (!j) {
      char why[96];
      snprintf(why, sizeof why, "bad value: %s is not valid UTF-8", csv_fields[f]);
      reject(in, line, why);
      json_decref(o);
      return;
    }
    json_object_set_new(o, csv_fields[f], j);
  }
  take_json(in, line, o);
  json_decref(o);
}

static void csv_end_field(workloads_ingest_t *in) {
  carry_add(in, "", 1); /* NUL terminator */
  if (in->nfields < CSV_FIELDS_MAX) in->field_off[in->nfields++] = in->carry_len; /* next field's start */
  else in->too_many_fields = 1;
  in->cq = 0;
}

static void csv_end_record(workloads_ingest_t *in) {
  /* field_off[k] holds the start of field k; the last entry points past the row */
  in->nfields--; /* the slot opened by the last csv_end_field */
  csv_record(in);
  carry_reset(in);
  in->nfields = 1;
  in->field_off[0] = 0;
  in->too_many_fields = in->has_nul = in->row_has_data = 0;
  in->cq = 0;
}

static void csv_char(workloads_ingest_t *in, char c) {
  if (c == '\0') in->has_nul = 1;
  carry_add(in, &c, 1);
  in->row_has_data = 1;
}

static void feed_csv(workloads_ingest_t *in, const char *p, size_t n, int last) {
  if (in->nfields == 0) {
    in->nfields = 1;
    in->field_off[0] = 0;
  }
  for (const char *end = p + n; p < end && !in->fatal; p++) {
    char c = *p;
    if (in->carry_len == 0 && in->nfields == 1 && in->cq == 0 && !in->row_has_data) in->rec_line = in->line;
    switch (in->cq) {
    case 0: /* field start */
      if (c == '"') {
        in->cq = 2;
        in->row_has_data = 1;
        continue;
      }
      in->cq = 1;
      /* fall through */
    case 1: /* unquoted */
      if (c == ',') {
        in->row_has_data = 1;
        csv_end_field(in);
      } else if (c == '\n') {
        csv_end_field(in);
        csv_end_record(in);
        in->line++;
      } else if (c != '\r') {
        csv_char(in, c);
      }
      continue;
    case 2: /* quoted */
      if (c == '"') in->cq = 3;
      else {
        if (c == '\n') in->line++;
        csv_char(in, c);
      }
      continue;
    case 3: /* a quote inside a quoted field: "" or the end of the quotes */
      if (c == '"') {
        csv_char(in, '"');
        in->cq = 2;
      } else if (c == ',') {
        csv_end_field(in);
      } else if (c == '\n') {
        csv_end_field(in);
        csv_end_record(in);
        in->line++;
      } else if (c != '\r') {
        csv_char(in, c); /* lenient: text after the closing quote */
        in->cq = 1;
      }
      continue;
    }
  }
  if (!last || in->fatal) return;
  if (in->cq == 2) {
    reject(in, in->rec_line, "unterminated quoted field");
    carry_reset(in);
  } else if (in->row_has_data || in->carry_len || in->nfields > 1) {
    csv_end_field(in);
    csv_end_record(in);
  }
  if (!in->have_header && !in->fatal) set_fatal(in, AGD_EBAD_REQUEST, "the body is empty: expected a CSV header row");
}

int workloads_ingest_feed(workloads_ingest_t *in, const char *data, size_t n, int last) {
  if (in->fatal) return in->fatal;
  if (n == 0) data = "";
  size_t skip = skip_bom(in, data, n);
  data += skip;
  n -= skip;
  switch (in->fmt) {
  case WORKLOADS_FMT_JSONL: feed_jsonl(in, data, n, last); break;
  case WORKLOADS_FMT_CSV: feed_csv(in, data, n, last); break;
  default: feed_json(in, data, n, last); break;
  }
  if (last) flush(in);
  return in->fatal;
}
