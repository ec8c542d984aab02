/*
 * llmstream: benchmark of agentd streaming from an OpenAI-compatible model
 * (issue 14; bench/README.md "Streaming from a model", docs/performance.md).
 *
 * Job: ONE single-threaded program that is both ends of agentd --llm openai:
 *  (a) the model server: HTTP/1.1 on 127.0.0.1 (llhttp parses, jansson reads
 *      the body) answering POST .../chat/completions in the OpenAI streaming
 *      format (`data: {chat.completion.chunk}` … `data: [DONE]`, the usage chunk
 *      when stream_options.include_usage), keep-alive.  A request whose
 *      tool_choice forces `classify_intent` gets one tool call at once with
 *      intent "general" (triage's chain for it is empty: the supervisor goes
 *      straight to reporting, whose answer is the one streamed model call).  Any
 *      other request streams --chunks content deltas at --chunk-hz per stream;
 *      each delta is "<t:NS> " (NS: the writer's CLOCK_MONOTONIC in ns, taken
 *      just before the write) padded to --chunk-bytes, so a stamp survives any
 *      coalescing of deltas into events.  Stream starts are staggered by a
 *      random offset within one period so 1,000 streams do not tick together.
 *  (b) the chat clients: --chats WebSockets of as many users (tokens minted
 *      with --secret, bench/wsclient.h), each sending a `user_message` once all
 *      are connected (spread over --spread-ms), --rounds times in sequence.
 *      The message carries a marker [[bench:CHAT:ROUND]] that the server part
 *      finds in the model request, so it knows whose text it writes.  For every
 *      stamp in the `partial_result` contents: receipt CLOCK_MONOTONIC (taken
 *      when the bytes are read, before any parsing) minus the stamp = the added
 *      latency.  At the run's final event the joined partial_result contents
 *      must equal exactly the text the server part wrote for that chat and
 *      round, and the `agent_response` content (zero lost text).
 *  The barrier (round 0, unless --no-barrier): a text stream writes its first
 *  chunk at once and is held until every connected chat's call is in flight;
 *  then they all go on.  Stamps are taken at the write, so the wait is no
 *  latency.  With --server-pid: agentd CPU (utime+stime of /proc/PID/stat) over
 *  the streaming window per 1,000 chunks written, and VmRSS with every client
 *  connected and idle vs. (a) at the barrier (split by /proc/PID/smaps into
 *  thread stacks, other anonymous memory and files): the RSS per in-flight
 *  call, (b) mid-stream, 0.5 s after the barrier (with --no-barrier: when the
 *  last call starts), and (c) the peak (sampled every 100 ms) while calls are
 *  in flight.  The program's own CPU over the window is printed too.
 *
 * Start-up: prints `llmstream listening on http://127.0.0.1:PORT` (flushed) as
 * soon as the model server listens, then waits for agentd: --port P, or
 * --port-file F (a line "PORT [PID]" written by the script once agentd is up;
 * polled every 50 ms).  --serve-only: only the model server (curl tests).
 * The last line is `RESULT {json}` with every figure.
 *
 * Thread: one thread, one uv loop; nothing is shared.
 * Ownership: chats live in one calloc'd array owned by `g`; each server
 * connection is malloc'd and freed when both its handles (tcp, timer) closed.
 * Libraries: libuv, llhttp, jansson, wslay/OpenSSL/libjwt via bench/wsclient.h.
 * Traffic goes only to 127.0.0.1.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <llhttp.h>

#define WSC_PROG "llmstream"
#include "wsclient.h"

#define RECV_MSG_MAX (1u << 22)
#define MAX_PENDING 200
#define BODY_MAX (8u << 20) /* largest model request accepted */
#define BARRIER_MAX_S 8 /* the longest a stream is held (agentd's idle timeout between chunks is >= 10 s) */
#define CLASSIFY_FN "classify_intent"
#define CLASSIFY_ARGS "{\"intent\":\"general\",\"confidence\":0.9,\"reasoning\":\"bench\",\"keywords\":[]}"

enum { PH_WAIT, PH_CONNECT, PH_SETTLE, PH_RUN, PH_CLOSE, PH_DONE };

/* A growable byte buffer. */
typedef struct {
  char *p;
  size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_free(sbuf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* One chat: a client WebSocket of its own user, and what the server part wrote for it. */
typedef struct chat {
  wsc_conn_t w; /* first: wsclient.h hands back &c->w */
  int round;    /* the round in progress (or next) */
  bool in_run, done;
  uint64_t send_at_ns; /* round 0: when its user_message goes */
  sbuf_t got;          /* partial_result contents of this round, joined */
  size_t scan;         /* stamps before this offset of `got` are counted */
  char *response;      /* agent_response content of this round */
  int partials;        /* partial_result events of this round */
  /* server part */
  sbuf_t sent;     /* content written for round sent_round */
  int sent_round;  /* -1: nothing written yet */
  int streams;     /* text streams started for this chat */
} chat_t;

/* One connection of agentd to the model server. */
typedef struct sconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  llhttp_t parser;
  sbuf_t url, body, pending; /* pending: bytes after a request, parsed once it is answered */
  bool too_big, busy, closing;
  int handles; /* open handles; freed at 0 */
  /* the stream in progress */
  bool streaming, held; /* held: at the barrier, its first chunk written */
  int chat, round, chunks_left, chunk_no;
  bool include_usage;
  size_t prompt_tokens, out_bytes;
  /* output */
  uv_write_t wreq;
  char *wbuf;
  sbuf_t out;
  bool writing;
  struct sconn *prev, *next;
} sconn_t;

/* agentd's resident memory split by kind (KiB; -1: unreadable). */
typedef struct {
  long stack; /* thread stacks: the anonymous mappings holding a thread's stack pointer */
  long anon;  /* every other anonymous mapping: the heap, malloc's arenas and large blocks */
  long file;  /* mapped files: the binary, the libraries */
  int threads, stacks_found;
} mem_split_t;

static struct {
  /* options */
  const char *secret, *port_file;
  int port, chats, rounds, chunks, chunk_hz, chunk_bytes, spread_ms, settle_ms, timeout_s, listen_port;
  int server_pid, barrier_hold_ms;
  bool serve_only, quiet, barrier;
  /* loop and handles */
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t wait_timer, phase_timer, sampler, sender, progress, barrier_timer, mid_timer;
  chat_t *c;
  sconn_t *sconns;
  int phase, next, pending, ok, failed, live, next_send;
  uint64_t t0_ns, recv_ns;
  /* server figures */
  uint64_t requests, classify_requests, text_streams, chunks_written, client_closed, unmarked, bad_requests;
  int active, max_active;
  uint64_t t_first_chunk, t_last_chunk;
  double cpu_start, cpu_end;
  bool cpu_started;
  long rss_idle_kib, rss_peak_kib, rss_full_kib;
  int active_at_peak;
  double self_cpu_start, self_cpu_end; /* llmstream's own CPU over the streaming window */
  /* full concurrency: every chat's model call in flight (round 0) */
  uint64_t t_full_start, t_full_end, chunks_at_full_start, chunks_at_full_end;
  /* the barrier (round 0): streams held at their first chunk until every connected chat's call is in flight */
  int barrier_target, held, barrier_calls;
  bool released;
  uint64_t t_first_held, t_release;
  long rss_barrier_kib;
  mem_split_t split_idle, split_barrier;
  double db_cache_idle, db_cache_barrier; /* agentd_db_cache_bytes; < 0: not read */
  /* client figures */
  uint64_t chats_done, chats_failed, mismatched, resp_mismatched, drops, error_frames, partial_events, stamps;
  uint64_t lost_stamps;
  double *lat; /* ms */
  size_t lat_len, lat_cap;
  int shown_mismatch;
} g;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------- /proc of the server ---------- */

/* utime+stime of PID in seconds; -1 when unreadable. */
static double proc_cpu_s(int pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's utime+stime in seconds. */
static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS of PID in KiB; -1 when unreadable. */
static long proc_rss_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The stack pointers of PID's threads blocked in a system call (the next to
 * last field of /proc/PID/task/TID/syscall; same user, so readable), sorted.
 * A thread that is running has none: its stack counts as anonymous memory. */
static size_t thread_sps(int pid, uint64_t **out, int *threads) {
  char path[96], line[512];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  size_t n = 0, cap = 0;
  *out = NULL;
  *threads = 0;
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    (*threads)++;
    snprintf(path, sizeof path, "/proc/%d/task/%.20s/syscall", pid, e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!got) continue;
    /* "NR a1 .. a6 SP PC" (blocked) or "running" / "-1 SP PC" */
    char *tok[16];
    int k = 0;
    for (char *t = strtok(line, " \n"); t && k < 16; t = strtok(NULL, " \n")) tok[k++] = t;
    if (k < 3) continue;
    uint64_t sp = strtoull(tok[k - 2], NULL, 16);
    if (!sp) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 256;
      *out = xrealloc(*out, cap * sizeof **out);
    }
    (*out)[n++] = sp;
  }
  closedir(d);
  qsort(*out, n, sizeof **out, cmp_u64);
  return n;
}

/* Rss of PID's mappings by kind, from /proc/PID/smaps. */
static mem_split_t proc_mem_split(int pid) {
  mem_split_t m = {-1, -1, -1, 0, 0};
  uint64_t *sps;
  size_t nsp = thread_sps(pid, &sps, &m.threads);
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/smaps", pid);
  FILE *f = fopen(path, "r");
  if (!f) {
    free(sps);
    return m;
  }
  m.stack = m.anon = m.file = 0;
  long *cls = &m.anon;
  while (fgets(line, sizeof line, f)) {
    unsigned long long lo, hi;
    char perms[8];
    int name_at = 0;
    if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &lo, &hi, perms, &name_at) == 3 && name_at > 0) {
      const char *name = line + name_at;
      bool stack = strncmp(name, "[stack]", 7) == 0;
      /* first stack pointer >= lo: is it below hi? */
      size_t a = 0, b = nsp;
      while (a < b) {
        size_t mid = (a + b) / 2;
        if (sps[mid] < lo) a = mid + 1;
        else b = mid;
      }
      if (a < nsp && sps[a] < hi) {
        stack = true;
        m.stacks_found++;
      }
      if (stack) cls = &m.stack;
      else if (name[0] == '/') cls = &m.file;
      else cls = &m.anon;
      continue;
    }
    if (strncmp(line, "Rss:", 4) == 0) *cls += strtol(line + 4, NULL, 10);
  }
  fclose(f);
  free(sps);
  return m;
}

/* A series without labels of agentd's GET /metrics: its value, 0 when absent
 * (agentd shows a counter once it moved), -1 when agentd did not answer.
 * Blocking, on loopback, and only where nothing streams (idle, the barrier). */
static double metrics_value(const char *name) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  sbuf_t b = {0};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
    char tmp[16384];
    ssize_t n;
    while (b.len < (4u << 20) && (n = read(fd, tmp, sizeof tmp)) > 0) sb_add(&b, tmp, (size_t)n);
  }
  close(fd);
  double v = -1;
  if (b.p && strncmp(b.p, "HTTP/1.1 200", 12) == 0) {
    char pat[128];
    int k = snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(b.p, pat);
    v = p ? strtod(p + k, NULL) : 0;
  }
  sb_free(&b);
  return v;
}

/* ======================= (a) the model server ======================= */

static void sconn_feed(sconn_t *s, const char *p, size_t n);

static void sconn_handle_closed(uv_handle_t *h) {
  sconn_t *s = h->data;
  if (--s->handles > 0) return;
  sb_free(&s->url);
  sb_free(&s->body);
  sb_free(&s->pending);
  sb_free(&s->out);
  free(s->wbuf);
  free(s);
}

static void stream_ended(sconn_t *s) {
  if (!s->streaming) return;
  s->streaming = false;
  if (s->held) { /* agentd gave up on the call before the barrier: the barrier waits for fewer */
    s->held = false;
    g.held--;
  }
  if (g.active == g.chats && g.t_full_start && !g.t_full_end) { /* the first call of the full set ends */
    g.t_full_end = mono_ns();
    g.chunks_at_full_end = g.chunks_written;
  }
  g.active--;
  if (g.active == 0 && g.cpu_started) {
    if (g.server_pid) g.cpu_end = proc_cpu_s(g.server_pid);
    g.self_cpu_end = self_cpu_s();
  }
}

static void sconn_close(sconn_t *s) {
  if (s->closing) return;
  s->closing = true;
  if (s->streaming) g.client_closed++;
  stream_ended(s);
  uv_timer_stop(&s->timer);
  if (s->prev) s->prev->next = s->next;
  else g.sconns = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_close((uv_handle_t *)&s->timer, sconn_handle_closed);
  uv_close((uv_handle_t *)&s->tcp, sconn_handle_closed);
}

static void sconn_flush(sconn_t *s);

static void sconn_on_write(uv_write_t *req, int status) {
  sconn_t *s = req->data;
  free(s->wbuf);
  s->wbuf = NULL;
  s->writing = false;
  if (s->closing) return;
  if (status < 0) {
    sconn_close(s);
    return;
  }
  sconn_flush(s);
}

static void sconn_flush(sconn_t *s) {
  if (s->closing || s->writing || s->out.len == 0) return;
  s->wbuf = s->out.p;
  uv_buf_t b = uv_buf_init(s->wbuf, (unsigned)s->out.len);
  memset(&s->out, 0, sizeof s->out);
  s->wreq.data = s;
  if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, sconn_on_write) != 0) {
    free(s->wbuf);
    s->wbuf = NULL;
    sconn_close(s);
    return;
  }
  s->writing = true;
}

/* Writes now what the socket takes; keeps the rest for a uv_write. */
static void sconn_send(sconn_t *s, const char *data, size_t len) {
  if (s->closing) return;
  if (!s->writing && s->out.len == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (r == (int)len) return;
    if (r < 0 && r != UV_EAGAIN) {
      sconn_close(s);
      return;
    }
    if (r > 0) {
      data += r;
      len -= (size_t)r;
    }
  }
  sb_add(&s->out, data, len);
  sconn_flush(s);
}

/* One chunk of the chunked body. */
static void send_chunk(sconn_t *s, const char *data, size_t len) {
  char head[32];
  int h = snprintf(head, sizeof head, "%zx\r\n", len);
  sbuf_t b = {0};
  sb_add(&b, head, (size_t)h);
  sb_add(&b, data, len);
  sb_add(&b, "\r\n", 2);
  sconn_send(s, b.p, b.len);
  sb_free(&b);
}

/* A whole response with a Content-Length. */
static void send_whole(sconn_t *s, int status, const char *reason, const char *ctype, const char *body) {
  char head[256];
  size_t n = strlen(body);
  int h = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", status,
                   reason, ctype, n);
  sbuf_t b = {0};
  sb_add(&b, head, (size_t)h);
  sb_add(&b, body, n);
  sconn_send(s, b.p, b.len);
  sb_free(&b);
}

static void send_stream_head(sconn_t *s) {
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n";
  sconn_send(s, head, sizeof head - 1);
}

static const char *chunk_prefix(void) {
  return "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
         "\"model\":\"bench-model\",\"choices\":";
}

/* The SSE event of one chunk JSON. */
static void sse_event(sbuf_t *b, const char *json) {
  sb_add(b, "data: ", 6);
  sb_add(b, json, strlen(json));
  sb_add(b, "\n\n", 2);
}

/* finish chunk, usage chunk (when asked), [DONE]; appended to b. */
static void stream_tail(sconn_t *s, sbuf_t *b, const char *finish) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s[{\"index\":0,\"delta\":{},\"finish_reason\":\"%s\"}]}", chunk_prefix(), finish);
  sse_event(b, tmp);
  if (s->include_usage) {
    size_t pt = s->prompt_tokens ? s->prompt_tokens : 1, ct = s->out_bytes / 4 ? s->out_bytes / 4 : 1;
    snprintf(tmp, sizeof tmp,
             "%s[],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}}",
             chunk_prefix(), pt, ct, pt + ct);
    sse_event(b, tmp);
  }
  sse_event(b, "[DONE]");
}

/* The request is answered: parse what came after it. */
static void request_done(sconn_t *s) {
  s->busy = false;
  if (s->pending.len && !s->closing) {
    sbuf_t p = s->pending;
    memset(&s->pending, 0, sizeof s->pending);
    sconn_feed(s, p.p, p.len);
    sb_free(&p);
  }
}

static void answer_classify(sconn_t *s, bool stream) {
  g.classify_requests++;
  json_t *args = json_string(CLASSIFY_ARGS);
  char *qargs = json_dumps(args, JSON_ENCODE_ANY); /* the arguments are a JSON string holding JSON */
  json_decref(args);
  if (!qargs) abort();
  char tmp[1024];
  if (!stream) {
    snprintf(tmp, sizeof tmp,
             "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"
             "\"bench-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
             "\"tool_calls\":[{\"id\":\"call_bench000000000000000000000\",\"type\":\"function\",\"function\":{"
             "\"name\":\"" CLASSIFY_FN "\",\"arguments\":%s}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{"
             "\"prompt_tokens\":%zu,\"completion_tokens\":20,\"total_tokens\":%zu}}",
             qargs, s->prompt_tokens, s->prompt_tokens + 20);
    free(qargs);
    send_whole(s, 200, "OK", "application/json", tmp);
    request_done(s);
    return;
  }
  send_stream_head(s);
  sbuf_t b = {0};
  snprintf(tmp, sizeof tmp,
           "%s[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,"
           "\"id\":\"call_bench000000000000000000000\",\"type\":\"function\",\"function\":{\"name\":\"" CLASSIFY_FN
           "\",\"arguments\":%s}}]},\"finish_reason\":null}]}",
           chunk_prefix(), qargs);
  free(qargs);
  sse_event(&b, tmp);
  s->out_bytes = strlen(CLASSIFY_ARGS);
  stream_tail(s, &b, "tool_calls");
  send_chunk(s, b.p, b.len);
  send_chunk(s, "", 0);
  sb_free(&b);
  request_done(s);
}

/* Content of chunk k of chat/round into out (chunk_bytes long, stamped now). */
static size_t make_delta(char *out, size_t cap, int chat, int round, int k, uint64_t stamp) {
  int n = snprintf(out, cap, "<t:%" PRIu64 "> c%d.%d.%d ", stamp, chat, round, k);
  size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
  while (len < (size_t)g.chunk_bytes && len + 1 < cap) {
    out[len] = (char)('a' + (k + (int)len) % 26);
    len++;
  }
  if (len > 0 && (size_t)g.chunk_bytes > (size_t)n) out[len - 1] = ' ';
  out[len] = '\0';
  return len;
}

/* Writes the stream's next chunk (stamped now) and, after its last, the tail. */
static void write_chunk(sconn_t *s) {
  char delta[4096], json[4400];
  uint64_t now = mono_ns();
  size_t dn = make_delta(delta, sizeof delta, s->chat, s->round, s->chunk_no, now);
  if (s->chat >= 0 && s->chat < g.chats && g.c[s->chat].sent_round == s->round) sb_add(&g.c[s->chat].sent, delta, dn);
  snprintf(json, sizeof json, "%s[{\"index\":0,\"delta\":{%s\"content\":\"%s\"},\"finish_reason\":null}]}",
           chunk_prefix(), s->chunk_no == 0 ? "\"role\":\"assistant\"," : "", delta);
  s->out_bytes += dn;
  s->chunk_no++;
  s->chunks_left--;
  g.chunks_written++;
  if (!g.t_first_chunk) g.t_first_chunk = now;
  g.t_last_chunk = now;
  sbuf_t b = {0};
  sse_event(&b, json);
  if (s->chunks_left == 0) {
    uv_timer_stop(&s->timer);
    stream_tail(s, &b, "stop");
    send_chunk(s, b.p, b.len);
    send_chunk(s, "", 0);
    sb_free(&b);
    stream_ended(s);
    request_done(s);
    return;
  }
  send_chunk(s, b.p, b.len);
  sb_free(&b);
}

static void on_tick(uv_timer_t *t) {
  sconn_t *s = t->data;
  if (s->closing || !s->streaming) return;
  write_chunk(s);
}

/* Its ticks from now: a random first offset within one period, so the streams' ticks spread over it. */
static void stream_ticks(sconn_t *s) {
  uint64_t period = (uint64_t)(1000 / g.chunk_hz);
  if (period < 1) period = 1;
  uint64_t first = (uint64_t)rand() % period;
  uv_timer_start(&s->timer, on_tick, first, period);
}

/* The barrier: every held stream resumes.  `full`: every chat's call was held. */
static void barrier_release(bool full) {
  if (g.released) return;
  g.released = true;
  g.t_release = mono_ns();
  uv_timer_stop(&g.barrier_timer);
  for (sconn_t *s = g.sconns; s; s = s->next)
    if (s->held && !s->closing) {
      s->held = false;
      stream_ticks(s);
    }
  g.held = 0;
  if (full && !g.t_full_start) { /* the full-concurrency window starts with the release */
    g.t_full_start = g.t_release;
    g.chunks_at_full_start = g.chunks_written;
  }
}

static void on_mid_sample(uv_timer_t *t) {
  if (g.server_pid && g.active == g.chats) g.rss_full_kib = proc_rss_kib(g.server_pid);
}

static void barrier_go(void) {
  bool full = g.barrier_calls == g.chats && g.held == g.chats;
  barrier_release(full);
  /* The mid-stream sample, as before the barrier existed: all calls in flight,
   * each some 10 chunks into its stream (half a second after the release). */
  if (full) uv_timer_start(&g.mid_timer, on_mid_sample, 500, 0);
}

static void on_barrier_held(uv_timer_t *t) { barrier_go(); }

/* Every connected chat's call is in flight and held at its first chunk: agentd's
 * memory now is the honest cost of the in-flight calls (no later chunk's events
 * behind any of them).  Sampled, then the streams go on. */
static void barrier_reached(void) {
  g.barrier_calls = g.held;
  if (g.server_pid) {
    g.rss_barrier_kib = proc_rss_kib(g.server_pid);
    g.split_barrier = proc_mem_split(g.server_pid);
    g.db_cache_barrier = metrics_value("agentd_db_cache_bytes");
  }
  if (g.barrier_hold_ms > 0) { /* held longer, for a profiler to look (--barrier-hold-ms) */
    printf("llmstream: barrier reached (%d calls in flight); held %d ms more\n", g.held, g.barrier_hold_ms);
    fflush(stdout);
    uv_timer_stop(&g.barrier_timer);
    uv_timer_start(&g.barrier_timer, on_barrier_held, (uint64_t)g.barrier_hold_ms, 0);
    return;
  }
  barrier_go();
}

/* Not every call came (a chat failed or agentd gave up on one): no barrier figure. */
static void on_barrier_timeout(uv_timer_t *t) {
  fprintf(stderr, "llmstream: barrier: %d of %d calls in flight after %d s; released without a sample\n", g.held,
          g.barrier_target, BARRIER_MAX_S);
  barrier_release(false);
}

static void answer_text(sconn_t *s, bool stream) {
  g.text_streams++;
  if (s->chat >= 0) {
    chat_t *c = &g.c[s->chat];
    c->streams++;
    c->sent.len = 0;
    if (c->sent.p) c->sent.p[0] = '\0';
    c->sent_round = s->round;
  }
  if (!stream) { /* not how agentd asks; answered whole for completeness */
    sbuf_t text = {0};
    char delta[4096];
    for (int k = 0; k < g.chunks; k++) {
      size_t dn = make_delta(delta, sizeof delta, s->chat, s->round, k, mono_ns());
      sb_add(&text, delta, dn);
    }
    if (s->chat >= 0) sb_add(&g.c[s->chat].sent, text.p ? text.p : "", text.len);
    json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:{s:i,s:i,s:i}}", "id", "chatcmpl-bench",
                          "object", "chat.completion", "created", 1700000000, "model", "bench-model", "choices",
                          "index", 0, "message", "role", "assistant", "content", text.p ? text.p : "",
                          "finish_reason", "stop", "usage", "prompt_tokens", (int)s->prompt_tokens,
                          "completion_tokens", (int)(text.len / 4 + 1), "total_tokens",
                          (int)(s->prompt_tokens + text.len / 4 + 1));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    send_whole(s, 200, "OK", "application/json", body ? body : "{}");
    free(body);
    sb_free(&text);
    request_done(s);
    return;
  }
  send_stream_head(s);
  s->streaming = true;
  s->chunk_no = 0;
  s->out_bytes = 0;
  s->chunks_left = g.chunks;
  g.active++;
  if (g.active > g.max_active) g.max_active = g.active;
  if (!g.cpu_started) {
    if (g.server_pid) g.cpu_start = proc_cpu_s(g.server_pid);
    g.self_cpu_start = self_cpu_s();
    g.cpu_started = true;
  }
  if (g.barrier && !g.released && g.phase == PH_RUN) {
    /* Held: its first chunk now (stamped at the write, so the wait adds no latency), the rest after the barrier. */
    write_chunk(s);
    if (!s->streaming) return; /* that was its only chunk */
    s->held = true;
    if (g.held++ == 0) {
      g.t_first_held = mono_ns();
      uv_timer_start(&g.barrier_timer, on_barrier_timeout, BARRIER_MAX_S * 1000, 0);
    }
    if (g.held == g.barrier_target) barrier_reached();
    return;
  }
  if (g.active == g.chats && !g.t_full_start) { /* every chat's model call is in flight */
    g.t_full_start = mono_ns();
    g.chunks_at_full_start = g.chunks_written;
    if (g.server_pid) g.rss_full_kib = proc_rss_kib(g.server_pid);
  }
  stream_ticks(s);
}

static void answer_error(sconn_t *s, int status, const char *reason, const char *msg) {
  g.bad_requests++;
  char body[512];
  snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"code\":null}}",
           msg);
  send_whole(s, status, reason, "application/json", body);
  request_done(s);
}

/* A whole request: classify, stream, or an error. */
static void handle_request(sconn_t *s) {
  g.requests++;
  s->busy = true;
  if (s->too_big) {
    answer_error(s, 413, "Payload Too Large", "request too large");
    return;
  }
  const char *url = s->url.p ? s->url.p : "";
  size_t ul = strlen(url);
  const char *suffix = "/chat/completions";
  if (llhttp_get_method(&s->parser) != HTTP_POST || ul < strlen(suffix) ||
      strcmp(url + ul - strlen(suffix), suffix) != 0) {
    answer_error(s, 404, "Not Found", "no such endpoint");
    return;
  }
  json_error_t jerr;
  json_t *req = s->body.p ? json_loadb(s->body.p, s->body.len, 0, &jerr) : NULL;
  if (!json_is_object(req)) {
    json_decref(req);
    answer_error(s, 400, "Bad Request", "body is not a JSON object");
    return;
  }
  bool stream = json_is_true(json_object_get(req, "stream"));
  s->include_usage = json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage"));
  s->prompt_tokens = s->body.len / 4;
  const json_t *tc = json_object_get(req, "tool_choice");
  const char *forced = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
  bool classify = forced && strcmp(forced, CLASSIFY_FN) == 0;
  json_decref(req);
  s->chat = -1;
  s->round = 0;
  const char *m = memmem(s->body.p, s->body.len, "[[bench:", 8);
  int chat, round;
  if (m && sscanf(m + 8, "%d:%d", &chat, &round) == 2 && chat >= 0 && chat < g.chats && round >= 0) {
    s->chat = chat;
    s->round = round;
  } else if (!classify) {
    g.unmarked++;
  }
  if (classify) answer_classify(s, stream);
  else answer_text(s, stream);
}

static int on_message_begin(llhttp_t *p) {
  sconn_t *s = p->data;
  s->url.len = s->body.len = 0;
  s->too_big = false;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  sconn_t *s = p->data;
  if (s->url.len + n > 4096) return -1;
  sb_add(&s->url, at, n);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  sconn_t *s = p->data;
  if (s->body.len + n > BODY_MAX) s->too_big = true;
  else sb_add(&s->body, at, n);
  return 0;
}

/* Stop after each request: the next one waits until this one is answered. */
static int on_message_complete(llhttp_t *p) { return HPE_PAUSED; }

static llhttp_settings_t http_settings;

static void sconn_feed(sconn_t *s, const char *p, size_t n) {
  while (n > 0 && !s->closing) {
    if (s->busy) { /* a request is being answered: keep the bytes for later */
      sb_add(&s->pending, p, n);
      return;
    }
    llhttp_errno_t err = llhttp_execute(&s->parser, p, n);
    if (err == HPE_OK) return;
    if (err != HPE_PAUSED) {
      s->busy = true;
      answer_error(s, 400, "Bad Request", "malformed HTTP request");
      sconn_close(s);
      return;
    }
    const char *pos = llhttp_get_error_pos(&s->parser);
    size_t used = pos && pos >= p && pos <= p + n ? (size_t)(pos - p) : n;
    llhttp_resume(&s->parser);
    p += used;
    n -= used;
    handle_request(s); /* may finish at once (request_done) or stream */
  }
}

static char srv_rdbuf[65536];

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  buf->base = srv_rdbuf;
  buf->len = sizeof srv_rdbuf;
}

static void srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sconn_t *s = st->data;
  if (s->closing || nread == 0) return;
  if (nread < 0) {
    sconn_close(s);
    return;
  }
  sconn_feed(s, buf->base, (size_t)nread);
}

static void on_accept(uv_stream_t *server, int status) {
  if (status < 0) return;
  sconn_t *s = xcalloc(1, sizeof *s);
  uv_tcp_init(g.loop, &s->tcp);
  uv_timer_init(g.loop, &s->timer);
  s->tcp.data = s->timer.data = s;
  s->handles = 2;
  s->chat = -1;
  s->next = g.sconns;
  if (g.sconns) g.sconns->prev = s;
  g.sconns = s;
  if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
    sconn_close(s);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  llhttp_init(&s->parser, HTTP_REQUEST, &http_settings);
  s->parser.data = s;
  if (uv_read_start((uv_stream_t *)&s->tcp, srv_alloc, srv_read) != 0) sconn_close(s);
}

static int server_listen(void) {
  llhttp_settings_init(&http_settings);
  http_settings.on_message_begin = on_message_begin;
  http_settings.on_url = on_url;
  http_settings.on_body = on_body;
  http_settings.on_message_complete = on_message_complete;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", g.listen_port, &a);
  uv_tcp_init(g.loop, &g.listener);
  if (uv_tcp_bind(&g.listener, (const struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&g.listener, 4096, on_accept) != 0)
    wsc_die("cannot listen on 127.0.0.1:%d", g.listen_port);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&g.listener, (struct sockaddr *)&ss, &len);
  int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  printf("llmstream listening on http://127.0.0.1:%d\n", port);
  fflush(stdout);
  return port;
}

/* ======================= (b) the chat clients ======================= */

static void finish(void);
static void start_round(chat_t *c);

static uv_timer_t close_timer;

static void on_closed(wsc_conn_t *w) {
  if (--g.live == 0 && g.phase == PH_CLOSE) {
    g.phase = PH_DONE;
    uv_close((uv_handle_t *)&close_timer, NULL);
  }
}

static void run_over(chat_t *c, bool ok);
static void connected_all(void);

static void conn_close(chat_t *c) {
  if (c->w.closing) return;
  c->w.closing = true;
  if (c->w.state == CS_CONNECTING || c->w.state == CS_HANDSHAKE || c->w.state == CS_WELCOME) {
    g.pending--;
    g.failed++;
  } else if (c->w.state == CS_OPEN && g.phase != PH_CLOSE) {
    g.drops++;
    if (c->in_run) run_over(c, false);
    /* the rounds it has not started fail too */
    while (!c->done && c->round < g.rounds) run_over(c, false);
  }
  wsc_close_handle(&c->w);
  if (g.phase == PH_CONNECT) connected_all(); /* the next connection, or the end of the connect phase */
}

static void on_close(wsc_conn_t *w) { conn_close((chat_t *)w); }

static void on_fail(wsc_conn_t *w, enum wsc_fail why, int http_status) {
  static const char *const names[] = {"connect", "http_status", "bad_accept", "bad_response", "eof", "io", "protocol"};
  bool handshake = why == WSC_FAIL_HTTP_STATUS || why == WSC_FAIL_BAD_ACCEPT || why == WSC_FAIL_BAD_RESPONSE;
  if (handshake && w->hs && !g.quiet) fprintf(stderr, "llmstream: handshake refused: %.40s\n", w->hs);
  static int shown;
  if (!handshake && shown++ < 5)
    fprintf(stderr, "llmstream: chat %u: socket failed (%s) in round %d%s\n", w->id,
            (unsigned)why < sizeof names / sizeof names[0] ? names[why] : "?", ((chat_t *)w)->round,
            ((chat_t *)w)->in_run ? ", its run in progress" : "");
  conn_close((chat_t *)w);
}

/* Receipt time: taken when the bytes are read, before any parsing. */
static void on_data(wsc_conn_t *w) { g.recv_ns = mono_ns(); }

static const char *field(const uint8_t *m, size_t n, const char *key) {
  char pat[40];
  int k = snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = memmem(m, n, pat, (size_t)k);
  return p ? p + k : NULL;
}

static bool starts(const char *p, const uint8_t *end, const char *s) {
  size_t n = strlen(s);
  return p && (size_t)((const char *)end - p) >= n && memcmp(p, s, n) == 0;
}

/* data.content of an event (jansson: the content is a JSON string with escapes). */
static char *event_content(const uint8_t *m, size_t n) {
  json_t *e = json_loadb((const char *)m, n, 0, NULL);
  const char *s = json_string_value(json_object_get(json_object_get(e, "data"), "content"));
  char *r = s ? strdup(s) : NULL;
  json_decref(e);
  return r;
}

/* Counts the stamps completed in c->got since the last scan. */
static void scan_stamps(chat_t *c) {
  for (;;) {
    char *p = c->got.p ? memmem(c->got.p + c->scan, c->got.len - c->scan, "<t:", 3) : NULL;
    if (!p) {
      /* keep a possible partial "<t" at the end for the next piece */
      c->scan = c->got.len > 2 ? c->got.len - 2 : 0;
      return;
    }
    char *gt = memchr(p, '>', (size_t)(c->got.p + c->got.len - p));
    if (!gt) {
      c->scan = (size_t)(p - c->got.p);
      return;
    }
    uint64_t stamp = strtoull(p + 3, NULL, 10);
    double ms = ((double)g.recv_ns - (double)stamp) / 1e6;
    if (g.lat_len == g.lat_cap) {
      g.lat_cap = g.lat_cap ? g.lat_cap * 2 : 1 << 16;
      g.lat = xrealloc(g.lat, g.lat_cap * sizeof *g.lat);
    }
    g.lat[g.lat_len++] = ms;
    g.stamps++;
    c->scan = (size_t)(gt + 1 - c->got.p);
  }
}

static void show_mismatch(chat_t *c, const char *what, const char *a, size_t al, const char *b, size_t bl) {
  if (g.shown_mismatch++ >= 3) return;
  size_t i = 0;
  while (i < al && i < bl && a[i] == b[i]) i++;
  fprintf(stderr, "llmstream: chat %d round %d: %s differ at byte %zu (lengths %zu vs %zu): '%.40s' vs '%.40s'\n",
          (int)c->w.id, c->round, what, i, al, bl, i < al ? a + i : "", i < bl ? b + i : "");
}

static void send_user_message(chat_t *c) {
  char buf[256];
  snprintf(buf, sizeof buf,
           "{\"type\":\"user_message\",\"payload\":{\"content\":\"Please stream an answer [[bench:%d:%d]]\"}}",
           (int)c->w.id, c->round);
  c->in_run = true;
  c->got.len = 0;
  c->scan = 0;
  c->partials = 0;
  free(c->response);
  c->response = NULL;
  wsc_send_text(&c->w, buf);
}

static void start_round(chat_t *c) {
  if (c->w.closing || c->w.state != CS_OPEN) return;
  send_user_message(c);
}

/* The end of a round: ok (the run completed; text checked) or failed. */
static void run_over(chat_t *c, bool ok) {
  if (ok) {
    g.chats_done++;
    const char *got = c->got.p ? c->got.p : "";
    const char *sent = c->sent_round == c->round && c->sent.p ? c->sent.p : "";
    size_t sl = c->sent_round == c->round ? c->sent.len : 0;
    bool bad = false;
    if (c->got.len != sl || memcmp(got, sent, sl) != 0) {
      show_mismatch(c, "partial_result text and the text written", got, c->got.len, sent, sl);
      bad = true;
    }
    if (sl == 0) bad = true; /* no stream was seen for this round */
    if (!c->response || strcmp(c->response, got) != 0) {
      show_mismatch(c, "partial_result text and agent_response", got, c->got.len, c->response ? c->response : "",
                    c->response ? strlen(c->response) : 0);
      g.resp_mismatched++;
    }
    if (bad) g.mismatched++;
    /* stamps written but not seen */
    uint64_t written = 0;
    for (const char *p = sent; (p = strstr(p, "<t:")) != NULL; p += 3) written++;
    uint64_t seen = 0;
    for (const char *p = got; (p = strstr(p, "<t:")) != NULL; p += 3) seen++;
    if (written > seen) g.lost_stamps += written - seen;
  } else {
    g.chats_failed++;
  }
  c->in_run = false;
  c->round++;
  if (c->round >= g.rounds) c->done = true;
  if (g.chats_done + g.chats_failed >= (uint64_t)g.chats * (uint64_t)g.rounds) {
    finish();
    return;
  }
  if (ok && !c->done && g.phase == PH_RUN) start_round(c);
}

static void on_event(chat_t *c, const uint8_t *m, size_t n) {
  const uint8_t *end = m + n;
  const char *type = field(m, n, "type");
  if (!type) return;
  if (starts(type, end, "\"error\"")) {
    g.error_frames++;
    if (c->in_run && !g.quiet && g.error_frames <= 3) fprintf(stderr, "llmstream: error frame: %.*s\n", (int)n, m);
    if (c->in_run) run_over(c, false);
    return;
  }
  if (!c->in_run) return;
  if (starts(type, end, "\"partial_result\"")) {
    g.partial_events++;
    c->partials++;
    char *s = event_content(m, n);
    if (s) {
      sb_add(&c->got, s, strlen(s));
      free(s);
      scan_stamps(c);
    }
    return;
  }
  if (starts(type, end, "\"agent_response\"")) {
    free(c->response);
    c->response = event_content(m, n);
    return;
  }
  bool final_ok = starts(type, end, "\"agent_completed\"") && starts(field(m, n, "agent_name"), end, "\"supervisor\"");
  bool final_bad = starts(type, end, "\"agent_error\"") || starts(type, end, "\"agent_stopped\"");
  if (final_bad && !g.quiet && g.chats_failed < 3) fprintf(stderr, "llmstream: run failed: %.*s\n", (int)(n > 400 ? 400 : n), m);
  if (final_ok || final_bad) run_over(c, final_ok);
}

static void on_ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  chat_t *c = user;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && g.phase < PH_CLOSE) {
    static int shown;
    if (shown++ < 5) /* the server closed this chat's socket: say why */
      fprintf(stderr, "llmstream: chat %u: agentd closed the WebSocket in round %d%s: code %u, reason '%.*s'\n",
              c->w.id, c->round, c->in_run ? " (its run in progress)" : "", arg->status_code,
              (int)(arg->msg_length > 2 ? arg->msg_length - 2 : 0), arg->msg_length > 2 ? (const char *)arg->msg + 2 : "");
    return;
  }
  if (c->w.closing || arg->opcode != WSLAY_TEXT_FRAME) return;
  if (c->w.state == CS_WELCOME) {
    /* A first frame that is not `resume`: this socket takes live events now (as in bench/fanout.c). */
    wsc_send_text(&c->w, "{\"type\":\"ping\"}");
    c->w.state = CS_OPEN;
    g.pending--;
    g.ok++;
    connected_all();
    return;
  }
  on_event(c, arg->msg, arg->msg_length);
}

static const wsc_ops_t ws_ops = {
    .fail = on_fail, .close = on_close, .closed = on_closed, .on_msg = on_ws_msg, .on_data = on_data};

static void pump(void) {
  static bool in;
  if (in || g.phase != PH_CONNECT) return;
  in = true;
  while (g.next < g.chats && g.pending < MAX_PENDING) {
    chat_t *c = &g.c[g.next++];
    g.pending++;
    if (wsc_conn_init(&c->w, g.loop) != 0) wsc_die("uv_tcp_init failed");
    g.live++;
    wsc_conn_connect(&c->w);
  }
  in = false;
}

/* ---------- phases ---------- */

static void on_sample(uv_timer_t *t) {
  if (!g.server_pid || g.active == 0) return;
  long kib = proc_rss_kib(g.server_pid);
  if (kib > g.rss_peak_kib) {
    g.rss_peak_kib = kib;
    g.active_at_peak = g.active;
  }
}

/* Round 0: each chat's user_message at its time within --spread-ms. */
static void on_sender(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  while (g.next_send < g.chats && g.c[g.next_send].send_at_ns <= now) {
    chat_t *c = &g.c[g.next_send++];
    if (c->w.state == CS_OPEN && !c->w.closing) start_round(c);
  }
  if (g.next_send >= g.chats) uv_timer_stop(&g.sender);
}

static void on_run_timeout(uv_timer_t *t) {
  fprintf(stderr, "llmstream: gave up after %ds: %" PRIu64 " chats done, %" PRIu64 " failed, %d streams in flight\n",
          g.timeout_s, g.chats_done, g.chats_failed, g.active);
  finish();
}

static void on_settled(uv_timer_t *t) {
  if (g.server_pid) {
    g.db_cache_idle = metrics_value("agentd_db_cache_bytes");
    g.split_idle = proc_mem_split(g.server_pid);
    g.rss_idle_kib = proc_rss_kib(g.server_pid);
  }
  g.phase = PH_RUN;
  uint64_t now = uv_hrtime();
  g.barrier_target = 0;
  for (int i = 0; i < g.chats; i++) {
    chat_t *c = &g.c[i];
    c->send_at_ns = now + (uint64_t)g.spread_ms * 1000000ull * (uint64_t)i / (uint64_t)g.chats;
    if (c->w.state != CS_OPEN || c->w.closing) /* never connected: its rounds fail */
      while (!c->done) run_over(c, false);
    else g.barrier_target++;
  }
  if (g.phase != PH_RUN) return; /* nothing connected: finish() ran */
  uv_timer_start(&g.sampler, on_sample, 100, 100);
  uv_timer_start(&g.sender, on_sender, 0, 1);
  uv_timer_start(&g.phase_timer, on_run_timeout, (uint64_t)g.timeout_s * 1000, 0);
}

static void connected_all(void) {
  pump();
  if (g.phase != PH_CONNECT || g.ok + g.failed < g.chats) return;
  if (!g.quiet) {
    printf("connected %d of %d chats in %.2fs (%d failed)\n", g.ok, g.chats, (double)(uv_hrtime() - g.t0_ns) / 1e9,
           g.failed);
    fflush(stdout);
  }
  g.phase = PH_SETTLE;
  uv_timer_start(&g.phase_timer, on_settled, (uint64_t)g.settle_ms, 0);
}

static double pct(double p) { return wsc_pct(g.lat, g.lat_len, p); }

static void report(void) {
  qsort(g.lat, g.lat_len, sizeof *g.lat, wsc_cmp_double);
  double sum = 0;
  for (size_t i = 0; i < g.lat_len; i++) sum += g.lat[i];
  double mean = g.lat_len ? sum / (double)g.lat_len : 0, max = g.lat_len ? g.lat[g.lat_len - 1] : 0;
  double win = g.t_last_chunk > g.t_first_chunk ? (double)(g.t_last_chunk - g.t_first_chunk) / 1e9 : 0;
  double cps = win > 0 ? (double)g.chunks_written / win : 0;
  /* The rate while every chat's call is in flight (no ramp up or down); -1: never all at once. */
  double full_s = g.t_full_end > g.t_full_start ? (double)(g.t_full_end - g.t_full_start) / 1e9 : 0;
  double full_cps = full_s > 0 ? (double)(g.chunks_at_full_end - g.chunks_at_full_start) / full_s : -1;
  if (g.cpu_started && g.active > 0) {
    if (g.server_pid) g.cpu_end = proc_cpu_s(g.server_pid);
    g.self_cpu_end = self_cpu_s();
  }
  double cpu = g.server_pid && g.cpu_started ? g.cpu_end - g.cpu_start : -1;
  double cpu_per_k = cpu >= 0 && g.chunks_written ? cpu / (double)g.chunks_written * 1000.0 : -1;
  double self_cpu = g.cpu_started ? g.self_cpu_end - g.self_cpu_start : -1;
  /* Resident memory rarely shrinks, so its peak may come when some streams have
   * already ended: the growth is set against the most calls in flight at once. */
  double rss_per = g.server_pid && g.max_active > 0 && g.rss_peak_kib > 0
                       ? (double)(g.rss_peak_kib - g.rss_idle_kib) / (double)g.max_active
                       : -1;
  /* The cleaner figure: the growth at the moment the last call started (all in
   * flight, each with only a few chunks' events behind it yet). */
  double rss_full_per = g.server_pid && g.rss_full_kib > 0 ? (double)(g.rss_full_kib - g.rss_idle_kib) / g.chats : -1;
  /* The honest one: at the barrier, every call in flight with one chunk behind it. */
  bool bar = g.server_pid && g.rss_barrier_kib > 0 && g.barrier_calls > 0;
  double nb = bar ? (double)g.barrier_calls : 1;
  double rss_bar_per = bar ? (double)(g.rss_barrier_kib - g.rss_idle_kib) / nb : -1;
  bool split = bar && g.split_idle.stack >= 0 && g.split_barrier.stack >= 0;
  double stack_per = split ? (double)(g.split_barrier.stack - g.split_idle.stack) / nb : -1;
  double anon_per = split ? (double)(g.split_barrier.anon - g.split_idle.anon) / nb : -1;
  double file_per = split ? (double)(g.split_barrier.file - g.split_idle.file) / nb : -1;
  /* The same without the growth of SQLite's page caches (the event writer's filling with the runs' first
   * events: bounded, shared, not a cost of any one call). */
  bool db = bar && g.db_cache_idle >= 0 && g.db_cache_barrier >= 0;
  double db_growth_kib = db ? (g.db_cache_barrier - g.db_cache_idle) / 1024.0 : -1;
  double rss_bar_ex_db = db ? ((double)(g.rss_barrier_kib - g.rss_idle_kib) - db_growth_kib) / nb : -1;
  double bar_wait = g.t_release > g.t_first_held && g.t_first_held ? (double)(g.t_release - g.t_first_held) / 1e9 : 0;
  printf("llmstream: %d chats x %d round(s), %d chunks of %d bytes at %d/s per stream\n", g.chats, g.rounds, g.chunks,
         g.chunk_bytes, g.chunk_hz);
  printf("llmstream: model requests %" PRIu64 " (classify %" PRIu64 ", text streams %" PRIu64 ", unmarked %" PRIu64
         ", bad %" PRIu64 "), closed by agentd mid-stream %" PRIu64 ", most in flight %d\n",
         g.requests, g.classify_requests, g.text_streams, g.unmarked, g.bad_requests, g.client_closed, g.max_active);
  printf("llmstream: chunks written %" PRIu64 " in %.2fs (%.0f chunks/s in on average; %.0f chunks/s while all %d "
         "calls were in flight, %.2fs)\n",
         g.chunks_written, win, cps, full_cps, g.chats, full_s);
  printf("llmstream: chats completed %" PRIu64 ", failed %" PRIu64 ", mismatched %" PRIu64
         " (agent_response differs %" PRIu64 "), stamps lost %" PRIu64 ", dropped sockets %" PRIu64
         ", error frames %" PRIu64 "\n",
         g.chats_done, g.chats_failed, g.mismatched, g.resp_mismatched, g.lost_stamps, g.drops, g.error_frames);
  printf("llmstream: partial_result events %" PRIu64 " for %" PRIu64 " stamps (%.2f chunks per event)\n",
         g.partial_events, g.stamps, g.partial_events ? (double)g.stamps / (double)g.partial_events : 0);
  printf("llmstream: added latency (chunk written -> text read) ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max "
         "%.3f  mean %.3f\n",
         pct(50), pct(90), pct(99), pct(99.9), max, mean);
  printf("llmstream: its own CPU over the streaming window %.2fs (%.0f %% of one core): when near 100 %%, its loop "
         "is late and the latency includes its own queueing\n",
         self_cpu, win > 0 ? 100.0 * self_cpu / win : 0);
  if (g.server_pid) {
    if (cpu >= 0)
      printf("llmstream: agentd CPU %.2fs over the streaming window (%.0f %% of one core) = %.1f ms per 1,000 chunks "
             "(all of agentd's work in it: model calls, events, storage, WebSocket writes)\n",
             cpu, win > 0 ? 100.0 * cpu / win : 0, cpu_per_k * 1000.0);
    else
      printf("llmstream: agentd CPU: no streaming window (no text stream started)\n");
    printf("llmstream: agentd RSS: %ld KiB connected+idle; %ld KiB when all %d calls were in flight%s: %.1f KiB per "
           "in-flight model call (run thread, curl handle, SSE buffers, first events); peak %ld KiB while streams "
           "were open (%d then, at most %d at once): %.1f KiB per call (with the stored events' growth)\n",
           g.rss_idle_kib, g.rss_full_kib, g.chats, g.barrier ? " mid-stream (0.5 s after the barrier)" : "",
           rss_full_per, g.rss_peak_kib, g.active_at_peak, g.max_active, rss_per);
    if (bar)
      printf("llmstream: agentd RSS at the barrier (%d calls in flight, each held at its first chunk for up to %.2fs): "
             "%ld KiB: %.1f KiB per in-flight model call; of it thread stacks %.1f, other anonymous (heap, arenas) "
             "%.1f, files %.1f KiB per call (smaps, %d threads, %d stacks found; idle: stacks %ld, anonymous %ld, "
             "files %ld KiB)\n",
             g.barrier_calls, bar_wait, g.rss_barrier_kib, rss_bar_per, stack_per, anon_per, file_per,
             g.split_barrier.threads, g.split_barrier.stacks_found, g.split_idle.stack, g.split_idle.anon,
             g.split_idle.file);
    else if (g.barrier)
      printf("llmstream: agentd RSS at the barrier: no sample (not every call was in flight at once)\n");
    if (db)
      printf("llmstream: agentd RSS at the barrier without SQLite's page caches (agentd_db_cache_bytes %.0f -> %.0f KiB, "
             "+%.0f KiB, bounded and shared): %.1f KiB per in-flight model call\n",
             g.db_cache_idle / 1024.0, g.db_cache_barrier / 1024.0, db_growth_kib, rss_bar_ex_db);
  }
  printf("RESULT {\"chats\":%d,\"rounds\":%d,\"chunks_per_stream\":%d,\"chunk_bytes\":%d,\"chunk_hz\":%d,"
         "\"connect_failed\":%d,\"requests\":%" PRIu64 ",\"text_streams\":%" PRIu64 ",\"closed_mid_stream\":%" PRIu64
         ",\"max_in_flight\":%d,\"chunks_written\":%" PRIu64 ",\"window_s\":%.3f,\"chunks_per_s\":%.1f,"
         "\"full_s\":%.3f,\"full_chunks_per_s\":%.1f,"
         "\"completed\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"mismatched\":%" PRIu64 ",\"response_mismatched\":%" PRIu64
         ",\"stamps_lost\":%" PRIu64 ",\"drops\":%" PRIu64 ",\"error_frames\":%" PRIu64
         ",\"partial_events\":%" PRIu64 ",\"stamps\":%" PRIu64
         ",\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f,\"mean\":%.4f},"
         "\"self_cpu_s\":%.3f,\"cpu_s\":%.3f,\"cpu_ms_per_1000_chunks\":%.3f,\"rss_idle_kib\":%ld,"
         "\"rss_full_kib\":%ld,\"rss_full_per_call_kib\":%.2f,\"rss_peak_kib\":%ld,"
         "\"in_flight_at_peak\":%d,\"rss_per_call_kib\":%.2f,\"barrier\":%s,\"barrier_calls\":%d,"
         "\"barrier_wait_s\":%.3f,\"rss_barrier_kib\":%ld,\"rss_barrier_per_call_kib\":%.2f,"
         "\"stack_per_call_kib\":%.2f,\"anon_per_call_kib\":%.2f,\"file_per_call_kib\":%.2f,"
         "\"threads_at_barrier\":%d,\"db_cache_growth_kib\":%.1f,\"rss_barrier_per_call_ex_db_kib\":%.2f}\n",
         g.chats, g.rounds, g.chunks, g.chunk_bytes, g.chunk_hz, g.failed, g.requests, g.text_streams,
         g.client_closed, g.max_active, g.chunks_written, win, cps, full_s, full_cps, g.chats_done, g.chats_failed,
         g.mismatched, g.resp_mismatched, g.lost_stamps, g.drops, g.error_frames, g.partial_events, g.stamps, pct(50),
         pct(90), pct(99), pct(99.9), max, mean, self_cpu, cpu, cpu_per_k * 1000.0, g.rss_idle_kib, g.rss_full_kib,
         rss_full_per, g.rss_peak_kib, g.active_at_peak, rss_per, g.barrier ? "true" : "false", g.barrier_calls,
         bar_wait, g.rss_barrier_kib, rss_bar_per, stack_per, anon_per, file_per, g.split_barrier.threads,
         db_growth_kib, rss_bar_ex_db);
  fflush(stdout);
}

static void close_all(void) {
  uv_timer_stop(&g.phase_timer);
  uv_timer_stop(&g.sampler);
  uv_timer_stop(&g.sender);
  uv_timer_stop(&g.progress);
  uv_timer_stop(&g.wait_timer);
  uv_timer_stop(&g.barrier_timer);
  uv_timer_stop(&g.mid_timer);
  uv_close((uv_handle_t *)&g.barrier_timer, NULL);
  uv_close((uv_handle_t *)&g.mid_timer, NULL);
  uv_close((uv_handle_t *)&g.phase_timer, NULL);
  uv_close((uv_handle_t *)&g.sampler, NULL);
  uv_close((uv_handle_t *)&g.sender, NULL);
  uv_close((uv_handle_t *)&g.progress, NULL);
  uv_close((uv_handle_t *)&g.wait_timer, NULL);
  uv_close((uv_handle_t *)&g.listener, NULL);
  while (g.sconns) sconn_close(g.sconns);
}

static void on_close_timeout(uv_timer_t *t) {
  for (int i = 0; i < g.chats; i++)
    if (g.c[i].w.handle_open && !g.c[i].w.closing) conn_close(&g.c[i]);
}

/* Everything is over (or the timeout hit): report, close every socket. */
static void finish(void) {
  if (g.phase >= PH_CLOSE) return;
  report();
  g.phase = PH_CLOSE;
  for (int i = 0; i < g.chats; i++) {
    chat_t *c = &g.c[i];
    if (!c->w.handle_open || c->w.closing) continue;
    if (c->w.state >= CS_WELCOME) {
      wslay_event_queue_close(c->w.ws, 1000, NULL, 0);
      wsc_flush(&c->w);
    } else {
      conn_close(c);
    }
  }
  close_all();
  if (g.live == 0) {
    g.phase = PH_DONE;
    return;
  }
  uv_timer_init(g.loop, &close_timer);
  uv_timer_start(&close_timer, on_close_timeout, 3000, 0);
}

static void on_progress(uv_timer_t *t) {
  if (g.quiet) return;
  if (g.phase == PH_CONNECT)
    fprintf(stderr, "  ... %d connected, %d failed, %d pending\n", g.ok, g.failed, g.pending);
  else if (g.phase == PH_RUN)
    fprintf(stderr, "  ... %" PRIu64 " chats done, %" PRIu64 " failed, %d streams in flight, %" PRIu64 " chunks\n",
            g.chats_done, g.chats_failed, g.active, g.chunks_written);
}

static void start_clients(void) {
  if (wsc_set_host("127.0.0.1", g.port) != 0) wsc_die("bad agentd port");
  if (!g.quiet) {
    printf("agentd on port %d%s\n", g.port, g.server_pid ? "" : " (no --server-pid: no CPU/RSS figures)");
    fflush(stdout);
  }
  g.t0_ns = uv_hrtime();
  g.phase = PH_CONNECT;
  uv_timer_start(&g.progress, on_progress, 2000, 2000);
  pump();
}

/* --port-file: "PORT [PID]" once agentd is up. */
static void on_wait(uv_timer_t *t) {
  static int tries;
  FILE *f = fopen(g.port_file, "r");
  if (f) {
    int port = 0, pid = 0;
    int n = fscanf(f, "%d %d", &port, &pid);
    fclose(f);
    if (n >= 1 && port > 0 && port < 65536) {
      g.port = port;
      if (n == 2 && pid > 0 && !g.server_pid) g.server_pid = pid;
      uv_timer_stop(t);
      start_clients();
      return;
    }
  }
  if (++tries > 20 * 120) {
    fprintf(stderr, "llmstream: no agentd port in %s after 120 s\n", g.port_file);
    exit(1);
  }
}

static void usage(void) {
  printf("usage: llmstream --secret S (--port P | --port-file F) [--chats 1000] [--rounds 1] [--chunks 100]\n"
         "                 [--chunk-hz 20] [--chunk-bytes 40] [--spread-ms 1000] [--settle-ms 1000]\n"
         "                 [--server-pid PID] [--listen-port 0] [--timeout 300] [--no-barrier]\n"
         "                 [--barrier-hold-ms 0] [--quiet]\n"
         "       llmstream --serve-only [--listen-port P] [--chunks N] [--chunk-hz H] [--chunk-bytes B]\n"
         "  Prints 'llmstream listening on http://127.0.0.1:PORT' (the model server for agentd's\n"
         "  OPENAI_BASE_URL=http://127.0.0.1:PORT/v1), then waits for agentd's port (--port-file: a\n"
         "  line 'PORT [PID]'), runs --chats WebSocket chats and prints the figures; last line RESULT {json}.\n");
}

int main(int argc, char **argv) {
  g.chats = 1000;
  g.rounds = 1;
  g.chunks = 100;
  g.chunk_hz = 20;
  g.chunk_bytes = 40;
  g.spread_ms = 1000;
  g.settle_ms = 1000;
  g.timeout_s = 300;
  g.barrier = true;
  g.rss_barrier_kib = -1;
  g.db_cache_idle = g.db_cache_barrier = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      g.quiet = true;
      continue;
    }
    if (!strcmp(a, "--serve-only")) {
      g.serve_only = true;
      continue;
    }
    if (!strcmp(a, "--no-barrier")) {
      g.barrier = false;
      continue;
    }
    if (i + 1 >= argc) wsc_die("%s needs a value", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--port")) g.port = (int)wsc_parse_long(a, v, 1, 65535);
    else if (!strcmp(a, "--port-file")) g.port_file = v;
    else if (!strcmp(a, "--secret")) g.secret = v;
    else if (!strcmp(a, "--chats")) g.chats = (int)wsc_parse_long(a, v, 1, 100000);
    else if (!strcmp(a, "--rounds")) g.rounds = (int)wsc_parse_long(a, v, 1, 10000);
    else if (!strcmp(a, "--chunks")) g.chunks = (int)wsc_parse_long(a, v, 1, 1000000);
    else if (!strcmp(a, "--chunk-hz")) g.chunk_hz = (int)wsc_parse_long(a, v, 1, 1000);
    else if (!strcmp(a, "--chunk-bytes")) g.chunk_bytes = (int)wsc_parse_long(a, v, 1, 4000);
    else if (!strcmp(a, "--spread-ms")) g.spread_ms = (int)wsc_parse_long(a, v, 0, 600000);
    else if (!strcmp(a, "--settle-ms")) g.settle_ms = (int)wsc_parse_long(a, v, 0, 600000);
    else if (!strcmp(a, "--server-pid")) g.server_pid = (int)wsc_parse_long(a, v, 1, 1 << 30);
    else if (!strcmp(a, "--listen-port")) g.listen_port = (int)wsc_parse_long(a, v, 0, 65535);
    else if (!strcmp(a, "--barrier-hold-ms")) g.barrier_hold_ms = (int)wsc_parse_long(a, v, 0, BARRIER_MAX_S * 1000);
    else if (!strcmp(a, "--timeout")) g.timeout_s = (int)wsc_parse_long(a, v, 1, 36000);
    else wsc_die("unknown option %s (see --help)", a);
  }
  if (!g.serve_only && (!g.secret || !*g.secret || (!g.port && !g.port_file)))
    wsc_die("--secret and --port or --port-file are required (or --serve-only)");
  srand((unsigned)mono_ns());
  wsc_raise_nofile(NULL, NULL);
  wsc.ops = &ws_ops;
  wsc.path = "/ws";
  wsc.recv_msg_max = RECV_MSG_MAX;
  g.loop = uv_default_loop();
  g.c = xcalloc((size_t)g.chats, sizeof *g.c);
  server_listen();
  if (g.serve_only) {
    uv_run(g.loop, UV_RUN_DEFAULT);
    return 0;
  }
  char **tokens = xcalloc((size_t)g.chats, sizeof *tokens);
  for (int i = 0; i < g.chats; i++) {
    char sub[64];
    snprintf(sub, sizeof sub, "usr_llm_%d", i);
    tokens[i] = wsc_mint_token(g.secret, sub);
    g.c[i].w.id = (uint32_t)i;
    g.c[i].w.token = tokens[i];
    g.c[i].sent_round = -1;
  }
  uv_timer_init(g.loop, &g.wait_timer);
  uv_timer_init(g.loop, &g.phase_timer);
  uv_timer_init(g.loop, &g.sampler);
  uv_timer_init(g.loop, &g.sender);
  uv_timer_init(g.loop, &g.progress);
  uv_timer_init(g.loop, &g.barrier_timer);
  uv_timer_init(g.loop, &g.mid_timer);
  if (g.port) start_clients();
  else uv_timer_start(&g.wait_timer, on_wait, 0, 50);
  uv_run(g.loop, UV_RUN_DEFAULT);
  uv_loop_close(g.loop);
  int bad = g.ok == 0                                                             ? 2
            : (g.failed || g.drops || g.chats_failed || g.mismatched || g.lost_stamps) ? 3
                                                                                  : 0;
  for (int i = 0; i < g.chats; i++) {
    free(tokens[i]);
    sb_free(&g.c[i].got);
    sb_free(&g.c[i].sent);
    free(g.c[i].response);
  }
  free(tokens);
  free(g.c);
  free(g.lat);
  return bad;
}
