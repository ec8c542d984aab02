/* tests/unit/test_workloads.c — workloads/ on a real SQLite store: the price table,
 * record validation, the streaming parsers (fed whole and byte by byte), the exact
 * summary (nearest-rank percentiles), the analyses on hand-made datasets with known
 * answers, the cache's consistency with the store, isolation and synthetic data.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "workloads/wl_int.h"
#include "workloads/workloads.h"

static char tmpdir[256];
static store_t *st;

static void setup(void) {
  log_init(LOG_OFF, LOG_FMT_TEXT);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/agentd_wl_XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
  char url[400], err[256];
  snprintf(url, sizeof url, "sqlite:%s/agentd.db", tmpdir);
  cr_assert_eq(store_open(&st, url, err, sizeof err), 0, "%s", err);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void teardown(void) {
  workloads_cache_clear();
  store_close(st);
  nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(workloads, .init = setup, .fini = teardown);

static workload_rec_t rec(double ts, const char *model, const char *provider, long long pt, long long ct, double lat,
                          double cost, int err, const char *feature, const char *hash) {
  workload_rec_t r;
  memset(&r, 0, sizeof r);
  r.timestamp = ts;
  snprintf(r.model, sizeof r.model, "%s", model);
  snprintf(r.provider, sizeof r.provider, "%s", provider);
  r.prompt_tokens = pt;
  r.completion_tokens = ct;
  r.latency_ms = lat;
  r.cost_usd = cost;
  r.is_error = err;
  snprintf(r.feature, sizeof r.feature, "%s", feature ? feature : "");
  snprintf(r.prompt_hash, sizeof r.prompt_hash, "%s", hash ? hash : "");
  return r;
}

static double num(const json_t *o, const char *path) {
  /* "a.b.c" */
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  const json_t *v = o;
  for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) v = json_object_get(v, k);
  cr_assert(json_is_number(v), "%s is not a number", path);
  return json_number_value(v);
}

/* ---- prices ---- */

Test(workloads, embedded_prices_match_the_data_file) {
  FILE *f = fopen("src/workloads/prices.json", "rb");
  if (!f) f = fopen("../src/workloads/prices.json", "rb");
  cr_assert_not_null(f, "src/workloads/prices.json not found from the test's directory");
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  cr_assert_eq(n, workloads_prices[0].len, "src/workloads/prices_embedded.c is stale: regenerate it (see docs)");
  cr_assert_eq(memcmp(buf, workloads_prices[0].data, n), 0, "src/workloads/prices_embedded.c is stale");
}

Test(workloads, price_lookup) {
  double in, out;
  cr_assert_eq(workloads_price("openai", "gpt-4o", &in, &out), 0);
  cr_expect_float_eq(in, 2.5, 1e-12);
  cr_expect_float_eq(out, 10.0, 1e-12);
  cr_assert_eq(workloads_price(NULL, "gpt-4o-mini-2024-07-18", &in, &out), 0);
  cr_expect_float_eq(in, 0.15, 1e-12);
  cr_assert_eq(workloads_price("anthropic", "claude-3-5-sonnet-20241022", &in, &out), 0);
  cr_expect_float_eq(out, 15.0, 1e-12);
  cr_assert_eq(workloads_price(NULL, "openai/GPT-4.1-mini", &in, &out), 0);
  cr_expect_float_eq(in, 0.40, 1e-12);
  cr_assert_eq(workloads_price(NULL, "o3-mini", &in, &out), 0);
  cr_expect_float_eq(in, 1.10, 1e-12);
  cr_expect_eq(workloads_price(NULL, "gpt-4oz", &in, &out), AGD_ENOT_FOUND);
  cr_expect_eq(workloads_price(NULL, "no-such-model", &in, &out), AGD_ENOT_FOUND);
  json_t *t = workloads_price_table();
  cr_assert(json_array_size(json_object_get(t, "prices")) >= 20);
  cr_expect(json_is_string(json_object_get(t, "source")));
  cr_expect(json_is_string(json_object_get(t, "as_of")));
  size_t i;
  json_t *row;
  const char *need[] = {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini",
                        "gpt-3.5-turbo", "claude-3-5-haiku", "claude-3-5-sonnet", "claude-3-7-sonnet",
                        "claude-sonnet-4", "claude-opus-4", "gemini-1.5-flash", "gemini-1.5-pro",
                        "gemini-2.0-flash", "gemini-2.5-pro", "gemini-2.5-flash"};
  for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
    int found = 0;
    json_array_foreach(json_object_get(t, "prices"), i, row) {
      if (strcmp(json_string_value(json_object_get(row, "model")), need[k]) == 0) {
        found = 1;
        const char *tier = json_string_value(json_object_get(row, "tier"));
        cr_expect(tier && (!strcmp(tier, "premium") || !strcmp(tier, "standard") || !strcmp(tier, "budget")));
      }
    }
    cr_expect(found, "%s missing from the price table", need[k]);
  }
  /* every downgrade target exists, is cheaper and of the same provider */
  json_array_foreach(json_object_get(t, "prices"), i, row) {
    const char *down = json_string_value(json_object_get(row, "downgrade_to"));
    if (!down) continue;
    const wl_price_t *a = wl_price_by_name(json_string_value(json_object_get(row, "model")));
    const wl_price_t *b = wl_price_by_name(down);
    cr_assert(a && b, "%s", down);
    cr_expect_str_eq(a->provider, b->provider);
    cr_expect(b->in_per_m < a->in_per_m || b->out_per_m < a->out_per_m);
  }
  json_decref(t);
}

/* ---- time and records ---- */

Test(workloads, parse_time) {
  double t;
  cr_assert_eq(workloads_parse_time("1718000000", &t), 0);
  cr_expect_float_eq(t, 1718000000.0, 1e-9);
  cr_assert_eq(workloads_parse_time("1718000000.25", &t), 0);
  cr_expect_float_eq(t, 1718000000.25, 1e-9);
  cr_assert_eq(workloads_parse_time("2024-06-10", &t), 0);
  cr_expect_float_eq(t, 1717977600.0, 1e-9);
  cr_assert_eq(workloads_parse_time("2024-06-10T07:00:00Z", &t), 0);
  cr_expect_float_eq(t, 1718002800.0, 1e-9);
  cr_assert_eq(workloads_parse_time("2024-06-10T09:00:00.5+02:00", &t), 0);
  cr_expect_float_eq(t, 1718002800.5, 1e-9);
  cr_assert_eq(workloads_parse_time("2024-06-10 07:00", &t), 0);
  cr_expect_float_eq(t, 1718002800.0, 1e-9);
  const char *bad[] = {"", "yesterday", "2024-13-01", "2024-02-30", "2024-06-10T25:00:00Z", "-5", "1e9",
                       "2024-06-10Tx", "2024-06-10T07:00:00Zjunk", "99999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_neq(workloads_parse_time(bad[i], &t), 0, "%s", bad[i]);
}

static int from_json(const char *text, workload_rec_t *r, char *err, size_t cap) {
  json_error_t je;
  json_t *o = json_loads(text, JSON_DECODE_ANY, &je);
  cr_assert_not_null(o, "%s", text);
  int rc = workloads_rec_from_json(o, r, err, cap);
  json_decref(o);
  return rc;
}

Test(workloads, record_validation) {
  workload_rec_t r;
  char err[200];
  cr_assert_eq(from_json("{\"timestamp\":\"2024-06-10T07:00:00Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\","
                         "\"prompt_tokens\":1000,\"completion_tokens\":500,\"latency_ms\":812.5,\"status\":\"error\","
                         "\"feature\":\"chat\",\"prompt_hash\":\"h1\"}",
                         &r, err, sizeof err),
               0, "%s", err);
  cr_expect_float_eq(r.timestamp, 1718002800.0, 1e-9);
  cr_expect_float_eq(r.cost_usd, (1000 * 2.5 + 500 * 10.0) / 1e6, 1e-12); /* from the price table */
  cr_expect_eq(r.is_error, 1);
  cr_expect_str_eq(r.feature, "chat");
  cr_expect_str_eq(r.prompt_hash, "h1");
  cr_assert_eq(from_json("{\"timestamp\":1,\"model\":\"mine\",\"provider\":\"self\",\"prompt_tokens\":1,"
                         "\"completion_tokens\":0,\"latency_ms\":0,\"cost_usd\":0.5,\"feature\":null}",
                         &r, err, sizeof err),
               0, "%s", err);
  cr_expect_float_eq(r.cost_usd, 0.5, 1e-12);
  static const struct {
    const char *json, *why;
  } cases[] = {
    {"[1]", "record is not a JSON object"},
    {"{\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,\"latency_ms\":1}",
     "missing field: timestamp"},
    {"{\"timestamp\":1,\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,\"latency_ms\":1}",
     "missing field: model"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":\"1\",\"completion_tokens\":1,"
     "\"latency_ms\":1}",
     "wrong type: prompt_tokens"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1.5,\"completion_tokens\":1,"
     "\"latency_ms\":1}",
     "wrong type: prompt_tokens"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":-2,"
     "\"latency_ms\":1}",
     "negative number: completion_tokens"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":-1}",
     "negative number: latency_ms"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":true}",
     "wrong type: latency_ms"},
    {"{\"timestamp\":\"last week\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,"
     "\"completion_tokens\":1,\"latency_ms\":1}",
     "bad timestamp"},
    {"{\"timestamp\":-5,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":1}",
     "bad timestamp"},
    {"{\"timestamp\":1718000000000,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,"
     "\"completion_tokens\":1,\"latency_ms\":1}",
     "bad timestamp"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":1,\"status\":\"ok\"}",
     "bad status"},
    {"{\"timestamp\":1,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":1,\"cost_usd\":-1}",
     "negative number: cost_usd"},
    {"{\"timestamp\":1,\"model\":\"my-model\",\"provider\":\"me\",\"prompt_tokens\":1,\"completion_tokens\":1,"
     "\"latency_ms\":1}",
     "unknown model for pricing: my-model; give cost_usd"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_expect_neq(from_json(cases[i].json, &r, err, sizeof err), 0, "%s", cases[i].json);
    cr_expect(strstr(err, cases[i].why) != NULL, "%s: got \"%s\", want \"%s\"", cases[i].json, err, cases[i].why);
  }
}

/* ---- streaming ingest ---- */

/* Feed body whole (step 0) or in pieces of step bytes; returns the result object. */
static json_t *ingest(const char *user, workloads_format_t fmt, const char *body, size_t step, int *fatal) {
  workloads_ingest_t *in = workloads_ingest_new(st, user, fmt);
  size_t n = strlen(body);
  if (step == 0) step = n ? n : 1;
  for (size_t off = 0; off < n; off += step) workloads_ingest_feed(in, body + off, n - off < step ? n - off : step, 0);
  workloads_ingest_feed(in, NULL, 0, 1);
  const char *msg;
  *fatal = workloads_ingest_error(in, &msg);
  json_t *res = *fatal ? NULL : workloads_ingest_result(in);
  workloads_ingest_free(in);
  return res;
}

static long n_records(const char *user) {
  long n = -1;
  cr_assert_eq(workloads_count(st, user, NULL, &n), 0);
  return n;
}

/* rejected [{"line","error"}] as "line:error-prefix;..." for compact assertions */
static void expect_rejected(const json_t *res, const long *lines, size_t n) {
  const json_t *rej = json_object_get(res, "rejected");
  cr_assert_eq(json_array_size(rej), n, "rejected: %s", json_dumps(rej, 0));
  for (size_t i = 0; i < n; i++)
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(rej, i), "line")), lines[i], "entry %zu: %s", i,
                 json_dumps(json_array_get(rej, i), 0));
  cr_expect_eq(json_integer_value(json_object_get(res, "rejected_total")), (json_int_t)n);
}

#define GOOD(ts) "{\"timestamp\":" #ts ",\"model\":\"gpt-4o-mini\",\"provider\":\"openai\",\"prompt_tokens\":10," \
                 "\"completion_tokens\":5,\"latency_ms\":100}"

Test(workloads, jsonl_line_numbers_with_blank_lines) {
  const char *body = GOOD(1) "\n"
                             "\n"
                             "  \r\n" GOOD(2) "\r\n"
                             "{\"timestamp\":3}\n"
                             "not json\n" GOOD(4) "\n"
                             "\n" GOOD(5); /* no final newline */
  size_t steps[] = {0, 1, 2, 3, 7, 64};
  for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
    char user[32];
    snprintf(user, sizeof user, "usr_jsonl_%zu", k);
    int fatal;
    json_t *res = ingest(user, WORKLOADS_FMT_JSONL, body, steps[k], &fatal);
    cr_assert_eq(fatal, 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 4, "step %zu", steps[k]);
    long lines[] = {5, 6};
    expect_rejected(res, lines, 2);
    cr_expect(strstr(json_string_value(json_object_get(json_array_get(json_object_get(res, "rejected"), 0), "error")),
                     "missing field: model"));
    cr_expect(strstr(json_string_value(json_object_get(json_array_get(json_object_get(res, "rejected"), 1), "error")),
                     "invalid JSON"));
    cr_expect_eq(n_records(user), 4);
    json_decref(res);
  }
}

/* \u0000 is valid JSON: the record is refused naming the field, never "invalid JSON",
 * and a NUL cannot cut a timestamp or status short into something accepted. */
Test(workloads, jsonl_nul_escape_names_the_field) {
  const char *body = GOOD(1) "\n"
                     "{\"timestamp\":2,\"model\":\"gpt-4o\\u0000x\",\"provider\":\"openai\",\"prompt_tokens\":1,"
                     "\"completion_tokens\":1,\"latency_ms\":1}\n"
                     "{\"timestamp\":\"2024-01-01T00:00:00Z\\u0000junk\",\"model\":\"gpt-4o\",\"provider\":\"openai\","
                     "\"prompt_tokens\":1,\"completion_tokens\":1,\"latency_ms\":1}\n"
                     "{\"timestamp\":4,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":1,"
                     "\"completion_tokens\":1,\"latency_ms\":1,\"status\":\"error\\u0000\"}\n";
  int fatal;
  json_t *res = ingest("usr_nul", WORKLOADS_FMT_JSONL, body, 0, &fatal);
  cr_assert_eq(fatal, 0);
  cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 1);
  long lines[] = {2, 3, 4};
  expect_rejected(res, lines, 3);
  const json_t *rej = json_object_get(res, "rejected");
  const char *want[] = {"model contains a NUL", "bad timestamp: contains a NUL", "bad status: contains a NUL"};
  for (size_t i = 0; i < 3; i++) {
    const char *e = json_string_value(json_object_get(json_array_get(rej, i), "error"));
    cr_expect(e && strstr(e, want[i]), "line %zu: %s", i + 2, e ? e : "(none)");
  }
  json_decref(res);
}

Test(workloads, jsonl_large_pieces_parse_on_two_threads_in_order) {
  /* ~1.5 MB: pieces of 700 KB take the two-thread path; bad lines at known places */
  enum { N = 8000 };
  size_t cap = (size_t)N * 200, len = 0;
  char *body = malloc(cap);
  long bad[] = {1, 777, 3999, 4000, 4001, 7999, N};
  size_t nbad = sizeof bad / sizeof bad[0], bi = 0;
  long want = 0;
  for (long line = 1; line <= N; line++) {
    if (bi < nbad && bad[bi] == line) {
      len += (size_t)snprintf(body + len, cap - len, "{\"timestamp\":%ld}\n", line);
      bi++;
    } else if (line % 1000 == 0) {
      len += (size_t)snprintf(body + len, cap - len, "\n"); /* blank */
    } else {
      want++;
      len += (size_t)snprintf(body + len, cap - len,
                              "{\"timestamp\":%ld,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":%ld,"
                              "\"completion_tokens\":1,\"latency_ms\":1}\n",
                              1718000000 + line, line);
    }
  }
  body[len] = 0;
  for (int deferred = 0; deferred < 2; deferred++) {
    char user[32];
    snprintf(user, sizeof user, "usr_big_%d", deferred);
    workloads_ingest_t *in = workloads_ingest_new(st, user, WORKLOADS_FMT_JSONL);
    workloads_ingest_set_deferred(in, deferred);
    long taken = 0, prev_pt = 0, order_ok = 1;
    for (size_t off = 0; off < len; off += 700000) {
      size_t n = len - off < 700000 ? len - off : 700000;
      workloads_ingest_feed(in, body + off, n, off + n >= len);
      workload_rec_t *recs;
      size_t rcap;
      size_t k = workloads_ingest_take(in, &recs, &rcap);
      if (deferred) {
        for (size_t i = 0; i < k; i++) {
          order_ok &= recs[i].prompt_tokens > prev_pt;
          prev_pt = recs[i].prompt_tokens;
        }
        cr_assert_eq(workloads_insert(st, user, recs, k, NULL), 0);
        taken += (long)k;
        workloads_ingest_give(in, recs, rcap);
      } else {
        cr_expect_eq(k, 0); /* stored already */
        free(recs);
      }
    }
    json_t *res = workloads_ingest_result(in);
    workloads_ingest_free(in);
    cr_expect(order_ok, "records out of order");
    if (deferred) cr_expect_eq(taken, want);
    else cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), want);
    expect_rejected(res, bad, nbad);
    json_decref(res);
    cr_expect_eq(n_records(user), want);
  }
  free(body);
}

/* Issue 13, defect 9: the JSONL helpers are a fixed pool shared by every ingest, not a thread
 * per piece.  Several concurrent multi-MiB uploads, fed in 1 MiB pieces as the API does: every
 * record is parsed, in order, bad lines carry their physical line numbers, and the process
 * never has more threads than the uploaders plus INGEST_HELPERS (2); the pool outlives the
 * uploads and workloads_ingest_shutdown() joins it. */
enum { MT_UPLOADS = 6, MT_LINES = 30000, MT_PIECE = 1 << 20 };
static char *mt_body;
static size_t mt_len;
static long mt_good; /* records in mt_body */
static const long mt_bad[] = {1, 4321, 15000, 15001, 29999, MT_LINES};
static atomic_int mt_running;

static int task_count(void) {
  DIR *d = opendir("/proc/self/task");
  cr_assert_not_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void *mt_upload(void *arg) {
  long *ok = arg; /* in: nothing; out: 1 when everything matched */
  workloads_ingest_t *in = workloads_ingest_new(st, "usr_mt", WORKLOADS_FMT_JSONL);
  workloads_ingest_set_deferred(in, 1); /* records are taken here: no store writes from threads */
  long taken = 0, prev = 0, in_order = 1;
  for (size_t off = 0; off < mt_len; off += MT_PIECE) {
    size_t n = mt_len - off < MT_PIECE ? mt_len - off : MT_PIECE;
    workloads_ingest_feed(in, mt_body + off, n, off + n >= mt_len);
    workload_rec_t *recs;
    size_t k = workloads_ingest_take(in, &recs, NULL);
    for (size_t i = 0; i < k; i++) {
      in_order &= recs[i].prompt_tokens > prev;
      prev = recs[i].prompt_tokens;
    }
    taken += (long)k;
    free(recs);
  }
  json_t *res = workloads_ingest_result(in);
  const json_t *rej = json_object_get(res, "rejected");
  long bad_ok = json_array_size(rej) == sizeof mt_bad / sizeof mt_bad[0];
  for (size_t i = 0; bad_ok && i < json_array_size(rej); i++)
    bad_ok = json_integer_value(json_object_get(json_array_get(rej, i), "line")) == mt_bad[i];
  *ok = in_order && bad_ok && taken == mt_good;
  json_decref(res);
  workloads_ingest_free(in);
  atomic_fetch_sub(&mt_running, 1);
  return NULL;
}

Test(workloads, concurrent_multi_mib_uploads_use_a_fixed_pool) {
  size_t cap = (size_t)MT_LINES * 220;
  mt_body = malloc(cap);
  size_t bi = 0;
  for (long line = 1; line <= MT_LINES; line++) {
    if (bi < sizeof mt_bad / sizeof mt_bad[0] && mt_bad[bi] == line) {
      mt_len += (size_t)snprintf(mt_body + mt_len, cap - mt_len, "{\"timestamp\":%ld,\"model\":\"x\"}\n", line);
      bi++;
    } else if (line % 1000 == 0) {
      mt_len += (size_t)snprintf(mt_body + mt_len, cap - mt_len, "   \n"); /* blank: skipped, still a line */
    } else {
      mt_good++;
      mt_len += (size_t)snprintf(mt_body + mt_len, cap - mt_len,
                                 "{\"timestamp\":%ld,\"model\":\"gpt-4o\",\"provider\":\"openai\",\"prompt_tokens\":%ld,"
                                 "\"completion_tokens\":1,\"latency_ms\":1,\"feature\":\"chat\",\"prompt_hash\":"
                                 "\"h%ld-padding-padding-padding-padding-padding-padding\"}\n",
                                 1718000000 + line, line, line);
    }
  }
  cr_assert_gt(mt_len, 5u << 20, "the upload should be several MiB (%zu bytes)", mt_len);
  int base = task_count();
  pthread_t th[MT_UPLOADS];
  long ok[MT_UPLOADS] = {0};
  atomic_store(&mt_running, MT_UPLOADS);
  for (int i = 0; i < MT_UPLOADS; i++) cr_assert_eq(pthread_create(&th[i], NULL, mt_upload, &ok[i]), 0);
  int most = 0;
  while (atomic_load(&mt_running) > 0) { /* sample while the uploads run */
    int n = task_count();
    if (n > most) most = n;
  }
  for (int i = 0; i < MT_UPLOADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < MT_UPLOADS; i++) cr_expect_eq(ok[i], 1, "upload %d: records, order or rejected lines wrong", i);
  cr_expect_leq(most, base + MT_UPLOADS + 2, "threads: %d at most, %d before (%d uploaders)", most, base, MT_UPLOADS);
  cr_expect_eq(workloads_ingest_helpers(), 2);
  cr_expect_eq(task_count(), base + 2, "the pool stays, nothing else does");
  workloads_ingest_shutdown();
  cr_expect_eq(workloads_ingest_helpers(), 0);
  cr_expect_eq(task_count(), base);
  free(mt_body);
}

Test(workloads, json_array_indices) {
  const char *body = "\xEF\xBB\xBF [ " GOOD(1) ",\n 42 , {\"timestamp\":2,\"model\":\"gpt-4o\"}, " GOOD(3)
                     " , \"str,with]brackets\", {\"a\":[1,{\"b\":\"}\"}]}, " GOOD(4) "] \n";
  size_t steps[] = {0, 1, 5};
  for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
    char user[32];
    snprintf(user, sizeof user, "usr_arr_%zu", k);
    int fatal;
    json_t *res = ingest(user, WORKLOADS_FMT_JSON, body, steps[k], &fatal);
    cr_assert_eq(fatal, 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 3);
    long lines[] = {2, 3, 5, 6};
    expect_rejected(res, lines, 4);
    cr_expect_eq(n_records(user), 3);
    json_decref(res);
  }
}

Test(workloads, json_array_structural_errors) {
  int fatal;
  json_t *res = ingest("usr_s1", WORKLOADS_FMT_JSON, GOOD(1), 0, &fatal);
  cr_expect_eq(fatal, AGD_EBAD_REQUEST); /* an object, not an array */
  cr_expect_null(res);
  cr_expect_eq(n_records("usr_s1"), 0);
  res = ingest("usr_s2", WORKLOADS_FMT_JSON, "", 0, &fatal);
  cr_expect_eq(fatal, AGD_EBAD_REQUEST);
  /* missing comma, trailing garbage, unterminated */
  res = ingest("usr_s3", WORKLOADS_FMT_JSON, "[" GOOD(1) " " GOOD(2) "," GOOD(3) "] x", 0, &fatal);
  cr_assert_eq(fatal, 0);
  cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 2);
  long l3[] = {2, 4};
  expect_rejected(res, l3, 2);
  json_decref(res);
  res = ingest("usr_s4", WORKLOADS_FMT_JSON, "[" GOOD(1) "," GOOD(2), 0, &fatal);
  cr_assert_eq(fatal, 0);
  cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 2);
  long l4[] = {3};
  expect_rejected(res, l4, 1);
  json_decref(res);
  res = ingest("usr_s5", WORKLOADS_FMT_JSON, "[]", 0, &fatal);
  cr_assert_eq(fatal, 0);
  cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 0);
  json_decref(res);
}

Test(workloads, csv_bad_lines_reported_good_lines_stored) {
  const char *body = "\xEF\xBB\xBFTimestamp, model ,provider,prompt_tokens,completion_tokens,latency_ms,status,feature,"
                     "extra\r\n"
                     "1718000000,gpt-4o-mini,openai,10,5,100,success,chat,x\r\n"   /* 2 ok */
                     "1718000001,gpt-4o-mini,openai,-3,5,100,success,chat,x\r\n"   /* 3 negative */
                     "\r\n"                                                      /* 4 blank */
                     "2024-06-10T07:00:00Z,gpt-4o,openai,10,5,100,,\"multi\nline, \"\"quoted\"\"\",x\n" /* 5-6 ok */
                     "1718000002,gpt-4o,openai,ten,5,100,success,chat,x\n"       /* 7 wrong type */
                     "1718000003,gpt-4o,openai,10,5\n"                           /* 8 field count */
                     "1718000004,gpt-4o,openai,10,5,100,maybe,chat,x\n"         /* 9 bad status */
                     "1718000005,,openai,10,5,100,error,chat,x\n"               /* 10 missing model */
                     "yesterday,gpt-4o,openai,10,5,100,error,chat,x\n"          /* 11 bad timestamp */
                     "1718000006,gpt-4o,openai,10,5,100,error,chat,x";          /* 12 ok, no newline */
  size_t steps[] = {0, 1, 4};
  for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
    char user[32];
    snprintf(user, sizeof user, "usr_csv_%zu", k);
    int fatal;
    json_t *res = ingest(user, WORKLOADS_FMT_CSV, body, steps[k], &fatal);
    cr_assert_eq(fatal, 0);
    cr_expect_eq(json_integer_value(json_object_get(res, "inserted")), 3);
    long lines[] = {3, 7, 8, 9, 10, 11};
    expect_rejected(res, lines, 6);
    json_t *rej = json_object_get(res, "rejected");
    const char *want[] = {"negative number", "wrong type", "wrong number of fields", "bad status", "missing field: model",
                          "bad timestamp"};
    for (size_t i = 0; i < 6; i++)
      cr_expect(strstr(json_string_value(json_object_get(json_array_get(rej, i), "error")), want[i]), "%zu", i);
    json_decref(res);
    cr_expect_eq(n_records(user), 3);
  }
  /* the quoted multi-line feature survived */
  json_t *sum = NULL;
  cr_assert_eq(workloads_summary(st, "usr_csv_0", NULL, &sum), 0);
  int found = 0;
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(sum, "by_feature"), i, f) {
    const char *name = json_string_value(json_object_get(f, "feature"));
    if (name && strcmp(name, "multi\nline, \"quoted\"") == 0) found = 1;
  }
  cr_expect(found);
  cr_expect_float_eq(num(sum, "totals.error_rate"), 1.0 / 3, 1e-12);
  json_decref(sum);
}

Test(workloads, csv_header_without_required_columns) {
  int fatal;
  json_t *res = ingest("usr_h", WORKLOADS_FMT_CSV, "timestamp,model\n1,gpt-4o\n", 0, &fatal);
  cr_expect_eq(fatal, AGD_EBAD_REQUEST);
  cr_expect_null(res);
  cr_expect_eq(n_records("usr_h"), 0);
}

Test(workloads, rejected_list_is_capped) {
  size_t n = WORKLOADS_REJECTED_MAX + 500;
  char *body = malloc(n * 4 + 1);
  for (size_t i = 0; i < n; i++) memcpy(body + i * 4, "{}x\n", 4);
  body[n * 4] = 0;
  int fatal;
  json_t *res = ingest("usr_cap", WORKLOADS_FMT_JSONL, body, 4096, &fatal);
  cr_expect_eq(json_array_size(json_object_get(res, "rejected")), WORKLOADS_REJECTED_MAX);
  cr_expect_eq(json_integer_value(json_object_get(res, "rejected_total")), (json_int_t)n);
  json_decref(res);
  free(body);
}

/* ---- summary ---- */

Test(workloads, summary_exact_numbers) {
  /* 20 gpt-4o calls with latencies 1..20 (inserted shuffled), 10 claude calls 100..1000 */
  workload_rec_t r[30];
  int order[20] = {7, 3, 19, 1, 14, 10, 2, 20, 5, 11, 16, 8, 4, 13, 18, 6, 12, 9, 17, 15};
  for (int i = 0; i < 20; i++)
    r[i] = rec(1718000000 + i * 3600, "gpt-4o", "openai", 100, 10, order[i], 0.01, i < 2, "chat", NULL);
  for (int i = 0; i < 10; i++)
    r[20 + i] = rec(1718000000 + 86400 + i, "claude-sonnet-4", "anthropic", 1000, 100, (i + 1) * 100.0, 0.02, 0,
                    i < 5 ? "search" : "", NULL);
  long ins;
  cr_assert_eq(workloads_insert(st, "usr_sum", r, 30, &ins), 0);
  cr_expect_eq(ins, 30);
  json_t *s = NULL;
  cr_assert_eq(workloads_summary(st, "usr_sum", NULL, &s), 0);
  cr_expect_eq(num(s, "totals.calls"), 30);
  cr_expect_eq(num(s, "totals.errors"), 2);
  cr_expect_float_eq(num(s, "totals.error_rate"), 2.0 / 30, 1e-12);
  cr_expect_eq(num(s, "totals.prompt_tokens"), 20 * 100 + 10 * 1000);
  cr_expect_eq(num(s, "totals.completion_tokens"), 20 * 10 + 10 * 100);
  cr_expect_eq(num(s, "totals.total_tokens"), 12000 + 1200);
  cr_expect_float_eq(num(s, "totals.cost_usd"), 20 * 0.01 + 10 * 0.02, 1e-9);
  /* all 30 latencies: 1..20 and 100..1000; nearest rank: p50 = 15th = 15, p95 = 29th = 900, p99 = 30th = 1000 */
  cr_expect_float_eq(num(s, "totals.latency_p50_ms"), 15, 1e-12);
  cr_expect_float_eq(num(s, "totals.latency_p95_ms"), 900, 1e-12);
  cr_expect_float_eq(num(s, "totals.latency_p99_ms"), 1000, 1e-12);
  json_t *bm = json_object_get(s, "by_model");
  cr_assert_eq(json_array_size(bm), 2);
  /* ordered by cost: gpt-4o 0.20 = claude 0.20 → first seen first */
  json_t *g = json_array_get(bm, 0);
  cr_expect_str_eq(json_string_value(json_object_get(g, "model")), "gpt-4o");
  cr_expect_str_eq(json_string_value(json_object_get(g, "provider")), "openai");
  cr_expect_eq(num(g, "calls"), 20);
  cr_expect_float_eq(num(g, "latency_p50_ms"), 10, 1e-12); /* ceil(0.5·20) = 10th */
  cr_expect_float_eq(num(g, "latency_p95_ms"), 19, 1e-12); /* ceil(0.95·20) = 19th */
  cr_expect_float_eq(num(g, "latency_p99_ms"), 20, 1e-12); /* ceil(0.99·20) = 20th */
  cr_expect_float_eq(num(g, "error_rate"), 0.1, 1e-12);
  g = json_array_get(bm, 1);
  cr_expect_float_eq(num(g, "latency_p50_ms"), 500, 1e-12);
  cr_expect_float_eq(num(g, "latency_p95_ms"), 1000, 1e-12);
  cr_expect_float_eq(num(g, "latency_mean_ms"), 550, 1e-12);
  cr_expect_eq(json_array_size(json_object_get(s, "by_provider")), 2);
  json_t *bf = json_object_get(s, "by_feature");
  cr_assert_eq(json_array_size(bf), 3);
  int nulls = 0;
  size_t i;
  json_array_foreach(bf, i, g) nulls += json_is_null(json_object_get(g, "feature"));
  cr_expect_eq(nulls, 1);
  /* daily: 2024-06-10 (20 gpt-4o calls from 06:13 UTC... spread over 20 h) and the next days */
  json_t *daily = json_object_get(s, "daily");
  long calls = 0;
  json_array_foreach(daily, i, g) calls += (long)num(g, "calls");
  cr_expect_eq(calls, 30);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(daily, 0), "date")), "2024-06-10");
  json_decref(s);
  /* a window: only the claude calls */
  workload_window_t w = {1718000000 + 86400, 0};
  cr_assert_eq(workloads_summary(st, "usr_sum", &w, &s), 0);
  cr_expect_eq(num(s, "totals.calls"), 10);
  cr_expect_float_eq(num(s, "totals.latency_p50_ms"), 500, 1e-12);
  json_decref(s);
  w = (workload_window_t){0, 1718000000 + 3600 * 4}; /* inclusive: 5 calls */
  long n;
  cr_assert_eq(workloads_count(st, "usr_sum", &w, &n), 0);
  cr_expect_eq(n, 5);
  /* empty user */
  cr_assert_eq(workloads_summary(st, "usr_nobody", NULL, &s), 0);
  cr_expect_eq(num(s, "totals.calls"), 0);
  cr_expect(json_is_null(json_object_get(json_object_get(s, "totals"), "latency_p50_ms")));
  cr_expect_eq(json_array_size(json_object_get(s, "daily")), 0);
  json_decref(s);
}

/* by_day: per UTC day and model, the 8 costliest models of their own, the rest "(other)"; the
 * window and the user are honoured; without the option there is no by_day. */
static json_t *by_day_row(json_t *s, const char *date, const char *model) {
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(s, "by_day"), i, g) {
    if (strcmp(json_string_value(json_object_get(g, "date")), date) == 0 &&
        strcmp(json_string_value(json_object_get(g, "model")), model) == 0)
      return g;
  }
  return NULL;
}

Test(workloads, summary_by_day_per_model) {
  const double day0 = 1718064000; /* 2024-06-11 00:00 UTC */
  workload_rec_t r[64];
  size_t n = 0;
  /* day 0: gpt-4o 3 calls of 1.00 (one an error), claude 1 of 0.50; day 2: gpt-4o 1 of 2.00 */
  for (int i = 0; i < 3; i++) r[n++] = rec(day0 + 60 * i, "gpt-4o", "openai", 10, 5, 100, 1.0, i == 0, NULL, NULL);
  r[n++] = rec(day0 + 3600, "claude-sonnet-4", "anthropic", 20, 5, 100, 0.5, 0, NULL, NULL);
  r[n++] = rec(day0 + 2 * 86400 + 86399, "gpt-4o", "openai", 1, 1, 100, 2.0, 0, NULL, NULL);
  /* 9 cheap models on day 1 (0.01 .. 0.09): the three cheapest fall into "(other)" */
  char names[9][16];
  for (int i = 0; i < 9; i++) {
    snprintf(names[i], sizeof names[i], "m%d", i);
    r[n++] = rec(day0 + 86400 + i, names[i], "openai", 1, 1, 10, 0.01 * (i + 1), 0, NULL, NULL);
  }
  cr_assert_eq(workloads_insert(st, "usr_bd", r, n, NULL), 0);
  cr_assert_eq(workloads_insert(st, "usr_bd_other", r, 1, NULL), 0);
  json_t *s = NULL;
  cr_assert_eq(workloads_summary(st, "usr_bd", NULL, &s), 0);
  cr_expect_null(json_object_get(s, "by_day"), "by_day only when asked");
  json_decref(s);
  cr_assert_eq(workloads_summary_ex(st, "usr_bd", NULL, 1, &s), 0);
  cr_expect(json_is_false(json_object_get(s, "by_day_truncated")));
  json_t *g = by_day_row(s, "2024-06-11", "gpt-4o");
  cr_assert_not_null(g);
  cr_expect_str_eq(json_string_value(json_object_get(g, "provider")), "openai");
  cr_expect_eq(num(g, "calls"), 3);
  cr_expect_eq(num(g, "errors"), 1);
  cr_expect_eq(num(g, "total_tokens"), 45);
  cr_expect_float_eq(num(g, "cost_usd"), 3.0, 1e-9);
  g = by_day_row(s, "2024-06-11", "claude-sonnet-4");
  cr_assert_not_null(g);
  cr_expect_float_eq(num(g, "cost_usd"), 0.5, 1e-9);
  g = by_day_row(s, "2024-06-13", "gpt-4o");
  cr_assert_not_null(g);
  cr_expect_float_eq(num(g, "cost_usd"), 2.0, 1e-9);
  cr_expect_null(by_day_row(s, "2024-06-12", "gpt-4o"), "no row for a day without calls");
  /* 11 models: gpt-4o, claude and m3..m8 have rows of their own, m0..m2 are "(other)" */
  cr_expect_null(by_day_row(s, "2024-06-12", "m0"));
  cr_expect_null(by_day_row(s, "2024-06-12", "m2"));
  cr_expect_not_null(by_day_row(s, "2024-06-12", "m3"));
  g = by_day_row(s, "2024-06-12", "(other)");
  cr_assert_not_null(g);
  cr_expect(json_is_null(json_object_get(g, "provider")));
  cr_expect_eq(num(g, "calls"), 3);
  cr_expect_float_eq(num(g, "cost_usd"), 0.06, 1e-9);
  /* every record is counted once: the rows sum to the totals */
  double cost = 0;
  long calls = 0;
  size_t i;
  json_array_foreach(json_object_get(s, "by_day"), i, g) {
    cost += num(g, "cost_usd");
    calls += (long)num(g, "calls");
  }
  cr_expect_eq(calls, (long)n);
  cr_expect_float_eq(cost, num(s, "totals.cost_usd"), 1e-9);
  json_decref(s);
  /* a window: day 2 only */
  workload_window_t w = {day0 + 2 * 86400, 0};
  cr_assert_eq(workloads_summary_ex(st, "usr_bd", &w, 1, &s), 0);
  cr_expect_eq(json_array_size(json_object_get(s, "by_day")), 1);
  cr_expect_not_null(by_day_row(s, "2024-06-13", "gpt-4o"));
  json_decref(s);
  /* another user's rows are theirs only; an empty user has an empty by_day */
  cr_assert_eq(workloads_summary_ex(st, "usr_bd_other", NULL, 1, &s), 0);
  cr_expect_eq(json_array_size(json_object_get(s, "by_day")), 1);
  json_decref(s);
  cr_assert_eq(workloads_summary_ex(st, "usr_bd_nobody", NULL, 1, &s), 0);
  cr_expect_eq(json_array_size(json_object_get(s, "by_day")), 0);
  json_decref(s);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

Test(workloads, percentiles_match_a_sort_on_random_data) {
  enum { N = 5003 };
  workload_rec_t *r = malloc(N * sizeof *r);
  double *lat = malloc(N * sizeof *lat);
  unsigned x = 12345;
  for (int i = 0; i < N; i++) {
    x = x * 1103515245u + 12345u;
    lat[i] = (double)(x % 1000) + (x % 7 == 0 ? 5000 : 0); /* many ties and a tail */
    r[i] = rec(1718000000 + i, "gpt-4o", "openai", 1, 1, lat[i], 0.001, 0, NULL, NULL);
  }
  cr_assert_eq(workloads_insert(st, "usr_pct", r, N, NULL), 0);
  qsort(lat, N, sizeof *lat, cmp);
  json_t *s;
  cr_assert_eq(workloads_summary(st, "usr_pct", NULL, &s), 0);
  cr_expect_float_eq(num(s, "totals.latency_p50_ms"), lat[(50 * N + 99) / 100 - 1], 1e-12);
  cr_expect_float_eq(num(s, "totals.latency_p95_ms"), lat[(95 * N + 99) / 100 - 1], 1e-12);
  cr_expect_float_eq(num(s, "totals.latency_p99_ms"), lat[(99 * N + 99) / 100 - 1], 1e-12);
  json_decref(s);
  free(r);
  free(lat);
}

/* ---- analyses ---- */

Test(workloads, cache_saving_with_40_percent_repeats) {
  /* 100 calls: 20 prompts called 3 times (40 repeats) + 40 unique prompts.  Costs differ per call;
   * the first call of a prompt is the EARLIEST, which is not always the first inserted. */
  workload_rec_t r[100];
  int n = 0;
  double want = 0;
  for (int p = 0; p < 20; p++) {
    char h[16];
    snprintf(h, sizeof h, "rep%02d", p);
    double t0 = 1718000000 + p * 100;
    /* inserted: second, first, third */
    r[n++] = rec(t0 + 10, "gpt-4o-mini", "openai", 10, 10, 50, 0.002 + p * 1e-4, 0, "faq", h);
    r[n++] = rec(t0, "gpt-4o-mini", "openai", 10, 10, 50, 0.001 + p * 1e-4, 0, "faq", h);
    r[n++] = rec(t0 + 20, "gpt-4o-mini", "openai", 10, 10, 50, 0.003 + p * 1e-4, 0, "faq", h);
    want += (0.002 + p * 1e-4) + (0.003 + p * 1e-4);
  }
  for (int u = 0; u < 40; u++) {
    char h[16];
    snprintf(h, sizeof h, "uniq%02d", u);
    r[n++] = rec(1718000000 + 5000 + u, "gpt-4o-mini", "openai", 10, 10, 50, 0.005, 0, "search", h);
  }
  cr_assert_eq(workloads_insert(st, "usr_cache", r, (size_t)n, NULL), 0);
  json_t *o = NULL;
  cr_assert_eq(workloads_cache_opportunities(st, "usr_cache", NULL, &o), 0);
  cr_expect_eq(num(o, "calls_with_prompt_hash"), 100);
  cr_expect_eq(num(o, "unique_prompts"), 60);
  cr_expect_eq(num(o, "repeated_calls"), 40);
  cr_expect_float_eq(num(o, "repeat_rate"), 0.4, 1e-12);
  cr_expect_float_eq(num(o, "window_saving_usd"), want, 1e-12);
  /* the data spans less than a day: days = 1, so a month is 30 times the window */
  cr_expect_float_eq(num(o, "days"), 1, 1e-12);
  cr_expect_float_eq(num(o, "monthly_saving_usd"), want * 30, 1e-9);
  cr_expect(json_is_true(json_object_get(o, "recommended")));
  cr_expect(json_is_string(json_object_get(o, "recommendation")));
  json_t *top = json_array_get(json_object_get(o, "top_prompts"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(top, "prompt_hash")), "rep19"); /* the costliest repeats */
  cr_expect_eq(num(top, "repeat_calls"), 2);
  json_t *bf = json_array_get(json_object_get(o, "by_feature"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(bf, "feature")), "faq");
  cr_expect_float_eq(num(bf, "repeat_rate"), 40.0 / 60, 1e-12);
  json_decref(o);
  /* a 10-day window: monthly = saving / 10 * 30 */
  json_t *args = json_pack("{s:f, s:f}", "from", 1718000000.0 - 5 * 86400, "to", 1718000000.0 + 5 * 86400);
  cr_assert_eq(workloads_cache_opportunities(st, "usr_cache", args, &o), 0);
  cr_expect_float_eq(num(o, "monthly_saving_usd"), want / 10 * 30, 1e-9);
  json_decref(o);
  json_decref(args);
  /* no repeats: no recommendation */
  workload_rec_t one = rec(1718000000, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, "x");
  cr_assert_eq(workloads_insert(st, "usr_nocache", &one, 1, NULL), 0);
  cr_assert_eq(workloads_cache_opportunities(st, "usr_nocache", NULL, &o), 0);
  cr_expect(json_is_false(json_object_get(o, "recommended")));
  cr_expect_eq(num(o, "window_saving_usd"), 0);
  json_decref(o);
}

Test(workloads, premium_model_on_tiny_prompts) {
  workload_rec_t r[60];
  int n = 0;
  for (int i = 0; i < 40; i++) /* eligible: 120 prompt, 8 completion tokens */
    r[n++] = rec(1718000000 + i * 60, "gpt-4o-2024-08-06", "openai", 120, 8, 300, 0.0004, 0, "classify", NULL);
  for (int i = 0; i < 10; i++) /* too long to switch */
    r[n++] = rec(1718000000 + i * 60, "gpt-4o", "openai", 5000, 800, 3000, 0.02, 0, "chat", NULL);
  for (int i = 0; i < 10; i++) /* already budget */
    r[n++] = rec(1718000000 + i * 60, "gpt-4o-mini", "openai", 100, 5, 200, 0.00002, 0, "classify", NULL);
  cr_assert_eq(workloads_insert(st, "usr_model", r, (size_t)n, NULL), 0);
  json_t *o = NULL;
  cr_assert_eq(workloads_model_recommendations(st, "usr_model", NULL, &o), 0);
  json_t *recs = json_object_get(o, "recommendations");
  cr_assert_eq(json_array_size(recs), 1, "%s", json_dumps(o, 0));
  json_t *x = json_array_get(recs, 0);
  cr_expect_str_eq(json_string_value(json_object_get(x, "model")), "gpt-4o-2024-08-06");
  cr_expect_str_eq(json_string_value(json_object_get(x, "provider")), "openai");
  cr_expect_str_eq(json_string_value(json_object_get(x, "suggested_model")), "gpt-4o-mini");
  cr_expect_str_eq(json_string_value(json_object_get(x, "tier")), "premium");
  cr_expect_eq(num(x, "eligible_calls"), 40);
  cr_expect_eq(num(x, "calls"), 40); /* "gpt-4o" is a different model string: its own group */
  double now = 40 * (120 * 2.5 + 8 * 10.0) / 1e6, then = 40 * (120 * 0.15 + 8 * 0.60) / 1e6;
  cr_expect_float_eq(num(x, "current_cost_usd"), now, 1e-12);
  cr_expect_float_eq(num(x, "projected_cost_usd"), then, 1e-12);
  cr_expect_float_eq(num(x, "window_saving_usd"), now - then, 1e-12);
  cr_expect_float_eq(num(o, "monthly_saving_usd"), (now - then) * 30, 1e-9); /* < 1 day of data */
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(x, "features"), 0), "feature")),
                   "classify");
  json_decref(o);
  /* the thresholds are knobs */
  json_t *args = json_pack("{s:i}", "max_prompt_tokens", 100);
  cr_assert_eq(workloads_model_recommendations(st, "usr_model", args, &o), 0);
  cr_expect_eq(json_array_size(json_object_get(o, "recommendations")), 0);
  cr_expect(json_is_false(json_object_get(o, "recommended")));
  json_decref(o);
  json_decref(args);
}

Test(workloads, cost_latency_batch) {
  workload_rec_t r[40];
  for (int i = 0; i < 30; i++)
    r[i] = rec(1718000000 + i * 60, "gpt-4o", "openai", 100, 100, 100 + i, 0.01, 0, "chat", NULL);
  for (int i = 0; i < 10; i++)
    r[30 + i] = rec(1718000000 + i * 60, "claude-opus-4", "anthropic", 100, 100, 5000 + i * 1000, 0.03, 0,
                    "nightly_report", NULL);
  cr_assert_eq(workloads_insert(st, "usr_mix", r, 40, NULL), 0);
  json_t *o;
  cr_assert_eq(workloads_cost_breakdown(st, "usr_mix", NULL, &o), 0);
  cr_expect_float_eq(num(o, "total_cost_usd"), 0.6, 1e-12);
  json_t *m0 = json_array_get(json_object_get(o, "by_model"), 0);
  cr_expect_float_eq(num(m0, "share"), 0.5, 1e-12);
  cr_expect_float_eq(num(o, "monthly_projection_usd"), 0.6 * 30, 1e-9);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "top_cost_driver"), "kind")), "model");
  json_decref(o);
  cr_assert_eq(workloads_latency_analysis(st, "usr_mix", NULL, &o), 0);
  json_t *slow = json_array_get(json_object_get(o, "slowest_features"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(slow, "feature")), "nightly_report");
  cr_expect_float_eq(num(slow, "latency_p50_ms"), 9000, 1e-12);
  cr_expect_float_eq(num(slow, "tail_ratio"), 14000.0 / 9000, 1e-12);
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(o, "by_model"), 0), "model")),
                   "claude-opus-4");
  json_decref(o);
  cr_assert_eq(workloads_batch_opportunities(st, "usr_mix", NULL, &o), 0);
  json_t *bf = json_object_get(o, "batchable_features");
  cr_assert_eq(json_array_size(bf), 1);
  cr_expect_float_eq(num(json_array_get(bf, 0), "window_saving_usd"), 0.3 * 0.5, 1e-12);
  cr_expect_float_eq(num(o, "monthly_saving_usd"), 0.15 * 30, 1e-9);
  json_decref(o);
  json_t *args = json_pack("{s:[s]}", "features", "chat");
  cr_assert_eq(workloads_batch_opportunities(st, "usr_mix", args, &o), 0);
  cr_expect_float_eq(num(o, "window_saving_usd"), 0.6 * 0.5, 1e-12);
  json_decref(o);
  json_decref(args);
}

Test(workloads, anomalies_find_the_spike_day) {
  enum { DAYS = 21 };
  size_t n = 0;
  workload_rec_t *r = malloc(sizeof *r * (DAYS * 50 + 500));
  double day0 = 1717977600; /* 2024-06-10 00:00 UTC, a Monday */
  for (int d = 0; d < DAYS; d++) {
    int calls = d == 10 ? 500 : 50;
    for (int k = 0; k < calls; k++)
      r[n++] = rec(day0 + d * 86400 + (k % 24) * 3600 + k, "gpt-4o-mini", "openai", 10, 10, 100, 0.001, 0, "chat",
                   NULL);
  }
  cr_assert_eq(workloads_insert(st, "usr_anom", r, n, NULL), 0);
  free(r);
  json_t *o;
  cr_assert_eq(workloads_anomalies(st, "usr_anom", NULL, &o), 0);
  json_t *a = json_object_get(o, "anomalies");
  cr_assert(json_array_size(a) >= 1, "%s", json_dumps(o, 0));
  int found = 0;
  size_t i;
  json_t *x;
  json_array_foreach(a, i, x) {
    if (!strcmp(json_string_value(json_object_get(x, "granularity")), "day")) {
      cr_expect_str_eq(json_string_value(json_object_get(x, "period")), "2024-06-20");
      cr_expect_str_eq(json_string_value(json_object_get(x, "direction")), "spike");
      found = 1;
    }
  }
  cr_expect(found);
  json_decref(o);
}

/* ---- isolation, delete, cache consistency ---- */

Test(workloads, isolation_and_delete) {
  workload_rec_t r[3] = {rec(1, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL),
                         rec(2, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL),
                         rec(3, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL)};
  cr_assert_eq(workloads_insert(st, "usr_a", r, 3, NULL), 0);
  cr_expect_eq(n_records("usr_a"), 3);
  cr_expect_eq(n_records("usr_b"), 0);
  json_t *s;
  cr_assert_eq(workloads_summary(st, "usr_b", NULL, &s), 0);
  cr_expect_eq(num(s, "totals.calls"), 0);
  json_decref(s);
  long d = -1;
  cr_assert_eq(workloads_delete(st, "usr_b", &d), 0);
  cr_expect_eq(d, 0);
  cr_expect_eq(n_records("usr_a"), 3);
  cr_assert_eq(workloads_delete(st, "usr_a", &d), 0);
  cr_expect_eq(d, 3);
  cr_expect_eq(n_records("usr_a"), 0);
  cr_assert_eq(workloads_insert(st, "usr_a", r, 2, NULL), 0);
  cr_expect_eq(n_records("usr_a"), 2);
}

Test(workloads, cache_follows_writes_made_elsewhere) {
  workload_rec_t r[2] = {rec(1, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL),
                         rec(2, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL)};
  cr_assert_eq(workloads_insert(st, "usr_c", r, 2, NULL), 0);
  cr_expect_eq(n_records("usr_c"), 2);
  /* another instance (or the store directly) inserts: only the new rows are fetched */
  cr_assert_eq(store_workload_insert(st, "usr_c", r, 1, NULL, NULL), 0);
  cr_expect_eq(n_records("usr_c"), 3);
  /* ... and deletes: the generation changes, the entry reloads */
  cr_assert_eq(store_workload_delete(st, "usr_c", NULL, NULL, NULL), 0);
  cr_assert_eq(store_workload_insert(st, "usr_c", r, 2, NULL, NULL), 0);
  cr_expect_eq(n_records("usr_c"), 2);
  /* a tiny limit evicts entries but answers stay right */
  workloads_cache_set_limit(1);
  cr_expect_eq(n_records("usr_c"), 2);
  cr_expect_eq(workloads_cache_bytes(), 0);
  cr_assert_eq(workloads_insert(st, "usr_c", r, 1, NULL), 0);
  cr_expect_eq(n_records("usr_c"), 3);
}

Test(workloads, insert_checks_arguments) {
  workload_rec_t r = rec(1, "gpt-4o", "openai", 1, 1, 1, 1, 0, NULL, NULL);
  cr_expect_eq(workloads_insert(st, "", &r, 1, NULL), AGD_EBAD_REQUEST);
  r.latency_ms = NAN;
  cr_expect_eq(workloads_insert(st, "usr_x", &r, 1, NULL), AGD_EBAD_REQUEST);
  r.latency_ms = 1;
  r.model[0] = 0;
  cr_expect_eq(store_workload_insert(st, "usr_x", &r, 1, NULL, NULL), AGD_EBAD_REQUEST);
}

/* ---- synthetic ---- */

Test(workloads, synthetic_is_deterministic_and_realistic) {
  long n1, n2, n3;
  cr_assert_eq(workloads_synthetic(st, "usr_syn1", 3000, 42, &n1), 0);
  cr_assert_eq(workloads_synthetic(st, "usr_syn2", 3000, 42, &n2), 0);
  cr_assert_eq(workloads_synthetic(st, "usr_syn3", 3000, 43, &n3), 0);
  cr_expect_eq(n1, 3000);
  cr_expect_eq(n2, 3000);
  json_t *a, *b, *c;
  cr_assert_eq(workloads_summary(st, "usr_syn1", NULL, &a), 0);
  cr_assert_eq(workloads_summary(st, "usr_syn2", NULL, &b), 0);
  cr_assert_eq(workloads_summary(st, "usr_syn3", NULL, &c), 0);
  cr_expect(json_equal(a, b), "same seed, different data");
  cr_expect(!json_equal(a, c));
  cr_expect(json_array_size(json_object_get(a, "by_model")) >= 8);
  cr_expect(json_array_size(json_object_get(a, "by_provider")) == 3);
  cr_expect(json_array_size(json_object_get(a, "by_feature")) >= 6);
  cr_expect_eq(json_array_size(json_object_get(a, "daily")), 30);
  double er = num(a, "totals.error_rate");
  cr_expect(er > 0.002 && er < 0.05, "error rate %f", er);
  cr_expect(num(a, "totals.latency_p99_ms") > 2 * num(a, "totals.latency_p50_ms"));
  json_decref(a);
  json_decref(b);
  json_decref(c);
  json_t *o;
  cr_assert_eq(workloads_cache_opportunities(st, "usr_syn1", NULL, &o), 0);
  cr_expect(json_is_true(json_object_get(o, "recommended")));
  json_decref(o);
  cr_assert_eq(workloads_model_recommendations(st, "usr_syn1", NULL, &o), 0);
  cr_expect(json_is_true(json_object_get(o, "recommended")));
  json_decref(o);
  cr_assert_eq(workloads_batch_opportunities(st, "usr_syn1", NULL, &o), 0);
  cr_expect(json_array_size(json_object_get(o, "batchable_features")) >= 2);
  json_decref(o);
  cr_assert_eq(workloads_anomalies(st, "usr_syn1", NULL, &o), 0);
  cr_expect(json_array_size(json_object_get(o, "anomalies")) >= 1);
  json_decref(o);
  cr_expect_eq(workloads_synthetic(st, "usr_syn4", 0, 1, NULL), AGD_EBAD_REQUEST);
  cr_expect_eq(workloads_synthetic(st, "usr_syn4", WORKLOADS_SYNTHETIC_MAX + 1, 1, NULL), AGD_EBAD_REQUEST);
}
