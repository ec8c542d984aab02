/* net/http.c — HTTP/1.1 on a conn: llhttp parsing, request objects, responses
 * (SPEC conventions: error envelope, X-Request-ID, security headers, CORS,
 * limits).  Keep-alive and pipelining: the parser pauses at each message end
 * (HPE_PAUSED) so the next pipelined request waits until this one is answered;
 * unparsed bytes wait in `in`.  Handlers may answer later (async), and the
 * request (with its pool) lives until then even if the client left.
 * Loop thread only.
 */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "net/net_int.h"
#include "util/err.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define HTTP_MAX_HEADERS 128
#define HTTP_IN_LIMIT (256 * 1024) /* pipelined bytes held while a request is answered */

typedef enum { REQ_PARSING = 0, REQ_HANDLING, REQ_DONE } req_state_t;

typedef struct hdr_ref {
  uint32_t name_off, name_len, val_off, val_len;
} hdr_ref_t;

struct http_req {
  conn_t *conn;
  pool_t pool;
  req_state_t state;
  unsigned method;
  const char *method_name;
  buf_t url;            /* request target as received */
  buf_t hdrs;           /* header names and values, back to back */
  hdr_ref_t href[HTTP_MAX_HEADERS];
  size_t n_headers;
  int in_value;         /* last header callback was a value */
  int field_open;       /* a header name has started (it may come in pieces) */
  size_t head_bytes;    /* request line + headers, for 431 */
  char *path;           /* normalised, NUL-terminated (pool) */
  slice_t query;        /* into url */
  buf_t body;
  size_t body_limit;
  int early_err;        /* AGD_E* decided while parsing: answered instead of dispatching */
  int obs_fold;         /* a header line continued another (RFC 9112 §5.2 obs-fold) */
  int keep_alive;
  int upgrade;
  int dispatched;
  int responded;
  int gone;             /* the connection closed before the answer */
  void (*handover)(conn_t *c, const char *rest, size_t n); /* set by http__handover(): gets the bytes past the request */
  buf_t resp_hdrs;      /* extra response header lines */
  /* Streamed body (http_req_stream_body): chunks go to chunk_fn instead of `body`. */
  http_chunk_fn chunk_fn;
  void (*chunk_abort)(void *arg);
  void *chunk_arg;
  size_t chunk_bytes;
  size_t body_total;    /* bytes of body received so far (streamed or not) */
  int chunk_inflight;   /* chunk_fn has a chunk it has not finished with */
  int last_delivered;   /* the final chunk went out */
  int stream_done;      /* ... and was consumed: the handler may run */
  const char *route_label;
  void *data;
  uint64_t start_ns;
  char request_id[130];
  char peer_ip[64];
};

struct http_state {
  llhttp_t parser;
  buf_t in;              /* bytes not yet parsed (pipelined, or arrived while answering) */
  http_req_t *req;       /* being parsed or answered; NULL between requests */
  uint64_t req_start_ms; /* uv_now() at the current request's first byte */
  uint64_t idle_since_ms;  /* accept, or the end of the last answer */
  int served;              /* a request has been answered: idleness is keep-alive */
  int in_pump;
  int dead;              /* parse error: no more requests on this conn */
  /* obs-fold detection: llhttp folds a continuation line into the value
   * silently, so on_header_value looks at the bytes before each value piece. */
  const char *exec_start; /* the buffer llhttp_execute() is running over */
  char prev_tail;         /* last byte before it that is not SP/HT */
};

static const llhttp_settings_t parser_settings;
static void http__pump(conn_t *c);
static void http__finish(http_req_t *r);

/* ---- request objects ---- */

static http_req_t *req_new(conn_t *c) {
  http_req_t *r = calloc(1, sizeof(*r));
  if (!r) abort();
  r->conn = c;
  pool_init(&r->pool);
  buf_init(&r->url, 0);
  buf_init(&r->hdrs, 0);
  buf_init(&r->body, 0);
  buf_init(&r->resp_hdrs, 0);
  r->route_label = "unmatched";
  r->start_ns = time_mono_ns();
  conn__hold(c);
  return r;
}

static void req_free(http_req_t *r) {
  conn_t *c = r->conn;
  if (r->chunk_inflight) {
    r->gone = 1; /* a worker still reads its chunk: freed in http_req_chunk_done() */
    return;
  }
  /* A streamed body that never reached its handler: let its owner clean up. */
  if (r->chunk_fn && !r->stream_done && r->chunk_abort) r->chunk_abort(r->chunk_arg);
  pool_clear(&r->pool);
  buf_dispose(&r->url);
  buf_dispose(&r->hdrs);
  buf_dispose(&r->body);
  buf_dispose(&r->resp_hdrs);
  free(r);
  conn__release(c);
}

http_state_t *http__state_new(conn_t *c) {
  http_state_t *h = calloc(1, sizeof(*h));
  if (!h) abort();
  llhttp_init(&h->parser, HTTP_REQUEST, &parser_settings);
  h->parser.data = c;
  buf_init(&h->in, HTTP_IN_LIMIT);
  h->idle_since_ms = uv_now(c->srv->loop);
  return h;
}

void http__state_free(http_state_t *h) {
  if (!h) return;
  buf_dispose(&h->in);
  /* A request still being answered owns itself now (gone = 1, see on_conn_closed). */
  free(h);
}

void http__on_conn_closed(conn_t *c) {
  http_state_t *h = c->http;
  if (!h || !h->req) return;
  http_req_t *r = h->req;
  h->req = NULL;
  if (r->handover) {
    h->req = r; /* http__pump() completes the handover and frees it */
  } else if (r->dispatched && !r->responded) {
    r->gone = 1; /* the handler still holds it: freed when it answers */
  } else {
    req_free(r);
  }
}

/* ---- llhttp callbacks ---- */

static int head_add(http_req_t *r, size_t n) {
  r->head_bytes += n;
  if (r->head_bytes > r->conn->srv->cfg->max_header_bytes) {
    r->early_err = AGD_EHEADERS_TOO_LARGE;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = p->data;
  http_state_t *h = c->http;
  if (!h->req) h->req = req_new(c);
  h->req_start_ms = uv_now(c->srv->loop);
  server__idle_leave(c);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  http_req_t *r = ((conn_t *)p->data)->http->req;
  if (head_add(r, n)) return -1;
  buf_append(&r->url, at, n);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  http_req_t *r = ((conn_t *)p->data)->http->req;
  if (head_add(r, n + 4)) return -1;
  if (r->in_value || !r->field_open) {
    r->field_open = 1;
    if (r->in_value) r->n_headers++;
    if (r->n_headers >= HTTP_MAX_HEADERS) {
      r->early_err = AGD_EHEADERS_TOO_LARGE;
      return -1;
    }
    r->in_value = 0;
    r->href[r->n_headers].name_off = (uint32_t)r->hdrs.len;
    r->href[r->n_headers].name_len = 0;
    r->href[r->n_headers].val_len = 0;
  }
  buf_append(&r->hdrs, at, n);
  r->href[r->n_headers].name_len += (uint32_t)n;
  return 0;
}

/* 1 when the value piece at `at` follows a line break and only SP/HT: an
 * obs-fold continuation line (llhttp 8 accepts them without telling). */
static int follows_line_break(const http_state_t *h, const char *at) {
  const char *q = at;
  while (q > h->exec_start && (q[-1] == ' ' || q[-1] == '\t')) q--;
  char prev = q > h->exec_start ? q[-1] : h->prev_tail;
  return prev == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  http_state_t *h = ((conn_t *)p->data)->http;
  http_req_t *r = h->req;
  if (head_add(r, n)) return -1;
  /* (llhttp reports an empty value as an empty piece after its line break.) */
  if (n > 0 && follows_line_break(h, at)) r->obs_fold = 1; /* refused in on_headers_complete */
  if (!r->in_value) {
    r->in_value = 1;
    r->href[r->n_headers].val_off = (uint32_t)r->hdrs.len;
    r->href[r->n_headers].val_len = 0;
  }
  buf_append(&r->hdrs, at, n);
  r->href[r->n_headers].val_len += (uint32_t)n;
  return 0;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Percent-decode [p, p+n) into out (pool).  plus_space: '+' means ' ' (query).
 * Returns NULL for a NUL byte or a bad escape. */
static char *pct_decode(pool_t *pool, const char *p, size_t n, int plus_space) {
  char *out = pool_alloc(pool, n + 1), *o = out;
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch == '%') {
      if (i + 2 >= n) return NULL;
      int a = hexval((unsigned char)p[i + 1]), b = hexval((unsigned char)p[i + 2]);
      if (a < 0 || b < 0) return NULL;
      ch = (char)(a * 16 + b);
      if (ch == 0) return NULL;
      i += 2;
    } else if (ch == '+' && plus_space) {
      ch = ' ';
    }
    *o++ = ch;
  }
  *o = 0;
  return out;
}

/* SPEC conventions: paths are normalised; '..' never climbs above '/'. */
static char *normalise_path(pool_t *pool, const char *p, size_t n) {
  char *dec = pct_decode(pool, p, n, 0);
  if (!dec) return NULL;
  size_t len = strlen(dec);
  char *out = pool_alloc(pool, len + 2);
  size_t o = 0;
  const char *s = dec, *end = dec + len;
  while (s < end) {
    while (s < end && *s == '/') s++;
    const char *seg = s;
    while (s < end && *s != '/') s++;
    size_t sl = (size_t)(s - seg);
    if (sl == 0 || (sl == 1 && seg[0] == '.')) continue;
    if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
      continue;
    }
    out[o++] = '/';
    memcpy(out + o, seg, sl);
    o += sl;
  }
  if (o == 0) out[o++] = '/';
  out[o] = 0;
  return out;
}

static unsigned method_bit(uint8_t m) {
  switch (m) {
  case HTTP_GET: return HTTP_M_GET;
  case HTTP_HEAD: return HTTP_M_HEAD;
  case HTTP_POST: return HTTP_M_POST;
  case HTTP_PUT: return HTTP_M_PUT;
  case HTTP_PATCH: return HTTP_M_PATCH;
  case HTTP_DELETE: return HTTP_M_DELETE;
  case HTTP_OPTIONS: return HTTP_M_OPTIONS;
  default: return HTTP_M_OTHER;
  }
}

static void req_parse_target(http_req_t *r) {
  const char *u = r->url.base ? r->url.base : "/";
  size_t n = r->url.len;
  /* absolute-form: skip scheme://authority */
  if (n > 0 && u[0] != '/' && !(n == 1 && u[0] == '*')) {
    const char *sch = memmem(u, n, "://", 3);
    if (sch) {
      const char *slash = memchr(sch + 3, '/', (size_t)(u + n - (sch + 3)));
      if (!slash) {
        u = "/";
        n = 1;
      } else {
        n -= (size_t)(slash - u);
        u = slash;
      }
    }
  }
  const char *q = memchr(u, '?', n);
  size_t plen = q ? (size_t)(q - u) : n;
  const char *hash = memchr(u, '#', plen);
  if (hash) plen = (size_t)(hash - u);
  r->query = q ? slice_of(q + 1, (size_t)(u + n - q - 1)) : slice_of("", 0);
  if (plen == 0 || u[0] != '/') {
    if (plen == 1 && u[0] == '*') {
      r->path = pool_strdup(&r->pool, "*");
      return;
    }
    r->early_err = r->early_err ? r->early_err : AGD_EBAD_REQUEST;
    r->path = pool_strdup(&r->pool, "/");
    return;
  }
  r->path = normalise_path(&r->pool, u, plen);
  if (!r->path) {
    r->early_err = r->early_err ? r->early_err : AGD_EBAD_REQUEST;
    r->path = pool_strdup(&r->pool, "/");
  }
}

/* Count the header lines named `name`; *all gets the last one's value. */
static size_t header_count(const http_req_t *r, const char *name) {
  size_t nl = strlen(name), k = 0;
  for (size_t i = 0; i < r->n_headers; i++)
    if (r->href[i].name_len == nl && strncasecmp(r->hdrs.base + r->href[i].name_off, name, nl) == 0) k++;
  return k;
}

/* Transfer-Encoding over every such line: exactly one coding, `chunked`, is
 * spoken (llhttp already refuses `chunked` that is not last).  Any other
 * coding is 501 (RFC 9112 §6.1: not understood); `chunked` twice, or a list
 * with no coding at all, is 400.  Empty list elements are allowed (RFC 9110
 * §5.6.1). */
static int check_transfer_encoding(const http_req_t *r) {
  size_t chunked = 0, other = 0;
  for (size_t i = 0; i < r->n_headers; i++) {
    const hdr_ref_t *hr = &r->href[i];
    if (hr->name_len != 17 || strncasecmp(r->hdrs.base + hr->name_off, "transfer-encoding", 17) != 0) continue;
    const char *v = r->hdrs.base + hr->val_off, *end = v + hr->val_len;
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *s = v, *e = comma ? comma : end;
      while (s < e && (*s == ' ' || *s == '\t')) s++;
      while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
      if (e > s) {
        if ((size_t)(e - s) == 7 && strncasecmp(s, "chunked", 7) == 0) chunked++;
        else other++;
      }
      v = comma ? comma + 1 : end;
    }
  }
  if (other) return AGD_ENOT_IMPLEMENTED;
  return chunked == 1 ? 0 : AGD_EBAD_REQUEST;
}

/* RFC 9112 framing that llhttp 8 lets through, refused here with 400 (501
 * for an unknown transfer coding); the connection is then closed:
 * - a version other than 1.0 or 1.1 (llhttp takes "HTTP/2.0");
 * - obs-fold (§5.2: reject or unfold; agentd rejects);
 * - HTTP/1.1 without exactly one Host, or any request with two (§3.2);
 * - Transfer-Encoding on HTTP/1.0 (§6.1: faulty framing), or any coding
 *   other than a single `chunked` (check_transfer_encoding). */
static int check_framing(const llhttp_t *p, const http_req_t *r) {
  if (p->http_major != 1 || p->http_minor > 1) return AGD_EBAD_REQUEST;
  if (r->obs_fold) return AGD_EBAD_REQUEST;
  size_t hosts = header_count(r, "host");
  if (hosts > 1 || (p->http_minor == 1 && hosts == 0)) return AGD_EBAD_REQUEST;
  if (header_count(r, "transfer-encoding") > 0) {
    if (p->http_minor == 0) return AGD_EBAD_REQUEST;
    return check_transfer_encoding(r);
  }
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  http_req_t *r = c->http->req;
  const config_t *cfg = c->srv->cfg;
  if (r->in_value) r->n_headers++;
  r->in_value = 0;
  r->method = method_bit(p->method);
  r->method_name = llhttp_method_name((llhttp_method_t)p->method);
  r->keep_alive = llhttp_should_keep_alive(p) && !(c->flags & CONN_F_SHUTDOWN);
  r->upgrade = p->upgrade;
  req_parse_target(r);
  /* HTTP/0.9 (no version on the request line) is not spoken here, nor is
   * laxer framing than RFC 9112 allows. */
  if (!r->early_err) r->early_err = check_framing(p, r);

  slice_t v;
  if (http_req_header(r, "x-request-id", &v) && id_request_valid(v.p, v.n)) {
    memcpy(r->request_id, v.p, v.n);
    r->request_id[v.n] = 0;
  } else {
    id_request(r->request_id);
  }
  if (r->early_err) return -1;

  long limit = 0;
  if (c->srv->cb.on_request_head) limit = c->srv->cb.on_request_head(r);
  if (limit < 0) {
    r->early_err = (int)limit;
    return -1;
  }
  r->body_limit = limit > 0 ? (size_t)limit : cfg->max_body_bytes;
  /* SPEC conventions: an oversize body is refused from Content-Length before it is read. */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->body_limit) {
    r->early_err = AGD_ETOO_LARGE;
    return -1;
  }
  if (http_req_header(r, "expect", &v) && slice_casecmp_cstr(v, "100-continue") &&
      ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0))) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    conn__send(c, cont, sizeof(cont) - 1);
  }
  return 0;
}

static void http__deliver_chunk(http_req_t *r, int last);

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  http_req_t *r = c->http->req;
  if (r->body_total + n > r->body_limit) {
    r->early_err = AGD_ETOO_LARGE;
    return -1;
  }
  r->body_total += n;
  buf_append(&r->body, at, n);
  if (r->chunk_fn) {
    if (!r->chunk_inflight && r->body.len >= r->chunk_bytes) http__deliver_chunk(r, 0);
    /* Backpressure: the consumer is behind, stop reading the socket. */
    if (r->body.len >= 2 * r->chunk_bytes) conn__read_stop(c);
  }
  return 0;
}

/* Hand the buffered body bytes to the stream's consumer. */
static void http__deliver_chunk(http_req_t *r, int last) {
  size_t n = 0;
  char *data = buf_steal(&r->body, &n);
  /* The next chunk fills a buffer of its final size at once, not by doubling. */
  if (!last && buf_reserve(&r->body, r->chunk_bytes + 65536)) buf_commit(&r->body, 0);
  r->chunk_inflight = 1;
  if (last) r->last_delivered = 1;
  r->chunk_fn(r, data, n, last, r->chunk_arg);
}

void http_req_stream_body(http_req_t *r, size_t chunk_bytes, http_chunk_fn fn, void (*abort_fn)(void *arg),
                          void *arg) {
  r->chunk_fn = fn;
  r->chunk_abort = abort_fn;
  r->chunk_arg = arg;
  r->chunk_bytes = chunk_bytes ? chunk_bytes : 1024 * 1024;
}

void http_req_chunk_done(http_req_t *r) {
  conn_t *c = r->conn;
  r->chunk_inflight = 0;
  if (r->gone) {
    req_free(r);
    return;
  }
  if (r->last_delivered) {
    r->stream_done = 1;
    if (c->http && !c->http->in_pump) http__pump(c);
    return;
  }
  if (r->state == REQ_HANDLING) {
    http__deliver_chunk(r, 1);
    return;
  }
  if (r->body.len >= r->chunk_bytes) http__deliver_chunk(r, 0);
  if (!r->chunk_inflight || r->body.len < 2 * r->chunk_bytes) conn__read_start(c);
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  http_req_t *r = c->http->req;
  r->state = REQ_HANDLING;
  /* Upgrade requests stop with HPE_PAUSED_UPGRADE by themselves. */
  return p->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- parsing and dispatch ---- */

/* Parse from p; returns bytes consumed.  Leaves h->req in REQ_HANDLING when a
 * whole request (or a fatal error) is ready. */
static size_t http__parse(conn_t *c, const char *p, size_t n) {
  http_state_t *h = c->http;
  h->exec_start = p;
  llhttp_errno_t err = llhttp_execute(&h->parser, p, n);
  size_t used = n;
  if (err != HPE_OK) {
    const char *pos = llhttp_get_error_pos(&h->parser);
    used = pos && pos >= p && pos <= p + n ? (size_t)(pos - p) : n;
  }
  if (c->http != h) return used; /* handed over inside a callback: h is gone */
  for (size_t i = used; i > 0; i--)
    if (p[i - 1] != ' ' && p[i - 1] != '\t') {
      h->prev_tail = p[i - 1];
      break;
    }
  h->exec_start = NULL;
  if (err == HPE_OK) return n;
  if (err == HPE_PAUSED) {
    llhttp_resume(&h->parser);
    return used;
  }
  if (err == HPE_PAUSED_UPGRADE) return used;
  /* A parse error or a limit hit in a callback: answer it and close. */
  if (!h->req) h->req = req_new(c);
  http_req_t *r = h->req;
  if (!r->early_err) {
    r->early_err = AGD_EBAD_REQUEST;
    log_debug("conn %llu: bad request: %s", (unsigned long long)c->id, llhttp_get_error_reason(&h->parser));
  }
  if (!r->request_id[0]) id_request(r->request_id);
  if (!r->method_name) r->method_name = llhttp_method_name((llhttp_method_t)h->parser.method);
  if (!r->path) r->path = pool_strdup(&r->pool, "-");
  r->keep_alive = 0;
  r->state = REQ_HANDLING;
  h->dead = 1;
  return n;
}

static void http__redirect_to_tls(http_req_t *r) {
  slice_t host;
  if (!http_req_header(r, "host", &host) || host.n == 0 || host.n > 255) {
    http_respond_error(r, AGD_EBAD_REQUEST, "this port speaks TLS: use https://", NULL);
    return;
  }
  for (size_t i = 0; i < host.n; i++)
    if (!isalnum((unsigned char)host.p[i]) && !strchr(".-:[]", host.p[i])) {
      http_respond_error(r, AGD_EBAD_REQUEST, "this port speaks TLS: use https://", NULL);
      return;
    }
  char *loc = pool_sprintf(&r->pool, "https://%.*s%.*s", (int)host.n, host.p, (int)r->url.len,
                           r->url.base ? r->url.base : "/");
  http_resp_header(r, "Location", loc);
  r->keep_alive = 0;
  http_respond(r, 301, NULL, NULL, 0);
}

static void http__dispatch(http_req_t *r) {
  conn_t *c = r->conn;
  r->dispatched = 1;
  if (r->early_err) {
    r->keep_alive = 0;
    http_respond_error(r, r->early_err, NULL, NULL);
  } else if (c->flags & CONN_F_PLAIN_ON_TLS) {
    http__redirect_to_tls(r);
  } else if (c->srv->cb.on_request) {
    c->srv->cb.on_request(r);
  } else {
    http_respond_error(r, AGD_ENOT_FOUND, NULL, NULL);
  }
}

/* Free the HTTP side of c and give the connection to another protocol. */
static void http__do_handover(conn_t *c, http_state_t *h, http_req_t *r) {
  void (*then)(conn_t *, const char *, size_t) = r->handover;
  h->req = NULL;
  buf_t rest = h->in;
  buf_init(&h->in, 0);
  c->http = NULL;
  conn__hold(c);
  req_free(r);
  http__state_free(h);
  then(c, rest.base, rest.len);
  buf_dispose(&rest);
  conn__release(c);
}

void http__handover(http_req_t *r, void (*begin)(conn_t *c), void (*then)(conn_t *c, const char *rest, size_t n)) {
  conn_t *c = r->conn;
  http_state_t *h = c->http;
  assert(h && h->req == r && !r->responded);
  r->handover = then;
  r->responded = 1;
  begin(c); /* the new protocol is live at once: the handler may send on it */
  if (!h->in_pump) http__do_handover(c, h, r);
  /* else http__pump() does it once the handler has returned */
}

static void http__pump(conn_t *c) {
  http_state_t *h = c->http;
  if (!h || h->in_pump) return;
  h->in_pump = 1;
  conn__hold(c);
  for (;;) {
    if ((c->flags & CONN_F_CLOSING) || c->http != h) break;
    http_req_t *r = h->req;
    if (r && r->state == REQ_HANDLING) {
      if (r->dispatched) break; /* waiting for an async answer */
      if (r->chunk_fn && !r->early_err && !r->stream_done) {
        /* A streamed body: the handler runs once the last chunk is consumed. */
        if (!r->chunk_inflight && !r->last_delivered) http__deliver_chunk(r, 1);
        if (!r->stream_done) break;
      }
      http__dispatch(r);
      if (r == h->req && r->handover) {
        /* ws_upgrade()/sse_start() answered: the connection changes protocol. */
        h->in_pump = 0;
        http__do_handover(c, h, r);
        conn__release(c);
        return;
      }
      continue;
    }
    if (h->dead || h->in.len == 0) break;
    size_t used = http__parse(c, h->in.base, h->in.len);
    buf_consume(&h->in, used);
    if (used == 0 && !(h->req && h->req->state == REQ_HANDLING)) break;
  }
  if (c->http == h) {
    h->in_pump = 0;
    /* Reading was stopped while bytes piled up; resume once they are parsed. */
    if (h->in.len < HTTP_IN_LIMIT / 2 && !h->dead) conn__read_start(c);
  }
  conn__release(c);
}

void http__on_bytes(conn_t *c, const char *p, size_t n) {
  http_state_t *h = c->http;
  if (!h || h->dead) return;
  int busy = h->req && h->req->state != REQ_PARSING;
  if (!busy && h->in.len == 0) {
    size_t used = http__parse(c, p, n);
    p += used;
    n -= used;
  }
  if (n > 0) {
    if (buf_append(&h->in, p, n) != 0) {
      /* Too much pipelined input while answering: stop reading until drained. */
      conn__read_stop(c);
      h->dead = 1;
      conn__close(c);
      return;
    }
    if (h->in.len > HTTP_IN_LIMIT / 2) conn__read_stop(c);
  }
  http__pump(c);
}

int http__sweep(conn_t *c, uint64_t now_ms) {
  http_state_t *h = c->http;
  if (!h) return 0;
  const config_t *cfg = c->srv->cfg;
  if (h->req && h->req->state == REQ_PARSING) {
    /* Slowloris: a request must arrive whole within request_timeout. */
    if (now_ms - h->req_start_ms > (uint64_t)(cfg->request_timeout * 1000)) {
      log_info("conn %llu: request not complete after %.1fs, closing", (unsigned long long)c->id,
               cfg->request_timeout);
      metrics_add("agentd_http_request_timeouts_total", NULL, 1);
      conn__close(c);
      return 1;
    }
  } else if (!h->req && h->in.len == 0) {
    /* Between requests a keep-alive conn may idle for idle_timeout; a fresh
     * one that has sent nothing gets only request_timeout, so silent sockets
     * cannot hold slots for the (longer) idle timeout. */
    double limit_s = h->served ? cfg->idle_timeout : cfg->request_timeout;
    if (now_ms - h->idle_since_ms > (uint64_t)(limit_s * 1000)) {
      if (!h->served) {
        log_info("conn %llu: no request after %.1fs, closing", (unsigned long long)c->id, limit_s);
        metrics_add("agentd_http_request_timeouts_total", NULL, 1);
      }
      conn__close(c);
      return 1;
    }
  }
  return 0;
}

void http__shutdown(conn_t *c) {
  http_state_t *h = c->http;
  if (!h || !h->req) {
    conn__close_after_flush(c);
    return;
  }
  h->req->keep_alive = 0;
  if (h->req->state == REQ_PARSING) conn__close(c);
}

/* ---- responses ---- */

static const char *status_reason(int s) {
  switch (s) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Entity";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

/* RFC 7231 IMF-fixdate, formatted at most once per second. */
static const char *http_date(void) {
  static time_t last;
  static char text[40];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  return text;
}

void http_resp_header(http_req_t *r, const char *name, const char *value) {
  /* Header injection guard: values never carry CR/LF. */
  if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return;
  buf_appendf(&r->resp_hdrs, "%s: %s\r\n", name, value);
}

static void append_cors(http_req_t *r, buf_t *b) {
  slice_t origin;
  const config_t *cfg = r->conn->srv->cfg;
  if (!http_req_header(r, "origin", &origin)) return;
  if (!config_cors_allowed(cfg, origin.p, origin.n)) return;
  buf_appendf(b,
              "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\nAccess-Control-Allow-Credentials: true\r\n"
              "Access-Control-Expose-Headers: X-Request-ID, Retry-After, X-RateLimit-Limit, "
              "X-RateLimit-Remaining, X-RateLimit-Reset, Mcp-Session-Id\r\n",
              (int)origin.n, origin.p);
}

static size_t fmt_u64(char *out, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

#define APPEND_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* Status line and the headers every answer carries.  This runs once per
 * response, so it appends pieces instead of formatting. */
static void build_head(http_req_t *r, buf_t *b, int status, const char *ctype, long long clen) {
  conn_t *c = r->conn;
  char num[24];
  APPEND_LIT(b, "HTTP/1.1 ");
  buf_append(b, num, fmt_u64(num, (unsigned long long)status));
  buf_append(b, " ", 1);
  buf_append_str(b, status_reason(status));
  APPEND_LIT(b, "\r\nDate: ");
  buf_append_str(b, http_date());
  APPEND_LIT(b, "\r\nServer: agentd\r\n");
  if (ctype) {
    APPEND_LIT(b, "Content-Type: ");
    buf_append_str(b, ctype);
    APPEND_LIT(b, "\r\n");
  }
  if (clen >= 0 && status != 204 && status >= 200) { /* RFC 9110 §8.6: none on 1xx/204 */
    APPEND_LIT(b, "Content-Length: ");
    buf_append(b, num, fmt_u64(num, (unsigned long long)clen));
    APPEND_LIT(b, "\r\n");
  } else if (clen == -1) {
    APPEND_LIT(b, "Transfer-Encoding: chunked\r\n");
  }
  APPEND_LIT(b, "X-Request-ID: ");
  buf_append_str(b, r->request_id);
  APPEND_LIT(b, "\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n");
  if (ctype && strncmp(ctype, "text/html", 9) == 0)
    /* The UI (api/ui_api.c, docs/ui.md): no inline script or style anywhere; 'self' in
     * connect-src also admits ws:/wss: of the same host (CSP Level 3). */
    APPEND_LIT(b, "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
                  "connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                  "form-action 'self'; frame-ancestors 'none'\r\n");
  if (c->tls) APPEND_LIT(b, "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n");
  append_cors(r, b);
  if (r->resp_hdrs.len) buf_append(b, r->resp_hdrs.base, r->resp_hdrs.len);
  if (status != 101 && clen != -2) {
    if (!r->keep_alive) APPEND_LIT(b, "Connection: close\r\n");
    else if (r->conn->http && r->conn->http->parser.http_minor == 0) APPEND_LIT(b, "Connection: keep-alive\r\n");
  }
}

static void http__account(http_req_t *r, int status) {
  double secs = (double)(time_mono_ns() - r->start_ns) / 1e9;
  metrics_observe_request(r->method_name ? r->method_name : "-", r->route_label, status, secs);
  if (log_enabled(LOG_INFO)) {
    const char *where = status >= 500 ? agd_err_where() : NULL;
    log_access(r->method_name ? r->method_name : "-", r->path ? r->path : "-", status, secs * 1000.0,
               r->request_id, where);
  }
}

void http_respond(http_req_t *r, int status, const char *content_type, const void *body, size_t n) {
  assert(!r->responded);
  r->responded = 1;
  if (r->gone) {
    http__account(r, status);
    req_free(r);
    return;
  }
  conn_t *c = r->conn;
  buf_t b;
  buf_init(&b, 0);
  build_head(r, &b, status, content_type, (long long)n);
  buf_append_str(&b, "\r\n");
  if (r->method != HTTP_M_HEAD && n) buf_append(&b, body, n);
  conn__send(c, b.base, b.len);
  buf_dispose(&b);
  http__account(r, status);
  http__finish(r);
}

static void http__finish(http_req_t *r) {
  conn_t *c = r->conn;
  http_state_t *h = c->http;
  int keep = r->keep_alive && !r->upgrade && !r->early_err && !(c->flags & CONN_F_SHUTDOWN);
  if (h && h->req == r) {
    h->req = NULL;
    h->idle_since_ms = uv_now(c->srv->loop);
    h->served = 1;
  }
  conn__hold(c);
  req_free(r);
  if (!keep) {
    if (h) h->dead = 1;
    conn__close_after_flush(c);
  } else if (h) {
    server__idle_enter(c->srv, c); /* until the next request begins */
    if (!h->in_pump) http__pump(c);
  }
  conn__release(c);
}

void http_respond_json(http_req_t *r, int status, json_t *body) {
  buf_t b;
  buf_init(&b, 0);
  if (body) jsonx_append(&b, body);
  http_respond(r, status, "application/json", b.base, b.len);
  buf_dispose(&b);
  json_decref(body);
}

static const char *default_message(int err) {
  switch (err) {
  case AGD_EBAD_REQUEST: return "bad request";
  case AGD_EAUTH_REQUIRED: return "authentication required";
  case AGD_EAUTH_INVALID: return "invalid or expired token";
  case AGD_EFORBIDDEN: return "forbidden";
  case AGD_ENOT_FOUND: return "not found";
  case AGD_EMETHOD_NOT_ALLOWED: return "method not allowed";
  case AGD_ECONFLICT: return "conflict";
  case AGD_ETOO_LARGE: return "payload too large";
  case AGD_EUNSUPPORTED_MEDIA: return "unsupported media type: send application/json";
  case AGD_EVALIDATION: return "validation error";
  case AGD_ERATE_LIMITED: return "rate limit exceeded";
  case AGD_EHEADERS_TOO_LARGE: return "request headers too large";
  case AGD_EUNAVAILABLE: return "service unavailable";
  case AGD_ETIMEOUT: return "timed out";
  case AGD_ENOT_IMPLEMENTED: return "transfer coding not implemented: only chunked is accepted";
  default: return "internal error";
  }
}

void http_respond_error(http_req_t *r, int err, const char *message, json_t *details) {
  int status = agd_err_status(err);
  if (!message) message = default_message(err);
  json_t *o = json_object();
  json_object_set_new(o, "error", json_true());
  json_object_set_new(o, "error_code", json_string(agd_err_code(err)));
  json_object_set_new(o, "message", json_string(message));
  json_object_set_new(o, "detail", json_string(message));
  json_object_set_new(o, "request_id", json_string(r->request_id));
  if (details) json_object_set_new(o, "details", details);
  if (status == 401) http_resp_header(r, "WWW-Authenticate", "Bearer");
  if (status >= 500) log_warn("%s %s -> %d: %s (at %s)", r->method_name ? r->method_name : "-",
                              r->path ? r->path : "-", status, message, agd_err_where());
  http_respond_json(r, status, o);
}

/* ---- request accessors ---- */

unsigned http_req_method(const http_req_t *r) { return r->method; }
const char *http_req_method_name(const http_req_t *r) { return r->method_name ? r->method_name : ""; }
const char *http_req_path(const http_req_t *r) { return r->path ? r->path : "/"; }
slice_t http_req_query_string(const http_req_t *r) { return r->query; }
slice_t http_req_body(const http_req_t *r) { return slice_of(r->body.base ? r->body.base : "", r->body.len); }
const char *http_req_id(const http_req_t *r) { return r->request_id; }
pool_t *http_req_pool(http_req_t *r) { return &r->pool; }
conn_t *http_req_conn(http_req_t *r) { return r->conn; }
int http_req_is_tls(const http_req_t *r) { return r->conn->tls != NULL; }
void http_req_set_data(http_req_t *r, void *data) { r->data = data; }
void *http_req_data(const http_req_t *r) { return r->data; }
int http_req_alive(const http_req_t *r) { return !r->gone && !(r->conn->flags & CONN_F_CLOSING); }
void http_req_set_route_label(http_req_t *r, const char *label) { r->route_label = label; }

int http_req_header(const http_req_t *r, const char *name, slice_t *out) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < r->n_headers; i++) {
    const hdr_ref_t *h = &r->href[i];
    if (h->name_len == nl && strncasecmp(r->hdrs.base + h->name_off, name, nl) == 0) {
      *out = slice_of(r->hdrs.base + h->val_off, h->val_len);
      /* trim optional whitespace llhttp may leave */
      while (out->n && (out->p[out->n - 1] == ' ' || out->p[out->n - 1] == '\t')) out->n--;
      return 1;
    }
  }
  return 0;
}

int http_req_query(http_req_t *r, const char *name, const char **out) {
  const char *p = r->query.p, *end = r->query.p + r->query.n;
  size_t nl = strlen(name);
  while (p && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    const char *kend = eq ? eq : stop;
    char *key = pct_decode(&r->pool, p, (size_t)(kend - p), 1);
    if (key && strlen(key) == nl && memcmp(key, name, nl) == 0) {
      char *val = eq ? pct_decode(&r->pool, eq + 1, (size_t)(stop - eq - 1), 1) : pool_strdup(&r->pool, "");
      /* Undecodable (bad escape, %00): the raw text, which no strict parser takes
       * (it keeps its '%'), rather than "absent" and a silent default. */
      if (!val && eq) val = pool_strndup(&r->pool, eq + 1, (size_t)(stop - eq - 1));
      if (!val) return 0;
      *out = val;
      return 1;
    }
    p = amp ? amp + 1 : end;
  }
  return 0;
}

const char *http_req_peer_ip(const http_req_t *r) {
  http_req_t *m = (http_req_t *)r;
  if (!m->peer_ip[0]) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&r->conn->tcp, (struct sockaddr *)&ss, &len) == 0) {
      if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, m->peer_ip, sizeof(m->peer_ip));
      else uv_ip4_name((struct sockaddr_in *)&ss, m->peer_ip, sizeof(m->peer_ip));
    } else {
      strcpy(m->peer_ip, "unknown");
    }
  }
  return m->peer_ip;
}

int http_req_json(http_req_t *r, json_t **out, char *msg, size_t msg_cap) {
  slice_t ct;
  if (http_req_header(r, "content-type", &ct) && ct.n > 0) {
    /* SPEC: an explicit non-JSON Content-Type is 415; none is read as JSON. */
    size_t n = ct.n;
    const char *semi = memchr(ct.p, ';', ct.n);
    if (semi) n = (size_t)(semi - ct.p);
    while (n && (ct.p[n - 1] == ' ')) n--;
    slice_t mt = slice_of(ct.p, n);
    int is_json = slice_casecmp_cstr(mt, "application/json") ||
                  (n > 5 && strncasecmp(ct.p + n - 5, "+json", 5) == 0);
    if (!is_json) {
      if (msg) snprintf(msg, msg_cap, "unsupported media type '%.*s': send application/json", (int)(n > 80 ? 80 : n), ct.p);
      return AGD_EUNSUPPORTED_MEDIA;
    }
  }
  slice_t body = http_req_body(r);
  return jsonx_parse(body.p, body.n, r->conn->srv->cfg->max_json_depth, out, msg, msg_cap);
}

/* ---- used by server.c ---- */

void http__format_refusal(buf_t *b, int retry_after_s) {
  char rid[17], body[320];
  id_request(rid);
  static const char msg[] = "server at its connection limit: retry later";
  int n = snprintf(body, sizeof(body),
                   "{\"error\":true,\"error_code\":\"UNAVAILABLE\",\"message\":\"%s\",\"detail\":\"%s\","
                   "\"request_id\":\"%s\"}",
                   msg, msg, rid);
  buf_appendf(b,
              "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nServer: agentd\r\nContent-Type: application/json\r\n"
              "Content-Length: %d\r\nRetry-After: %d\r\nX-Request-ID: %s\r\nX-Content-Type-Options: nosniff\r\n"
              "Connection: close\r\n\r\n%s",
              http_date(), n, retry_after_s, rid, body);
}

/* ---- used by ws.c / sse.c ---- */

void http__build_head(http_req_t *r, buf_t *b, int status, const char *ctype, long long clen) {
  build_head(r, b, status, ctype, clen);
}
void http__account_status(http_req_t *r, int status) { http__account(r, status); }
