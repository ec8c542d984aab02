/* net/sse.c — Server-Sent Events streams (text/event-stream; SPEC §4).
 *
 * A stream is an HTTP response with chunked encoding that never ends until
 * sse_end() (or the client leaves).  Frames are "id:/event:/data:" blocks;
 * comment heartbeats keep proxies from timing the stream out.  The send queue
 * bound applies: a stream whose reader falls behind is ended.
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "net/net_int.h"
#include "util/err.h"
#include "util/log.h"

struct sse_state {
  uint64_t last_send_ms; /* uv_now() of the last frame or heartbeat */
  int ended;
};

sse_state_t *sse__state_new(conn_t *c) {
  sse_state_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->last_send_ms = uv_now(c->srv->loop);
  return s;
}

void sse__state_free(sse_state_t *s) { free(s); }

int sse_format(buf_t *b, const char *id, const char *event, const char *data, size_t n) {
  int rc = 0;
  /* Field values must not break the frame: ids and event names never carry newlines. */
  if (id && !strpbrk(id, "\r\n")) rc |= buf_appendf(b, "id: %s\n", id);
  if (event && !strpbrk(event, "\r\n")) rc |= buf_appendf(b, "event: %s\n", event);
  /* Every line break a browser's parser knows (\n, \r, \r\n) starts a new data: line,
   * so data can never smuggle in an id: or event: field. */
  const char *p = data ? data : "", *end = p + (data ? n : 0);
  for (;;) {
    const char *e = p;
    while (e < end && *e != '\n' && *e != '\r') e++;
    rc |= buf_append_str(b, "data: ");
    rc |= buf_append(b, p, (size_t)(e - p));
    rc |= buf_append_str(b, "\n");
    if (e == end) break;
    p = e + ((*e == '\r' && e + 1 < end && e[1] == '\n') ? 2 : 1);
  }
  rc |= buf_append_str(b, "\n");
  return rc ? AGD_ETOO_LARGE : 0;
}

/* One chunk of the chunked response. */
static void sse__send_chunk(conn_t *c, const char *p, size_t n) {
  char head[24];
  int hl = snprintf(head, sizeof(head), "%zx\r\n", n);
  conn__send(c, head, (size_t)hl);
  conn__send(c, p, n);
  conn__send(c, "\r\n", 2);
  if (c->sse) c->sse->last_send_ms = uv_now(c->srv->loop);
}

static void sse__on_rest(conn_t *c, const char *rest, size_t n) {
  (void)c; (void)rest; (void)n; /* a stream's client has nothing more to say */
}

static void sse__on_begin(conn_t *c) {
  conn__set_kind(c, CONN_KIND_SSE);
  c->sse = sse__state_new(c);
  server__register_id(c->srv, c);
  metrics_add("agentd_sse_streams_total", NULL, 1);
}

int sse_start(http_req_t *r) {
  conn_t *c = http_req_conn(r);
  buf_t b;
  buf_init(&b, 0);
  http_resp_header(r, "Cache-Control", "no-cache");
  http_resp_header(r, "X-Accel-Buffering", "no");
  http__build_head(r, &b, 200, "text/event-stream; charset=utf-8", -1);
  buf_append_str(&b, "\r\n");
  conn__send(c, b.base, b.len);
  buf_dispose(&b);
  http__account_status(r, 200);
  http__handover(r, sse__on_begin, sse__on_rest);
  /* An opening comment lets clients see the stream is live before any event. */
  static const char hello[] = ": stream open\n\n";
  sse__send_chunk(c, hello, sizeof(hello) - 1);
  return 0;
}

int sse_send_raw(conn_t *c, const char *block, size_t n) {
  if (c->kind != CONN_KIND_SSE || !c->sse || c->sse->ended || conn_is_closing(c)) return AGD_EUNAVAILABLE;
  if (conn__queued(c) + n > c->srv->cfg->send_queue_limit) {
    log_info("conn %llu: SSE send queue over %zu bytes, ending stream", (unsigned long long)c->id,
             c->srv->cfg->send_queue_limit);
    metrics_add("agentd_slow_consumer_closed_total", NULL, 1);
    conn__close(c);
    return AGD_EUNAVAILABLE;
  }
  sse__send_chunk(c, block, n);
  return 0;
}

int sse_send(conn_t *c, const char *id, const char *event, const char *data, size_t n) {
  if (c->kind != CONN_KIND_SSE || !c->sse || c->sse->ended || conn_is_closing(c)) return AGD_EUNAVAILABLE;
  buf_t b;
  buf_init(&b, 0);
  sse_format(&b, id, event, data, n);
  int rc = sse_send_raw(c, b.base, b.len);
  buf_dispose(&b);
  return rc;
}

void sse_end(conn_t *c) {
  if (conn_is_closing(c)) return;
  if (c->kind != CONN_KIND_SSE || !c->sse) {
    conn__close(c);
    return;
  }
  if (!c->sse->ended) {
    c->sse->ended = 1;
    conn__send(c, "0\r\n\r\n", 5);
  }
  conn__close_after_flush(c);
}

int sse__sweep(conn_t *c, uint64_t now_ms) {
  sse_state_t *s = c->sse;
  if (!s || s->ended) return 0;
  if (now_ms - s->last_send_ms >= (uint64_t)(c->srv->cfg->sse_heartbeat * 1000)) {
    static const char hb[] = ": heartbeat\n\n";
    sse__send_chunk(c, hb, sizeof(hb) - 1);
  }
  return 0;
}
