/* net/server.c — the listening socket, the per-turn flush, the sweep timer
 * (timeouts and heartbeats), the id → conn registry and graceful shutdown.
 * Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/metrics.h"
#include "net/net_int.h"
#include "util/err.h"
#include "util/log.h"

#define SWEEP_INTERVAL_MS 250
/* Connections refused at the cap that are still open (their 503 written,
 * waiting for the client's EOF): beyond this many a new one is closed at once,
 * unanswered, so refusals can never pile up descriptors. */
#define REFUSING_MAX 16
#define REFUSAL_RETRY_AFTER_S 1

/* ---- idle keep-alive list (oldest first) ---- */

void server__idle_enter(server_t *s, conn_t *c) {
  if (list_linked(&c->idle_node)) list_remove(&c->idle_node);
  list_insert_tail(&s->idle, &c->idle_node);
}

void server__idle_leave(conn_t *c) {
  if (list_linked(&c->idle_node)) list_remove(&c->idle_node);
}

/* Connections that hold a slot: closed ones wait only for their close
 * callback, refused ones are counted (and capped) apart. */
static size_t live_conns(const server_t *s) { return s->n_total - s->n_closing - s->n_refusing; }

/* Over the cap with no idle connection to close: answer 503 at once (one
 * small uv_try_write into an empty socket buffer), send FIN, and drop input
 * until the client closes or CONN_DRAIN_MS pass (conn__drain).  Closing right away
 * would reset the connection whenever the request had already arrived, and a
 * reset can destroy the 503 before the client reads it. */
static void refuse(server_t *s, conn_t *c) {
  metrics_add("agentd_connections_refused_total", NULL, 1);
  if (s->n_refusing >= REFUSING_MAX || s->tls) {
    /* Too many refusals in progress; or a TLS port, where a 503 would cost a
     * handshake: close unanswered. */
    conn__close(c);
    return;
  }
  buf_t b;
  buf_init(&b, 0);
  http__format_refusal(&b, REFUSAL_RETRY_AFTER_S);
  uv_buf_t ub = uv_buf_init(b.base, (unsigned)b.len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
  int whole = n == (int)b.len;
  buf_dispose(&b);
  if (!whole) {
    conn__close(c);
    return;
  }
  c->flags |= CONN_F_REFUSED;
  s->n_refusing++;
  conn__drain(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  server_t *s = listener->data;
  if (status < 0) {
    log_warn("accept: %s", uv_strerror(status));
    return;
  }
  conn_t *c = conn__new(s);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn__close(c);
    return;
  }
  if (s->shutting_down) {
    conn__close(c);
    return;
  }
  if (live_conns(s) > s->max_conns) {
    /* At the cap: make room by closing the connection idle the longest
     * between requests (a keep-alive client reconnects), else refuse. */
    if (!list_empty(&s->idle)) {
      conn_t *old = container_of(s->idle.next, conn_t, idle_node);
      log_info("conn %llu: closed at the connection cap (idle keep-alive)", (unsigned long long)old->id);
      metrics_add("agentd_connections_evicted_total", NULL, 1);
      conn__close(old);
    } else {
      refuse(s, c);
      return;
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->http = http__state_new(c);
  conn__read_start(c);
}

/* STYLE §6: flush once per loop turn. */
static void on_flush_prepare(uv_prepare_t *h) {
  server_t *s = h->data;
  while (!list_empty(&s->pending)) {
    list_node_t *n = s->pending.next;
    list_remove(n);
    conn_t *c = container_of(n, conn_t, pending_node);
    conn__hold(c);
    conn__flush(c);
    conn__release(c);
  }
}

static void on_sweep(uv_timer_t *t) {
  server_t *s = t->data;
  uint64_t now = uv_now(s->loop);
  double stall_s = s->cfg->ws_idle_timeout < 10 ? s->cfg->ws_idle_timeout : 10;
  list_node_t *n = s->conns.next;
  while (n != &s->conns) {
    conn_t *c = container_of(n, conn_t, all_node);
    n = n->next;
    if (c->flags & CONN_F_CLOSING) continue;
    if (c->flags & CONN_F_DRAINING) {
      /* Sent all, FIN too: the peer had its time to read and close. */
      if (now - c->close_since_ms > CONN_DRAIN_MS) conn__close(c);
      continue;
    }
    if (c->flags & CONN_F_CLOSE_AFTER_FLUSH) {
      /* Closing, but the peer takes nothing of what is left: cut it. */
      if (now - c->close_since_ms > (uint64_t)(stall_s * 1000)) {
        log_info("conn %llu: nothing written for %.0fs while closing, cut", (unsigned long long)c->id, stall_s);
        conn__close(c);
      }
      continue;
    }
    conn__hold(c);
    /* A reader that let its queue sit over the high mark for this long is
     * overloaded: close it (SPEC §6: 1013) rather than hold its bytes.  A
     * WebSocket gets its close frame after the queued bytes (ws_close), and
     * the grace above to read them. */
    if (c->stall_since_ms && now - c->stall_since_ms > (uint64_t)(stall_s * 1000)) {
      log_info("conn %llu: send queue stalled for %.0fs, closing", (unsigned long long)c->id, stall_s);
      metrics_add("agentd_slow_consumer_closed_total", NULL, 1);
      if (c->kind == CONN_KIND_WS) ws_close(c, 1013, "send queue stalled");
      if (!conn_is_closing(c)) conn__close(c); /* not a WebSocket, or its close could not be queued */
    } else {
      switch (c->kind) {
      case CONN_KIND_HTTP: http__sweep(c, now); break;
      case CONN_KIND_WS: ws__sweep(c, now); break;
      case CONN_KIND_SSE: sse__sweep(c, now); break;
      default: break;
      }
    }
    n = c->all_node.next; /* c is alive while held */
    conn__release(c);
  }
}

static double gauge_http(void *arg) { return (double)((server_t *)arg)->n_conns[CONN_KIND_HTTP]; }
static double gauge_ws(void *arg) { return (double)((server_t *)arg)->n_conns[CONN_KIND_WS]; }
static double gauge_sse(void *arg) { return (double)((server_t *)arg)->n_conns[CONN_KIND_SSE]; }

int server_open(server_t **out, uv_loop_t *loop, const config_t *cfg, const net_callbacks_t *cb, char *err,
                size_t err_cap) {
  server_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->loop = loop;
  s->cfg = cfg;
  s->cb = *cb;
  list_init(&s->conns);
  list_init(&s->pending);
  list_init(&s->idle);
  struct rlimit rl;
  s->max_conns = 1000000;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 64)
    s->max_conns = rl.rlim_cur - 64; /* leave descriptors for the database, logs, workers */

  if (cfg->tls_cert && cfg->tls_key) {
    if (tls_ctx_open(&s->tls, cfg->tls_cert, cfg->tls_key, err, err_cap) != 0) {
      free(s);
      return AGD_EBAD_REQUEST;
    }
  }
  struct sockaddr_storage addr;
  int rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
  if (rc != 0) rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
  if (rc != 0) {
    snprintf(err, err_cap, "--host: '%s' is not an IPv4 or IPv6 address", cfg->host);
    tls_ctx_close(s->tls);
    free(s);
    return rc;
  }
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
  if (rc != 0) {
    snprintf(err, err_cap, "--port: cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    tls_ctx_close(s->tls);
    free(s);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                               : ((struct sockaddr_in *)&bound)->sin_port);

  uv_prepare_init(loop, &s->flush_prepare);
  s->flush_prepare.data = s;
  uv_prepare_start(&s->flush_prepare, on_flush_prepare);
  uv_timer_init(loop, &s->sweep_timer);
  s->sweep_timer.data = s;
  uv_timer_start(&s->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
  uv_unref((uv_handle_t *)&s->sweep_timer);
  uv_timer_init(loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;

  metrics_gauge_fn_register("agentd_connections_open", "kind=\"http\"", "Open connections by kind", gauge_http, s);
  metrics_gauge_fn_register("agentd_connections_open", "kind=\"ws\"", "Open connections by kind", gauge_ws, s);
  metrics_gauge_fn_register("agentd_connections_open", "kind=\"sse\"", "Open connections by kind", gauge_sse, s);
  *out = s;
  return 0;
}

int server_port(const server_t *s) { return s->port; }
int server_is_tls(const server_t *s) { return s->tls != NULL; }
size_t server_conn_count(const server_t *s, conn_kind_t kind) { return s->n_conns[kind]; }
const config_t *server_config(const server_t *s) { return s->cfg; }
uv_loop_t *server_loop(const server_t *s) { return s->loop; }

static void on_shutdown_timeout(uv_timer_t *t) {
  server_t *s = t->data;
  /* Grace is over: whatever is left is cut. */
  list_node_t *n = s->conns.next;
  while (n != &s->conns) {
    conn_t *c = container_of(n, conn_t, all_node);
    n = n->next;
    conn__close(c);
  }
  if (s->shutdown_cb) {
    void (*cb)(server_t *, void *) = s->shutdown_cb;
    s->shutdown_cb = NULL;
    cb(s, s->shutdown_arg);
  }
}

static void on_listener_closed(uv_handle_t *h) { (void)h; }

void server_shutdown(server_t *s, double grace_s, void (*done_cb)(server_t *, void *), void *arg) {
  if (s->shutting_down) return;
  s->shutting_down = 1;
  s->shutdown_cb = done_cb;
  s->shutdown_arg = arg;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  list_node_t *n = s->conns.next;
  while (n != &s->conns) {
    conn_t *c = container_of(n, conn_t, all_node);
    conn__hold(c);
    c->flags |= CONN_F_SHUTDOWN;
    switch (c->kind) {
    case CONN_KIND_HTTP: http__shutdown(c); break;
    case CONN_KIND_WS: ws_close(c, 1001, "server shutting down"); break;
    case CONN_KIND_SSE: sse_end(c); break;
    default: break;
    }
    n = c->all_node.next;
    conn__release(c);
  }
  if (s->n_total == 0) {
    s->shutdown_cb = NULL;
    if (done_cb) done_cb(s, arg);
    return;
  }
  uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, (uint64_t)(grace_s * 1000), 0);
}

void server_close(server_t *s) {
  list_node_t *n = s->conns.next;
  while (n != &s->conns) {
    conn_t *c = container_of(n, conn_t, all_node);
    n = n->next;
    conn__close(c);
  }
  if (!s->shutting_down) uv_close((uv_handle_t *)&s->listener, NULL);
  uv_close((uv_handle_t *)&s->flush_prepare, NULL);
  uv_close((uv_handle_t *)&s->sweep_timer, NULL);
  uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
  /* Let close callbacks run so every conn is freed before s. */
  uv_run(s->loop, UV_RUN_NOWAIT);
  while (s->n_total > 0) uv_run(s->loop, UV_RUN_ONCE);
  tls_ctx_close(s->tls);
  ws__encoder_free();
  free(s->by_id);
  free(s);
}

/* ---- id registry: open addressing with linear probing, tombstone-free
 * deletion by backward shift.  Only WS/SSE conns register. */

static size_t id_slot(uint64_t id, size_t cap) {
  uint64_t h = id * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 17) & (cap - 1);
}

static void registry_grow(server_t *s) {
  size_t ncap = s->by_id_cap ? s->by_id_cap * 2 : 1024;
  conn_t **nt = calloc(ncap, sizeof(*nt));
  if (!nt) abort();
  for (size_t i = 0; i < s->by_id_cap; i++) {
    conn_t *c = s->by_id[i];
    if (!c) continue;
    size_t j = id_slot(c->id, ncap);
    while (nt[j]) j = (j + 1) & (ncap - 1);
    nt[j] = c;
  }
  free(s->by_id);
  s->by_id = nt;
  s->by_id_cap = ncap;
}

void server__register_id(server_t *s, conn_t *c) {
  if ((s->by_id_len + 1) * 2 > s->by_id_cap) registry_grow(s);
  size_t j = id_slot(c->id, s->by_id_cap);
  while (s->by_id[j]) {
    if (s->by_id[j] == c) return;
    j = (j + 1) & (s->by_id_cap - 1);
  }
  s->by_id[j] = c;
  s->by_id_len++;
}

void server__unregister_id(server_t *s, conn_t *c) {
  if (!s->by_id_cap) return;
  size_t mask = s->by_id_cap - 1;
  size_t j = id_slot(c->id, s->by_id_cap);
  while (s->by_id[j] && s->by_id[j] != c) j = (j + 1) & mask;
  if (!s->by_id[j]) return;
  s->by_id[j] = NULL;
  s->by_id_len--;
  /* backward-shift the cluster after j */
  size_t k = (j + 1) & mask;
  while (s->by_id[k]) {
    conn_t *m = s->by_id[k];
    size_t home = id_slot(m->id, s->by_id_cap);
    /* m may move to j if j lies cyclically within [home, k) */
    if ((k > j && (home <= j || home > k)) || (k < j && (home <= j && home > k))) {
      s->by_id[j] = m;
      s->by_id[k] = NULL;
      j = k;
    }
    k = (k + 1) & mask;
  }
}

conn_t *server_conn_lookup(server_t *s, uint64_t id) {
  if (!s->by_id_cap) return NULL;
  size_t j = id_slot(id, s->by_id_cap);
  while (s->by_id[j]) {
    if (s->by_id[j]->id == id) {
      conn_t *c = s->by_id[j];
      return (c->flags & CONN_F_CLOSING) ? NULL : c;
    }
    j = (j + 1) & (s->by_id_cap - 1);
  }
  return NULL;
}
