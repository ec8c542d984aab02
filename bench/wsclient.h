/*
 * bench/wsclient.h: the WebSocket client connection shared by the bench clients
 * bench/wsload.c and bench/fanout.c (bench/README.md).
 *
 * Job: one client connection to agentd's /ws on a libuv loop: TCP connect, the
 * HTTP/1.1 upgrade (SPEC §6: Sec-WebSocket-Key/Accept, the access token as
 * `Authorization: Bearer` or `?token=`), then RFC 6455 framing through wslay
 * (client side, masked).  Also the HS256 access token (SPEC §2 claims, libjwt)
 * and small helpers (die, x*alloc, host address, open-file limit).
 * The program owns everything else: what a failure counts as, what a message
 * means, when to start and close connections.  It embeds wsc_conn_t as the
 * FIRST member of its own connection struct, fills the `wsc` settings and the
 * wsc_ops_t table, and gets its callbacks back with the same pointer.
 *
 * Thread: one thread, one uv loop.  The read buffer is one static buffer shared
 * by all connections: every read is consumed synchronously in the read callback.
 * Ownership: each connection owns its wslay context and its handshake/output
 * buffers, released in the handle's close callback (wsc_on_closed); the
 * program owns `token`.
 *
 * Test/bench-only header: every function is static; include it once from each
 * bench program, after defining WSC_PROG (the program's name, prefix of its
 * messages).  Traffic goes only to the address the program sets (wsc_set_host).
 */
#ifndef AGENTD_BENCH_WSCLIENT_H
#define AGENTD_BENCH_WSCLIENT_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <uv.h>
#include <wslay/wslay.h>

#ifndef WSC_PROG
#error "define WSC_PROG (the program's name) before including bench/wsclient.h"
#endif

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HS_MAX 8192 /* bytes of the 101 response we accept */

enum conn_state {
    CS_IDLE = 0,   /* not started */
    CS_CONNECTING, /* TCP connect in flight */
    CS_HANDSHAKE,  /* request sent, waiting for the 101 */
    CS_WELCOME,    /* upgraded, waiting for the first frame */
    CS_OPEN,       /* welcome received */
    CS_CLOSED,     /* handle closed (or never opened after a failure) */
};

/* Why a connection failed (handed to wsc_ops_t.fail). */
enum wsc_fail {
    WSC_FAIL_CONNECT = 0, /* tcp handle or connect */
    WSC_FAIL_HTTP_STATUS, /* the upgrade answered another status (wsc_ops_t.fail gets it) */
    WSC_FAIL_BAD_ACCEPT,  /* Sec-WebSocket-Accept missing or wrong */
    WSC_FAIL_BAD_RESPONSE,/* not an HTTP/1.1 status line, or over HS_MAX bytes */
    WSC_FAIL_EOF,         /* the server closed the TCP connection */
    WSC_FAIL_IO,          /* read/write error, or wslay could not send */
    WSC_FAIL_PROTOCOL,    /* wslay rejected the server's frames */
};

/* One connection; the program's struct starts with it. */
typedef struct wsc_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    wslay_event_context_ptr ws;
    char *hs;          /* handshake response bytes until the 101 is parsed */
    char *out;         /* bytes waiting for the write in flight to finish */
    char *wbuf;        /* buffer owned by the write in flight */
    uint32_t hs_len, out_len, out_cap;
    uint32_t id;       /* index in the program's array */
    int state;         /* enum conn_state */
    bool closing, writing, handle_open;
    char key[25];      /* Sec-WebSocket-Key (base64 of 16 random bytes) */
    char *token;       /* access token sent in the handshake; the program owns it */
} wsc_conn_t;

/* What the program does at each turn; fail/close/closed/on_msg required. */
typedef struct wsc_ops {
    /* A step failed (http_status: the status for WSC_FAIL_HTTP_STATUS, else 0).
     * The program counts it and closes the connection (c->hs is still there). */
    void (*fail)(wsc_conn_t *c, enum wsc_fail why, int http_status);
    /* The closing handshake is over (nothing left to read or write): close. */
    void (*close)(wsc_conn_t *c);
    /* The handle closed; wslay and the buffers are already released. */
    void (*closed)(wsc_conn_t *c);
    /* A whole message arrived (wslay's on_msg_recv_callback; user is the conn). */
    void (*on_msg)(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user);
    /* Optional: bytes were read, before any parsing. */
    void (*on_data)(wsc_conn_t *c);
} wsc_ops_t;

/* Settings, filled by the program before the first connection. */
static struct {
    const wsc_ops_t *ops;
    const char *path;        /* request target, e.g. "/ws" */
    bool token_in_query;     /* ?token= instead of Authorization: Bearer */
    size_t out_max;          /* pending output past which wslay is told to wait (0: no bound) */
    size_t recv_msg_max;     /* largest server message accepted */
    struct sockaddr_storage addr;
    char host_hdr[300];      /* Host header: "h:p" or "[h]:p" (wsc_set_host) */
} wsc;

static char wsc_rdbuf[65536];
static const uint8_t *wsc_rd_ptr;
static size_t wsc_rd_len, wsc_rd_pos;

static void wsc_flush(wsc_conn_t *c);

/* ---------- small helpers ---------- */

/* Prints "WSC_PROG: <message>" on stderr and exits 1. */
static void wsc_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(WSC_PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* A command-line integer lo..hi (all of s, base 10), else wsc_die naming the option. */
static __attribute__((unused)) long wsc_parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) wsc_die("bad value for %s: %s (%ld..%ld)", opt, s, lo, hi);
    return v;
}

/* qsort order of doubles, and the p-th percentile (0..100, nearest rank) of a sorted array (0 when empty). */
static __attribute__((unused)) int wsc_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static __attribute__((unused)) double wsc_pct(const double *sorted, size_t n, double p)
{
    if (!n) return 0;
    return sorted[(size_t)(p / 100.0 * (double)(n - 1) + 0.5)];
}

static __attribute__((unused)) void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static __attribute__((unused)) void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

/* base64 of `len` bytes into out (needs 4*ceil(len/3)+1 bytes). */
static void wsc_b64(const unsigned char *in, int len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, len);
}

/* Sets wsc.addr and wsc.host_hdr from a numeric IPv4 or IPv6 address; -1 if
 * host is neither. */
static int wsc_set_host(const char *host, int port)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&wsc.addr) == 0)
        snprintf(wsc.host_hdr, sizeof wsc.host_hdr, "%s:%d", host, port);
    else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&wsc.addr) == 0)
        snprintf(wsc.host_hdr, sizeof wsc.host_hdr, "[%s]:%d", host, port);
    else
        return -1;
    return 0;
}

/* Raises the soft open-file limit to the hard one; the limits in effect
 * (capped at 2^30) go to *soft and *hard when not NULL.  -1 (nothing set)
 * when the limits cannot be read. */
static int wsc_raise_nofile(int *soft, int *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    if (soft)
        *soft = rl.rlim_cur == RLIM_INFINITY ? 1 << 30 : (int)(rl.rlim_cur > (1u << 30) ? 1u << 30 : rl.rlim_cur);
    if (hard)
        *hard = rl.rlim_max == RLIM_INFINITY ? 1 << 30 : (int)(rl.rlim_max > (1u << 30) ? 1u << 30 : rl.rlim_max);
    return 0;
}

/* ---------- token ---------- */

/* An HS256 access token for user `sub` (SPEC §2 claims, valid 24 h), signed
 * with `secret`; malloc'd, the caller frees it. */
static char *wsc_mint_token(const char *secret, const char *sub)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0) wsc_die("jwt_new failed");
    long now = (long)time(NULL);
    unsigned char rnd[12];
    char jti[40], email[200];
    if (RAND_bytes(rnd, sizeof rnd) != 1) wsc_die("RAND_bytes failed");
    snprintf(jti, sizeof jti, "bench-");
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(jti + 6 + 2 * i, 3, "%02x", rnd[i]);
    snprintf(email, sizeof email, "%s@bench.local", sub);
    int r = 0;
    r |= jwt_add_grant(jwt, "sub", sub);
    r |= jwt_add_grant(jwt, "email", email);
    r |= jwt_add_grant(jwt, "jti", jti);
    r |= jwt_add_grant(jwt, "type", "access");
    r |= jwt_add_grant(jwt, "token_type", "access");
    r |= jwt_add_grant(jwt, "iss", "netra-auth-service");
    r |= jwt_add_grant_int(jwt, "iat", now);
    r |= jwt_add_grant_int(jwt, "exp", now + 24 * 3600);
    r |= jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    if (r != 0) wsc_die("cannot build the JWT");
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!tok) wsc_die("jwt_encode_str failed");
    return tok;
}

/* ---------- output path ---------- */

static void wsc_out_append(wsc_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + len) cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = (uint32_t)cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += (uint32_t)len;
}

/* Sends now when the socket takes it, else keeps the rest in c->out. 0 or -1. */
static int wsc_raw_send(wsc_conn_t *c, const uint8_t *data, size_t len)
{
    if (!c->writing && c->out_len == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r == (int)len) return 0;
        if (r < 0 && r != UV_EAGAIN) return -1;
        if (r < 0) r = 0;
        data += r;
        len -= (size_t)r;
    }
    wsc_out_append(c, data, len);
    return 0;
}

static void wsc_on_write(uv_write_t *req, int status)
{
    wsc_conn_t *c = req->data;
    free(c->wbuf);
    c->wbuf = NULL;
    c->writing = false;
    if (c->closing) return;
    if (status < 0) {
        wsc.ops->fail(c, WSC_FAIL_IO, 0);
        return;
    }
    wsc_flush(c);
}

/* Lets wslay write what it has queued, starts a write for buffered bytes, and
 * closes the connection once the closing handshake is over. */
static void wsc_flush(wsc_conn_t *c)
{
    if (c->closing) return;
    if (c->ws && c->state >= CS_WELCOME && wslay_event_want_write(c->ws)) {
        if (wslay_event_send(c->ws) != 0) {
            wsc.ops->fail(c, WSC_FAIL_IO, 0);
            return;
        }
    }
    if (!c->writing && c->out_len > 0) {
        c->wbuf = c->out;
        uv_buf_t b = uv_buf_init(c->wbuf, c->out_len);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, wsc_on_write) != 0) {
            free(c->wbuf);
            c->wbuf = NULL;
            wsc.ops->fail(c, WSC_FAIL_IO, 0);
            return;
        }
        c->writing = true;
    }
    if (c->ws && c->state >= CS_WELCOME && !c->writing && c->out_len == 0 && !wslay_event_want_read(c->ws) &&
        !wslay_event_want_write(c->ws))
        wsc.ops->close(c);
}

/* Queues one text frame and flushes; a queueing failure closes the connection. */
static __attribute__((unused)) void wsc_send_text(wsc_conn_t *c, const char *s)
{
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)s, .msg_length = strlen(s)};
    if (wslay_event_queue_msg(c->ws, &m) != 0) {
        wsc.ops->close(c);
        return;
    }
    wsc_flush(c);
}

/* ---------- wslay callbacks ---------- */

static ssize_t wsc_on_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    if (wsc_rd_pos >= wsc_rd_len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = wsc_rd_len - wsc_rd_pos;
    if (n > len) n = len;
    memcpy(buf, wsc_rd_ptr + wsc_rd_pos, n);
    wsc_rd_pos += n;
    return (ssize_t)n;
}

static ssize_t wsc_on_ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    wsc_conn_t *c = user;
    if (wsc.out_max && c->out_len > wsc.out_max) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (wsc_raw_send(c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int wsc_on_ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    if (RAND_bytes(buf, (int)len) != 1) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

/* ---------- input path and handshake ---------- */

static bool wsc_header_value(const char *hdrs, size_t len, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = hdrs, *end = hdrs + len;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *val = v;
            *vlen = (size_t)(ve - v);
            return true;
        }
        p = eol + 2;
    }
    return false;
}

/* Feeds bytes to wslay; handles its result. */
static void wsc_ws_feed(wsc_conn_t *c, const uint8_t *data, size_t len)
{
    wsc_rd_ptr = data;
    wsc_rd_len = len;
    wsc_rd_pos = 0;
    int r = wslay_event_recv(c->ws);
    wsc_rd_ptr = NULL;
    wsc_rd_len = wsc_rd_pos = 0;
    if (c->closing) return;
    if (r != 0) {
        wsc.ops->fail(c, WSC_FAIL_PROTOCOL, 0);
        return;
    }
    wsc_flush(c);
}

/* Handshake bytes: once the header block is complete, checks the status line
 * and Sec-WebSocket-Accept; the bytes after the headers go to wslay. */
static void wsc_hs_feed(wsc_conn_t *c, const char *data, size_t len)
{
    if (c->hs_len + len > HS_MAX) {
        wsc.ops->fail(c, WSC_FAIL_BAD_RESPONSE, 0);
        return;
    }
    if (!c->hs) c->hs = xmalloc(HS_MAX);
    memcpy(c->hs + c->hs_len, data, len);
    c->hs_len += (uint32_t)len;
    const char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
    if (!end) return;
    size_t hlen = (size_t)(end - c->hs) + 2; /* include the last header's CRLF */
    size_t body_off = (size_t)(end - c->hs) + 4;
    int status = 0;
    if (hlen < 12 || strncmp(c->hs, "HTTP/1.1 ", 9) != 0) {
        wsc.ops->fail(c, WSC_FAIL_BAD_RESPONSE, 0);
        return;
    }
    for (int i = 9; i < 12; i++) {
        if (c->hs[i] < '0' || c->hs[i] > '9') {
            wsc.ops->fail(c, WSC_FAIL_BAD_RESPONSE, 0);
            return;
        }
        status = status * 10 + (c->hs[i] - '0');
    }
    if (status != 101) {
        wsc.ops->fail(c, WSC_FAIL_HTTP_STATUS, status);
        return;
    }
    const char *v;
    size_t vlen;
    char buf[64], expect[40];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int n = snprintf(buf, sizeof buf, "%s%s", c->key, WS_GUID);
    if (!EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL)) wsc_die("EVP_Digest failed");
    wsc_b64(md, (int)mdlen, expect);
    if (!wsc_header_value(c->hs, hlen, "Sec-WebSocket-Accept", &v, &vlen) || vlen != strlen(expect) ||
        memcmp(v, expect, vlen) != 0) {
        wsc.ops->fail(c, WSC_FAIL_BAD_ACCEPT, 0);
        return;
    }
    /* Bytes after the header block are the first frames. */
    size_t rest = c->hs_len - body_off;
    char *hs = c->hs;
    c->hs = NULL;
    c->hs_len = 0;
    c->state = CS_WELCOME;
    if (rest > 0)
        wsc_ws_feed(c, (const uint8_t *)hs + body_off, rest);
    free(hs);
}

static void wsc_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = wsc_rdbuf;
    buf->len = sizeof wsc_rdbuf;
}

static void wsc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    wsc_conn_t *c = s->data;
    if (c->closing) return;
    if (nread == 0) return;
    if (nread < 0) {
        wsc.ops->fail(c, nread == UV_EOF ? WSC_FAIL_EOF : WSC_FAIL_IO, 0);
        return;
    }
    if (wsc.ops->on_data) wsc.ops->on_data(c);
    if (c->state == CS_HANDSHAKE)
        wsc_hs_feed(c, buf->base, (size_t)nread);
    else if (c->ws)
        wsc_ws_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---------- connection lifecycle ---------- */

/* Close callback of the tcp handle: releases wslay and the buffers, then
 * tells the program (wsc_ops_t.closed). */
static void wsc_on_closed(uv_handle_t *h)
{
    wsc_conn_t *c = h->data;
    if (c->ws) wslay_event_context_free(c->ws);
    c->ws = NULL;
    free(c->hs);
    free(c->out);
    c->hs = c->out = NULL;
    c->out_len = c->out_cap = c->hs_len = 0;
    c->handle_open = false;
    c->state = CS_CLOSED;
    wsc.ops->closed(c);
}

/* Closes the tcp handle (wsc_on_closed follows), or marks the connection
 * closed when it has none.  The caller has set c->closing. */
static void wsc_close_handle(wsc_conn_t *c)
{
    if (c->handle_open)
        uv_close((uv_handle_t *)&c->tcp, wsc_on_closed);
    else
        c->state = CS_CLOSED;
}

static void wsc_on_connect(uv_connect_t *req, int status)
{
    wsc_conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0) {
        wsc.ops->fail(c, WSC_FAIL_CONNECT, 0);
        return;
    }
    c->state = CS_HANDSHAKE;
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) wsc_die("RAND_bytes failed");
    wsc_b64(rnd, sizeof rnd, c->key);
    char req_buf[2048];
    int n;
    if (wsc.token_in_query)
        n = snprintf(req_buf, sizeof req_buf,
                     "GET %s?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     wsc.path, c->token, wsc.host_hdr, c->key);
    else
        n = snprintf(req_buf, sizeof req_buf,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                     wsc.path, wsc.host_hdr, c->key, c->token);
    if (n < 0 || (size_t)n >= sizeof req_buf) wsc_die("handshake request too long");
    if (uv_read_start((uv_stream_t *)&c->tcp, wsc_on_alloc, wsc_on_read) != 0 ||
        wsc_raw_send(c, (const uint8_t *)req_buf, (size_t)n) != 0) {
        wsc.ops->fail(c, WSC_FAIL_IO, 0);
        return;
    }
    wsc_flush(c);
}

/* First half of a start: state CS_CONNECTING, the wslay client context and
 * the tcp handle.  0, or -1 (nothing left open) when the handle cannot be
 * made; then the program fails the connection (WSC_FAIL_CONNECT). */
static int wsc_conn_init(wsc_conn_t *c, uv_loop_t *loop)
{
    struct wslay_event_callbacks cb = {
        .recv_callback = wsc_on_ws_recv,
        .send_callback = wsc_on_ws_send,
        .genmask_callback = wsc_on_ws_genmask,
        .on_msg_recv_callback = wsc.ops->on_msg,
    };
    c->state = CS_CONNECTING;
    if (wslay_event_context_client_init(&c->ws, &cb, c) != 0) abort();
    wslay_event_config_set_max_recv_msg_length(c->ws, wsc.recv_msg_max);
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
        return -1;
    }
    c->tcp.data = c;
    c->handle_open = true;
    return 0;
}

/* Second half: connects to wsc.addr; the handshake follows in callbacks.  A
 * failure goes to wsc_ops_t.fail (WSC_FAIL_CONNECT). */
static void wsc_conn_connect(wsc_conn_t *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&wsc.addr, wsc_on_connect) != 0)
        wsc.ops->fail(c, WSC_FAIL_CONNECT, 0);
}

#endif /* AGENTD_BENCH_WSCLIENT_H */
