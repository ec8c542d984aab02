/* net/conn.c — connection lifecycle and the send path (STYLE §3, §6).
 *
 * Every byte to a socket goes through conn__send(): it encrypts (TLS), appends
 * to the conn's `out` buffer and links the conn on the server's pending list;
 * the flush prepare handle writes all pending conns once per loop turn
 * (uv_try_write, then one uv_write for the rest).  Queued bytes = `out` +
 * bytes in flight; over the high mark reads stop.  Memory is freed in the
 * close callback once every write has called back (mark now, free later).
 * Once everything queued is written, an `out` grown past CONN_OUT_KEEP is
 * freed.  Loop thread only.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "util/err.h"
#include "util/log.h"

/* Storage an empty `out` may keep between turns: one or two events' frames
 * (a streamed delta's is ~300 bytes), so a socket fed one event per turn
 * reuses it; a larger one, grown for a burst, is freed once it drains. */
#define CONN_OUT_KEEP 1024

typedef struct write_req {
  uv_write_t req;
  conn_t *conn;
  char *base;
  size_t len;
} write_req_t;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_close(uv_handle_t *h);

conn_t *conn__new(server_t *s) {
  conn_t *c = calloc(1, sizeof(*c));
  if (!c) abort();
  c->magic = CONN_MAGIC;
  c->kind = CONN_KIND_HTTP;
  c->refs = 1;
  c->srv = s;
  c->id = ++s->next_conn_id;
  buf_init(&c->out, 0);
  list_init(&c->pending_node);
  list_init(&c->idle_node);
  list_insert_tail(&s->conns, &c->all_node);
  s->n_conns[CONN_KIND_HTTP]++;
  s->n_total++;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  c->last_rx_ms = uv_now(s->loop);
  return c;
}

void conn__hold(conn_t *c) {
  assert(c->magic == CONN_MAGIC);
  c->refs++;
}

static void conn__free(conn_t *c) {
  server_t *s = c->srv;
  if (s->cb.on_stream_close && c->kind != CONN_KIND_HTTP) s->cb.on_stream_close(c);
  server__unregister_id(s, c);
  if (list_linked(&c->pending_node)) list_remove(&c->pending_node);
  server__idle_leave(c);
  list_remove(&c->all_node);
  s->n_conns[c->kind]--;
  s->n_total--;
  if (c->flags & CONN_F_CLOSING) s->n_closing--;
  if (c->http) http__state_free(c->http);
  if (c->ws) ws__state_free(c->ws);
  if (c->sse) sse__state_free(c->sse);
  tls_conn_free(c->tls);
  buf_dispose(&c->out);
  free(c->user_id);
  c->magic = CONN_DEAD_MAGIC;
  free(c);
  if (s->shutting_down && s->n_total == 0 && s->shutdown_cb) {
    void (*cb)(server_t *, void *) = s->shutdown_cb;
    s->shutdown_cb = NULL;
    cb(s, s->shutdown_arg);
  }
}

void conn__release(conn_t *c) {
  assert(c->refs > 0);
  if (--c->refs == 0) conn__free(c);
}

void conn__set_kind(conn_t *c, conn_kind_t kind) {
  c->srv->n_conns[c->kind]--;
  c->kind = (uint8_t)kind;
  c->srv->n_conns[kind]++;
}

size_t conn__queued(const conn_t *c) { return c->out.len + c->inflight; }

static void conn__mark_pending(conn_t *c) {
  if (!list_linked(&c->pending_node)) list_insert_tail(&c->srv->pending, &c->pending_node);
}

/* Over the high mark (half the queue limit) reads stop until writes drain
 * below a quarter (SPEC §6 backpressure; STYLE §6). */
static void conn__check_backpressure(conn_t *c) {
  size_t limit = c->srv->cfg->send_queue_limit;
  size_t q = conn__queued(c);
  if (q > limit / 2) {
    if (!(c->flags & CONN_F_BP_PAUSED)) {
      c->flags |= CONN_F_BP_PAUSED;
      c->stall_since_ms = uv_now(c->srv->loop);
      if (c->flags & CONN_F_READING) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->flags &= ~CONN_F_READING;
      }
    }
  } else if ((c->flags & CONN_F_BP_PAUSED) && q <= limit / 4) {
    c->flags &= ~CONN_F_BP_PAUSED;
    c->stall_since_ms = 0;
    conn__read_start(c);
  }
}

void conn__send(conn_t *c, const void *p, size_t n) {
  assert(c->magic == CONN_MAGIC);
  if (c->flags & CONN_F_CLOSING || n == 0) return;
  if (c->tls) {
    if (tls_conn_write(c->tls, p, n, &c->out) != 0) {
      conn__close(c);
      return;
    }
  } else if (buf_append(&c->out, p, n) != 0) {
    abort(); /* unlimited buffer: only OOM gets here, and OOM aborts */
  }
  conn__mark_pending(c);
  conn__check_backpressure(c);
}

void conn__sendv(conn_t *c, const uv_buf_t *bufs, size_t nbufs) {
  for (size_t i = 0; i < nbufs; i++) conn__send(c, bufs[i].base, bufs[i].len);
}

/* The last step of a close after flush, once nothing is left to write. */
static void conn__flushed(conn_t *c) {
  if (c->flags & CONN_F_DRAINING) return;
  if (c->flags & CONN_F_LINGER) conn__drain(c);
  else conn__close(c);
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = container_of(req, write_req_t, req);
  conn_t *c = w->conn;
  c->inflight -= w->len;
  free(w->base);
  free(w);
  if (status < 0 && !(c->flags & CONN_F_CLOSING)) {
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, uv_strerror(status));
    conn__close(c);
  } else if (!(c->flags & CONN_F_CLOSING)) {
    conn__check_backpressure(c);
    if (c->flags & CONN_F_CLOSE_AFTER_FLUSH) {
      c->close_since_ms = uv_now(c->srv->loop); /* progress: the peer reads */
      if (c->out.len == 0 && c->inflight == 0) conn__flushed(c);
    }
  }
  conn__release(c);
}

void conn__flush(conn_t *c) {
  if (c->flags & CONN_F_CLOSING) return;
  if (c->out.len > 0 && c->inflight == 0) {
    uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n > 0) buf_consume(&c->out, (size_t)n);
    else if (n < 0 && n != UV_EAGAIN) {
      conn__close(c);
      return;
    }
    /* All written: a buffer that grew for a burst (a run's first events, a
     * replay) gives its storage back, or each of thousands of idle sockets
     * would keep its largest burst for good. */
    buf_trim(&c->out, CONN_OUT_KEEP);
  }
  if (c->out.len > 0) {
    write_req_t *w = malloc(sizeof(*w));
    if (!w) abort();
    w->conn = c;
    w->base = buf_steal(&c->out, &w->len);
    uv_buf_t b = uv_buf_init(w->base, (unsigned)w->len);
    c->inflight += w->len;
    conn__hold(c);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
      c->inflight -= w->len;
      free(w->base);
      free(w);
      conn__release(c);
      conn__close(c);
      return;
    }
  }
  conn__check_backpressure(c);
  if ((c->flags & CONN_F_CLOSE_AFTER_FLUSH) && c->out.len == 0 && c->inflight == 0) conn__flushed(c);
}

static void on_drain_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  conn__release(c);
}

void conn__drain(conn_t *c) {
  if (c->flags & (CONN_F_CLOSING | CONN_F_DRAINING)) return;
  c->flags |= CONN_F_DRAINING;
  c->close_since_ms = uv_now(c->srv->loop);
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (!req) abort();
  req->data = c;
  conn__hold(c);
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_drain_shutdown) != 0) {
    free(req);
    conn__release(c);
    conn__close(c);
    return;
  }
  /* conn__read_start() refuses closing conns; draining is the one exception. */
  if (!(c->flags & CONN_F_READING) && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->flags |= CONN_F_READING;
}

void conn__close_after_flush(conn_t *c) {
  if (c->flags & (CONN_F_CLOSING | CONN_F_CLOSE_AFTER_FLUSH)) return;
  c->flags |= CONN_F_CLOSE_AFTER_FLUSH;
  c->close_since_ms = uv_now(c->srv->loop);
  /* A clean TLS close keeps the session resumable (tls.h). */
  if (c->tls && tls_conn_established(c->tls)) {
    tls_conn_shutdown(c->tls, &c->out);
    conn__mark_pending(c);
  }
  conn__read_stop(c);
  if (c->out.len == 0 && c->inflight == 0) conn__flushed(c);
  else conn__mark_pending(c);
}

void conn__close(conn_t *c) {
  assert(c->magic == CONN_MAGIC);
  if (c->flags & CONN_F_CLOSING) return;
  c->flags |= CONN_F_CLOSING;
  c->srv->n_closing++;
  if (c->flags & CONN_F_REFUSED) c->srv->n_refusing--;
  server__idle_leave(c);
  conn__read_stop(c);
  if (list_linked(&c->pending_node)) list_remove(&c->pending_node);
  buf_dispose(&c->out);
  if (c->http) http__on_conn_closed(c);
  /* A hard close: RST when bytes are unread so a slow reader cannot hold the
   * kernel buffers either. */
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  conn__release(c);
}

void conn__read_start(conn_t *c) {
  if (c->flags & (CONN_F_READING | CONN_F_CLOSING | CONN_F_BP_PAUSED | CONN_F_CLOSE_AFTER_FLUSH)) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->flags |= CONN_F_READING;
}

void conn__read_stop(conn_t *c) {
  if (!(c->flags & CONN_F_READING)) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->flags &= ~CONN_F_READING;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  /* One shared buffer: bytes are consumed (or copied) before on_read returns. */
  *buf = uv_buf_init(c->srv->read_buf, sizeof(c->srv->read_buf));
}

void conn__on_plain(conn_t *c, const char *p, size_t n) {
  switch (c->kind) {
  case CONN_KIND_HTTP: http__on_bytes(c, p, n); break;
  case CONN_KIND_WS: ws__on_bytes(c, p, n); break;
  case CONN_KIND_SSE: break; /* a stream's client has nothing more to say */
  default: break;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) {
    conn__close(c);
    return;
  }
  /* Draining (a 503 at the cap, a 1013 close): everything is sent; input is
   * read only so that closing does not reset the connection, and dropped. */
  if (nread == 0 || (c->flags & CONN_F_DRAINING)) return;
  c->last_rx_ms = uv_now(c->srv->loop);
  conn__hold(c);
  const char *p = buf->base;
  size_t n = (size_t)nread;
  if (!(c->flags & CONN_F_SNIFFED)) {
    c->flags |= CONN_F_SNIFFED;
    if (c->srv->tls) {
      if (tls_sniff_is_handshake((unsigned char)p[0])) c->tls = tls_conn_new(c->srv->tls);
      else c->flags |= CONN_F_PLAIN_ON_TLS; /* http.c answers its request with 301 (SPEC §10) */
    }
  }
  if (c->tls) {
    buf_t plain, out;
    buf_init(&plain, 0);
    buf_init(&out, 0);
    int rc = tls_conn_read(c->tls, p, n, &plain, &out);
    if (out.len && !(c->flags & CONN_F_CLOSING)) {
      if (buf_append(&c->out, out.base, out.len) != 0) abort();
      conn__mark_pending(c);
    }
    if (plain.len && !(c->flags & CONN_F_CLOSING)) conn__on_plain(c, plain.base, plain.len);
    if (rc != 0) conn__close_after_flush(c);
    buf_dispose(&plain);
    buf_dispose(&out);
  } else {
    conn__on_plain(c, p, n);
  }
  conn__release(c);
}

/* ---- public accessors (net.h) ---- */

uint64_t conn_id(const conn_t *c) { return c->id; }
conn_kind_t conn_kind(const conn_t *c) { return (conn_kind_t)c->kind; }
const char *conn_user_id(const conn_t *c) { return c->user_id ? c->user_id : ""; }
void conn_set_user_id(conn_t *c, const char *user_id) {
  free(c->user_id);
  c->user_id = user_id ? strdup(user_id) : NULL;
}
void conn_set_data(conn_t *c, void *data) { c->data = data; }
void *conn_data(const conn_t *c) { return c->data; }
int conn_is_closing(const conn_t *c) { return (c->flags & (CONN_F_CLOSING | CONN_F_CLOSE_AFTER_FLUSH)) != 0; }
server_t *conn_server(const conn_t *c) { return c->srv; }
