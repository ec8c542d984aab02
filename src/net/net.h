/* net/net.h — the network layer: one libuv loop serving HTTP/1.1, WebSocket and
 * SSE on one port (DESIGN.md "Shape"; SPEC conventions, §6).
 *
 * net/ owns sockets, parsing (llhttp), framing (wslay), TLS and send queues.
 * It knows nothing of agents or the store: requests go to the handler given in
 * net_callbacks_t (the router), text WebSocket messages to ws_on_text.
 *
 * Thread: every function here must be called on the loop thread, except
 * server_wakeup_*() which exist for other threads.  Pointers to conn_t and
 * http_req_t never leave the loop thread; other threads hold conn ids.
 */
#ifndef AGD_NET_NET_H
#define AGD_NET_NET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "util/buf.h"
#include "util/pool.h"

typedef struct server server_t;
typedef struct conn conn_t;
typedef struct http_req http_req_t;

/* HTTP methods as a bit mask (router tables, Allow header). */
enum {
  HTTP_M_GET = 1u << 0,
  HTTP_M_HEAD = 1u << 1,
  HTTP_M_POST = 1u << 2,
  HTTP_M_PUT = 1u << 3,
  HTTP_M_PATCH = 1u << 4,
  HTTP_M_DELETE = 1u << 5,
  HTTP_M_OPTIONS = 1u << 6,
  HTTP_M_OTHER = 1u << 7,
};

typedef enum { CONN_KIND_HTTP = 0, CONN_KIND_WS, CONN_KIND_SSE, CONN_KIND__COUNT } conn_kind_t;

/* What the layer above plugs in.  All run on the loop thread. */
typedef struct net_callbacks {
  /* Headers of a request are complete (body not read yet): decide the route.
   * Return the body limit in bytes for it (0: use cfg->max_body_bytes), or a
   * negative AGD_E* to answer at once (the body is never read). */
  long (*on_request_head)(http_req_t *r);
  /* The whole request is here: answer it now or later (http_respond*). */
  void (*on_request)(http_req_t *r);
  /* A WebSocket finished its handshake (welcome not sent yet). */
  void (*ws_on_open)(conn_t *c);
  /* A complete, UTF-8-valid text message (binary messages are refused with 1003). */
  void (*ws_on_text)(conn_t *c, const char *p, size_t n);
  /* The connection (WS or SSE) is going away: unlink it from registries. */
  void (*on_stream_close)(conn_t *c);
} net_callbacks_t;

/* ---- server ---------------------------------------------------------- */

/* Bind and listen on cfg->host:cfg->port (and set up TLS when configured).
 * Returns 0 or a negative UV_E* or AGD_E* code with a reason in err. */
int server_open(server_t **out, uv_loop_t *loop, const config_t *cfg, const net_callbacks_t *cb,
                char *err, size_t err_cap);
/* The bound port (useful with --port 0). */
int server_port(const server_t *s);
int server_is_tls(const server_t *s);
/* Graceful shutdown, step 1: stop accepting, close idle keep-alive sockets,
 * send close 1001 to WebSockets and end SSE streams, let in-flight HTTP
 * requests answer.  done_cb runs once every connection is gone or after
 * `grace_s`, whichever is first. */
void server_shutdown(server_t *s, double grace_s, void (*done_cb)(server_t *s, void *arg), void *arg);
/* Close every handle; the loop can then be closed.  Frees s. */
void server_close(server_t *s);
/* Number of open connections of a kind (metrics). */
size_t server_conn_count(const server_t *s, conn_kind_t kind);
const config_t *server_config(const server_t *s);
uv_loop_t *server_loop(const server_t *s);

/* ---- HTTP requests ---------------------------------------------------- */

/* Request facts.  Slices stay valid until the response is sent. */
unsigned http_req_method(const http_req_t *r);      /* HTTP_M_* */
const char *http_req_method_name(const http_req_t *r);
/* Normalised path (percent-escapes decoded — so %2F is a '/' — '//' and '.'
 * segments collapsed, '..' resolved and never above '/'), NUL-terminated. */
const char *http_req_path(const http_req_t *r);
slice_t http_req_query_string(const http_req_t *r);
/* Decoded value of query parameter `name`: 1 found (*out set, pool-allocated), 0 absent.
 * A value that does not decode (a bad escape, %00) is given raw, '%' and all, so a
 * strict parser refuses it (api/query.h) instead of taking it as absent. */
int http_req_query(http_req_t *r, const char *name, const char **out);
/* Header value (first occurrence, case-insensitive name): 1 found, 0 absent. */
int http_req_header(const http_req_t *r, const char *name, slice_t *out);
slice_t http_req_body(const http_req_t *r);
const char *http_req_id(const http_req_t *r);       /* the X-Request-ID we answer with */
const char *http_req_peer_ip(const http_req_t *r);  /* textual client IP */
pool_t *http_req_pool(http_req_t *r);               /* cleared when the request ends */
conn_t *http_req_conn(http_req_t *r);
int http_req_is_tls(const http_req_t *r);
/* Opaque slot for the layer above (route, auth identity). */
void http_req_set_data(http_req_t *r, void *data);
void *http_req_data(const http_req_t *r);
/* Parse the body as JSON under SPEC limits.  0 and *out (new reference);
 * AGD_EUNSUPPORTED_MEDIA (explicit non-JSON Content-Type), AGD_EBAD_REQUEST
 * (malformed; msg says where), AGD_ETOO_LARGE (depth), AGD_EVALIDATION (valid
 * JSON jansson cannot hold: util/jsonx.h jsonx_parse).  msg may be NULL. */
int http_req_json(http_req_t *r, json_t **out, char *msg, size_t msg_cap);
/* Streamed bodies (ingest routes): instead of buffering the whole body, hand
 * it to fn in chunks of at least chunk_bytes (the last one may be smaller,
 * last = 1).  fn owns `data` (free() it) and must call http_req_chunk_done(r)
 * once it has consumed it — typically from a worker job's done callback; no
 * other chunk comes before that, and reading the socket pauses while two
 * chunks are waiting.  The route's handler runs after the last chunk was
 * consumed.  If the request dies before that (client gone), abort_fn(arg) runs
 * so the consumer can free its state.  Call from on_request_head. */
typedef void (*http_chunk_fn)(http_req_t *r, char *data, size_t n, int last, void *arg);
void http_req_stream_body(http_req_t *r, size_t chunk_bytes, http_chunk_fn fn, void (*abort_fn)(void *arg), void *arg);
void http_req_chunk_done(http_req_t *r);
/* 1 while the client is still connected (false after it dropped). */
int http_req_alive(const http_req_t *r);

/* Response.  Headers added before http_respond*(); exactly one respond per
 * request.  A handler may return without answering and answer later on the loop
 * thread (the request and its pool stay alive until then, even if the client
 * went away: answering a dead request just frees it). */
void http_resp_header(http_req_t *r, const char *name, const char *value);
void http_respond(http_req_t *r, int status, const char *content_type, const void *body, size_t n);
/* Takes the reference to `body`. */
void http_respond_json(http_req_t *r, int status, json_t *body);
/* SPEC error envelope for AGD_E* `err`; `message` NULL = a default text for the
 * code; `details` (a JSON array, reference taken) may be NULL.  Adds
 * WWW-Authenticate for 401s.  Logs the error's origin (agd_err_where). */
void http_respond_error(http_req_t *r, int err, const char *message, json_t *details);
/* Metrics label for this request (the route pattern); default "unmatched". */
void http_req_set_route_label(http_req_t *r, const char *label);

/* ---- WebSocket (RFC 6455, SPEC §6) ------------------------------------ */

/* Try to upgrade request r (GET with Upgrade: websocket).  Checks the
 * version and key, selects the subprotocol per SPEC §6 (`jwt-auth` only), answers
 * 101 and turns the connection into a WebSocket; ws_on_open runs next.
 * user_id (copied) is the authenticated user.  On a bad handshake answers 400
 * (426 for a wrong version) itself.  Returns 0 when upgraded. */
int ws_upgrade(http_req_t *r, const char *user_id);
/* Queue one text message.  0, or AGD_EUNAVAILABLE when the send queue passed its
 * bound: the socket is then being closed with 1013. */
int ws_send_text(conn_t *c, const char *p, size_t n);
/* Encode once, send to many (STYLE §5): ws_frame_text() appends one unmasked
 * text frame carrying p[0..n) to out; ws_send_frame() queues such bytes on c
 * with the same bound as ws_send_text (text/text_n, the payload, is used if
 * wslay must order it behind messages it still holds). */
int ws_frame_text(buf_t *out, const char *p, size_t n);
int ws_send_frame(conn_t *c, const char *frame, size_t n, const char *text, size_t text_n);
/* Send a close frame with code (1000, 1001, 1008, 1011, …) and close the socket. */
void ws_close(conn_t *c, int code, const char *reason);

/* ---- SSE (text/event-stream) -------------------------------------------- */

/* Answer r with 200 text/event-stream (chunked) and turn the connection into an
 * SSE stream.  Heartbeat comments are sent every cfg->sse_heartbeat seconds. */
int sse_start(http_req_t *r);
/* One frame: "id: <id>\nevent: <event>\ndata: <data>\n\n" (id/event omitted
 * when NULL; data lines split on '\n').  0 or AGD_EUNAVAILABLE (stream closed
 * for overload). */
int sse_send(conn_t *c, const char *id, const char *event, const char *data, size_t n);
/* Send a preformatted frame block (from sse_format) as one chunk: the same
 * bytes can go to many streams.  Same bound and answers as sse_send. */
int sse_send_raw(conn_t *c, const char *block, size_t n);
/* End the stream cleanly (last chunk) and close the connection. */
void sse_end(conn_t *c);
/* Format a frame into b (exposed for tests). */
int sse_format(buf_t *b, const char *id, const char *event, const char *data, size_t n);

/* ---- connections -------------------------------------------------------- */

uint64_t conn_id(const conn_t *c);             /* unique for the process lifetime */
conn_kind_t conn_kind(const conn_t *c);
const char *conn_user_id(const conn_t *c);     /* WS/SSE: the authenticated user, else "" */
void conn_set_user_id(conn_t *c, const char *user_id);
void conn_set_data(conn_t *c, void *data);     /* the layer above's slot */
void *conn_data(const conn_t *c);
int conn_is_closing(const conn_t *c);
/* The conn with that id, or NULL when it has gone (for work coming back from workers). */
conn_t *server_conn_lookup(server_t *s, uint64_t id);
server_t *conn_server(const conn_t *c);

#endif
