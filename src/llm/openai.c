/* llm/openai.c — the `openai` provider: any OpenAI-compatible chat-completions
 * server (OpenAI, vLLM, Ollama, llama.cpp) over libcurl (SPEC §11,
 * docs/protocol.md "The openai provider").
 *
 * One llm_chat() is one streamed POST $BASE/chat/completions.  Every call of
 * the provider is driven by ONE I/O thread ("agentd-llm", started by
 * llm_openai_new, stopped by llm_close): the caller maps the tool names,
 * queues the call (an eventfd wakes the I/O thread) and sleeps on a condition
 * variable until the call is over.  The I/O thread holds all
 * transfers in one curl multi handle driven by curl_multi_socket_action() over
 * an epoll set, so a chunk wakes one thread and costs work for its own socket
 * only, not for every call in flight.  Beside curl's own timer it keeps one
 * min-heap of due times for all calls (held coalesced deltas, retry backoffs)
 * and one 50 ms scan over all calls for the cancel probes, the timeouts and a
 * body held open after [DONE]; a cancelled or timed-out transfer is removed
 * at once (its connection closes).  The stream callbacks therefore run on the
 * I/O thread while their caller is blocked in chat() (llm.h).  The connection
 * cache, DNS cache and TLS sessions are shared through one CURLSH, so
 * keep-alive connections are reused across runs.  The libuv loop is never
 * touched.  The bytes go through the SSE parser (sse.c) into the chunk
 * assembler (openai_stream.c).
 *
 * Memory per call in flight (issue 14, docs/performance.md): the I/O thread
 * builds the request body when it starts the call (built on the caller's
 * thread, the JSON's freed blocks stayed in that sleeping thread's malloc
 * cache, ~7 KiB per call; on the I/O thread the next call reuses them) and
 * frees it as soon as the answer's first bytes show it was all sent (a retry
 * builds it again); curl's receive buffer is 2 KiB; the caller's thread gives
 * back its unused stack pages before it sleeps (util/stack.h).
 *
 * Tool names: a registry name the API cannot take (OpenAI's
 * [A-Za-z0-9_-]{1,64}; an MCP tool is `server.tool`) is sent under a wire name
 * (unsafe bytes as '_', a hash suffix when that collides or is too long), and
 * the model's calls are mapped back through the request's own tool list.
 */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "build_info.h"
#include "core/metrics.h"
#include "llm/llm.h"
#include "llm/openai_stream.h"
#include "llm/sse.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/stack.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define OAI_BUFFER_SIZE (2 * 1024) /* curl's receive buffer per call: SSE chunks are small, calls are many */
#define OAI_POLL_MS 50              /* the I/O thread's scan of all calls' cancel probes and timeouts */
#define OAI_MAX_RETRIES 3
#define OAI_BACKOFF_BASE_S 0.5
#define OAI_ERRBODY_MAX 4096 /* the part of an error answer that is read for its message */

typedef struct call call_t; /* one llm_chat() in flight (below) */

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
  /* the I/O thread */
  pthread_t io;
  int io_running;
  int epfd, evfd;    /* curl's sockets and the wakeup, in one epoll set */
  CURLM *multi;      /* every transfer of every call */
  uint64_t curl_due; /* curl's timer, monotonic ms (UINT64_MAX: none) */
  call_t *live;      /* the calls it holds (a list) */
  size_t n_live;
  call_t **heap;     /* the calls with a due time, a min-heap by it */
  size_t heap_n, heap_cap;
  /* the hand-over, under qmu */
  pthread_mutex_t qmu;
  call_t *queue, *queue_tail; /* submitted, not yet taken */
  int stopping;               /* llm_close: no new calls, end those in flight */
  int callers;                /* threads inside chat() */
  pthread_cond_t idle_cv;     /* callers dropped to 0 while stopping */
} openai_t;

/* ---- tool names ---- */


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
    if (llm_tool_name_wire_safe(m->orig[i]) && !(m->wire[i] = strdup(m->orig[i]))) return -1;
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
  if (llm_tool_name_wire_safe(name)) return name;
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

/* ---- the I/O thread's view of one call ---- */

typedef enum { ATT_OK, ATT_RETRY, ATT_FAIL, ATT_CANCELLED } att_result_t;

/* Why the I/O thread ends an attempt before curl does. */
typedef enum { WHY_GO, WHY_CANCEL, WHY_TIMEOUT_TOTAL, WHY_TIMEOUT_FIRST, WHY_TIMEOUT_IDLE } why_t;

/* The times of one call, in monotonic ms. */
typedef struct clock_plan {
  uint64_t end;        /* the total: --llm-timeout and the request's deadline */
  uint64_t first_byte; /* ms from an attempt's start to the answer's first byte */
  uint64_t idle;       /* ms the stream may stay silent */
  double connect_s;
} clock_plan_t;

typedef struct call call_t;

/* One attempt's transfer state (reset for each attempt). */
typedef struct xfer {
  call_t *c;
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

/* One llm_chat() in flight.  It lives on the caller's stack: the caller
 * fills the request part, hands it to the I/O thread and sleeps on cv until
 * `finished`; everything else is the I/O thread's until then. */
struct call {
  openai_t *o;
  const llm_request_t *req;
  char *body;         /* the request body: built by the I/O thread for an attempt (body_ready), freed once sent */
  size_t body_len;    /* its length once first built (0: not yet); a rebuild must match it */
  struct curl_slist *hdrs;
  const name_map_t *map;
  clock_plan_t cp;
  oai_stream_t st;
  llm_response_t *out;
  /* the I/O thread's */
  int n;              /* attempts made */
  CURL *easy;         /* the attempt's transfer, NULL between attempts */
  xfer_t x;
  char errbuf[CURL_ERROR_SIZE];
  uint64_t att_t0;    /* the attempt's start */
  uint64_t done_ms;   /* when [DONE] was first seen (0: not yet) */
  uint64_t retry_at;  /* a retry waits until then (0: not waiting) */
  uint64_t due;       /* its key in the timer heap (0: not in it) */
  size_t heap_i;
  call_t *prev, *next; /* the live list */
  call_t *qnext;       /* the submission queue */
  /* the hand-back */
  int rc;
  int finished;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

/* ---- the timer heap: one min-heap of due times for all calls ----
 * A call's key is the earliest of its held deltas' due time and its retry
 * time; the I/O thread sleeps until the top (or curl's own timer, or the
 * 50 ms scan).  I/O thread only. */

static int heap_less(const openai_t *o, size_t a, size_t b) { return o->heap[a]->due < o->heap[b]->due; }

static void heap_swap(openai_t *o, size_t a, size_t b) {
  call_t *t = o->heap[a];
  o->heap[a] = o->heap[b];
  o->heap[b] = t;
  o->heap[a]->heap_i = a;
  o->heap[b]->heap_i = b;
}

static void heap_up(openai_t *o, size_t i) {
  while (i > 0 && heap_less(o, i, (i - 1) / 2)) {
    heap_swap(o, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(openai_t *o, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < o->heap_n && heap_less(o, l, m)) m = l;
    if (r < o->heap_n && heap_less(o, r, m)) m = r;
    if (m == i) return;
    heap_swap(o, i, m);
    i = m;
  }
}

static void heap_remove(openai_t *o, call_t *c) {
  if (!c->due) return;
  size_t i = c->heap_i;
  c->due = 0;
  if (i != --o->heap_n) {
    o->heap[i] = o->heap[o->heap_n];
    o->heap[i]->heap_i = i;
    heap_down(o, i);
    heap_up(o, i);
  }
}

/* Put c in the heap at its current key (or take it out when it has none).
 * The heap has room for every live call (live_add grows it). */
static void reschedule(openai_t *o, call_t *c) {
  uint64_t key = c->retry_at ? c->retry_at : oai_stream_due(&c->st);
  if (key == c->due) return;
  if (!key) {
    heap_remove(o, c);
    return;
  }
  if (!c->due) {
    c->heap_i = o->heap_n++;
    o->heap[c->heap_i] = c;
    c->due = key;
    heap_up(o, c->heap_i);
    return;
  }
  uint64_t old = c->due;
  c->due = key;
  if (key < old) heap_up(o, c->heap_i);
  else heap_down(o, c->heap_i);
}

/* ---- the live list ---- */

static int live_add(openai_t *o, call_t *c) {
  if (o->n_live + 1 > o->heap_cap) {
    size_t cap = o->heap_cap ? o->heap_cap * 2 : 64;
    call_t **h = realloc(o->heap, cap * sizeof(*h));
    if (!h) return -1;
    o->heap = h;
    o->heap_cap = cap;
  }
  c->prev = NULL;
  c->next = o->live;
  if (o->live) o->live->prev = c;
  o->live = c;
  o->n_live++;
  return 0;
}

static void live_remove(openai_t *o, call_t *c) {
  if (c->prev) c->prev->next = c->next;
  else o->live = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  o->n_live--;
}

/* The answer's first bytes came: once curl has sent all of the body it reads
 * it no more (it rewinds only to resend a request that got no answer at all),
 * so the body goes now rather than wait seconds or minutes for the stream
 * to end (~8 KiB per in-flight call: the messages and the tools' schemas). */
static void body_sent(call_t *c) {
  curl_off_t up = 0;
  if (!c->body || !c->easy) return;
  if (curl_easy_getinfo(c->easy, CURLINFO_SIZE_UPLOAD_T, &up) != CURLE_OK || up < (curl_off_t)c->body_len) return;
  free(c->body);
  c->body = NULL;
}

/* ---- curl's callbacks (on the I/O thread, inside curl_multi_socket_action) ---- */

static int on_event(void *ud, const char *data, size_t n) {
  xfer_t *x = ud;
  /* A fast stream may bring many events in one read: the cancel probe is
   * cheap, so it is asked at each one too. */
  if (llm_request_cancelled(x->c->req)) {
    x->cancelled = 1;
    return 1;
  }
  return oai_stream_event(&x->c->st, data, n, time_mono_ms());
}

static void xfer_fail(xfer_t *x, llm_error_t e, const char *msg) {
  x->fail = e;
  snprintf(x->fail_msg, sizeof(x->fail_msg), "%s", msg);
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
  xfer_t *x = ud;
  call_t *c = x->c;
  size_t n = size * nmemb;
  x->last_byte_ms = time_mono_ms();
  if (x->status != 200) {
    size_t room = OAI_ERRBODY_MAX - x->errbody.len;
    if (room > 0) buf_append(&x->errbody, p, n < room ? n : room);
    return n;
  }
  if (x->bytes == 0) body_sent(c);
  x->bytes += n;
  if (x->bytes > c->o->max_output) {
    char m[120];
    snprintf(m, sizeof(m), "the model's stream passed --llm-max-output (%zu bytes)", c->o->max_output);
    xfer_fail(x, LLM_ERR_BAD_RESPONSE, m);
    return 0;
  }
  int rc = llm_sse_feed(&x->sse, p, n, on_event, x);
  reschedule(c->o, c); /* a piece may now be held, or no longer */
  if (rc == LLM_SSE_TOO_LONG) {
    xfer_fail(x, LLM_ERR_BAD_RESPONSE, "the model's stream has a line over 1 MiB");
    return 0;
  }
  return rc ? 0 : n; /* a bad chunk or a callback's stop: c->st says which */
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

/* curl asks to watch (or stop watching) a socket: mirror it into the epoll set.
 * socketp says whether the socket is in the set already. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)e;
  openai_t *o = userp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(o->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT / EBADF: already gone with the socket */
    return 0;
  }
  struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                           .data.fd = s};
  int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(o->epfd, op, s, &ev) != 0) {
    /* the fd was closed and reused behind curl's back, or its entry went with an earlier close */
    if (errno == ENOENT) epoll_ctl(o->epfd, EPOLL_CTL_ADD, s, &ev);
    else if (errno == EEXIST) epoll_ctl(o->epfd, EPOLL_CTL_MOD, s, &ev);
  }
  if (!socketp) curl_multi_assign(o->multi, s, (void *)1);
  return 0;
}

/* curl's one timer for all its transfers (timeouts, connect, the kick of a new handle). */
static int on_timer(CURLM *m, long timeout_ms, void *userp) {
  (void)m;
  openai_t *o = userp;
  o->curl_due = timeout_ms < 0 ? UINT64_MAX : time_mono_ms() + (uint64_t)timeout_ms;
  return 0;
}

/* ---- one attempt ---- */

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

/* The body for an attempt, built here on the I/O thread from the caller's
 * request and name map (the caller sleeps until the call ends).  A retry after
 * the body was sent and freed builds it again: building is deterministic, so
 * the bytes are the ones sent the first time (a length that differs fails the
 * attempt rather than send something else). */
static int body_ready(call_t *c) {
  if (c->body) return 0;
  c->body = request_body(c->o, c->req, c->map);
  if (c->body && !c->body_len) c->body_len = strlen(c->body);
  if (c->body && strlen(c->body) == c->body_len) return 0;
  free(c->body);
  c->body = NULL;
  return -1;
}

static CURL *easy_new(call_t *c) {
  openai_t *o = c->o;
  if (body_ready(c) != 0) return NULL;
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SHARE, o->share);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)OAI_BUFFER_SIZE);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->cp.connect_s * 1000));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &c->x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &c->x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(e, CURLOPT_PRIVATE, c);
  return e;
}

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

/* Drop the attempt's transfer.  Removing a handle mid-transfer closes its
 * connection: the server sees the client go (a cancel, a timeout, a bad stream). */
static void attempt_drop(call_t *c) {
  if (c->easy) {
    curl_multi_remove_handle(c->o->multi, c->easy);
    curl_easy_cleanup(c->easy);
    c->easy = NULL;
  }
  llm_sse_dispose(&c->x.sse);
  buf_dispose(&c->x.errbody);
}

/* Judge the attempt that ended: by curl (ended, with cc), by the I/O thread
 * (why), or as a whole answer on a body held open after [DONE] (held_open).
 * On ATT_RETRY / ATT_FAIL, *err and msg say what went wrong. */
static att_result_t attempt_judge(call_t *c, why_t why, int ended, int held_open, CURLcode cc, llm_error_t *err,
                                  char *msg, size_t cap) {
  xfer_t *x = &c->x;
  oai_stream_t *st = &c->st;
  att_result_t res = ATT_FAIL;
  *err = LLM_ERR_INTERNAL;
  if (why == WHY_CANCEL || x->cancelled || st->stopped) {
    res = ATT_CANCELLED;
  } else if (why != WHY_GO) {
    *err = LLM_ERR_TIMEOUT;
    const char *what = why == WHY_TIMEOUT_TOTAL ? "did not finish within the time allowed"
                       : why == WHY_TIMEOUT_FIRST ? "sent no answer within the first-byte timeout"
                                                  : "went silent for longer than the idle timeout";
    snprintf(msg, cap, "the model server %s", what);
  } else if (x->fail) {
    *err = x->fail;
    snprintf(msg, cap, "%s", x->fail_msg);
  } else if (st->error) {
    *err = st->error;
    snprintf(msg, cap, "%s", st->error_message);
    if (st->error == LLM_ERR_UNAVAILABLE && !st->handed_on) res = ATT_RETRY;
  } else if (!ended && !held_open) {
    snprintf(msg, cap, "the HTTP client failed");
  } else if (cc != CURLE_OK && (x->status == 0 || (x->status == 200 && !st->done && st->finish < 0))) {
    *err = LLM_ERR_UNAVAILABLE;
    if (x->status == 200)
      snprintf(msg, cap, "the model's stream broke off after %zu bytes (%s)", x->bytes, curl_easy_strerror(cc));
    else snprintf(msg, cap, "cannot reach the model server: %.150s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
    if (transport_error(cc) && !st->handed_on) res = ATT_RETRY;
    if (cc == CURLE_OPERATION_TIMEDOUT && x->status == 0) *err = LLM_ERR_TIMEOUT;
  } else if (x->status == 200) {
    int rc = cc == CURLE_OK ? llm_sse_end(&x->sse, on_event, x) : 0; /* a cut-off last line is no line */
    if (rc == LLM_SSE_TOO_LONG) {
      *err = LLM_ERR_BAD_RESPONSE;
      snprintf(msg, cap, "the model's stream has a line over 1 MiB");
    } else if (st->stopped || x->cancelled) {
      res = ATT_CANCELLED;
    } else if (st->error) {
      *err = st->error;
      snprintf(msg, cap, "%s", st->error_message);
    } else if (!st->done && st->finish < 0) {
      *err = LLM_ERR_BAD_RESPONSE;
      snprintf(msg, cap, "the model's stream ended without [DONE] or a finish_reason");
    } else {
      int frc = oai_stream_finish(st, c->out, map_decode, (void *)c->map);
      res = frc == 0 ? ATT_OK : frc == AGD_ECANCELLED ? ATT_CANCELLED : ATT_FAIL;
      if (frc != 0 && frc != AGD_ECANCELLED) snprintf(msg, cap, "out of memory");
    }
  } else {
    char why_text[160]; /* with the prefix, within msg's 220 */
    error_text(&x->errbody, why_text, sizeof(why_text));
    *err = x->status == 429 ? LLM_ERR_RATE_LIMITED : LLM_ERR_UNAVAILABLE;
    snprintf(msg, cap, "the model server answered HTTP %ld: %s", x->status, why_text);
    if (x->status == 429 || x->status >= 500) res = ATT_RETRY;
  }
  return res;
}

/* ---- a whole call ---- */

/* The I/O thread's own jitter source (no shared state, no lock). */
static double jitter01(void) {
  static _Thread_local uint64_t s;
  if (!s) s = time_mono_ns() ^ (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ULL;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return (double)(s >> 11) / 9007199254740992.0;
}

/* Hand the call back to its caller: after the unlock c is the caller's again
 * (it may be gone at once). */
static void call_end(openai_t *o, call_t *c, int rc) {
  attempt_drop(c); /* idempotent */
  heap_remove(o, c);
  live_remove(o, c);
  pthread_mutex_lock(&c->mu);
  c->rc = rc;
  c->finished = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void call_cancelled(openai_t *o, call_t *c) {
  oai_stream_take(&c->st, c->out);
  c->out->finish = LLM_FINISH_CANCELLED;
  call_end(o, c, ERR(AGD_ECANCELLED));
}


/* The attempt ended one way or another: finish the call, or plan its retry. */
static void attempt_over(openai_t *o, call_t *c, why_t why, int ended, int held_open, CURLcode cc) {
  llm_error_t err;
  char msg[220] = "";
  att_result_t res = attempt_judge(c, why, ended, held_open, cc, &err, msg, sizeof(msg));
  double ra = c->x.retry_after;
  attempt_drop(c);
  int n = c->n - 1; /* retries made before this attempt */
  if (res == ATT_OK) {
    call_end(o, c, 0);
    return;
  }
  if (res == ATT_CANCELLED) {
    call_cancelled(o, c);
    return;
  }
  if (res == ATT_RETRY && n < OAI_MAX_RETRIES && !c->st.handed_on) {
    double wait = ra >= 0 ? ra : OAI_BACKOFF_BASE_S * (double)(1u << n) * (0.5 + 0.5 * jitter01());
    uint64_t until = time_mono_ms() + (uint64_t)(wait * 1000);
    if (until < c->cp.end) { /* a wait past the total would only end in a timeout */
      oai_stream_dispose(&c->st); /* nothing was handed on: start the stream afresh */
      oai_stream_init(&c->st, c->st.cb, c->st.ud, c->req->coalesce_bytes, c->req->coalesce_ms);
      c->retry_at = until ? until : 1;
      reschedule(o, c);
      return;
    }
  }
  oai_stream_take(&c->st, c->out);
  if (n > 0 && res == ATT_RETRY) {
    size_t len = strlen(msg);
    snprintf(msg + len, sizeof(msg) - len, " (after %d retries)", n);
  }
  call_end(o, c, llm_response_fail(c->out, err, "%s", msg));
}

static void attempt_start(openai_t *o, call_t *c) {
  c->retry_at = 0;
  reschedule(o, c);
  memset(&c->x, 0, sizeof(c->x));
  c->x.c = c;
  c->x.retry_after = -1;
  llm_sse_init(&c->x.sse, LLM_SSE_MAX_LINE);
  buf_init(&c->x.errbody, OAI_ERRBODY_MAX);
  c->errbuf[0] = '\0';
  c->done_ms = 0;
  c->att_t0 = time_mono_ms();
  c->n++;
  c->easy = easy_new(c);
  if (!c->easy || curl_multi_add_handle(o->multi, c->easy) != CURLM_OK) {
    if (c->easy) curl_easy_cleanup(c->easy);
    c->easy = NULL;
    attempt_drop(c);
    oai_stream_take(&c->st, c->out);
    call_end(o, c, llm_response_fail(c->out, LLM_ERR_INTERNAL, "cannot set up the HTTP call"));
  }
}

/* ---- the I/O thread ---- */

/* Take the callers' new calls (and notice a close). */
static void take_queue(openai_t *o) {
  uint64_t v;
  while (read(o->evfd, &v, sizeof(v)) > 0) {
  }
  pthread_mutex_lock(&o->qmu);
  call_t *q = o->queue;
  o->queue = o->queue_tail = NULL;
  pthread_mutex_unlock(&o->qmu);
  while (q) {
    call_t *c = q;
    q = q->qnext;
    if (live_add(o, c) != 0) {
      pthread_mutex_lock(&c->mu);
      c->rc = llm_response_fail(c->out, LLM_ERR_INTERNAL, "out of memory starting the model call");
      c->finished = 1;
      pthread_cond_signal(&c->cv);
      pthread_mutex_unlock(&c->mu);
      continue;
    }
    attempt_start(o, c);
  }
}

/* Transfers curl finished (or failed). */
static void reap(openai_t *o) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(o->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    char *priv = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    call_t *c = (call_t *)priv;
    CURLcode cc = m->data.result; /* m is gone once the handle is removed */
    if (c) attempt_over(o, c, WHY_GO, 1, 0, cc);
  }
}

/* Calls whose key is due: held deltas go out, retries start. */
static void fire_due(openai_t *o, uint64_t now) {
  while (o->heap_n > 0 && o->heap[0]->due <= now) {
    call_t *c = o->heap[0];
    if (c->retry_at) {
      attempt_start(o, c);
      continue;
    }
    int stop = oai_stream_tick(&c->st, now);
    reschedule(o, c);
    if (stop) attempt_over(o, c, WHY_GO, 0, 0, CURLE_OK); /* a callback asked to stop */
  }
}

/* Every OAI_POLL_MS: the cancel probes, the timeouts and a body held open
 * after [DONE], for all calls in one pass. */
static void scan(openai_t *o, uint64_t now) {
  for (call_t *c = o->live, *next; c; c = next) {
    next = c->next;
    if (llm_request_cancelled(c->req)) {
      if (c->easy) attempt_over(o, c, WHY_CANCEL, 0, 0, CURLE_OK);
      else call_cancelled(o, c);
      continue;
    }
    if (!c->easy) continue; /* waiting to retry */
    why_t why = WHY_GO;
    if (now >= c->cp.end) why = WHY_TIMEOUT_TOTAL;
    else if (!c->x.last_byte_ms && now >= c->att_t0 + c->cp.first_byte) why = WHY_TIMEOUT_FIRST;
    else if (c->x.last_byte_ms && now >= c->x.last_byte_ms + c->cp.idle) why = WHY_TIMEOUT_IDLE;
    if (why != WHY_GO) {
      attempt_over(o, c, why, 0, 0, CURLE_OK);
      continue;
    }
    /* [DONE] came but the body does not end: the answer is whole, so a
     * server that holds the stream open costs a second, not a timeout. */
    if (c->st.done && !c->done_ms) c->done_ms = now;
    if (c->done_ms && now >= c->done_ms + 1000) attempt_over(o, c, WHY_GO, 0, 1, CURLE_OK);
  }
}

static void *io_main(void *arg) {
  openai_t *o = arg;
  struct epoll_event evs[64];
  uint64_t next_scan = time_mono_ms() + OAI_POLL_MS;
  for (;;) {
    pthread_mutex_lock(&o->qmu);
    int stopping = o->stopping;
    pthread_mutex_unlock(&o->qmu);
    if (stopping) break;
    uint64_t now = time_mono_ms();
    uint64_t until = next_scan;
    if (o->heap_n > 0 && o->heap[0]->due < until) until = o->heap[0]->due;
    if (o->curl_due < until) until = o->curl_due;
    int wait = until > now ? (int)(until - now) : 0;
    int n = epoll_wait(o->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), wait);
    int running;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == o->evfd) {
        take_queue(o);
        continue;
      }
      int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                  ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(o->multi, evs[i].data.fd, flags, &running);
    }
    now = time_mono_ms();
    if (o->curl_due <= now) {
      o->curl_due = UINT64_MAX;
      curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    reap(o);
    now = time_mono_ms();
    fire_due(o, now);
    if (now >= next_scan) {
      scan(o, now);
      next_scan = now + OAI_POLL_MS;
    }
    reap(o); /* a retry started above may have failed at once */
  }
  /* Closing: what is queued or in flight ends as cancelled. */
  take_queue(o);
  while (o->live) {
    call_t *c = o->live;
    if (c->easy) attempt_drop(c);
    call_cancelled(o, c);
  }
  return NULL;
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

/* A caller enters chat() (0), or the provider is closing (-1).  llm_close
 * waits until every caller that entered has left. */
static int chat_enter(openai_t *o) {
  pthread_mutex_lock(&o->qmu);
  int ok = !o->stopping;
  if (ok) o->callers++;
  pthread_mutex_unlock(&o->qmu);
  return ok ? 0 : -1;
}

/* The caller's last touch of o. */
static void chat_leave(openai_t *o) {
  pthread_mutex_lock(&o->qmu);
  if (--o->callers == 0 && o->stopping) pthread_cond_broadcast(&o->idle_cv);
  pthread_mutex_unlock(&o->qmu);
}

/* Hand c to the I/O thread and sleep until it hands it back.  The callbacks
 * run on the I/O thread meanwhile (llm.h). */
static int submit_and_wait(openai_t *o, call_t *c) {
  pthread_mutex_lock(&o->qmu);
  /* A close that began after chat_enter: the I/O thread's last look at the
   * queue may be over, so the call is not queued.  (Queued before `stopping`
   * was set, it is still taken: the thread looks once more after it saw it.) */
  if (o->stopping) {
    pthread_mutex_unlock(&o->qmu);
    c->out->finish = LLM_FINISH_CANCELLED;
    return ERR(AGD_ECANCELLED);
  }
  c->qnext = NULL;
  if (o->queue_tail) o->queue_tail->qnext = c;
  else o->queue = c;
  o->queue_tail = c;
  pthread_mutex_unlock(&o->qmu);
  uint64_t one = 1;
  if (write(o->evfd, &one, sizeof(one)) < 0) {
    /* EAGAIN: the counter is full, so a wakeup is pending anyway */
  }
  /* The call may stream for minutes: the stack pages this run thread touched
   * before (building the request, storing its events) go back meanwhile. */
  stack_trim();
  pthread_mutex_lock(&c->mu);
  while (!c->finished) pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
  return c->rc;
}

static int openai_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out) {
  openai_t *o = (openai_t *)l;
  if (chat_enter(o) != 0) {
    out->finish = LLM_FINISH_CANCELLED;
    return ERR(AGD_ECANCELLED);
  }
  uint64_t t0 = time_mono_ms();
  name_map_t map;
  char *body = NULL;
  struct curl_slist *hdrs = NULL;
  int rc;
  /* The names here; the body on the I/O thread (body_ready). */
  if (map_build(&map, req) != 0) {
    rc = llm_response_fail(out, LLM_ERR_INTERNAL, "out of memory building the model request");
    goto done;
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
  hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip for a long body */
  if (o->auth) hdrs = curl_slist_append(hdrs, o->auth);

  call_t c;
  memset(&c, 0, sizeof(c));
  c.o = o;
  c.req = req;
  c.hdrs = hdrs;
  c.map = &map;
  c.out = out;
  plan_clock(o, req, &c.cp);
  oai_stream_init(&c.st, cb, ud, req->coalesce_bytes, req->coalesce_ms);
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  rc = submit_and_wait(o, &c);
  body = c.body; /* NULL once sent (or never built); a body not yet sent is left to us */
  pthread_cond_destroy(&c.cv);
  pthread_mutex_destroy(&c.mu);
  oai_stream_dispose(&c.st);
done:
  curl_slist_free_all(hdrs);
  free(body);
  map_dispose(&map);
  if (out->prompt_tokens > 0) metrics_add("agentd_llm_tokens_total", "kind=\"prompt\"", out->prompt_tokens);
  if (out->completion_tokens > 0)
    metrics_add("agentd_llm_tokens_total", "kind=\"completion\"", out->completion_tokens);
  metrics_hist_observe(o->seconds, (double)(time_mono_ms() - t0) / 1000.0);
  count_outcome(out);
  chat_leave(o);
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

/* Stop the I/O thread (it cancels what is in flight) and wait for every
 * caller to have left chat(). */
static void io_stop(openai_t *o) {
  if (!o->io_running) return;
  pthread_mutex_lock(&o->qmu);
  o->stopping = 1;
  pthread_mutex_unlock(&o->qmu);
  uint64_t one = 1;
  if (write(o->evfd, &one, sizeof(one)) < 0) {
    /* EAGAIN: a wakeup is pending anyway */
  }
  pthread_join(o->io, NULL);
  o->io_running = 0;
  pthread_mutex_lock(&o->qmu);
  while (o->callers > 0) pthread_cond_wait(&o->idle_cv, &o->qmu);
  pthread_mutex_unlock(&o->qmu);
}

static void openai_destroy(llm_t *l) {
  openai_t *o = (openai_t *)l;
  io_stop(o);
  if (o->multi) curl_multi_cleanup(o->multi);
  if (o->share) curl_share_cleanup(o->share);
  if (o->epfd >= 0) close(o->epfd);
  if (o->evfd >= 0) close(o->evfd);
  free(o->heap);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&o->locks[i]);
  pthread_mutex_destroy(&o->qmu);
  pthread_cond_destroy(&o->idle_cv);
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

/* The multi handle, its epoll set and wakeup, and the thread "agentd-llm". */
static int io_start(openai_t *o) {
  o->epfd = epoll_create1(EPOLL_CLOEXEC);
  o->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  o->multi = curl_multi_init();
  if (o->epfd < 0 || o->evfd < 0 || !o->multi) return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = o->evfd};
  if (epoll_ctl(o->epfd, EPOLL_CTL_ADD, o->evfd, &ev) != 0) return -1;
  curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
  curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
  o->curl_due = UINT64_MAX;
  /* The thread takes no signals: they are the libuv loop's. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&o->io, NULL, io_main, o);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return -1;
  pthread_setname_np(o->io, "agentd-llm");
  o->io_running = 1;
  return 0;
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
  o->epfd = o->evfd = -1;
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&o->locks[i], NULL);
  pthread_mutex_init(&o->qmu, NULL);
  pthread_cond_init(&o->idle_cv, NULL);
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
  if (io_start(o) != 0) {
    openai_destroy(&o->base);
    if (err && cap) snprintf(err, cap, "cannot start the model I/O thread");
    return NULL;
  }

  metrics_describe("agentd_llm_tokens_total", "counter", "Tokens the model server reported, by kind (prompt, completion)");
  metrics_describe("agentd_llm_requests_total", "counter", "Model calls of the openai provider, by outcome");
  static const double buckets[] = {0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300};
  o->seconds = metrics_hist_bounds("agentd_llm_request_seconds",
                                   "Whole model calls of the openai provider, retries included", buckets,
                                   sizeof(buckets) / sizeof(buckets[0]));
  return &o->base;
}
