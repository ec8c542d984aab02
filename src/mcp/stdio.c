/* mcp/stdio.c — the stdio transport of the MCP client: a server is a child
 * process (uv_spawn) speaking newline-delimited JSON-RPC on its stdin and
 * stdout; everything here runs on the loop thread and never blocks it.
 *
 * Life of a server: spawn → initialize (deadline --mcp-timeout) →
 * notifications/initialized → tools/list (pages followed) → registered,
 * "connected".  notifications/tools/list_changed lists again (coalesced while
 * a listing runs).  A child that exits, closes its stdout, or misses a
 * deadline of initialize/tools/list is dropped: its calls in flight fail at
 * once, and it is started again after a backoff of 1 s doubling to 60 s
 * (back to 1 s once it has stayed up a minute).  Its tools stay in the
 * registry meanwhile (a call answers UNAVAILABLE), so a model's tool list
 * does not flap.
 *
 * What a misbehaving server can do and what bounds it:
 *   - garbage on stdout: a line that is no JSON-RPC object is counted,
 *     logged (the first few) and skipped;
 *   - a huge line: at most MCP_RESULT_MAX bytes are kept; past that the line
 *     is skipped to its end, and the call it answers (its id from the line's
 *     head or tail) fails with TOO_LARGE;
 *   - a flood of notifications: over MCP_NOTE_RATE a second are dropped
 *     unparsed (counted); list_changed is coalesced;
 *   - stderr: read and logged a line at a time, cut to 512 bytes, at most 20
 *     lines per 10 s (the rest counted);
 *   - not reading its stdin: a request is refused once 16 MiB wait to be
 *     written.
 * Shutdown: stdin closed and SIGTERM; SIGKILL after MCP_KILL_GRACE_MS; the
 * process handle stays open until the child is reaped.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/client_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define MCP_BACKOFF_MIN_MS 1000
#define MCP_BACKOFF_MAX_MS 60000
#define MCP_STABLE_MS 60000      /* up this long: the next failure starts the backoff again */
#define MCP_KILL_GRACE_MS 2000
#define MCP_EOF_GRACE_MS 500    /* stdout closed: how long the exit status may take to come */
#define MCP_NOTE_RATE 1000       /* notifications per second kept */
#define MCP_STDERR_LINE 512
#define MCP_STDERR_LOGGED 20     /* lines logged per window */
#define MCP_STDERR_WINDOW_MS 10000
#define MCP_GARBAGE_LOGGED 5
#define MCP_WRITE_QUEUE_MAX (16u << 20)
#define MCP_MAX_TOOLS 10000
#define MCP_MAX_PAGES 1000
#define MCP_HEAD 4096            /* of an over-long line, the start kept to find its id */
#define MCP_TAIL 128             /* and the end */

typedef enum { P_CALL = 0, P_INIT, P_LIST } pkind_t;

typedef struct pending {
  long long id;
  pkind_t kind;
  mcp_call_t *call;  /* P_CALL: holds the loop's reference */
  uint64_t deadline; /* internal requests (P_INIT, P_LIST) */
  struct pending *next;
} pending_t;

typedef struct proc {
  mcp_server_t *s; /* NULL once the server let go of this child */
  uv_process_t process;
  uv_pipe_t in, out, err;
  uv_timer_t kill_timer;
  int open;        /* handles not closed yet; the struct goes at 0 */
  int exited, closing;
  buf_t line;      /* stdout: the current line */
  int oversize;    /* the current line passed MCP_RESULT_MAX */
  char tail[MCP_TAIL];
  size_t tail_len;
  buf_t eline;     /* stderr: the current line (cut) */
  int ecut;
} proc_t;

typedef struct stdio_srv {
  uv_loop_t *loop;
  proc_t *proc;
  pending_t *pending;
  long long next_id;
  uint64_t backoff_ms;
  uv_timer_t restart;
  int phase;        /* 0: no child, 1: initialize sent, 2: listing, 3: connected */
  int ever_ready;   /* since the current child started */
  int relist;       /* list_changed came during a listing */
  json_t *acc;      /* tools of the listing so far */
  int pages;
  uint64_t ready_at;
  uint64_t note_win, note_n;   /* notifications in the current second */
  uint64_t elog_win, elog_n;   /* stderr lines logged in the current window */
  unsigned garbage_logged;
  unsigned starts;
  int stopping;
} stdio_srv_t;

static void start_child(mcp_server_t *s);
static void server_lost(mcp_server_t *s, mcp_state_t st, const char *why);

/* ---- handles ---- */

static void on_handle_closed(uv_handle_t *h) {
  proc_t *p = h->data;
  if (--p->open == 0) {
    buf_dispose(&p->line);
    buf_dispose(&p->eline);
    free(p);
  }
}

static void close_one(proc_t *p, uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_handle_closed);
}

/* Close every handle of a child that has been reaped (or never started). */
static void proc_close(proc_t *p) {
  if (p->closing) return;
  p->closing = 1;
  uv_timer_stop(&p->kill_timer);
  close_one(p, (uv_handle_t *)&p->kill_timer);
  close_one(p, (uv_handle_t *)&p->in);
  close_one(p, (uv_handle_t *)&p->out);
  close_one(p, (uv_handle_t *)&p->err);
  close_one(p, (uv_handle_t *)&p->process);
}

static void on_kill_timer(uv_timer_t *t) {
  proc_t *p = t->data;
  if (!p->exited) uv_process_kill(&p->process, SIGKILL);
}

/* Ask a child to go: stdin closed, SIGTERM, SIGKILL after the grace. */
static void proc_terminate(proc_t *p) {
  if (p->exited || p->closing) return;
  close_one(p, (uv_handle_t *)&p->in);
  uv_read_stop((uv_stream_t *)&p->out);
  uv_process_kill(&p->process, SIGTERM);
  uv_timer_start(&p->kill_timer, on_kill_timer, MCP_KILL_GRACE_MS, 0);
}

/* ---- requests ---- */

typedef struct wreq {
  uv_write_t req;
  char *data;
} wreq_t;

static void on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  free(w->data);
  free(w);
}

/* Write one line (owned) to the child's stdin.  0, or AGD_EUNAVAILABLE. */
static int send_line(mcp_server_t *s, char *line, size_t len) {
  stdio_srv_t *ss = s->impl;
  proc_t *p = ss->proc;
  if (!p || p->exited || uv_is_closing((uv_handle_t *)&p->in) ||
      uv_stream_get_write_queue_size((uv_stream_t *)&p->in) > MCP_WRITE_QUEUE_MAX) {
    free(line);
    return AGD_EUNAVAILABLE;
  }
  wreq_t *w = xcalloc(1, sizeof(*w));
  w->data = line;
  uv_buf_t b = uv_buf_init(line, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written);
  if (rc != 0) {
    free(line);
    free(w);
    return AGD_EUNAVAILABLE;
  }
  return 0;
}

static pending_t *pending_add(stdio_srv_t *ss, pkind_t kind, mcp_call_t *c) {
  pending_t *pe = xcalloc(1, sizeof(*pe));
  pe->id = ++ss->next_id;
  pe->kind = kind;
  pe->call = c;
  pe->deadline = time_mono_ms() + (uint64_t)(g_mcp.timeout_s * 1000.0);
  pe->next = ss->pending;
  ss->pending = pe;
  return pe;
}

static pending_t *pending_take(stdio_srv_t *ss, long long id, mcp_call_t *c) {
  for (pending_t **pp = &ss->pending; *pp; pp = &(*pp)->next) {
    pending_t *pe = *pp;
    if (c ? pe->call == c : pe->id == id) {
      *pp = pe->next;
      return pe;
    }
  }
  return NULL;
}

/* Every request in flight ends: calls fail with why. */
static void pending_fail_all(stdio_srv_t *ss, const char *why) {
  pending_t *pe = ss->pending;
  ss->pending = NULL;
  while (pe) {
    pending_t *next = pe->next;
    if (pe->call) {
      mcp__complete(pe->call, AGD_EUNAVAILABLE, NULL, 0, why);
      mcp__call_unref(pe->call);
    }
    free(pe);
    pe = next;
  }
}

/* An internal request (initialize, tools/list). */
static int send_internal(mcp_server_t *s, pkind_t kind, const char *method, const char *params) {
  pending_t *pe = pending_add(s->impl, kind, NULL);
  size_t len;
  char *line = mcp_rpc_request(pe->id, method, params, &len);
  return send_line(s, line, len);
}

static void list_tools(mcp_server_t *s, const char *cursor) {
  stdio_srv_t *ss = s->impl;
  if (!cursor) {
    json_decref(ss->acc);
    ss->acc = json_array();
    ss->pages = 0;
  }
  ss->phase = ss->phase == 3 ? 3 : 2;
  ss->relist = 0;
  char *params = NULL;
  if (cursor) {
    json_t *p = json_pack("{s:s}", "cursor", cursor);
    params = json_dumps(p, JSON_COMPACT);
    json_decref(p);
  }
  if (send_internal(s, P_LIST, "tools/list", params) != 0) server_lost(s, MCP_S_FAILED, "cannot write to its stdin");
  free(params);
}

/* ---- answers to agentd's own requests ---- */

static void on_list_answer(mcp_server_t *s, json_t *msg);

static void on_init_answer(mcp_server_t *s, json_t *msg) {
  stdio_srv_t *ss = s->impl;
  json_t *res = json_object_get(msg, "result");
  const char *v = json_string_value(json_object_get(res, "protocolVersion"));
  if (!json_is_object(res)) {
    const char *m = json_string_value(json_object_get(json_object_get(msg, "error"), "message"));
    char why[200];
    snprintf(why, sizeof(why), "initialize refused: %.150s", m ? m : "no result");
    server_lost(s, MCP_S_FAILED, why);
    return;
  }
  if (!mcp_rpc_version_ok(v)) {
    char why[200];
    snprintf(why, sizeof(why), "unsupported protocol version '%.40s'", v ? v : "");
    server_lost(s, MCP_S_FAILED, why);
    return;
  }
  mcp__set_info(s, v, json_object_get(res, "serverInfo"));
  size_t len;
  char *line = mcp_rpc_notification("notifications/initialized", NULL, &len);
  if (send_line(s, line, len) != 0) {
    server_lost(s, MCP_S_FAILED, "cannot write to its stdin");
    return;
  }
  if (!json_object_get(json_object_get(res, "capabilities"), "tools")) {
    /* A server without tools (prompts or resources only): connected, nothing to list. */
    ss->acc = json_array();
    ss->phase = 2;
    json_t *empty = json_pack("{s:{s:[]}}", "result", "tools");
    on_list_answer(s, empty);
    json_decref(empty);
    return;
  }
  list_tools(s, NULL);
}

static void on_list_answer(mcp_server_t *s, json_t *msg) {
  stdio_srv_t *ss = s->impl;
  json_t *res = json_object_get(msg, "result");
  json_t *tools = json_object_get(res, "tools");
  json_t *err = json_object_get(msg, "error");
  if (!res && json_integer_value(json_object_get(err, "code")) == -32601) {
    tools = NULL; /* the server has no tools/list at all: no tools */
    json_decref(ss->acc);
    ss->acc = json_array();
  } else if (!json_is_array(tools)) {
    if (ss->phase != 3) {
      server_lost(s, MCP_S_FAILED, "tools/list failed");
    } else {
      mcp__set_error(s, "tools/list failed; the tools listed before are kept");
    }
    return;
  }
  size_t i;
  json_t *t;
  if (tools) json_array_foreach(tools, i, t) {
      if (json_array_size(ss->acc) >= MCP_MAX_TOOLS) break;
      json_array_append(ss->acc, t);
    }
  const char *cursor = json_string_value(json_object_get(res, "nextCursor"));
  if (cursor && *cursor && ++ss->pages < MCP_MAX_PAGES && json_array_size(ss->acc) < MCP_MAX_TOOLS) {
    list_tools(s, cursor);
    return;
  }
  mcp__register_tools(s, ss->acc);
  json_decref(ss->acc);
  ss->acc = NULL;
  if (ss->phase != 3) {
    ss->phase = 3;
    ss->ever_ready = 1;
    ss->ready_at = time_mono_ms();
    mcp__set_state(s, MCP_S_READY, "");
    log_info("mcp server '%s' connected", s->name);
  }
  if (ss->relist) list_tools(s, NULL);
}

/* ---- messages from the server ---- */

static void reply_request(mcp_server_t *s, json_t *msg, const char *method) {
  json_t *id = json_object_get(msg, "id");
  json_t *out;
  if (strcmp(method, "ping") == 0)
    out = json_pack("{s:s,s:O,s:{}}", "jsonrpc", "2.0", "id", id, "result");
  else
    out = json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", -32601, "message",
                    "method not supported by agentd's client");
  char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
  json_decref(out);
  if (!text) return;
  size_t n = strlen(text);
  text = xrealloc(text, n + 2);
  text[n] = '\n';
  text[n + 1] = '\0';
  send_line(s, text, n + 1);
}

static void on_notification(mcp_server_t *s, const char *method, json_t *msg) {
  stdio_srv_t *ss = s->impl;
  if (strcmp(method, "notifications/tools/list_changed") == 0) {
    if (ss->phase == 3 && !ss->acc) list_tools(s, NULL);
    else ss->relist = 1;
  } else if (strcmp(method, "notifications/message") == 0) {
    json_t *params = json_object_get(msg, "params");
    json_t *data = json_object_get(params, "data");
    char *d = data ? jsonx_dumps(data) : NULL;
    log_debug("mcp server '%s' says: %.300s", s->name, d ? d : "");
    free(d);
  }
}

static void garbage(mcp_server_t *s, const char *p, size_t n) {
  stdio_srv_t *ss = s->impl;
  mcp__count(s, &s->garbage);
  if (ss->garbage_logged < MCP_GARBAGE_LOGGED) {
    ss->garbage_logged++;
    log_warn("mcp server '%s': a stdout line that is no JSON-RPC message skipped: %.*s%s", s->name,
             (int)(n > 120 ? 120 : n), p, n > 120 ? "…" : "");
  }
}

/* One complete stdout line (without its "\n"). */
static void on_line(mcp_server_t *s, const char *p, size_t n) {
  stdio_srv_t *ss = s->impl;
  if (n && p[n - 1] == '\r') n--;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  if (i == n) return; /* blank lines are allowed between messages */
  mcp_scan_t sc;
  mcp_rpc_scan(p, n, &sc);
  if (!sc.is_object || !sc.complete) {
    garbage(s, p, n);
    return;
  }
  if (sc.has_method && !sc.has_id) {
    /* A notification: the flood bound is checked before the parse. */
    uint64_t now = time_mono_ms();
    if (now - ss->note_win >= 1000) {
      ss->note_win = now;
      ss->note_n = 0;
    }
    if (++ss->note_n > MCP_NOTE_RATE) {
      if (ss->note_n == MCP_NOTE_RATE + 1) log_warn("mcp server '%s': over %d notifications/s; dropping", s->name, MCP_NOTE_RATE);
      mcp__count(s, &s->dropped);
      return;
    }
  }
  if (!sc.has_method && sc.has_id) {
    pending_t *pe = pending_take(ss, sc.id, NULL);
    if (!pe) {
      log_debug("mcp server '%s': an answer to id %lld, which is not waited for", s->name, sc.id);
      return;
    }
    if (pe->kind == P_CALL) { /* the caller parses it, off the loop */
      mcp__complete(pe->call, 0, xstrndup(p, n), n, NULL);
      mcp__call_unref(pe->call);
      free(pe);
      return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(p, n, 0, &jerr);
    pkind_t kind = pe->kind;
    free(pe);
    if (!json_is_object(msg)) {
      json_decref(msg);
      garbage(s, p, n);
      server_lost(s, MCP_S_FAILED, kind == P_INIT ? "initialize answered with invalid JSON" : "tools/list answered with invalid JSON");
      return;
    }
    if (kind == P_INIT) on_init_answer(s, msg);
    else on_list_answer(s, msg);
    json_decref(msg);
    return;
  }
  json_error_t jerr;
  json_t *msg = json_loadb(p, n, 0, &jerr);
  const char *method = json_string_value(json_object_get(msg, "method"));
  if (!method) {
    garbage(s, p, n);
  } else if (json_object_get(msg, "id")) {
    reply_request(s, msg, method);
  } else {
    on_notification(s, method, msg);
  }
  json_decref(msg);
}

/* A line over MCP_RESULT_MAX ended: head holds its start, tail its end. */
static void on_oversize(mcp_server_t *s, const char *head, size_t hn, const char *tail, size_t tn) {
  stdio_srv_t *ss = s->impl;
  mcp_scan_t sc;
  long long id = 0;
  mcp_rpc_scan(head, hn, &sc);
  int found = sc.has_id && !sc.has_method;
  if (sc.has_id) id = sc.id;
  else found = !sc.has_method && mcp_rpc_tail_id(tail, tn, &id) == 0;
  log_warn("mcp server '%s': a message over %u bytes skipped", s->name, MCP_RESULT_MAX);
  if (!found) {
    mcp__count(s, &s->garbage);
    return;
  }
  pending_t *pe = pending_take(ss, id, NULL);
  if (!pe) return;
  if (pe->kind == P_CALL) {
    char msg[160];
    snprintf(msg, sizeof(msg), "mcp server '%s' answered with over %u bytes (the limit)", s->name, MCP_RESULT_MAX);
    mcp__complete(pe->call, AGD_ETOO_LARGE, NULL, 0, msg);
    mcp__call_unref(pe->call);
    free(pe);
    return;
  }
  free(pe);
  server_lost(s, MCP_S_FAILED, "its answer to initialize or tools/list is over 1 MiB");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = xmalloc(65536);
  buf->len = 65536;
}

static void keep_tail(proc_t *p, const char *d, size_t n) {
  if (n >= MCP_TAIL) {
    memcpy(p->tail, d + n - MCP_TAIL, MCP_TAIL);
    p->tail_len = MCP_TAIL;
    return;
  }
  size_t keep = p->tail_len + n > MCP_TAIL ? MCP_TAIL - n : p->tail_len;
  memmove(p->tail, p->tail + p->tail_len - keep, keep);
  memcpy(p->tail + keep, d, n);
  p->tail_len = keep + n;
}

/* Bytes of stdout: split into lines, each bounded. */
static void feed_stdout(proc_t *p, const char *d, size_t n) {
  while (n > 0 && p->s && p->s->impl && ((stdio_srv_t *)p->s->impl)->proc == p) {
    const char *nl = memchr(d, '\n', n);
    size_t seg = nl ? (size_t)(nl - d) : n;
    if (!p->oversize && buf_append(&p->line, d, seg) != 0) {
      p->oversize = 1; /* the head stays in p->line (its first MCP_HEAD bytes matter) */
      p->tail_len = 0;
    }
    if (p->oversize) keep_tail(p, d, seg);
    if (!nl) return;
    if (p->oversize) {
      on_oversize(p->s, p->line.base, p->line.len < MCP_HEAD ? p->line.len : MCP_HEAD, p->tail, p->tail_len);
      p->oversize = 0;
    } else {
      on_line(p->s, p->line.base ? p->line.base : "", p->line.len);
    }
    if (p->line.len > 65536) buf_dispose(&p->line); /* do not keep a megabyte per idle server */
    else buf_reset(&p->line);
    d += seg + 1;
    n -= seg + 1;
  }
}

static void on_eof_grace(uv_timer_t *t) {
  proc_t *p = t->data;
  if (p->s && ((stdio_srv_t *)p->s->impl)->proc == p)
    server_lost(p->s, ((stdio_srv_t *)p->s->impl)->ever_ready ? MCP_S_RESTARTING : MCP_S_FAILED, "closed its stdout");
}

static void on_stdout(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  proc_t *p = st->data;
  if (nread > 0) feed_stdout(p, buf->base, (size_t)nread);
  free(buf->base);
  if (nread < 0) {
    uv_read_stop(st);
    /* A child that dies closes its stdout a moment before it is reaped: give
     * the exit a little while to arrive, so the error names the status. */
    if (p->s && ((stdio_srv_t *)p->s->impl)->proc == p && !p->exited)
      uv_timer_start(&p->kill_timer, on_eof_grace, MCP_EOF_GRACE_MS, 0);
  }
}

static void stderr_line(proc_t *p) {
  mcp_server_t *s = p->s;
  if (!s) return;
  stdio_srv_t *ss = s->impl;
  mcp__count(s, &s->stderr_lines);
  uint64_t now = time_mono_ms();
  if (now - ss->elog_win >= MCP_STDERR_WINDOW_MS) {
    ss->elog_win = now;
    ss->elog_n = 0;
  }
  if (++ss->elog_n <= MCP_STDERR_LOGGED)
    log_info("mcp server '%s' stderr: %.*s%s", s->name, (int)p->eline.len, p->eline.base ? p->eline.base : "",
             p->ecut ? "…" : "");
  else if (ss->elog_n == MCP_STDERR_LOGGED + 1)
    log_info("mcp server '%s' stderr: more lines in the next %d s not logged", s->name, MCP_STDERR_WINDOW_MS / 1000);
  buf_reset(&p->eline);
  p->ecut = 0;
}

static void on_stderr(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  proc_t *p = st->data;
  for (ssize_t i = 0; i < nread; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      stderr_line(p);
    } else if (c != '\r' && buf_append(&p->eline, &c, 1) != 0) {
      p->ecut = 1;
    }
  }
  free(buf->base);
  if (nread < 0) {
    if (p->eline.len) stderr_line(p);
    uv_read_stop(st);
  }
}

static void on_child_exit(uv_process_t *proc, int64_t status, int sig) {
  proc_t *p = proc->data;
  p->exited = 1;
  if (p->s && ((stdio_srv_t *)p->s->impl)->proc == p) {
    char why[96];
    if (sig) snprintf(why, sizeof(why), "exited on signal %d", sig);
    else snprintf(why, sizeof(why), "exited with status %lld", (long long)status);
    server_lost(p->s, ((stdio_srv_t *)p->s->impl)->ever_ready ? MCP_S_RESTARTING : MCP_S_FAILED, why);
  }
  proc_close(p);
}

/* ---- the server's life ---- */

static void on_restart(uv_timer_t *t) { start_child(t->data); }

static void schedule_restart(mcp_server_t *s) {
  stdio_srv_t *ss = s->impl;
  if (ss->stopping) return;
  uv_timer_start(&ss->restart, on_restart, ss->backoff_ms, 0);
  log_info("mcp server '%s': starting again in %.0f s", s->name, (double)ss->backoff_ms / 1000.0);
  ss->backoff_ms = ss->backoff_ms * 2 > MCP_BACKOFF_MAX_MS ? MCP_BACKOFF_MAX_MS : ss->backoff_ms * 2;
}

/* Let go of the current child (terminating it if it still runs), fail what
 * is in flight, and start again after the backoff. */
static void server_lost(mcp_server_t *s, mcp_state_t st, const char *why) {
  stdio_srv_t *ss = s->impl;
  proc_t *p = ss->proc;
  char msg[300];
  snprintf(msg, sizeof(msg), "mcp server '%s' %s", s->name, why);
  if (p) {
    ss->proc = NULL;
    p->s = NULL;
    if (!p->exited) proc_terminate(p);
  }
  pending_fail_all(ss, msg);
  if (ss->phase == 3 && time_mono_ms() - ss->ready_at >= MCP_STABLE_MS) ss->backoff_ms = MCP_BACKOFF_MIN_MS;
  ss->phase = 0;
  ss->relist = 0;
  json_decref(ss->acc);
  ss->acc = NULL;
  if (ss->stopping) return;
  mcp__set_state(s, st, why);
  log_warn("%s", msg);
  schedule_restart(s);
}

static void start_child(mcp_server_t *s) {
  stdio_srv_t *ss = s->impl;
  if (ss->stopping) return;
  proc_t *p = xcalloc(1, sizeof(*p));
  p->s = s;
  buf_init(&p->line, MCP_RESULT_MAX);
  buf_init(&p->eline, MCP_STDERR_LINE);
  uv_pipe_init(ss->loop, &p->in, 0);
  uv_pipe_init(ss->loop, &p->out, 0);
  uv_pipe_init(ss->loop, &p->err, 0);
  uv_timer_init(ss->loop, &p->kill_timer);
  p->in.data = p->out.data = p->err.data = p->kill_timer.data = p->process.data = p;
  p->open = 5;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&p->in},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
  };
  uv_process_options_t opt = {
      .exit_cb = on_child_exit,
      .file = s->argv[0],
      .args = s->argv,
      .env = s->env,
      .cwd = s->cwd,
      .stdio_count = 3,
      .stdio = stdio,
  };
  int rc = uv_spawn(ss->loop, &p->process, &opt);
  ss->garbage_logged = 0;
  ss->ever_ready = 0;
  if (ss->starts++ > 0) mcp__count_restart(s);
  if (rc != 0) {
    p->exited = 1;
    p->s = NULL;
    proc_close(p);
    char why[200];
    snprintf(why, sizeof(why), "cannot start '%.100s': %s", s->argv[0], uv_strerror(rc));
    mcp__set_state(s, MCP_S_FAILED, why);
    log_warn("mcp server '%s': %s", s->name, why);
    schedule_restart(s);
    return;
  }
  ss->proc = p;
  uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
  uv_read_start((uv_stream_t *)&p->err, on_alloc, on_stderr);
  ss->phase = 1;
  char *params = mcp_rpc_initialize_params();
  rc = send_internal(s, P_INIT, "initialize", params);
  free(params);
  if (rc != 0) server_lost(s, MCP_S_FAILED, "cannot write to its stdin");
}

/* ---- client.c's entry points ---- */

int mcp_stdio_start(mcp_server_t *s, uv_loop_t *loop) {
  stdio_srv_t *ss = xcalloc(1, sizeof(*ss));
  ss->loop = loop;
  ss->backoff_ms = MCP_BACKOFF_MIN_MS;
  uv_timer_init(loop, &ss->restart);
  ss->restart.data = s;
  s->impl = ss;
  start_child(s);
  return 0;
}

void mcp_stdio_submit(mcp_server_t *s, mcp_call_t *c) {
  stdio_srv_t *ss = s->impl;
  pthread_mutex_lock(&g_mcp.mu);
  int abandoned = c->abandoned;
  pthread_mutex_unlock(&g_mcp.mu);
  if (abandoned) { /* the caller left before the loop saw it: nothing was sent */
    mcp__call_unref(c);
    return;
  }
  if (ss->stopping || ss->phase != 3 || !ss->proc) {
    char msg[160];
    snprintf(msg, sizeof(msg), "mcp server '%s' is %s", s->name, ss->stopping ? "stopping" : "not connected");
    mcp__complete(c, AGD_EUNAVAILABLE, NULL, 0, msg);
    mcp__call_unref(c);
    return;
  }
  pending_t *pe = pending_add(ss, P_CALL, c);
  c->id = pe->id;
  size_t len;
  char *line = mcp_rpc_request(pe->id, "tools/call", c->params, &len);
  if (send_line(s, line, len) != 0) {
    pending_take(ss, pe->id, NULL);
    free(pe);
    char msg[160];
    snprintf(msg, sizeof(msg), "mcp server '%s' does not read its stdin", s->name);
    mcp__complete(c, AGD_EUNAVAILABLE, NULL, 0, msg);
    mcp__call_unref(c);
  }
}

void mcp_stdio_cancel(mcp_server_t *s, mcp_call_t *c) {
  stdio_srv_t *ss = s->impl;
  pending_t *pe = ss ? pending_take(ss, 0, c) : NULL;
  if (pe) {
    char params[96];
    snprintf(params, sizeof(params), "{\"requestId\":%lld,\"reason\":\"cancelled by agentd\"}", pe->id);
    size_t len;
    char *line = mcp_rpc_notification("notifications/cancelled", params, &len);
    send_line(s, line, len);
    mcp__call_unref(pe->call);
    free(pe);
  }
  mcp__call_unref(c); /* the cancel queue's reference */
}

void mcp_stdio_tick(mcp_server_t *s, uint64_t now) {
  stdio_srv_t *ss = s->impl;
  if (!ss) return;
  for (pending_t *pe = ss->pending; pe; pe = pe->next) {
    if (pe->kind != P_CALL && now >= pe->deadline) {
      char why[120];
      snprintf(why, sizeof(why), "did not answer %s within %g s", pe->kind == P_INIT ? "initialize" : "tools/list",
               g_mcp.timeout_s);
      server_lost(s, ss->ever_ready ? MCP_S_RESTARTING : MCP_S_FAILED, why);
      return;
    }
  }
}

void mcp_stdio_stop(mcp_server_t *s) {
  stdio_srv_t *ss = s->impl;
  if (!ss || ss->stopping) return;
  ss->stopping = 1;
  uv_timer_stop(&ss->restart);
  uv_close((uv_handle_t *)&ss->restart, NULL);
  server_lost(s, MCP_S_STOPPED, "stopped: agentd is shutting down");
  mcp__set_state(s, MCP_S_STOPPED, NULL);
}

void mcp_stdio_free(mcp_server_t *s) {
  stdio_srv_t *ss = s->impl;
  if (!ss) return;
  json_decref(ss->acc);
  free(ss);
  s->impl = NULL;
}
