/* net/net_int.h — private to the files of net/ (conn.c, http.c, ws.c, sse.c, server.c).
 *
 * A conn_t is one accepted socket.  It starts as HTTP; ws_upgrade() or
 * sse_start() turn it into a WebSocket or an SSE stream (its `kind`), freeing
 * the HTTP parser state so an idle WebSocket costs only the conn and a small
 * ws_state_t.  Loop thread only.
 */
#ifndef AGD_NET_NET_INT_H
#define AGD_NET_NET_INT_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "net/net.h"
#include "net/tls.h"
#include "util/buf.h"
#include "util/ids.h"
#include "util/pool.h"

#define CONN_MAGIC 0x636f6e6eu /* "conn" */
#define CONN_DEAD_MAGIC 0xdeadc0deu

typedef struct list_node {
  struct list_node *prev, *next;
} list_node_t;

static inline void list_init(list_node_t *h) { h->prev = h->next = h; }
static inline int list_empty(const list_node_t *h) { return h->next == h; }
static inline int list_linked(const list_node_t *n) { return n->next != NULL && n->next != n; }
static inline void list_insert_tail(list_node_t *h, list_node_t *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}
static inline void list_remove(list_node_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum {
  CONN_F_CLOSING = 1u << 0,        /* uv_close called or about to be: nothing more is sent */
  CONN_F_CLOSE_AFTER_FLUSH = 1u << 1, /* close once `out` and writes in flight are drained */
  CONN_F_READING = 1u << 2,        /* uv_read_start is active */
  CONN_F_BP_PAUSED = 1u << 3,      /* reads stopped because the send queue is over the high mark */
  CONN_F_SNIFFED = 1u << 4,        /* first byte seen (TLS or plain decided) */
  CONN_F_PLAIN_ON_TLS = 1u << 5,   /* plain HTTP on a TLS port: answer 301 and close */
  CONN_F_REFUSED = 1u << 6,        /* accepted over the connection cap (counted in n_refusing) */
  CONN_F_SHUTDOWN = 1u << 7,       /* server is shutting down: no keep-alive */
  CONN_F_LINGER = 1u << 8,         /* a close after flush ends with conn__drain(), not at once */
  CONN_F_DRAINING = 1u << 9,       /* everything is sent, FIN too: input is dropped until EOF or CONN_DRAIN_MS */
};

/* How long a draining conn waits for the peer's EOF before it is closed. */
#define CONN_DRAIN_MS 2000

typedef struct http_state http_state_t;
typedef struct ws_state ws_state_t;
typedef struct sse_state sse_state_t;

struct conn {
  uv_tcp_t tcp;               /* the socket; its data points to this conn */
  uint32_t magic;             /* CONN_MAGIC while alive (asserted in conn_*) */
  uint8_t kind;               /* conn_kind_t */
  uint16_t flags;             /* CONN_F_* */
  uint32_t refs;              /* 1 for the handle + 1 per write in flight + 1 per deferred request */
  uint64_t id;                /* process-unique, for lookups from other threads' work */
  server_t *srv;
  list_node_t all_node;       /* server->conns */
  list_node_t pending_node;   /* server->pending: has bytes in `out` to flush this turn */
  list_node_t idle_node;      /* server->idle: HTTP keep-alive between requests, oldest first */
  buf_t out;                  /* bytes accepted for sending, not yet handed to uv_write */
  size_t inflight;            /* bytes inside uv_write requests not yet called back */
  uint64_t last_rx_ms;        /* uv_now() at last read */
  uint64_t stall_since_ms;    /* uv_now() when the send queue went over the high mark, 0 if not */
  uint64_t close_since_ms;    /* closing after flush: start or last write progress; draining: its start */
  tls_conn_t *tls;            /* NULL on plain connections */
  http_state_t *http;         /* kind HTTP */
  ws_state_t *ws;             /* kind WS */
  sse_state_t *sse;           /* kind SSE */
  void *data;                 /* the layer above's slot */
  char *user_id;              /* WS/SSE: authenticated user (malloc'd), NULL for HTTP */
};

/* server.c */
struct server {
  uv_loop_t *loop;
  const config_t *cfg;
  net_callbacks_t cb;
  uv_tcp_t listener;
  uv_prepare_t flush_prepare;  /* flushes every pending conn once per loop turn (STYLE §6) */
  uv_timer_t sweep_timer;      /* timeouts, heartbeats */
  uv_timer_t shutdown_timer;
  tls_ctx_t *tls;
  list_node_t conns;
  list_node_t pending;
  list_node_t idle;            /* idle keep-alive conns, oldest first: evicted at the cap */
  size_t n_conns[CONN_KIND__COUNT];
  size_t n_total;
  size_t n_closing;            /* closed, waiting for their close callback */
  size_t n_refusing;           /* CONN_F_REFUSED and not closed yet (capped: REFUSING_MAX) */
  size_t max_conns;
  uint64_t next_conn_id;
  int port;
  int shutting_down;
  void (*shutdown_cb)(server_t *, void *);
  void *shutdown_arg;
  int closing_handles;         /* server_close in progress */
  char read_buf[65536];        /* shared read buffer: reads are processed synchronously */
  /* id → conn lookup: open addressing over ids (only WS/SSE conns are registered) */
  conn_t **by_id;
  size_t by_id_cap, by_id_len;
};

/* conn.c */
conn_t *conn__new(server_t *s);
void conn__hold(conn_t *c);
void conn__release(conn_t *c);
/* Queue bytes (encrypted first on TLS).  Never fails for lack of room: callers
 * that stream (WS, SSE) check conn__queued() against the limit first. */
void conn__send(conn_t *c, const void *p, size_t n);
void conn__sendv(conn_t *c, const uv_buf_t *bufs, size_t nbufs);
size_t conn__queued(const conn_t *c);
/* Close now: stop reading, drop unsent bytes, uv_close.  Idempotent. */
void conn__close(conn_t *c);
/* Close once everything queued has been written (with CONN_F_LINGER set:
 * conn__drain() then).  A peer that takes nothing for the sweep's grace period
 * (server.c) is cut. */
void conn__close_after_flush(conn_t *c);
/* Everything sent: FIN now, drop input until the peer's EOF (CONN_DRAIN_MS at
 * most), then close.  For a peer whose input was left unread (reads stopped by
 * backpressure, a refused client's request): closing at once would send a
 * reset, which can destroy the last bytes (a 503, a close frame) before the
 * peer reads them. */
void conn__drain(conn_t *c);
void conn__read_start(conn_t *c);
void conn__read_stop(conn_t *c);
/* Called by the flush prepare handle for every pending conn. */
void conn__flush(conn_t *c);
/* Dispatch plaintext bytes to the protocol of the conn's kind. */
void conn__on_plain(conn_t *c, const char *p, size_t n);
void conn__set_kind(conn_t *c, conn_kind_t kind);
void server__register_id(server_t *s, conn_t *c);
void server__unregister_id(server_t *s, conn_t *c);
/* An HTTP conn enters (or leaves) keep-alive idleness between requests: the
 * oldest idle one is closed to make room at the connection cap. */
void server__idle_enter(server_t *s, conn_t *c);
void server__idle_leave(conn_t *c);

/* http.c */
http_state_t *http__state_new(conn_t *c);
void http__state_free(http_state_t *h);
void http__on_bytes(conn_t *c, const char *p, size_t n);
/* Timeout check from the sweep: returns 1 if the conn was closed. */
int http__sweep(conn_t *c, uint64_t now_ms);
/* Server shutdown: close if idle, else no keep-alive after the current answer. */
void http__shutdown(conn_t *c);
void http__on_conn_closed(conn_t *c);
/* Status line and standard headers (no final CRLF).  clen: ≥0 Content-Length,
 * -1 chunked, -2 none (101). */
void http__build_head(http_req_t *r, buf_t *b, int status, const char *ctype, long long clen);
/* The whole answer to a connection refused at the cap: 503 UNAVAILABLE with
 * Retry-After and Connection: close, in the JSON envelope (a few hundred bytes). */
void http__format_refusal(buf_t *b, int retry_after_s);
/* Metrics and the access line for a request answered outside http_respond(). */
void http__account_status(http_req_t *r, int status);
/* Hand the connection from HTTP to another protocol (ws_upgrade, sse_start;
 * their head is already queued).  `begin` runs at once (switch kind, create
 * state); once the handler has returned, the request and the HTTP state are
 * freed and `then` gets the bytes received past the request. */
void http__handover(http_req_t *r, void (*begin)(conn_t *c), void (*then)(conn_t *c, const char *rest, size_t n));

/* ws.c */
ws_state_t *ws__state_new(conn_t *c);
void ws__state_free(ws_state_t *w);
void ws__on_bytes(conn_t *c, const char *p, size_t n);
int ws__sweep(conn_t *c, uint64_t now_ms);
/* Free the shared frame encoder (server_close). */
void ws__encoder_free(void);

/* sse.c */
sse_state_t *sse__state_new(conn_t *c);
void sse__state_free(sse_state_t *s);
int sse__sweep(conn_t *c, uint64_t now_ms);

#endif
