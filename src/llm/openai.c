/* llm/openai.c — the `openai` provider: any OpenAI-compatible chat-completions
 * server (OpenAI, vLLM, Ollama, llama.cpp) over libcurl (SPEC §11,
 * docs/protocol.md "The openai provider").
 *
 * One llm_chat() is one streamed POST $BASE/chat/completions, driven on the
 * caller's run thread: an easy handle in a multi handle of its own, pumped
 * with curl_multi_poll() for at most 50 ms at a time so the cancel probe, the
 * timeouts and the coalesced deltas' due times are checked in between.  The
 * connection cache and DNS cache are shared by all calls through one CURLSH
 * (locked per data kind), so keep-alive connections are reused across runs.
 * The libuv loop is never touched.  The bytes go through the SSE parser
 * (sse.c) into the chunk assembler (openai_stream.c).
 *
 * Tool names: a registry name the API cannot take (OpenAI's
 * [A-Za-z0-9_-]{1,64}; an MCP tool is `server.tool`) is sent under a wire name
 * (unsafe bytes as '_', a hash suffix when that collides or is too long), and
 * the model's calls are mapped back through the request's own tool list.
 */
#include <curl/curl.h>
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build_info.h"
#include "core/metrics.h"
#include "llm/llm.h"
#include "llm/openai_stream.h"
#include "llm/sse.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define OAI_BUFFER_SIZE (16 * 1024) /* curl's receive buffer per call: small, calls are many */
#define OAI_POLL_MS 50              /* the longest the thread waits before it looks at the cancel probe */
#define OAI_MAX_RETRIES 3
#define OAI_BACKOFF_BASE_S 0.5
#define OAI_ERRBODY_MAX 4096 /* the part of an error answer that is read for its message */

typedef struct openai {
  llm_t base;
  char *url;  /* $BASE/chat/completions */
  char *auth; /* "Authorization: Bearer …", or NULL */
  char *model;
  double timeout_s;
  size_t max_output;
  CURLSH *share;
  pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
  metrics_hist_t *seconds;
} openai_t;

/* ---- tool names ---- */

static int wire_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* The request's tools: registry name ↔ the name the model sees. */
typedef struct name_map {
  size_t n;
  const char **orig;
  char **wire;
} name_map_t;

/* The wire form of a name the API cannot take: every other byte as '_', cut
 * to 64; salt > 0 (a collision) or a cut adds "_" + 8 hex of a hash. */
static void sanitize(const char *name, unsigned salt, char out[65]) {
  size_t n = strlen(name), k = 0;
  int cut = n > 64 || n == 0;
  size_t keep = (cut || salt) ? 55 : 64;
  for (size_t i = 0; i < n && k < keep; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    out[k++] = ok ? c : '_';
  }
  out[k] = '\0';
  if (cut || salt) {
    uint64_t h = hash_fnv1a_str(name, salt);
    snprintf(out + k, 65 - k, "_%08x", (unsigned)(h & 0xffffffffu));
  }
}

static int map_has_wire(const name_map_t *m, const char *w) {
  for (size_t i = 0; i < m->n; i++)
    if (m->wire[i] && strcmp(m->wire[i], w) == 0) return 1;
  return 0;
}

static void map_dispose(name_map_t *m) {
  for (size_t i = 0; i < m->n; i++) free(m->wire[i]);
  free(m->wire);
  free(m->orig);
  memset(m, 0, sizeof(*m));
}

/* Names the API takes stay as they are (they win any collision); the others
 * get a sanitized name no other tool has. */
static int map_build(name_map_t *m, const llm_request_t *req) {
  memset(m, 0, sizeof(*m));
  if (req->n_tools == 0) return 0;
  m->orig = calloc(req->n_tools, sizeof(*m->orig));
  m->wire = calloc(req->n_tools, sizeof(*m->wire));
  if (!m->orig || !m->wire) return -1;
  m->n = req->n_tools;
  for (size_t i = 0; i < m->n; i++) {
    m->orig[i] = req->tools[i].name;
    if (wire_ok(m->orig[i]) && !(m->wire[i] = strdup(m->orig[i]))) return -1;
  }
  for (size_t i = 0; i < m->n; i++) {
    if (m->wire[i]) continue;
    char w[65];
    unsigned salt = 0;
    do sanitize(m->orig[i], salt++, w);
    while (map_has_wire(m, w) && salt < 1000);
    if (!(m->wire[i] = strdup(w))) return -1;
  }
  return 0;
}

/* The name sent for a registry name (w: scratch for a name not among the tools). */
static const char *map_encode(const name_map_t *m, const char *name, char w[65]) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->orig[i], name) == 0) return m->wire[i];
  if (wire_ok(name)) return name;
  sanitize(name, 0, w);
  return w;
}

/* The registry name of a name the model wrote; a name not offered stays as written. */
static const char *map_decode(void *arg, const char *wire) {
  const name_map_t *m = arg;
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->wire[i], wire) == 0) return m->orig[i];
  return wire;
}

/* ---- the request body (SPEC §11) ---- */

static json_t *tool_call_json(const name_map_t *map, const llm_tool_call_t *c) {
  char w[65];
  char *args = c->arguments_raw ? strdup(c->arguments_raw)
               : c->arguments   ? json_dumps(c->arguments, JSON_COMPACT)
                                : strdup("{}");
  json_t *j = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", c->id, "type", "function", "function", "name",
                        map_encode(map, c->name, w), "arguments", args ? args : "{}");
  free(args);
  return j;
}

static json_t *message_json(const name_map_t *map, const llm_message_t *m) {
  json_t *j = json_pack("{s:s}", "role", llm_role_name(m->role));
  if (!j) return NULL;
  char *text = llm_message_text(m);
  json_object_set_new(j, "content", text ? json_string(text) : json_null());
  free(text);
  if (m->role == LLM_ROLE_TOOL) json_object_set_new(j, "tool_call_id", json_string(m->tool_call_id));
  if (m->role == LLM_ROLE_ASSISTANT && m->n_tool_calls > 0) {
    json_t *calls = json_array();
    for (size_t k = 0; k < m->n_tool_calls; k++) json_array_append_new(calls, tool_call_json(map, &m->tool_calls[k]));
    json_object_set_new(j, "tool_calls", calls);
  }
  return j;
}

/* The compact JSON body, or NULL (out of memory). */
static char *request_body(const openai_t *o, const llm_request_t *req, const name_map_t *map) {
  json_t *msgs = json_array();
  for (size_t i = 0; i < req->n_messages; i++) json_array_append_new(msgs, message_json(map, &req->messages[i]));
  json_t *body = json_pack("{s:s,s:o,s:b,s:{s:b}}", "model", o->model, "messages", msgs, "stream", 1,
                           "stream_options", "include_usage", 1);
  if (!body) return NULL;
  if (req->n_tools > 0) {
    json_t *tools = json_array();
    for (size_t i = 0; i < req->n_tools; i++) {
      const llm_tool_t *t = &req->tools[i];
      json_array_append_new(tools, json_pack("{s:s,s:{s:s,s:s,s:O}}", "type", "function", "function", "name",
                                             map->wire[i], "description", t->description ? t->description : "",
                                             "parameters", t->parameters));
    }
    json_object_set_new(body, "tools", tools);
    char w[65];
    switch (req->tool_choice) {
    case LLM_TOOL_CHOICE_NONE: json_object_set_new(body, "tool_choice", json_string("none")); break;
    case LLM_TOOL_CHOICE_REQUIRED: json_object_set_new(body, "tool_choice", json_string("required")); break;
    case LLM_TOOL_CHOICE_FUNCTION:
      json_object_set_new(body, "tool_choice",
                          json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                                    map_encode(map, req->tool_choice_name, w)));
      break;
    default: break; /* auto: the API's default */
    }
  }
  if (req->max_output_tokens > 0) json_object_set_new(body, "max_tokens", json_integer(req->max_output_tokens));
  if (req->temperature >= 0) json_object_set_new(body, "temperature", json_real(req->temperature));
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  return s;
}

/* ---- one attempt ---- */

typedef enum { ATT_OK, ATT_RETRY, ATT_FAIL, ATT_CANCELLED } att_result_t;

typedef struct xfer {
  openai_t *o;
  const llm_request_t *req;
  oai_stream_t *st;
  llm_sse_t sse;
  long status;            /* the HTTP status, once the body began */
  buf_t errbody;          /* a non-200 answer's first bytes */
  double retry_after;     /* seconds; < 0: none */
  size_t bytes;           /* stream bytes of a 200 answer */
  uint64_t last_byte_ms;  /* 0: nothing yet */
  int cancelled;          /* the write callback saw the cancel */
  llm_error_t fail;       /* set by the write callback when it aborts the transfer */
  char fail_msg[200];
} xfer_t;

static int on_event(void *ud, const char *data, size_t n) {
  xfer_t *x = ud;
  /* A fast stream may bring many events in one curl_multi_perform(): the
   * cancel probe is cheap, so it is asked at each one too. */
  if (llm_request_cancelled(x->req)) {
    x->cancelled = 1;
    return 1;
  }
  return oai_stream_event(x->st, data, n, time_mono_ms());
}

static void xfer_fail(xfer_t *x, llm_error_t e, const char *msg) {
  x->fail = e;
  snprintf(x->fail_msg, sizeof(x->fail_msg), "%s", msg);
}

/* curl hands the body here, on this thread (inside curl_multi_perform). */
static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  xfer_t *x = ud;
  size_t n = size * nmemb;
  x->last_byte_ms = time_mono_ms();
  if (x->status != 200) {
    size_t room = OAI_ERRBODY_MAX - x->errbody.len;
    if (room > 0) buf_append(&x->errbody, p, n < room ? n : room);
    return n;
  }
  x->bytes += n;
  if (x->bytes > x->o->max_output) {
    char m[120];
    snprintf(m, sizeof(m), "the model's stream passed --llm-max-output (%zu bytes)", x->o->max_output);
    xfer_fail(x, LLM_ERR_BAD_RESPONSE, m);
    return 0;
  }
  int rc = llm_sse_feed(&x->sse, p, n, on_event, x);
  if (rc == LLM_SSE_TOO_LONG) {
    xfer_fail(x, LLM_ERR_BAD_RESPONSE, "the model's stream has a line over 1 MiB");
    return 0;
  }
  return rc ? 0 : n; /* a bad chunk or a callback's stop: x->st says which */
}

/* Headers: the status line (a retry's new status), Retry-After, and proof of life. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  xfer_t *x = ud;
  size_t n = size * nmemb;
  x->last_byte_ms = time_mono_ms();
  if (n > 5 && strncmp(p, "HTTP/", 5) == 0) {
    const char *sp = memchr(p, ' ', n);
    x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    x->retry_after = -1;
  } else if (n > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
    char v[64];
    size_t vn = n - 12 < sizeof(v) - 1 ? n - 12 : sizeof(v) - 1;
    memcpy(v, p + 12, vn);
    v[vn] = '\0';
    char *s = v;
    while (*s == ' ' || *s == '\t') s++;
    for (char *t = s + strlen(s); t > s && (t[-1] == '\r' || t[-1] == '\n' || t[-1] == ' '); t--) t[-1] = '\0';
    char *end;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0' && secs >= 0) x->retry_after = secs;
    else {
      time_t when = curl_getdate(s, NULL); /* an HTTP date */
      if (when > 0) x->retry_after = fmax(0, (double)when - time_now());
    }
  }
  return n;
}

/* One line of the server's error answer: error.message of the OpenAI error
 * JSON, else the body's first bytes, bounded, control bytes as spaces. */
static void error_text(const buf_t *body, char *out, size_t cap) {
  json_t *j = json_loadb(body->base ? body->base : "", body->len, 0, NULL);
  const json_t *e = json_object_get(j, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  if (!m) m = json_string_value(e);
  if (!m) m = json_string_value(json_object_get(j, "message"));
  if (m) snprintf(out, cap, "%s", m);
  else snprintf(out, cap, "%.*s", (int)(body->len < 120 ? body->len : 120), body->base ? body->base : "");
  json_decref(j);
  for (char *p = out; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
  utf8_trim_tail(out);
}

static CURL *easy_new(openai_t *o, xfer_t *x, const char *body, struct curl_slist *hdrs, char *errbuf,
                      double connect_s) {
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SHARE, o->share);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)OAI_BUFFER_SIZE);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_s * 1000));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  return e;
}

/* The times of one call, in monotonic ms. */
typedef struct clock_plan {
  uint64_t end;        /* the total: --llm-timeout and the request's deadline */
  uint64_t first_byte; /* ms from an attempt's start to the answer's first byte */
  uint64_t idle;       /* ms the stream may stay silent */
  double connect_s;
} clock_plan_t;

/* Whether a curl failure is the connection failing (worth a retry when nothing was handed on). */
static int transport_error(CURLcode c) {
  switch (c) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT: /* the connect timeout */
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_SSL_CONNECT_ERROR: return 1;
  default: return 0;
  }
}

/* Run one attempt.  On ATT_RETRY / ATT_FAIL, *err and msg say what went wrong;
 * *retry_after the server's wish (< 0: none). */
static att_result_t attempt(openai_t *o, const llm_request_t *req, const char *body, struct curl_slist *hdrs,
                            const clock_plan_t *cp, const name_map_t *map, oai_stream_t *st, llm_response_t *out,
                            llm_error_t *err,
                            char *msg, size_t cap, double *retry_after) {
  xfer_t x = {.o = o, .req = req, .st = st, .retry_after = -1};
  llm_sse_init(&x.sse, LLM_SSE_MAX_LINE);
  buf_init(&x.errbody, OAI_ERRBODY_MAX);
  char errbuf[CURL_ERROR_SIZE] = "";
  CURLM *m = curl_multi_init();
  CURL *e = m ? easy_new(o, &x, body, hdrs, errbuf, cp->connect_s) : NULL;
  att_result_t res = ATT_FAIL;
  *err = LLM_ERR_INTERNAL;
  snprintf(msg, cap, "cannot set up the HTTP call");
  if (!e || curl_multi_add_handle(m, e) != CURLM_OK) goto done;

  uint64_t t0 = time_mono_ms();
  int running = 1;
  enum { GO, CANCEL, TIMEOUT_TOTAL, TIMEOUT_FIRST, TIMEOUT_IDLE } why = GO;
  uint64_t done_ms = 0;
  int held_open = 0;
  while (running) {
    if (curl_multi_perform(m, &running) != CURLM_OK) break;
    if (x.fail || x.cancelled || st->error || st->stopped) break; /* the write callback aborted it */
    if (!running) break;
    uint64_t now = time_mono_ms();
    if (llm_request_cancelled(req)) why = CANCEL;
    else if (now >= cp->end) why = TIMEOUT_TOTAL;
    else if (!x.last_byte_ms && now >= t0 + cp->first_byte) why = TIMEOUT_FIRST;
    else if (x.last_byte_ms && now >= x.last_byte_ms + cp->idle) why = TIMEOUT_IDLE;
    else if (oai_stream_due(st) && now >= oai_stream_due(st) && oai_stream_tick(st, now)) break;
    if (why != GO) break;
    /* [DONE] came but the body does not end: the answer is whole, so a
     * server that holds the stream open costs a second, not a timeout. */
    if (st->done && !done_ms) done_ms = now;
    if (done_ms && now >= done_ms + 1000) {
      held_open = 1;
      break;
    }
    uint64_t wait = OAI_POLL_MS, due = oai_stream_due(st);
    if (due && due > now && due - now < wait) wait = due - now;
    if (due && due <= now) wait = 0;
    if (cp->end - now < wait) wait = cp->end - now;
    curl_multi_poll(m, NULL, 0, (int)wait, NULL);
  }

  CURLcode cc = CURLE_OK;
  if (!running) {
    int left;
    CURLMsg *cm;
    while ((cm = curl_multi_info_read(m, &left)))
      if (cm->msg == CURLMSG_DONE) cc = cm->data.result;
  }
  if (why == CANCEL || x.cancelled || st->stopped) {
    res = ATT_CANCELLED;
  } else if (why != GO) {
    *err = LLM_ERR_TIMEOUT;
    const char *what = why == TIMEOUT_TOTAL ? "did not finish within the time allowed"
                       : why == TIMEOUT_FIRST ? "sent no answer within the first-byte timeout"
                                              : "went silent for longer than the idle timeout";
    snprintf(msg, cap, "the model server %s", what);
  } else if (x.fail) {
    *err = x.fail;
    snprintf(msg, cap, "%s", x.fail_msg);
  } else if (st->error) {
    *err = st->error;
    snprintf(msg, cap, "%s", st->error_message);
    if (st->error == LLM_ERR_UNAVAILABLE && !st->handed_on) res = ATT_RETRY;
  } else if (running && !held_open) {
    *err = LLM_ERR_INTERNAL;
    snprintf(msg, cap, "the HTTP client failed");
  } else if (cc != CURLE_OK && (x.status == 0 || (x.status == 200 && !st->done && st->finish < 0))) {
    *err = LLM_ERR_UNAVAILABLE;
    if (x.status == 200)
      snprintf(msg, cap, "the model's stream broke off after %zu bytes (%s)", x.bytes, curl_easy_strerror(cc));
    else snprintf(msg, cap, "cannot reach the model server: %s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    if (transport_error(cc) && !st->handed_on) res = ATT_RETRY;
    if (cc == CURLE_OPERATION_TIMEDOUT && x.status == 0) *err = LLM_ERR_TIMEOUT;
  } else if (x.status == 200) {
    int rc = cc == CURLE_OK ? llm_sse_end(&x.sse, on_event, &x) : 0; /* a cut-off last line is no line */
    if (rc == LLM_SSE_TOO_LONG) {
      *err = LLM_ERR_BAD_RESPONSE;
      snprintf(msg, cap, "the model's stream has a line over 1 MiB");
    } else if (st->stopped || x.cancelled) {
      res = ATT_CANCELLED;
    } else if (st->error) {
      *err = st->error;
      snprintf(msg, cap, "%s", st->error_message);
    } else if (!st->done && st->finish < 0) {
      *err = LLM_ERR_BAD_RESPONSE;
      snprintf(msg, cap, "the model's stream ended without [DONE] or a finish_reason");
    } else {
      int frc = oai_stream_finish(st, out, map_decode, (void *)map);
      res = frc == 0 ? ATT_OK : frc == AGD_ECANCELLED ? ATT_CANCELLED : ATT_FAIL;
      if (frc != 0 && frc != AGD_ECANCELLED) snprintf(msg, cap, "out of memory");
    }
  } else {
    char why_text[160]; /* with the prefix, within msg's 220 */
    error_text(&x.errbody, why_text, sizeof(why_text));
    *err = x.status == 429 ? LLM_ERR_RATE_LIMITED : LLM_ERR_UNAVAILABLE;
    snprintf(msg, cap, "the model server answered HTTP %ld: %s", x.status, why_text);
    if (x.status == 429 || x.status >= 500) res = ATT_RETRY;
  }
  *retry_after = x.retry_after;
done:
  if (e) {
    /* Removing a handle mid-transfer closes its connection: the server sees
     * the client go (a cancel, a timeout, a bad stream). */
    if (m) curl_multi_remove_handle(m, e);
    curl_easy_cleanup(e);
  }
  if (m) curl_multi_cleanup(m);
  llm_sse_dispose(&x.sse);
  buf_dispose(&x.errbody);
  return res;
}

/* ---- a whole call ---- */

/* A thread's own jitter source (no shared state, no lock). */
static double jitter01(void) {
  static _Thread_local uint64_t s;
  if (!s) s = time_mono_ns() ^ (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ULL;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return (double)(s >> 11) / 9007199254740992.0;
}

/* Sleep until mono ms `until`, looking at the cancel probe every 50 ms.  1 when cancelled. */
static int wait_until(const llm_request_t *req, uint64_t until) {
  for (;;) {
    if (llm_request_cancelled(req)) return 1;
    uint64_t now = time_mono_ms();
    if (now >= until) return 0;
    uint64_t ms = until - now < OAI_POLL_MS ? until - now : OAI_POLL_MS;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static void plan_clock(const openai_t *o, const llm_request_t *req, clock_plan_t *cp) {
  double t = o->timeout_s;
  uint64_t now = time_mono_ms();
  cp->end = now + (uint64_t)(t * 1000);
  if (req->deadline > 0) {
    double left = req->deadline - time_now();
    uint64_t d = now + (uint64_t)(left > 0 ? left * 1000 : 0);
    if (d < cp->end) cp->end = d;
  }
  cp->connect_s = t < 10 ? t : 10;
  double half = fmin(t, fmax(10, t / 2));
  cp->first_byte = (uint64_t)(half * 1000);
  cp->idle = (uint64_t)(half * 1000);
}

static void count_outcome(const llm_response_t *out) {
  const char *l = "outcome=\"error\"";
  switch (out->finish) {
  case LLM_FINISH_STOP: l = "outcome=\"stop\""; break;
  case LLM_FINISH_TOOL_CALLS: l = "outcome=\"tool_calls\""; break;
  case LLM_FINISH_LENGTH: l = "outcome=\"length\""; break;
  case LLM_FINISH_CANCELLED: l = "outcome=\"cancelled\""; break;
  default:
    switch (out->error) {
    case LLM_ERR_TIMEOUT: l = "outcome=\"timeout\""; break;
    case LLM_ERR_RATE_LIMITED: l = "outcome=\"rate_limited\""; break;
    case LLM_ERR_BAD_RESPONSE: l = "outcome=\"bad_response\""; break;
    case LLM_ERR_UNAVAILABLE: l = "outcome=\"unavailable\""; break;
    default: break;
    }
  }
  metrics_add("agentd_llm_requests_total", l, 1);
}

static int openai_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out) {
  openai_t *o = (openai_t *)l;
  uint64_t t0 = time_mono_ms();
  name_map_t map;
  char *body = NULL;
  struct curl_slist *hdrs = NULL;
  int rc;
  if (map_build(&map, req) != 0 || !(body = request_body(o, req, &map))) {
    rc = llm_response_fail(out, LLM_ERR_INTERNAL, "out of memory building the model request");
    goto done;
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
  hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip for a long body */
  if (o->auth) hdrs = curl_slist_append(hdrs, o->auth);

  clock_plan_t cp;
  plan_clock(o, req, &cp);
  oai_stream_t st;
  oai_stream_init(&st, cb, ud, req->coalesce_bytes, req->coalesce_ms);
  for (int n = 0;; n++) {
    llm_error_t err;
    char msg[220];
    double ra = -1;
    att_result_t res = attempt(o, req, body, hdrs, &cp, &map, &st, out, &err, msg, sizeof(msg), &ra);
    if (res == ATT_OK) {
      rc = 0;
      break;
    }
    if (res == ATT_CANCELLED) {
      oai_stream_take(&st, out);
      out->finish = LLM_FINISH_CANCELLED;
      rc = AGD_ECANCELLED;
      break;
    }
    if (res == ATT_RETRY && n < OAI_MAX_RETRIES && !st.handed_on) {
      double wait = ra >= 0 ? ra : OAI_BACKOFF_BASE_S * (double)(1u << n) * (0.5 + 0.5 * jitter01());
      uint64_t until = time_mono_ms() + (uint64_t)(wait * 1000);
      if (until < cp.end) { /* a wait past the total would only end in a timeout */
        if (wait_until(req, until)) {
          out->finish = LLM_FINISH_CANCELLED;
          rc = AGD_ECANCELLED;
          break;
        }
        oai_stream_dispose(&st); /* nothing was handed on: start the stream afresh */
        oai_stream_init(&st, cb, ud, req->coalesce_bytes, req->coalesce_ms);
        continue;
      }
    }
    oai_stream_take(&st, out);
    if (n > 0 && res == ATT_RETRY) {
      size_t len = strlen(msg);
      snprintf(msg + len, sizeof(msg) - len, " (after %d retries)", n);
    }
    rc = llm_response_fail(out, err, "%s", msg);
    break;
  }
  oai_stream_dispose(&st);
done:
  curl_slist_free_all(hdrs);
  free(body);
  map_dispose(&map);
  if (out->prompt_tokens > 0) metrics_add("agentd_llm_tokens_total", "kind=\"prompt\"", out->prompt_tokens);
  if (out->completion_tokens > 0)
    metrics_add("agentd_llm_tokens_total", "kind=\"completion\"", out->completion_tokens);
  metrics_hist_observe(o->seconds, (double)(time_mono_ms() - t0) / 1000.0);
  count_outcome(out);
  return rc;
}

/* ---- the instance ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *ud) {
  (void)h, (void)a;
  openai_t *o = ud;
  pthread_mutex_lock(&o->locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud) {
  (void)h;
  openai_t *o = ud;
  pthread_mutex_unlock(&o->locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static void openai_destroy(llm_t *l) {
  openai_t *o = (openai_t *)l;
  if (o->share) curl_share_cleanup(o->share);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&o->locks[i]);
  free(o->url);
  free(o->auth);
  free(o->model);
  free(o);
  curl_global_cleanup();
}

static const char *openai_model(const llm_t *l) { return ((const openai_t *)l)->model; }

static const llm_provider_t openai_provider = {
    .name = "openai", .chat = openai_chat, .destroy = openai_destroy, .model = openai_model};

/* 1 when s is http(s)://host… (the scheme case-insensitive, a host present). */
static int url_ok(const char *s) {
  size_t k = strncasecmp(s, "http://", 7) == 0 ? 7 : strncasecmp(s, "https://", 8) == 0 ? 8 : 0;
  if (!k || !s[k] || s[k] == '/') return 0;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) return 0;
  return 1;
}

llm_t *llm_openai_new(const llm_options_t *opt, char *err, size_t cap) {
  static const llm_options_t defaults = {0};
  if (!opt) opt = &defaults;
  const char *base = opt->base_url && *opt->base_url ? opt->base_url : LLM_OPENAI_DEFAULT_BASE_URL;
  const char *model = opt->model && *opt->model ? opt->model : LLM_OPENAI_DEFAULT_MODEL;
  if (!url_ok(base) || strlen(base) > 2048) {
    if (err && cap)
      snprintf(err, cap, "OPENAI_BASE_URL must be an http:// or https:// URL with a host, not '%.100s'", base);
    return NULL;
  }
  if (strlen(model) > 256) {
    if (err && cap) snprintf(err, cap, "OPENAI_MODEL is longer than 256 bytes");
    return NULL;
  }
  if (opt->api_key && (strlen(opt->api_key) > 4096 || strpbrk(opt->api_key, "\r\n"))) {
    if (err && cap) snprintf(err, cap, "OPENAI_API_KEY must be one line of at most 4096 bytes");
    return NULL;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    if (err && cap) snprintf(err, cap, "cannot initialise libcurl");
    return NULL;
  }
  openai_t *o = calloc(1, sizeof(*o));
  if (!o) {
    curl_global_cleanup();
    if (err && cap) snprintf(err, cap, "out of memory");
    return NULL;
  }
  o->base.provider = &openai_provider;
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&o->locks[i], NULL);
  size_t bl = strlen(base);
  while (bl > 0 && base[bl - 1] == '/') bl--; /* "…/v1/" and "…/v1" are one base */
  o->timeout_s = opt->timeout_s > 0 ? opt->timeout_s : 60;
  o->max_output = opt->max_output_bytes > 0 ? opt->max_output_bytes : LLM_OPENAI_DEFAULT_MAX_OUTPUT;
  o->model = strdup(model);
  if (asprintf(&o->url, "%.*s/chat/completions", (int)bl, base) < 0) o->url = NULL;
  if (opt->api_key && *opt->api_key && asprintf(&o->auth, "Authorization: Bearer %s", opt->api_key) < 0)
    o->auth = NULL;
  o->share = curl_share_init();
  if (!o->model || !o->url || (opt->api_key && *opt->api_key && !o->auth) || !o->share) {
    openai_destroy(&o->base);
    if (err && cap) snprintf(err, cap, "out of memory");
    return NULL;
  }
  curl_share_setopt(o->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(o->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(o->share, CURLSHOPT_USERDATA, o);
  curl_share_setopt(o->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(o->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(o->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

  metrics_describe("agentd_llm_tokens_total", "counter", "Tokens the model server reported, by kind (prompt, completion)");
  metrics_describe("agentd_llm_requests_total", "counter", "Model calls of the openai provider, by outcome");
  static const double buckets[] = {0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300};
  o->seconds = metrics_hist_bounds("agentd_llm_request_seconds",
                                   "Whole model calls of the openai provider, retries included", buckets,
                                   sizeof(buckets) / sizeof(buckets[0]));
  return &o->base;
}
