/* net/ws.c — WebSocket connections (RFC 6455 via wslay; SPEC §6).
 *
 * Memory: an idle WebSocket holds only its conn_t and a small ws_state_t.  The
 * wslay event context (≈9 KB) exists only while a message is in flight: it is
 * created when bytes arrive or a message is queued, and freed as soon as the
 * input stands at a frame boundary with no fragmented message open and nothing
 * left to send.  A tiny scanner follows frame headers to know where the
 * boundaries are; wslay still does all parsing, unmasking and validation.
 * Loop thread only.
 */
#include <assert.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "net/net_int.h"
#include "util/err.h"
#include "util/log.h"
#include "util/utf8.h"

struct ws_state {
  wslay_event_context_ptr ctx; /* NULL while no message is in flight */
  const uint8_t *feed_p;       /* bytes offered to wslay's recv callback */
  size_t feed_n;
  uint64_t last_ping_ms;       /* uv_now() when we last sent a PING */
  uint64_t scan_left;          /* payload bytes left in the frame being received */
  uint8_t hdr[14];             /* frame header being received */
  uint8_t hdr_have, hdr_need;
  uint8_t frag_open;           /* a fragmented data message is open */
  uint8_t closing;             /* a close frame was queued */
  uint8_t in_recv;             /* inside wslay_event_recv() */
};

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- wslay callbacks ---- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
  conn_t *c = user;
  ws_state_t *w = c->ws;
  if (w->feed_n == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < w->feed_n ? len : w->feed_n;
  memcpy(buf, w->feed_p, n);
  w->feed_p += n;
  w->feed_n -= n;
  return (ssize_t)n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user) {
  conn_t *c = user;
  conn__send(c, data, len); /* limits are checked before a message is queued */
  return (ssize_t)len;
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  conn_t *c = user;
  if (c->ws->closing) return;
  switch (arg->opcode) {
  case WSLAY_TEXT_FRAME:
    if (!utf8_valid((const char *)arg->msg, arg->msg_length)) {
      /* RFC 6455 §8.1: text must be UTF-8; wslay leaves that to us. */
      wslay_event_queue_close(ctx, 1007, (const uint8_t *)"invalid UTF-8", 13);
      c->ws->closing = 1;
      return;
    }
    if (c->srv->cb.ws_on_text) c->srv->cb.ws_on_text(c, (const char *)arg->msg, arg->msg_length);
    break;
  case WSLAY_BINARY_FRAME:
    wslay_event_queue_close(ctx, 1003, (const uint8_t *)"binary messages are not supported", 33);
    c->ws->closing = 1;
    break;
  default: break; /* ping is answered by wslay, pong and close need nothing here */
  }
}

static const struct wslay_event_callbacks wslay_callbacks = {
    .recv_callback = on_wslay_recv,
    .send_callback = on_wslay_send,
    .on_msg_recv_callback = on_wslay_msg,
};

static void ws__ensure_ctx(conn_t *c) {
  ws_state_t *w = c->ws;
  if (w->ctx) return;
  if (wslay_event_context_server_init(&w->ctx, &wslay_callbacks, c) != 0) abort();
  /* SPEC §6: frames (messages) over the limit close with 1009, done by wslay. */
  wslay_event_config_set_max_recv_msg_length(w->ctx, c->srv->cfg->max_ws_frame);
}

static int ws__at_boundary(const ws_state_t *w) { return w->hdr_have == 0 && w->scan_left == 0 && !w->frag_open; }

/* Free the context when nothing is in flight (see top of file).  On the data
 * path it stays while the socket is busy (a chatty client would otherwise pay
 * a 9 KB allocation per message); the sweep frees it once the socket has been
 * quiet for WS_CTX_LINGER_MS. */
#define WS_CTX_LINGER_MS 500
static void ws__maybe_release_ctx(conn_t *c) {
  ws_state_t *w = c->ws;
  if (!w || !w->ctx || w->in_recv || w->closing) return;
  if (uv_now(c->srv->loop) - c->last_rx_ms < WS_CTX_LINGER_MS) return;
  if (!ws__at_boundary(w)) return;
  if (wslay_event_get_queued_msg_count(w->ctx) || wslay_event_want_write(w->ctx)) return;
  wslay_event_context_free(w->ctx);
  w->ctx = NULL;
}

/* Move queued frames into the conn's send queue; close once a close frame went out. */
static void ws__send_pending(conn_t *c) {
  ws_state_t *w = c->ws;
  if (!w->ctx || (c->flags & CONN_F_CLOSING)) return;
  if (wslay_event_send(w->ctx) != 0) {
    conn__close(c);
    return;
  }
  if (wslay_event_get_close_sent(w->ctx) || !wslay_event_want_read(w->ctx)) {
    w->closing = 1;
    conn__close_after_flush(c);
  }
}

/* Follow frame boundaries (header sizes per RFC 6455 §5.2) without parsing
 * payloads.  Returns 1 when a control frame is fragmented or longer than 125
 * bytes (§5.5): wslay fails such input without queueing a close, so the caller
 * answers 1002 itself. */
static int ws__scan(ws_state_t *w, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (w->scan_left > 0) {
      size_t take = n < w->scan_left ? n : (size_t)w->scan_left;
      w->scan_left -= take;
      p += take;
      n -= take;
      continue;
    }
    w->hdr[w->hdr_have++] = *p++;
    n--;
    if (w->hdr_have == 2) {
      uint8_t l7 = w->hdr[1] & 0x7f;
      w->hdr_need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((w->hdr[1] & 0x80) ? 4 : 0));
    }
    if (w->hdr_have >= 2 && w->hdr_have == w->hdr_need) {
      uint8_t l7 = w->hdr[1] & 0x7f;
      uint64_t len = l7;
      if (l7 == 126) len = ((uint64_t)w->hdr[2] << 8) | w->hdr[3];
      else if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | w->hdr[2 + i];
      }
      uint8_t op = w->hdr[0] & 0x0f, fin = w->hdr[0] & 0x80;
      if (op < 0x8) w->frag_open = !fin; /* data frames (continuation, text, binary) */
      else if (!fin || len > 125) return 1;
      w->scan_left = len;
      w->hdr_have = 0;
      w->hdr_need = 0;
    }
  }
  return 0;
}

void ws__on_bytes(conn_t *c, const char *p, size_t n) {
  ws_state_t *w = c->ws;
  if (!w || w->closing) return;
  int bad_control = ws__scan(w, (const uint8_t *)p, n);
  ws__ensure_ctx(c);
  if (bad_control) {
    ws_close(c, 1002, "protocol error: bad control frame");
    return;
  }
  w->feed_p = (const uint8_t *)p;
  w->feed_n = n;
  w->in_recv = 1;
  conn__hold(c);
  int rc = wslay_event_recv(w->ctx);
  w->in_recv = 0;
  w->feed_n = 0;
  if (rc != 0) log_debug("conn %llu: wslay_event_recv: %d", (unsigned long long)c->id, rc);
  if (rc != 0 && rc != WSLAY_ERR_NOMEM) {
    /* A frame wslay refused outright (a fragmented or oversized control frame
     * surfaces as a callback failure): answer with close 1002 before hanging
     * up (RFC 6455 §7.4.1). */
    if (!w->closing && wslay_event_queue_close(w->ctx, 1002, (const uint8_t *)"protocol error", 14) == 0) {
      w->closing = 1;
      wslay_event_send(w->ctx);
      conn__close_after_flush(c);
    } else {
      conn__close(c);
    }
  } else if (rc != 0) {
    conn__close(c);
  } else {
    ws__send_pending(c);
    ws__maybe_release_ctx(c);
  }
  conn__release(c);
}

ws_state_t *ws__state_new(conn_t *c) {
  ws_state_t *w = calloc(1, sizeof(*w));
  if (!w) abort();
  w->last_ping_ms = uv_now(c->srv->loop);
  return w;
}

void ws__state_free(ws_state_t *w) {
  if (!w) return;
  if (w->ctx) wslay_event_context_free(w->ctx);
  free(w);
}

static int ws__queue(conn_t *c, uint8_t opcode, const void *p, size_t n) {
  ws_state_t *w = c->ws;
  ws__ensure_ctx(c);
  struct wslay_event_msg m = {.opcode = opcode, .msg = p, .msg_length = n};
  if (wslay_event_queue_msg(w->ctx, &m) != 0) return AGD_EINTERNAL;
  if (!w->in_recv) {
    ws__send_pending(c);
    ws__maybe_release_ctx(c);
  }
  return 0;
}

/* ---- encode once, send to many (STYLE §5) ----
 * One wslay frame context (frame API, not the event API) encodes server frames
 * into a buffer; its send callback takes every byte, so it never holds a
 * partial frame between calls and can serve every connection of the loop. */

static wslay_frame_context_ptr enc_ctx;
static buf_t *enc_out;

static ssize_t on_enc_send(const uint8_t *data, size_t len, int flags, void *user) {
  if (buf_append(enc_out, data, len) != 0) return -1;
  return (ssize_t)len;
}

static const struct wslay_frame_callbacks enc_callbacks = {.send_callback = on_enc_send};

int ws_frame_text(buf_t *out, const char *p, size_t n) {
  if (!enc_ctx && wslay_frame_context_init(&enc_ctx, &enc_callbacks, NULL) != 0) abort();
  enc_out = out;
  struct wslay_frame_iocb iocb = {
      .fin = 1, .opcode = WSLAY_TEXT_FRAME, .payload_length = n, .mask = 0, .data = (const uint8_t *)p, .data_length = n};
  ssize_t sent = wslay_frame_send(enc_ctx, &iocb);
  enc_out = NULL;
  return sent == (ssize_t)n ? 0 : AGD_EINTERNAL;
}

void ws__encoder_free(void) {
  if (enc_ctx) wslay_frame_context_free(enc_ctx);
  enc_ctx = NULL;
}

/* SPEC §6: a slow reader whose queue passes its bound is closed with 1013.
 * Returns 0 when n more bytes fit. */
static int ws__check_bound(conn_t *c, size_t n) {
  /* Count what wslay still holds too (messages queued while a frame is read). */
  size_t queued = conn__queued(c) + (c->ws->ctx ? wslay_event_get_queued_msg_length(c->ws->ctx) : 0);
  if (queued + n <= c->srv->cfg->send_queue_limit) return 0;
  log_info("conn %llu: send queue over %zu bytes, closing (1013)", (unsigned long long)c->id,
           c->srv->cfg->send_queue_limit);
  metrics_add("agentd_slow_consumer_closed_total", NULL, 1);
  ws_close(c, 1013, "send queue full");
  return AGD_EUNAVAILABLE;
}

int ws_send_frame(conn_t *c, const char *frame, size_t n, const char *text, size_t text_n) {
  if (c->kind != CONN_KIND_WS || !c->ws || c->ws->closing || conn_is_closing(c)) return AGD_EUNAVAILABLE;
  if (ws__check_bound(c, n)) return AGD_EUNAVAILABLE;
  ws_state_t *w = c->ws;
  /* wslay holds nothing to send: the frame can go straight out, in order. */
  if (!w->ctx || (!wslay_event_get_queued_msg_count(w->ctx) && !wslay_event_want_write(w->ctx))) {
    conn__send(c, frame, n);
    return 0;
  }
  return ws__queue(c, WSLAY_TEXT_FRAME, text, text_n);
}

int ws_send_text(conn_t *c, const char *p, size_t n) {
  if (c->kind != CONN_KIND_WS || !c->ws || c->ws->closing || conn_is_closing(c)) return AGD_EUNAVAILABLE;
  ws_state_t *w = c->ws;
  if (!w->ctx || (!wslay_event_get_queued_msg_count(w->ctx) && !wslay_event_want_write(w->ctx))) {
    /* Nothing queued in wslay: encode the frame directly, no event context needed. */
    buf_t f;
    buf_init(&f, 0);
    ws_frame_text(&f, p, n);
    int rc = ws_send_frame(c, f.base, f.len, p, n);
    buf_dispose(&f);
    return rc;
  }
  if (ws__check_bound(c, n)) return AGD_EUNAVAILABLE;
  return ws__queue(c, WSLAY_TEXT_FRAME, p, n);
}

void ws_close(conn_t *c, int code, const char *reason) {
  if (conn_is_closing(c)) return;
  if (c->kind != CONN_KIND_WS || !c->ws) {
    conn__close(c);
    return;
  }
  ws_state_t *w = c->ws;
  if (w->closing) return;
  ws__ensure_ctx(c);
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 123) rl = 123; /* control frame payload ≤ 125 bytes */
  wslay_event_queue_close(w->ctx, (uint16_t)code, (const uint8_t *)reason, rl);
  w->closing = 1;
  /* 1013 (SPEC §6, a slow reader over its bound): the close frame goes after
   * the queued bytes, past the bound by its few bytes; the peer's unread input
   * makes a plain close a reset that could destroy it, so the conn lingers
   * (FIN, drain).  The sweep cuts a peer that reads nothing meanwhile. */
  if (code == 1013) c->flags |= CONN_F_LINGER;
  if (w->in_recv) return; /* sent when recv returns */
  if (wslay_event_send(w->ctx) != 0) {
    conn__close(c);
    return;
  }
  conn__close_after_flush(c);
}

int ws__sweep(conn_t *c, uint64_t now_ms) {
  ws_state_t *w = c->ws;
  const config_t *cfg = c->srv->cfg;
  if (!w || w->closing) return 0;
  /* SPEC §6: a socket silent for ws_idle_timeout is closed. */
  if (now_ms - c->last_rx_ms > (uint64_t)(cfg->ws_idle_timeout * 1000)) {
    ws_close(c, 1000, "idle timeout");
    return 1;
  }
  if (now_ms - w->last_ping_ms >= (uint64_t)(cfg->ws_ping_interval * 1000)) {
    w->last_ping_ms = now_ms;
    ws__queue(c, WSLAY_PING, "hb", 2);
  }
  ws__maybe_release_ctx(c);
  return 0;
}

/* ---- handshake ---- */

static int header_has_token(slice_t v, const char *token) {
  size_t tl = strlen(token);
  const char *p = v.p, *end = v.p + v.n;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == ',' || *p == '\t')) p++;
    const char *s = p;
    while (p < end && *p != ',') p++;
    const char *e = p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
  }
  return 0;
}

static void ws__on_begin(conn_t *c) {
  conn__set_kind(c, CONN_KIND_WS);
  c->ws = ws__state_new(c);
  server__register_id(c->srv, c);
  metrics_add("agentd_ws_connections_total", NULL, 1);
  if (c->srv->cb.ws_on_open) c->srv->cb.ws_on_open(c);
}

static void ws__on_rest(conn_t *c, const char *rest, size_t n) {
  if (n > 0 && !(c->flags & CONN_F_CLOSING)) ws__on_bytes(c, rest, n);
}

/* 1 when the client offered `jwt-auth` in Sec-WebSocket-Protocol (SPEC §6). */
static int offers_jwt_auth(http_req_t *r) {
  slice_t v;
  return http_req_header(r, "sec-websocket-protocol", &v) && header_has_token(v, "jwt-auth");
}

int ws_upgrade(http_req_t *r, const char *user_id) {
  slice_t v, key;
  if (http_req_method(r) != HTTP_M_GET || !http_req_header(r, "upgrade", &v) || !header_has_token(v, "websocket")) {
    http_respond_error(r, AGD_EBAD_REQUEST, "expected a WebSocket upgrade (Upgrade: websocket)", NULL);
    return AGD_EBAD_REQUEST;
  }
  if (!http_req_header(r, "sec-websocket-version", &v) || !slice_eq_cstr(v, "13")) {
    http_resp_header(r, "Sec-WebSocket-Version", "13");
    http_respond(r, 426, "application/json",
                 "{\"error\":true,\"error_code\":\"BAD_REQUEST\",\"message\":\"unsupported WebSocket version: use 13\","
                 "\"detail\":\"unsupported WebSocket version: use 13\"}",
                 strlen("{\"error\":true,\"error_code\":\"BAD_REQUEST\",\"message\":\"unsupported WebSocket version: "
                        "use 13\",\"detail\":\"unsupported WebSocket version: use 13\"}"));
    return AGD_EBAD_REQUEST;
  }
  unsigned char raw[32];
  if (!http_req_header(r, "sec-websocket-key", &key) || key.n != 24 ||
      EVP_DecodeBlock(raw, (const unsigned char *)key.p, 24) != 18) {
    http_respond_error(r, AGD_EBAD_REQUEST, "missing or malformed Sec-WebSocket-Key", NULL);
    return AGD_EBAD_REQUEST;
  }
  unsigned char sha[SHA_DIGEST_LENGTH];
  char cat[24 + sizeof(WS_GUID)];
  memcpy(cat, key.p, 24);
  memcpy(cat + 24, WS_GUID, sizeof(WS_GUID) - 1);
  SHA1((const unsigned char *)cat, 24 + sizeof(WS_GUID) - 1, sha);
  char accept[64];
  EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);

  conn_t *c = http_req_conn(r);
  buf_t b;
  buf_init(&b, 0);
  http__build_head(r, &b, 101, NULL, -2);
  buf_appendf(&b, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
  if (offers_jwt_auth(r)) buf_append_str(&b, "Sec-WebSocket-Protocol: jwt-auth\r\n");
  buf_append_str(&b, "\r\n");
  conn__send(c, b.base, b.len);
  buf_dispose(&b);
  conn_set_user_id(c, user_id);
  http__account_status(r, 101);
  http__handover(r, ws__on_begin, ws__on_rest);
  return 0;
}
