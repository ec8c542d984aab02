/* tests/unit/test_sse.c — net/sse.c: sse_format() byte for byte, and whole
 * streams (sse_start/sse_send/sse_end) over a real in-process server, checked as
 * the exact chunked bytes on the wire (SPEC §4: "id: <seq>\nevent: <type>\ndata:
 * <Event JSON>\n\n").
 *
 * The loop runs on its own thread (net_harness.h); the test thread is the
 * client, and runs code on the loop with on_loop().  Each stream test closes
 * every handle and asserts uv_loop_close() == 0 (STYLE §10).
 */
#include <criterion/criterion.h>

#include "util/buf.h"
#include "util/err.h"

#include "net_harness.h" /* server on its own loop thread, blocking client */

/* ---- sse_format ---------------------------------------------------------- */

static void expect_format(const char *id, const char *event, const char *data, size_t n, const char *want) {
  buf_t b;
  buf_init(&b, 0);
  cr_assert_eq(sse_format(&b, id, event, data, n), 0);
  cr_expect_eq(b.len, strlen(want), "length %zu, want %zu: [%.*s]", b.len, strlen(want), (int)b.len, b.base);
  cr_expect(b.len == strlen(want) && memcmp(b.base, want, b.len) == 0, "got [%.*s] want [%s]", (int)b.len, b.base,
            want);
  buf_dispose(&b);
}
#define FMT(id, ev, data, want) expect_format(id, ev, data, sizeof(data) - 1, want)

Test(sse_format, fields) {
  FMT("42", "agent_started", "{\"a\":1}", "id: 42\nevent: agent_started\ndata: {\"a\":1}\n\n");
  /* NULL id / event are omitted */
  FMT(NULL, "ping", "x", "event: ping\ndata: x\n\n");
  FMT("7", NULL, "x", "id: 7\ndata: x\n\n");
  FMT(NULL, NULL, "x", "data: x\n\n");
}

Test(sse_format, id_or_event_with_newline_is_omitted) {
  FMT("1\n2", "e", "x", "event: e\ndata: x\n\n");
  FMT("1\r", "e", "x", "event: e\ndata: x\n\n");
  FMT("9", "ev\nid: 666", "x", "id: 9\ndata: x\n\n");
  FMT("9", "ev\r", "x", "id: 9\ndata: x\n\n");
}

Test(sse_format, data_lines) {
  FMT(NULL, NULL, "", "data: \n\n");
  /* multi-line data: one data: line per line */
  FMT(NULL, NULL, "a\nb\nc", "data: a\ndata: b\ndata: c\n\n");
  FMT("1", "e", "first\n\nthird", "id: 1\nevent: e\ndata: first\ndata: \ndata: third\n\n");
  /* CRLF is one line break */
  FMT(NULL, NULL, "a\r\nb", "data: a\ndata: b\n\n");
  FMT(NULL, NULL, "a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n");
  /* n bounds the data: bytes past it are not sent (no NUL needed) */
  expect_format(NULL, NULL, "abcdef", 3, "data: abc\n\n");
}

Test(sse_format, buffer) {
  buf_t b;
  buf_init(&b, 0);
  buf_append_str(&b, "X");
  cr_assert_eq(sse_format(&b, "1", NULL, "d", 1), 0);
  cr_expect_str_eq(b.base, "Xid: 1\ndata: d\n\n", "appends to what is there");
  buf_dispose(&b);
  buf_init(&b, 8);
  cr_expect_eq(sse_format(&b, "1", "event", "data", 4), AGD_ETOO_LARGE, "a capped buffer reports the overflow");
  buf_dispose(&b);
}

/* Three defects in how sse_format() splits data into "data:" lines; one fix
 * (see the report) cures all three:
 *  1. The SSE parser (HTML "event stream interpretation") ends a line at CRLF,
 *     LF *or a lone CR*.  Data is split on LF only, so a lone CR reaches the
 *     client as a line break inside a data: line: "x\rid: 999" makes the browser
 *     see an `id:` field (moving Last-Event-ID), "x\revent: evil" an event name.
 *  2. "Data lines split on '\n'" (net.h): "a\n" is the lines "a" and "", so the
 *     client's data is "a\n"; the do/while drops the empty last line, and a
 *     payload ending in a newline (an LLM token "\n") arrives without it.
 *  3. data NULL with n 0 reaches memchr(NULL, '\n', 0): undefined behaviour
 *     (UBSan: "null pointer passed as argument 1"). */
Test(sse_format, data_line_splitting) {
  FMT(NULL, NULL, "a\rb", "data: a\ndata: b\n\n");
  FMT("5", NULL, "x\rid: 999", "id: 5\ndata: x\ndata: id: 999\n\n");
  FMT(NULL, NULL, "a\n", "data: a\ndata: \n\n");
  FMT(NULL, NULL, "\n", "data: \ndata: \n\n");
  expect_format(NULL, NULL, NULL, 0, "data: \n\n");
}

/* ---- streams over a real server ----------------------------------------- */

static uint64_t sse_id;
static int stream_closes, queue_rc = 1;

static void t_on_request(http_req_t *r) {
  const char *path = http_req_path(r);
  if (strcmp(path, "/whole") == 0) {
    /* start, two frames and the end, all inside the handler */
    cr_assert_eq(sse_start(r), 0);
    conn_t *c = http_req_conn(r);
    cr_assert_eq(sse_send(c, "1", "message", "hello", 5), 0);
    cr_assert_eq(sse_send(c, NULL, NULL, "a\nb", 3), 0);
    sse_end(c);
    return;
  }
  if (strcmp(path, "/open") == 0) {
    cr_assert_eq(sse_start(r), 0);
    sse_id = conn_id(http_req_conn(r));
    return;
  }
  http_respond(r, 200, "text/plain", "plain", 5);
}

static void t_stream_close(conn_t *c) { stream_closes++; }

static const net_callbacks_t sse_cb = {.on_request = t_on_request, .on_stream_close = t_stream_close};

static void start_sse(void) {
  srv_config();
  srv_start(&sse_cb);
}

/* Read the response head (returned) and leave the body bytes in c->in. */
static resp_t *read_head(cli_t *c) {
  char *end;
  while (!(end = c->in ? strstr(c->in, "\r\n\r\n") : NULL))
    cr_assert_gt(cli_fill(c), 0, "closed before the head");
  resp_t *r = calloc(1, sizeof(*r));
  size_t hl = (size_t)(end - c->in) + 2;
  memcpy(r->head, c->in, hl);
  sscanf(r->head, "HTTP/1.1 %d", &r->status);
  cli_consume(c, hl + 2);
  return r;
}

static void check_stream_head(const resp_t *r) {
  char v[128];
  cr_expect_eq(r->status, 200);
  cr_expect(resp_header(r, "content-type", v, sizeof(v)));
  cr_expect_str_eq(v, "text/event-stream; charset=utf-8");
  cr_expect(resp_header(r, "transfer-encoding", v, sizeof(v)));
  cr_expect_str_eq(v, "chunked");
  cr_expect(resp_header(r, "cache-control", v, sizeof(v)));
  cr_expect_str_eq(v, "no-cache");
  cr_expect_not(resp_has(r, "content-length"));
  cr_expect(resp_has(r, "x-request-id"));
}

/* Wait until the buffered body is exactly want (or longer: fail). */
static void expect_bytes(cli_t *c, const char *want) {
  size_t n = strlen(want);
  while (c->len < n && cli_fill(c) > 0) {}
  cr_expect_eq(c->len, n, "got %zu bytes [%s], want %zu [%s]", c->len, c->in, n, want);
  cr_expect_str_eq(c->in, want);
  cli_consume(c, c->len);
}

Test(sse, start_send_end_exact_chunked_bytes, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /whole HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_t *r = read_head(c);
  check_stream_head(r);
  resp_free(r);
  cr_expect(cli_wait_closed(c), "sse_end closes the connection");
  cr_expect_str_eq(c->in, "f\r\n: stream open\n\n\r\n"
                          "22\r\nid: 1\nevent: message\ndata: hello\n\n\r\n"
                          "11\r\ndata: a\ndata: b\n\n\r\n"
                          "0\r\n\r\n");
  cli_close(c);
  srv_stop();
}

static int have_stream(void) { return server_conn_lookup(srv, sse_id) != NULL; }
static int stream_gone(void) {
  return server_conn_lookup(srv, sse_id) == NULL && server_conn_count(srv, CONN_KIND_SSE) == 0;
}
static void send_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, sse_id);
  cr_assert_not_null(c);
  queue_rc = sse_send(c, "2", "tick", arg, strlen(arg));
}
static void end_job(void *arg) {
  conn_t *c = server_conn_lookup(srv, sse_id);
  cr_assert_not_null(c);
  sse_end(c);
}

Test(sse, frames_sent_later_from_the_loop, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_t *r = read_head(c);
  check_stream_head(r);
  resp_free(r);
  expect_bytes(c, "f\r\n: stream open\n\n\r\n");
  cr_assert(wait_for(have_stream));
  cr_expect_eq(server_conn_count(srv, CONN_KIND_SSE), 1);
  cr_expect_eq(server_conn_count(srv, CONN_KIND_HTTP), 0);
  on_loop(send_job, "{\"n\":1}");
  cr_expect_eq(queue_rc, 0);
  expect_bytes(c, "21\r\nid: 2\nevent: tick\ndata: {\"n\":1}\n\n\r\n");
  on_loop(end_job, NULL);
  cr_expect(cli_wait_closed(c));
  cr_expect_str_eq(c->in, "0\r\n\r\n");
  cli_close(c);
  cr_expect(wait_for(stream_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(sse, client_leaving_unregisters_the_stream, .timeout = 10) {
  start_sse();
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  cr_assert(wait_for(have_stream));
  cli_close(c);
  cr_expect(wait_for(stream_gone));
  cr_expect_eq(stream_closes, 1);
  srv_stop();
}

Test(sse, heartbeat_comment, .timeout = 10) {
  srv_config();
  cfg.sse_heartbeat = 0.2;
  srv_start(&sse_cb);
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  expect_bytes(c, "f\r\n: stream open\n\n\r\n");
  expect_bytes(c, "d\r\n: heartbeat\n\n\r\n");
  cli_close(c);
  srv_stop();
}

Test(sse, send_queue_bound_ends_the_stream, .timeout = 10) {
  srv_config();
  cfg.send_queue_limit = 4096;
  srv_start(&sse_cb);
  cli_t *c = cli_open();
  cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
  resp_free(read_head(c));
  cr_assert(wait_for(have_stream));
  char *big = malloc(5000);
  memset(big, 'x', 4999);
  big[4999] = 0;
  on_loop(send_job, big);
  free(big);
  cr_expect_eq(queue_rc, AGD_EUNAVAILABLE);
  cr_expect(wait_for(stream_gone));
  cr_expect(cli_wait_closed(c));
  cli_close(c);
  srv_stop();
}
