/* tests/unit/test_ws.c — net/ws.c (WebSocket over a real in-process server, RFC
 * 6455 via wslay; SPEC §6 close codes and limits).
 *
 * The loop runs on its own thread (net_harness.h); the test thread is a raw
 * WebSocket client over a blocking socket: it builds masked frames by hand and
 * parses the server's.  Code that must run on the loop (ws_send_text, ws_close
 * from outside a callback) goes through on_loop().  Each test closes every
 * handle and asserts uv_loop_close() == 0 (STYLE §10).
 */
#include <criterion/criterion.h>

#include "net/net_int.h" /* conn_t's `out`: the send buffer shrinks after a burst */
#include "util/err.h"

#include "net_harness.h" /* server on its own loop thread, blocking client */

/* ---- server side ---- */

static uint64_t ws_id;          /* id of the last opened WebSocket */
static int opens, stream_closes, burst_fail_at = -1;
static char open_user[64];

static void t_on_request(http_req_t *r) {
  if (strcmp(http_req_path(r), "/ws") == 0) {
    ws_upgrade(r, "u1");
    return;
  }
  http_respond(r, 200, "text/plain", "plain", 5);
}

static int send_welcome; /* set before srv_start() */
static void t_ws_open(conn_t *c) {
  opens++;
  if (send_welcome) cr_expect_eq(ws_send_text(c, "welcome", 7), 0);
  ws_id = conn_id(c);
  snprintf(open_user, sizeof(open_user), "%s", conn_user_id(c));
}

static void t_ws_text(conn_t *c, const char *p, size_t n) {
  if (n == 9 && memcmp(p, "close1001", 9) == 0) {
    ws_close(c, 1001, "bye");
    return;
  }
  int count, size;
  char cmd[32];
  snprintf(cmd, sizeof(cmd), "%.*s", (int)(n < 31 ? n : 31), n ? p : "");
  if (sscanf(cmd, "burst:%d:%d", &count, &size) == 2) {
    char *m = malloc((size_t)size);
    memset(m, 'm', (size_t)size);
    for (int i = 0; i < count; i++)
      if (ws_send_text(c, m, (size_t)size) != 0) {
        burst_fail_at = i;
        break;
      }
    free(m);
    return;
  }
  ws_send_text(c, p, n);
}

static void t_stream_close(conn_t *c) { stream_closes++; }

static const net_callbacks_t ws_cb = {
    .on_request = t_on_request, .ws_on_open = t_ws_open, .ws_on_text = t_ws_text, .on_stream_close = t_stream_close};

static void start_ws(void) {
  srv_config();
  srv_start(&ws_cb);
}

static int ws_gone(void) { return server_conn_lookup(srv, ws_id) == NULL && server_conn_count(srv, CONN_KIND_WS) == 0; }

/* ---- client side ---- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define UPGRADE(extra)                                                                                     \
  "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " KEY    \
  "\r\nSec-WebSocket-Version: 13\r\n" extra "\r\n"

/* One masked (or not) frame. */
static size_t frame(uint8_t *out, int fin, int op, const void *p, size_t n, int masked) {
  size_t o = 0;
  out[o++] = (uint8_t)((fin ? 0x80 : 0) | op);
  uint8_t m = masked ? 0x80 : 0;
  if (n < 126) {
    out[o++] = (uint8_t)(m | n);
  } else if (n < 65536) {
    out[o++] = m | 126;
    out[o++] = (uint8_t)(n >> 8);
    out[o++] = (uint8_t)n;
  } else {
    out[o++] = m | 127;
    for (int i = 7; i >= 0; i--) out[o++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) {
    memcpy(out + o, key, 4);
    o += 4;
  }
  for (size_t i = 0; i < n; i++) out[o + i] = ((const uint8_t *)p)[i] ^ (masked ? key[i % 4] : 0);
  return o + n;
}

static void ws_send(cli_t *c, int fin, int op, const void *p, size_t n) {
  uint8_t *b = malloc(n + 14);
  size_t len = frame(b, fin, op, p, n, 1);
  cli_send(c, b, len);
  free(b);
}
static void ws_text(cli_t *c, const char *s) { ws_send(c, 1, 1, s, strlen(s)); }

typedef struct wsf {
  int fin, op;
  uint8_t *p; /* NUL-terminated */
  size_t n;
} wsf_t;

/* Read one server frame; 0 when the connection closed first. */
static int ws_read(cli_t *c, wsf_t *f) {
  if (!cli_need(c, 2)) return 0;
  uint8_t *h = (uint8_t *)c->in;
  cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
  size_t hl = 2;
  uint64_t n = h[1] & 0x7f;
  if (n == 126) hl = 4;
  else if (n == 127) hl = 10;
  if (!cli_need(c, hl)) return 0;
  h = (uint8_t *)c->in;
  if (n == 126) n = ((uint64_t)h[2] << 8) | h[3];
  else if (n == 127) {
    n = 0;
    for (int i = 0; i < 8; i++) n = (n << 8) | h[2 + i];
  }
  if (!cli_need(c, hl + n)) return 0;
  h = (uint8_t *)c->in;
  f->fin = h[0] >> 7;
  f->op = h[0] & 0x0f;
  f->n = n;
  f->p = malloc(n + 1);
  memcpy(f->p, h + hl, n);
  f->p[n] = 0;
  cli_consume(c, hl + n);
  return 1;
}

/* Expect a whole text message equal to want. */
static void expect_text(cli_t *c, const char *want, size_t n) {
  wsf_t f;
  cr_assert(ws_read(c, &f), "connection closed, expected a text frame");
  cr_expect_eq(f.op, 1, "opcode %d", f.op);
  cr_expect(f.fin);
  cr_expect_eq(f.n, n);
  cr_expect(f.n == n && memcmp(f.p, want, n) == 0, "payload differs");
  free(f.p);
}

/* Expect a close frame with code (and reason when not NULL), then the TCP close. */
static void expect_close(cli_t *c, int code, const char *reason) {
  wsf_t f;
  cr_assert(ws_read(c, &f), "connection closed without a close frame");
  cr_expect_eq(f.op, 8, "opcode %d, expected close", f.op);
  cr_assert_geq(f.n, 2);
  cr_expect_eq((f.p[0] << 8) | f.p[1], code, "close code %d", (f.p[0] << 8) | f.p[1]);
  if (reason) cr_expect_str_eq((char *)f.p + 2, reason);
  free(f.p);
  cr_expect(cli_wait_closed(c), "TCP closed after the close frame");
}

static cli_t *ws_open(const char *upgrade) {
  cli_t *c = cli_open();
  cli_sends(c, upgrade);
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_assert_eq(r->status, 101, "%s", r->head);
  resp_free(r);
  return c;
}

/* ---- handshake ---- */

Test(ws, handshake, .timeout = 10) {
  start_ws();
  cli_t *c = cli_open();
  cli_sends(c, UPGRADE(""));
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  char v[128];
  cr_expect_eq(r->status, 101);
  cr_expect(resp_header(r, "upgrade", v, sizeof(v)) && strcasecmp(v, "websocket") == 0);
  cr_expect(resp_header(r, "connection", v, sizeof(v)) && strcasecmp(v, "Upgrade") == 0);
  cr_expect(resp_header(r, "sec-websocket-accept", v, sizeof(v)));
  cr_expect_str_eq(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 §1.3 sample");
  cr_expect_not(resp_has(r, "sec-websocket-protocol"), "no subprotocol unless offered");
  cr_expect_not(resp_has(r, "content-length"));
  cr_expect(resp_has(r, "x-request-id"));
  resp_free(r);
  ws_text(c, "hi");
  expect_text(c, "hi", 2);
  cr_expect_eq(opens, 1);
  cr_expect_str_eq(open_user, "u1");
  cr_expect_eq(server_conn_count(srv, CONN_KIND_WS), 1);
  cr_expect_eq(server_conn_count(srv, CONN_KIND_HTTP), 0);
  cli_close(c);
  cr_expect(wait_for(ws_gone), "conn unregistered after the client dropped");
  cr_expect_eq(stream_closes, 1);
  /* the subprotocol is echoed when offered (SPEC §6: jwt-auth only) */
  c = cli_open();
  cli_sends(c, UPGRADE("Sec-WebSocket-Protocol: chat, jwt-auth\r\n"));
  r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 101);
  cr_expect(resp_header(r, "sec-websocket-protocol", v, sizeof(v)));
  cr_expect_str_eq(v, "jwt-auth");
  resp_free(r);
  cli_close(c);
  srv_stop();
}

Test(ws, bad_handshakes, .timeout = 10) {
  start_ws();
  char v[64];
  resp_t *r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 426);
  cr_expect(resp_header(r, "sec-websocket-version", v, sizeof(v)) && strcmp(v, "13") == 0);
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "missing key");
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "short key");
  resp_free(r);
  r = roundtrip("GET /ws HTTP/1.1\r\nHost: t\r\n\r\n");
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 400, "not an upgrade");
  resp_free(r);
  cr_expect_eq(opens, 0);
  srv_stop();
}

/* ---- messages ---- */

/* ws_on_open runs before the handler has returned: a welcome sent there must
 * follow the 101 head, and a frame that came with the handshake is still read. */
Test(ws, welcome_from_ws_on_open, .timeout = 10) {
  send_welcome = 1;
  start_ws();
  cli_t *c = cli_open();
  uint8_t buf[512];
  size_t hl = strlen(UPGRADE(""));
  memcpy(buf, UPGRADE(""), hl);
  size_t n = frame(buf + hl, 1, 1, "early", 5, 1);
  cli_send(c, buf, hl + n);
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_expect_eq(r->status, 101);
  resp_free(r);
  expect_text(c, "welcome", 7);
  expect_text(c, "early", 5);
  cli_close(c);
  srv_stop();
}



Test(ws, text_echo_all_length_encodings, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  size_t sizes[] = {0, 1, 125, 126, 65535, 65536};
  char *m = malloc(65536);
  for (size_t i = 0; i < 65536; i++) m[i] = (char)('a' + i % 26);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    ws_send(c, 1, 1, m, sizes[i]);
    expect_text(c, m, sizes[i]);
  }
  free(m);
  cli_close(c);
  srv_stop();
}

Test(ws, ping_gets_pong, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 9, "abc", 3);
  wsf_t f;
  cr_assert(ws_read(c, &f));
  cr_expect_eq(f.op, 10);
  cr_expect_str_eq((char *)f.p, "abc");
  free(f.p);
  cli_close(c);
  srv_stop();
}

Test(ws, fragmented_message_across_reads, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 0, 1, "Hel", 3);
  usleep(20000);
  ws_send(c, 1, 9, "p", 1); /* a control frame between fragments */
  usleep(20000);
  ws_send(c, 0, 0, "lo, ", 4);
  usleep(20000);
  /* the last fragment with its header split over two writes */
  uint8_t b[32];
  size_t n = frame(b, 1, 0, "world", 5, 1);
  cli_send(c, b, 1);
  usleep(20000);
  cli_send(c, b + 1, 3);
  usleep(20000);
  cli_send(c, b + 4, n - 4);
  wsf_t f;
  cr_assert(ws_read(c, &f));
  cr_expect_eq(f.op, 10, "pong for the interleaved ping first");
  free(f.p);
  expect_text(c, "Hello, world", 12);
  /* and the connection keeps working */
  ws_text(c, "again");
  expect_text(c, "again", 5);
  cli_close(c);
  srv_stop();
}

Test(ws, many_messages_in_one_write, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  uint8_t b[4096];
  size_t o = 0;
  char msg[16];
  for (int i = 0; i < 50; i++) {
    int n = snprintf(msg, sizeof(msg), "m%d", i);
    o += frame(b + o, 1, 1, msg, (size_t)n, 1);
  }
  cli_send(c, b, o);
  for (int i = 0; i < 50; i++) {
    int n = snprintf(msg, sizeof(msg), "m%d", i);
    expect_text(c, msg, (size_t)n);
  }
  cli_close(c);
  srv_stop();
}

/* ---- close codes (SPEC §6) ---- */

Test(ws, invalid_utf8_closes_1007, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 1, "ok\xff\xfe", 4);
  expect_close(c, 1007, NULL);
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  srv_stop();
}

Test(ws, binary_closes_1003, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 2, "\x01\x02", 2);
  expect_close(c, 1003, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, unmasked_frame_closes_1002, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  uint8_t b[16];
  size_t n = frame(b, 1, 1, "nomask", 6, 0);
  cli_send(c, b, n);
  expect_close(c, 1002, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, message_over_max_ws_frame_closes_1009, .timeout = 10) {
  srv_config();
  cfg.max_ws_frame = 1000;
  srv_start(&ws_cb);
  char m[1001];
  memset(m, 'x', sizeof(m));
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 1, m, 1000); /* = limit */
  expect_text(c, m, 1000);
  ws_send(c, 1, 1, m, 1001); /* limit + 1 */
  expect_close(c, 1009, NULL);
  cli_close(c);
  /* the limit is on the message: fragments that add up past it */
  c = ws_open(UPGRADE(""));
  ws_send(c, 0, 1, m, 600);
  ws_send(c, 1, 0, m, 600);
  expect_close(c, 1009, NULL);
  cli_close(c);
  srv_stop();
}

Test(ws, client_close_is_answered, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_send(c, 1, 8, "\x03\xe8" "done", 6);
  expect_close(c, 1000, NULL);
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(ws, ws_close_1001_from_handler, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "close1001");
  expect_close(c, 1001, "bye");
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  srv_stop();
}

static void close_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, ws_id);
  cr_assert_not_null(c);
  ws_close(c, 1001, "server shutting down");
}

Test(ws, ws_close_1001_from_outside, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "x");
  expect_text(c, "x", 1);
  on_loop(close_job, NULL);
  expect_close(c, 1001, "server shutting down");
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

static int shutdown_done;
static void on_shutdown_done(server_t *s, void *arg) { shutdown_done++; }
static void shutdown_job(void *arg) { server_shutdown(srv, 5.0, on_shutdown_done, NULL); }
static int is_shutdown_done(void) { return shutdown_done == 1; }

Test(ws, server_shutdown_sends_1001, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  cli_t *idle = cli_open(); /* an idle HTTP keep-alive connection */
  on_loop(shutdown_job, NULL);
  expect_close(c, 1001, "server shutting down");
  cr_expect(cli_wait_closed(idle), "idle HTTP connection closed at shutdown");
  cr_expect(wait_for(is_shutdown_done), "done_cb once every connection is gone, before the grace");
  cli_close(c);
  cli_close(idle);
  srv_stop();
}

Test(ws, ping_and_idle_timeout, .timeout = 10) {
  srv_config();
  cfg.ws_ping_interval = 0.05;
  cfg.ws_idle_timeout = 0.3;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  int pings = 0;
  wsf_t f;
  for (;;) {
    cr_assert(ws_read(c, &f), "closed without a close frame");
    if (f.op == 9) {
      pings++;
      free(f.p);
      continue;
    }
    cr_expect_eq(f.op, 8);
    cr_expect_eq((f.p[0] << 8) | f.p[1], 1000);
    free(f.p);
    break;
  }
  cr_expect_geq(pings, 1, "server pings before the idle close");
  cr_expect(cli_wait_closed(c));
  cli_close(c);
  srv_stop();
}

/* ---- send queue bound (SPEC §6: slow reader closed with 1013) ---- */

static int send_rc;
static void send_big_job(void *arg) {
  static char m[16384];
  memset(m, 'q', sizeof(m));
  conn_t *c = server_conn_lookup(srv, ws_id);
  send_rc = c ? ws_send_text(c, m, sizeof(m)) : 1;
}

Test(ws, send_queue_bound_1013_when_client_never_reads, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 64 * 1024;
  srv_start(&ws_cb);
  /* Default socket buffers: a tiny receive window would make the final read
   * trickle through TCP's persist timer; the loop below fills them anyway. */
  cli_t *c = cli_open();
  cli_sends(c, UPGRADE(""));
  resp_t *r = cli_response(c, 0);
  cr_assert_not_null(r);
  cr_assert_eq(r->status, 101);
  resp_free(r);
  /* the server keeps sending, one message per loop turn; the client reads nothing */
  int i;
  for (i = 0; i < 5000; i++) {
    on_loop(send_big_job, NULL);
    if (send_rc != 0) break;
  }
  cr_assert_eq(send_rc, AGD_EUNAVAILABLE, "ws_send_text refused after %d messages", i);
  /* Issue 13, defect 11: the client that finally reads gets everything queued
   * and then a close frame with 1013, never a bare reset (1006). */
  wsf_t f = {0};
  int code = -1, frames = 0;
  while (ws_read(c, &f)) {
    frames++;
    if (f.op == 8) code = f.n >= 2 ? (f.p[0] << 8) | f.p[1] : 0;
    free(f.p);
    if (code >= 0) break;
    cr_assert_eq(f.op, 1, "frame %d: text until the close", frames);
  }
  cr_expect_eq(code, 1013, "close frame after %d frames: code %d (-1: none, the connection was cut)", frames, code);
  cli_close(c); /* the server drains until this EOF */
  cr_expect(wait_for(ws_gone), "the slow reader's conn is closed and unregistered");
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(ws, send_queue_bound_outside_recv_is_exact, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  /* burst from outside any callback: 16 KiB > limit on the first message */
  on_loop(send_big_job, NULL);
  cr_expect_eq(send_rc, AGD_EUNAVAILABLE);
  cr_expect(wait_for(ws_gone));
  cli_close(c);
  srv_stop();
}

/* A handler that answers one incoming message with many (a replay, a resume)
 * sends from inside ws_on_text: those messages wait in wslay's queue, which
 * ws_send_text() does not count, so the bound is never hit and memory grows
 * with the burst.  Expected: a send fails (1013) once ~4 KiB are queued. */
Test(ws, burst_inside_on_text_respects_send_queue_bound, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&ws_cb);
  cli_t *c = ws_open(UPGRADE(""));
  ws_text(c, "burst:100:1000");
  /* the burst is answered by the time its first message arrives */
  wsf_t f = {0};
  if (ws_read(c, &f)) free(f.p);
  cr_expect(burst_fail_at >= 0 && burst_fail_at <= 5,
            "100 x 1000 bytes queued against a 4096-byte bound; first refused send: %d", burst_fail_at);
  cli_close(c);
  srv_stop();
}

/* ---- send buffer: a burst's storage is given back once it drains ---- */

static void send_burst_job(void *arg) {
  static char m[3000];
  memset(m, 'b', sizeof(m));
  conn_t *c = server_conn_lookup(srv, ws_id);
  send_rc = 0;
  for (int i = 0; i < 4 && send_rc == 0; i++) send_rc = c ? ws_send_text(c, m, sizeof(m)) : 1;
}

static size_t out_cap_seen = SIZE_MAX;
static int out_drained_and_small(void) {
  conn_t *c = server_conn_lookup(srv, ws_id);
  if (!c || c->out.len != 0 || c->inflight != 0) return 0;
  out_cap_seen = c->out._cap;
  return 1;
}

Test(ws, send_buffer_shrinks_after_a_burst_drains, .timeout = 10) {
  start_ws();
  cli_t *c = ws_open(UPGRADE(""));
  /* 12 KiB queued in one loop turn grows the conn's `out` past 12 KiB */
  on_loop(send_burst_job, NULL);
  cr_assert_eq(send_rc, 0);
  static char want[3000];
  memset(want, 'b', sizeof(want));
  for (int i = 0; i < 4; i++) expect_text(c, want, sizeof(want));
  cr_assert(wait_for(out_drained_and_small), "everything written");
  cr_expect_leq(out_cap_seen, 1024, "the drained send buffer keeps %zu bytes of storage", out_cap_seen);
  /* and the socket still works */
  ws_text(c, "after");
  expect_text(c, "after", 5);
  cli_close(c);
  cr_expect(wait_for(ws_gone));
  srv_stop();
}
