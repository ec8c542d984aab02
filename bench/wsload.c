/*
 * wsload: WebSocket load client for agentd's /ws endpoint (bench/README.md).
 *
 * Job: open N WebSocket connections (default 10,000) to one server on a single
 * libuv loop, wait for each connection's welcome frame (SPEC §6), report how
 * many connected and how long it took, optionally sample the server's RSS
 * (/proc/PID/status VmRSS) before and after so as to print memory per idle
 * connection, then run closed-loop ping round trips on M of them for a fixed
 * duration and print throughput and latency percentiles. The last line of
 * output is `RESULT {json}` with every figure, for scripts (bench/run.sh).
 *
 * Thread: one thread, one uv loop; nothing is shared.
 * Ownership: all connections live in one calloc'd array owned by `g`; each
 * connection owns its wslay context and its output buffers, released in the
 * handle's close callback. The read buffer is one static buffer shared by all
 * connections: every read is consumed synchronously in the read callback.
 * Libraries: libuv (I/O), wslay (RFC 6455 framing, client side), OpenSSL
 * (random key and masks, SHA-1 + base64 for Sec-WebSocket-Accept), libjwt
 * (HS256 access token, SPEC §2). Protocol: SPEC §6 (handshake, welcome frame,
 * `ping` -> `pong`).
 *
 * Traffic goes only to the address given with --host (default 127.0.0.1).
 */
#include <errno.h>
#include <inttypes.h>
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

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HS_MAX 8192              /* bytes of the 101 response we accept */
#define OUT_MAX (1u << 20)       /* per-connection pending output bound */
#define RECV_MSG_MAX (1u << 20)  /* largest server message we accept */
#define LAT_MAX_SAMPLES 50000000u

enum conn_state {
    CS_IDLE = 0,   /* not started */
    CS_CONNECTING, /* TCP connect in flight */
    CS_HANDSHAKE,  /* request sent, waiting for the 101 */
    CS_WELCOME,    /* upgraded, waiting for the first frame */
    CS_OPEN,       /* welcome received */
    CS_CLOSED,     /* handle closed (or never opened after a failure) */
};

enum fail_reason {
    FR_CONNECT = 0,
    FR_HTTP_STATUS,
    FR_BAD_ACCEPT,
    FR_BAD_RESPONSE,
    FR_EOF,
    FR_IO,
    FR_PROTOCOL,
    FR_TIMEOUT,
    FR_ABORTED,
    FR_COUNT
};
static const char *const fail_names[FR_COUNT] = {
    "connect", "http_status", "bad_accept", "bad_response", "eof_before_welcome", "io", "protocol", "timeout", "aborted",
};

enum phase { PH_CONNECT, PH_SETTLE, PH_PING, PH_CLOSE, PH_DONE };
enum mode { MODE_PING, MODE_APPPING };

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    wslay_event_context_ptr ws;
    char *hs;          /* handshake response bytes until the 101 is parsed */
    char *out;         /* bytes waiting for the write in flight to finish */
    char *wbuf;        /* buffer owned by the write in flight */
    uint32_t hs_len, out_len, out_cap;
    int32_t active;    /* index among active connections, -1 if none */
    uint32_t id;
    uint8_t state;
    bool closing, writing, handle_open, counted_open;
    char key[25];      /* Sec-WebSocket-Key (base64 of 16 random bytes) */
} conn_t;

typedef struct active {
    uint64_t *sent;    /* ring of `pipeline` send times (ns) */
    uint64_t seq_sent, seq_recv;
    uint32_t head, inflight;
} active_t;

static struct {
    /* options */
    const char *host, *secret, *path, *auth, *sub;
    int port, conns, active_n, duration, pipeline, users, settle_ms, timeout_s, server_pid;
    double connect_rate;
    int max_pending;
    enum mode mode;
    bool quiet;

    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char **tokens;
    char host_hdr[300];
    conn_t *c;
    active_t *act;
    int act_count;

    uv_timer_t phase_timer, pump_timer, progress_timer;
    uv_signal_t sigint;
    enum phase phase;

    int next, pending, ok, failed, live_handles;
    int fail_count[FR_COUNT];
    int last_http_status;
    int welcome_unexpected;
    int dropped_idle, dropped_ping;
    uint64_t t_start_ns, t_connected_ns, t_ping_start_ns, t_ping_end_ns;
    long rss_base_kib, rss_after_kib, self_rss_base_kib, self_rss_after_kib;
    int fd_soft, fd_hard;

    /* ping phase */
    bool ping_stop;
    uint64_t round_trips, ping_errors, error_frames, seq_mismatch;
    uint32_t *lat;
    size_t lat_len, lat_cap;
    uint64_t lat_sum_us;
    bool interrupted;
} g;

static char rdbuf[65536];
static const uint8_t *rd_ptr;
static size_t rd_len, rd_pos;

static void conn_close(conn_t *c);
static void conn_fail(conn_t *c, enum fail_reason why);
static void conn_flush(conn_t *c);
static void pump(void);
static void phase_connect_done(void);
static void phase_close_start(void);
static void ping_send_one(conn_t *c);

/* ---------- small helpers ---------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xcalloc(size_t n, size_t m)
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

/* VmRSS of /proc/<pid>/status in KiB, or -1. pid 0 means ourselves. */
static long read_rss_kib(int pid)
{
    char path[64], line[256];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/status", pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            char *end;
            errno = 0;
            long x = strtol(line + 6, &end, 10);
            if (errno == 0 && end != line + 6) v = x;
            break;
        }
    }
    fclose(f);
    return v;
}

static double ns_to_s(uint64_t ns) { return (double)ns / 1e9; }

/* base64 of `len` bytes into out (needs 4*ceil(len/3)+1 bytes). */
static void b64(const unsigned char *in, int len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, len);
}

/* ---------- token ---------- */

static char *mint_token(const char *sub)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0) die("jwt_new failed");
    long now = (long)time(NULL);
    unsigned char rnd[12];
    char jti[40], email[200];
    if (RAND_bytes(rnd, sizeof rnd) != 1) die("RAND_bytes failed");
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
    r |= jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)g.secret, (int)strlen(g.secret));
    if (r != 0) die("cannot build the JWT");
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!tok) die("jwt_encode_str failed");
    return tok;
}

/* ---------- output path ---------- */

static void out_append(conn_t *c, const uint8_t *data, size_t len)
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
static int raw_send(conn_t *c, const uint8_t *data, size_t len)
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
    out_append(c, data, len);
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    free(c->wbuf);
    c->wbuf = NULL;
    c->writing = false;
    if (c->closing) return;
    if (status < 0) {
        conn_fail(c, FR_IO);
        return;
    }
    conn_flush(c);
}

static ssize_t on_ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    conn_t *c = user;
    if (c->out_len > OUT_MAX) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (raw_send(c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Lets wslay write what it has queued, starts a write for buffered bytes, and
 * closes the connection once the closing handshake is over. */
static void conn_flush(conn_t *c)
{
    if (c->closing) return;
    if (c->ws && c->state >= CS_WELCOME && wslay_event_want_write(c->ws)) {
        if (wslay_event_send(c->ws) != 0) {
            conn_fail(c, FR_IO);
            return;
        }
    }
    if (!c->writing && c->out_len > 0) {
        c->wbuf = c->out;
        uv_buf_t b = uv_buf_init(c->wbuf, c->out_len);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
            free(c->wbuf);
            c->wbuf = NULL;
            conn_fail(c, FR_IO);
            return;
        }
        c->writing = true;
    }
    if (c->ws && c->state >= CS_WELCOME && !c->writing && c->out_len == 0 && !wslay_event_want_read(c->ws) &&
        !wslay_event_want_write(c->ws))
        conn_close(c);
}

/* ---------- connection lifecycle ---------- */

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->ws) wslay_event_context_free(c->ws);
    c->ws = NULL;
    free(c->hs);
    free(c->out);
    c->hs = c->out = NULL;
    c->out_len = c->out_cap = c->hs_len = 0;
    c->handle_open = false;
    c->state = CS_CLOSED;
    g.live_handles--;
    if (g.phase == PH_CLOSE && g.live_handles == 0) {
        g.phase = PH_DONE;
        uv_close((uv_handle_t *)&g.phase_timer, NULL);
        uv_close((uv_handle_t *)&g.pump_timer, NULL);
        uv_close((uv_handle_t *)&g.progress_timer, NULL);
        uv_close((uv_handle_t *)&g.sigint, NULL);
    }
}

static bool state_pending(uint8_t s) { return s == CS_CONNECTING || s == CS_HANDSHAKE || s == CS_WELCOME; }

/* Closes the handle; counts a drop when an open connection goes away before
 * the close phase. Idempotent. */
static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = true;
    if (state_pending(c->state)) {
        /* a pending connection closed without conn_fail: by the close phase
         * (interrupted) or otherwise counted as an early EOF */
        g.pending--;
        g.failed++;
        g.fail_count[g.phase == PH_CLOSE ? FR_ABORTED : FR_EOF]++;
        if (g.phase == PH_CONNECT) {
            pump();
            if (g.ok + g.failed == g.conns) phase_connect_done();
        }
    } else if (c->state == CS_OPEN && g.phase != PH_CLOSE) {
        if (c->active >= 0 && g.phase == PH_PING) {
            g.dropped_ping++;
            g.ping_errors++;
        } else {
            g.dropped_idle++;
        }
    }
    if (c->handle_open)
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    else
        c->state = CS_CLOSED;
}

static void conn_fail(conn_t *c, enum fail_reason why)
{
    if (c->closing) return;
    if (state_pending(c->state) || c->state == CS_IDLE) {
        c->closing = true;
        if (c->state != CS_IDLE) g.pending--;
        g.failed++;
        g.fail_count[why]++;
        if (c->handle_open)
            uv_close((uv_handle_t *)&c->tcp, on_closed);
        else
            c->state = CS_CLOSED;
        if (g.phase == PH_CONNECT) {
            pump();
            if (g.ok + g.failed == g.conns) phase_connect_done();
        }
        return;
    }
    conn_close(c);
}

static void conn_opened(conn_t *c)
{
    c->state = CS_OPEN;
    g.pending--;
    g.ok++;
    if (g.phase == PH_CONNECT) {
        pump();
        if (g.ok + g.failed == g.conns) phase_connect_done();
    }
}

/* ---------- wslay callbacks ---------- */

static ssize_t on_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    if (rd_pos >= rd_len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = rd_len - rd_pos;
    if (n > len) n = len;
    memcpy(buf, rd_ptr + rd_pos, n);
    rd_pos += n;
    return (ssize_t)n;
}

static int on_ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    if (RAND_bytes(buf, (int)len) != 1) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

static void record_latency(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us > UINT32_MAX) us = UINT32_MAX;
    g.lat_sum_us += us;
    if (g.lat_len == g.lat_cap) {
        if (g.lat_cap >= LAT_MAX_SAMPLES) return;
        g.lat_cap = g.lat_cap ? g.lat_cap * 2 : 65536;
        g.lat = xrealloc(g.lat, g.lat_cap * sizeof *g.lat);
    }
    g.lat[g.lat_len++] = (uint32_t)us;
}

/* A reply (pong, or an error frame in its place) arrived on an active conn. */
static void ping_reply(conn_t *c, bool is_error, const uint8_t *payload, size_t plen)
{
    active_t *a = &g.act[c->active];
    if (a->inflight == 0) return; /* unsolicited */
    uint64_t now = uv_hrtime();
    uint64_t t0 = a->sent[a->head];
    a->head = (a->head + 1) % (uint32_t)g.pipeline;
    a->inflight--;
    if (g.mode == MODE_PING) {
        uint64_t seq = 0;
        if (plen == 8) memcpy(&seq, payload, 8);
        if (plen != 8 || seq != a->seq_recv) g.seq_mismatch++;
    }
    a->seq_recv++;
    if (is_error) {
        g.ping_errors++;
        g.error_frames++;
    } else if (!g.ping_stop) {
        g.round_trips++;
        record_latency(now - t0);
    }
    if (!g.ping_stop) ping_send_one(c);
}

static void on_ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    conn_t *c = user;
    if (c->closing) return;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        if (c->state == CS_WELCOME) {
            if (!memmem(arg->msg, arg->msg_length, "system_message", 14)) g.welcome_unexpected++;
            conn_opened(c);
            return;
        }
        if (c->active >= 0 && g.mode == MODE_APPPING) {
            bool pong = memmem(arg->msg, arg->msg_length, "\"pong\"", 6) != NULL;
            bool err = memmem(arg->msg, arg->msg_length, "\"error\"", 7) != NULL;
            if (pong || err) ping_reply(c, !pong, arg->msg, arg->msg_length);
        }
        return;
    }
    if (arg->opcode == WSLAY_PONG && c->active >= 0 && g.mode == MODE_PING && c->state == CS_OPEN)
        ping_reply(c, false, arg->msg, arg->msg_length);
    /* PING is answered by wslay; CLOSE is answered by wslay and ends the conn in conn_flush. */
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = on_ws_recv,
    .send_callback = on_ws_send,
    .genmask_callback = on_ws_genmask,
    .on_msg_recv_callback = on_ws_msg,
};

/* ---------- handshake ---------- */

static bool header_value(const char *hdrs, size_t len, const char *name, const char **val, size_t *vlen)
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
static void ws_feed(conn_t *c, const uint8_t *data, size_t len)
{
    rd_ptr = data;
    rd_len = len;
    rd_pos = 0;
    int r = wslay_event_recv(c->ws);
    rd_ptr = NULL;
    rd_len = rd_pos = 0;
    if (c->closing) return;
    if (r != 0) {
        conn_fail(c, FR_PROTOCOL);
        return;
    }
    conn_flush(c);
}

/* Handshake bytes: once the header block is complete, checks the status line
 * and Sec-WebSocket-Accept; the bytes after the headers go to wslay. */
static void hs_feed(conn_t *c, const char *data, size_t len)
{
    if (c->hs_len + len > HS_MAX) {
        conn_fail(c, FR_BAD_RESPONSE);
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
        conn_fail(c, FR_BAD_RESPONSE);
        return;
    }
    for (int i = 9; i < 12; i++) {
        if (c->hs[i] < '0' || c->hs[i] > '9') {
            conn_fail(c, FR_BAD_RESPONSE);
            return;
        }
        status = status * 10 + (c->hs[i] - '0');
    }
    if (status != 101) {
        g.last_http_status = status;
        conn_fail(c, FR_HTTP_STATUS);
        return;
    }
    const char *v;
    size_t vlen;
    char buf[64], expect[40];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int n = snprintf(buf, sizeof buf, "%s%s", c->key, WS_GUID);
    if (!EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL)) die("EVP_Digest failed");
    b64(md, (int)mdlen, expect);
    if (!header_value(c->hs, hlen, "Sec-WebSocket-Accept", &v, &vlen) || vlen != strlen(expect) ||
        memcmp(v, expect, vlen) != 0) {
        conn_fail(c, FR_BAD_ACCEPT);
        return;
    }
    /* Bytes after the header block are the first frames. */
    size_t rest = c->hs_len - body_off;
    char *hs = c->hs;
    c->hs = NULL;
    c->hs_len = 0;
    c->state = CS_WELCOME;
    if (rest > 0)
        ws_feed(c, (const uint8_t *)hs + body_off, rest);
    free(hs);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = rdbuf;
    buf->len = sizeof rdbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (c->closing) return;
    if (nread == 0) return;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? FR_EOF : FR_IO);
        return;
    }
    if (c->state == CS_HANDSHAKE)
        hs_feed(c, buf->base, (size_t)nread);
    else if (c->ws)
        ws_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0) {
        conn_fail(c, FR_CONNECT);
        return;
    }
    c->state = CS_HANDSHAKE;
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) die("RAND_bytes failed");
    b64(rnd, sizeof rnd, c->key);
    const char *tok = g.tokens[c->id % (uint32_t)g.users];
    char req_buf[2048];
    int n;
    if (strcmp(g.auth, "query") == 0)
        n = snprintf(req_buf, sizeof req_buf,
                     "GET %s?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     g.path, tok, g.host_hdr, c->key);
    else
        n = snprintf(req_buf, sizeof req_buf,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                     g.path, g.host_hdr, c->key, tok);
    if (n < 0 || (size_t)n >= sizeof req_buf) die("handshake request too long");
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0 ||
        raw_send(c, (const uint8_t *)req_buf, (size_t)n) != 0) {
        conn_fail(c, FR_IO);
        return;
    }
    conn_flush(c);
}

static void conn_start(conn_t *c)
{
    c->state = CS_CONNECTING;
    g.pending++;
    if (wslay_event_context_client_init(&c->ws, &ws_callbacks, c) != 0) abort();
    wslay_event_config_set_max_recv_msg_length(c->ws, RECV_MSG_MAX);
    if (uv_tcp_init(g.loop, &c->tcp) != 0) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
        conn_fail(c, FR_CONNECT);
        return;
    }
    c->tcp.data = c;
    c->handle_open = true;
    g.live_handles++;
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g.addr, on_connect) != 0)
        conn_fail(c, FR_CONNECT);
}

/* Starts connections while under the pending cap and the rate. Not reentrant:
 * a synchronous failure inside conn_start calls pump again, which returns. */
static void pump(void)
{
    static bool in_pump;
    if (in_pump || g.phase != PH_CONNECT) return;
    in_pump = true;
    while (g.next < g.conns && g.pending < g.max_pending) {
        if (g.connect_rate > 0) {
            double elapsed = ns_to_s(uv_hrtime() - g.t_start_ns);
            if ((double)g.next >= elapsed * g.connect_rate + 1) break;
        }
        conn_start(&g.c[g.next++]);
    }
    in_pump = false;
}

/* ---------- phases ---------- */

static void on_pump_timer(uv_timer_t *t)
{
    pump();
    if (g.phase == PH_CONNECT && g.ok + g.failed == g.conns) phase_connect_done();
}

static void on_progress(uv_timer_t *t)
{
    if (g.quiet) return;
    if (g.phase == PH_CONNECT)
        fprintf(stderr, "  ... %.1fs: %d connected, %d failed, %d pending\n", ns_to_s(uv_hrtime() - g.t_start_ns),
                g.ok, g.failed, g.pending);
    else if (g.phase == PH_PING)
        fprintf(stderr, "  ... %.1fs: %" PRIu64 " round trips\n", ns_to_s(uv_hrtime() - g.t_ping_start_ns),
                g.round_trips);
}

static void ping_send_one(conn_t *c)
{
    active_t *a = &g.act[c->active];
    if (c->closing || c->state != CS_OPEN || a->inflight >= (uint32_t)g.pipeline) return;
    struct wslay_event_msg m;
    static const char app_ping[] = "{\"type\":\"ping\"}";
    uint64_t seq = a->seq_sent;
    if (g.mode == MODE_PING) {
        m.opcode = WSLAY_PING;
        m.msg = (const uint8_t *)&seq;
        m.msg_length = sizeof seq;
    } else {
        m.opcode = WSLAY_TEXT_FRAME;
        m.msg = (const uint8_t *)app_ping;
        m.msg_length = sizeof app_ping - 1;
    }
    if (wslay_event_queue_msg(c->ws, &m) != 0) {
        g.ping_errors++;
        return;
    }
    a->sent[(a->head + a->inflight) % (uint32_t)g.pipeline] = uv_hrtime();
    a->inflight++;
    a->seq_sent++;
    conn_flush(c);
}

static void on_ping_end(uv_timer_t *t)
{
    g.ping_stop = true;
    g.t_ping_end_ns = uv_hrtime();
    phase_close_start();
}

static void phase_ping_start(void)
{
    g.phase = PH_PING;
    int want = g.active_n;
    g.act = xcalloc((size_t)(want > 0 ? want : 1), sizeof *g.act);
    for (int i = 0; i < g.conns && g.act_count < want; i++) {
        conn_t *c = &g.c[i];
        if (c->state != CS_OPEN || c->closing) continue;
        c->active = g.act_count;
        g.act[g.act_count].sent = xcalloc((size_t)g.pipeline, sizeof(uint64_t));
        g.act_count++;
    }
    if (!g.quiet)
        printf("ping: mode=%s active=%d pipeline=%d duration=%ds\n", g.mode == MODE_PING ? "ping" : "appping",
               g.act_count, g.pipeline, g.duration);
    fflush(stdout);
    g.t_ping_start_ns = uv_hrtime();
    if (g.act_count == 0 || g.duration <= 0) {
        g.t_ping_end_ns = g.t_ping_start_ns;
        g.ping_stop = true;
        phase_close_start();
        return;
    }
    for (int i = 0; i < g.conns; i++) {
        conn_t *c = &g.c[i];
        if (c->active < 0) continue;
        for (int k = 0; k < g.pipeline; k++) ping_send_one(c);
    }
    uv_timer_start(&g.phase_timer, on_ping_end, (uint64_t)g.duration * 1000, 0);
}

static void on_settled(uv_timer_t *t)
{
    if (g.server_pid > 0) g.rss_after_kib = read_rss_kib(g.server_pid);
    g.self_rss_after_kib = read_rss_kib(0);
    int open_now = g.ok - g.dropped_idle;
    if (!g.quiet) {
        if (g.server_pid > 0 && g.rss_base_kib >= 0 && g.rss_after_kib >= 0 && g.ok > 0)
            printf("server RSS: %ld KiB before, %ld KiB with %d idle connections: %.2f KiB per connection\n",
                   g.rss_base_kib, g.rss_after_kib, open_now,
                   (double)(g.rss_after_kib - g.rss_base_kib) / (double)g.ok);
        else if (g.server_pid > 0)
            printf("server RSS: unavailable (pid %d)\n", g.server_pid);
        printf("client RSS: %ld KiB before, %ld KiB after connecting\n", g.self_rss_base_kib,
               g.self_rss_after_kib);
        if (g.dropped_idle) printf("idle: %d connections dropped while idle\n", g.dropped_idle);
    }
    fflush(stdout);
    phase_ping_start();
}

static void phase_connect_done(void)
{
    if (g.phase != PH_CONNECT) return;
    g.phase = PH_SETTLE;
    g.t_connected_ns = uv_hrtime();
    uv_timer_stop(&g.pump_timer);
    uv_timer_stop(&g.phase_timer);
    double secs = ns_to_s(g.t_connected_ns - g.t_start_ns);
    if (!g.quiet) {
        printf("connect: %d/%d connected, %d failed in %.3f s (%.0f conn/s)\n", g.ok, g.conns, g.failed, secs,
               secs > 0 ? g.ok / secs : 0.0);
        for (int i = 0; i < FR_COUNT; i++)
            if (g.fail_count[i])
                printf("  failed %-20s %d%s\n", fail_names[i], g.fail_count[i],
                       i == FR_HTTP_STATUS ? " (see last_http_status)" : "");
        if (g.last_http_status) printf("  last HTTP status: %d\n", g.last_http_status);
        if (g.welcome_unexpected) printf("  %d first frames were not system_message\n", g.welcome_unexpected);
    }
    fflush(stdout);
    uv_timer_start(&g.phase_timer, on_settled, (uint64_t)g.settle_ms, 0);
}

static void on_connect_timeout(uv_timer_t *t)
{
    if (g.phase != PH_CONNECT) return;
    if (!g.quiet) fprintf(stderr, "wsload: connect phase timed out after %d s\n", g.timeout_s);
    /* Never-started connections and pending ones fail with "timeout". */
    g.phase = PH_SETTLE; /* stop pump; conn_fail won't re-enter phase logic */
    for (int i = 0; i < g.conns; i++) {
        conn_t *c = &g.c[i];
        if (c->state == CS_IDLE) {
            g.failed++;
            g.fail_count[FR_TIMEOUT]++;
            c->state = CS_CLOSED;
        } else if (state_pending(c->state) && !c->closing) {
            conn_fail(c, FR_TIMEOUT);
        }
    }
    g.next = g.conns;
    g.phase = PH_CONNECT;
    phase_connect_done();
}

static void on_close_timeout(uv_timer_t *t)
{
    for (int i = 0; i < g.conns; i++)
        if (g.c[i].handle_open && !g.c[i].closing) conn_close(&g.c[i]);
}

static void phase_close_start(void)
{
    if (g.phase == PH_CLOSE || g.phase == PH_DONE) return;
    g.phase = PH_CLOSE;
    for (int i = g.next; i < g.conns; i++) { /* never started (interrupted while connecting) */
        if (g.c[i].state != CS_IDLE) continue;
        g.c[i].state = CS_CLOSED;
        g.failed++;
        g.fail_count[FR_ABORTED]++;
    }
    uv_timer_stop(&g.phase_timer);
    uv_timer_stop(&g.pump_timer);
    uv_timer_stop(&g.progress_timer);
    for (int i = 0; i < g.conns; i++) {
        conn_t *c = &g.c[i];
        if (!c->handle_open || c->closing) continue;
        if (c->state == CS_OPEN && c->ws) {
            if (wslay_event_queue_close(c->ws, 1000, NULL, 0) != 0) {
                conn_close(c);
                continue;
            }
            conn_flush(c);
        } else {
            conn_close(c);
        }
    }
    if (g.live_handles == 0) {
        g.phase = PH_DONE;
        uv_close((uv_handle_t *)&g.phase_timer, NULL);
        uv_close((uv_handle_t *)&g.pump_timer, NULL);
        uv_close((uv_handle_t *)&g.progress_timer, NULL);
        uv_close((uv_handle_t *)&g.sigint, NULL);
    } else {
        uv_timer_start(&g.phase_timer, on_close_timeout, 3000, 0);
    }
}

static void on_sigint(uv_signal_t *s, int signum)
{
    if (g.interrupted) return;
    g.interrupted = true;
    fprintf(stderr, "wsload: interrupted, closing\n");
    if (g.phase == PH_PING) {
        g.ping_stop = true;
        g.t_ping_end_ns = uv_hrtime();
    }
    if (g.phase == PH_CONNECT || g.phase == PH_SETTLE) g.t_connected_ns = g.t_connected_ns ? g.t_connected_ns : uv_hrtime();
    phase_close_start();
}

/* ---------- report ---------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t pct(double p)
{
    if (g.lat_len == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)g.lat_len);
    if (i >= g.lat_len) i = g.lat_len - 1;
    return g.lat[i];
}

static void report(void)
{
    if (g.lat_len) qsort(g.lat, g.lat_len, sizeof *g.lat, cmp_u32);
    double connect_s = g.t_connected_ns ? ns_to_s(g.t_connected_ns - g.t_start_ns) : 0.0;
    double ping_s = g.t_ping_end_ns > g.t_ping_start_ns ? ns_to_s(g.t_ping_end_ns - g.t_ping_start_ns) : 0.0;
    double rps = ping_s > 0 ? (double)g.round_trips / ping_s : 0.0;
    double mean = g.round_trips ? (double)g.lat_sum_us / (double)g.round_trips : 0.0;
    uint32_t p50 = pct(50), p90 = pct(90), p99 = pct(99), pmax = g.lat_len ? g.lat[g.lat_len - 1] : 0;
    bool have_rss = g.server_pid > 0 && g.rss_base_kib >= 0 && g.rss_after_kib >= 0 && g.ok > 0;
    double rss_per = have_rss ? (double)(g.rss_after_kib - g.rss_base_kib) / (double)g.ok : 0.0;
    uint64_t errors = g.ping_errors + g.seq_mismatch;

    if (!g.quiet) {
        printf("round trips: %" PRIu64 " in %.3f s = %.0f/s (%d active, pipeline %d, mode %s)\n", g.round_trips,
               ping_s, rps, g.act_count, g.pipeline, g.mode == MODE_PING ? "ping" : "appping");
        printf("latency us: p50 %u  p90 %u  p99 %u  max %u  mean %.1f\n", p50, p90, p99, pmax, mean);
        printf("errors: %" PRIu64 " (error frames %" PRIu64 ", dropped during ping %d, sequence mismatches %" PRIu64
               "), dropped while idle %d\n",
               errors, g.error_frames, g.dropped_ping, g.seq_mismatch, g.dropped_idle);
    }

    printf("RESULT {\"conns\":%d,\"connected\":%d,\"connect_failed\":%d,\"connect_time_s\":%.3f,"
           "\"connect_rate_per_s\":%.1f,\"fail_reasons\":{",
           g.conns, g.ok, g.failed, connect_s, connect_s > 0 ? g.ok / connect_s : 0.0);
    bool first = true;
    for (int i = 0; i < FR_COUNT; i++) {
        if (!g.fail_count[i]) continue;
        printf("%s\"%s\":%d", first ? "" : ",", fail_names[i], g.fail_count[i]);
        first = false;
    }
    printf("},\"last_http_status\":%d,\"dropped_idle\":%d,", g.last_http_status, g.dropped_idle);
    if (have_rss)
        printf("\"server_pid\":%d,\"server_rss_before_kib\":%ld,\"server_rss_after_kib\":%ld,"
               "\"rss_per_conn_kib\":%.3f,",
               g.server_pid, g.rss_base_kib, g.rss_after_kib, rss_per);
    else
        printf("\"server_pid\":%d,\"server_rss_before_kib\":null,\"server_rss_after_kib\":null,"
               "\"rss_per_conn_kib\":null,",
               g.server_pid);
    printf("\"client_rss_after_kib\":%ld,\"mode\":\"%s\",\"active\":%d,\"pipeline\":%d,\"duration_s\":%.3f,"
           "\"round_trips\":%" PRIu64 ",\"round_trips_per_s\":%.1f,"
           "\"latency_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"max\":%u,\"mean\":%.1f},"
           "\"errors\":%" PRIu64 ",\"error_frames\":%" PRIu64 ",\"dropped_ping\":%d,\"seq_mismatch\":%" PRIu64
           ",\"interrupted\":%s}\n",
           g.self_rss_after_kib, g.mode == MODE_PING ? "ping" : "appping", g.act_count, g.pipeline, ping_s,
           g.round_trips, rps, p50, p90, p99, pmax, mean, errors, g.error_frames, g.dropped_ping, g.seq_mismatch,
           g.interrupted ? "true" : "false");
    fflush(stdout);
}

/* ---------- options ---------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsload --port P --secret S [options]\n"
            "  --host H           server address (default 127.0.0.1)\n"
            "  --port P           server port (required)\n"
            "  --path P           WebSocket path (default /ws)\n"
            "  --secret S         HS256 secret used to mint the access token (required)\n"
            "  --sub ID           token subject (default usr_bench; with --users U: ID_0..ID_U-1)\n"
            "  --users U          distinct users (tokens), connections spread round-robin (default 1)\n"
            "  --auth header|query  send the token as Authorization: Bearer (default) or ?token=\n"
            "  --conns N          connections to open (default 10000)\n"
            "  --active M         connections used for ping round trips (default 100)\n"
            "  --duration S       seconds of ping round trips (default 10)\n"
            "  --mode ping|appping  WebSocket PING frames or {\"type\":\"ping\"} text frames (default ping)\n"
            "  --pipeline K       pings in flight per active connection (default 1)\n"
            "  --connect-rate R   connections started per second (default: unlimited)\n"
            "  --max-pending P    simultaneous pending handshakes (default 500)\n"
            "  --server-pid PID   sample the server's VmRSS before and after connecting\n"
            "  --settle-ms MS     idle wait after connecting before sampling RSS (default 1000)\n"
            "  --timeout S        connect phase deadline (default 120)\n"
            "  --quiet            only the RESULT line\n");
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) die("bad value for %s: %s (%ld..%ld)", opt, s, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv)
{
    g.host = "127.0.0.1";
    g.path = "/ws";
    g.auth = "header";
    g.sub = "usr_bench";
    g.conns = 10000;
    g.active_n = 100;
    g.duration = 10;
    g.pipeline = 1;
    g.users = 1;
    g.settle_ms = 1000;
    g.timeout_s = 120;
    g.max_pending = 500;
    g.mode = MODE_PING;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--quiet") == 0) {
            g.quiet = true;
            continue;
        }
        if (i + 1 >= argc) die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0) g.host = v;
        else if (strcmp(a, "--port") == 0) g.port = (int)parse_long(a, v, 1, 65535);
        else if (strcmp(a, "--path") == 0) g.path = v;
        else if (strcmp(a, "--secret") == 0) g.secret = v;
        else if (strcmp(a, "--sub") == 0) g.sub = v;
        else if (strcmp(a, "--users") == 0) g.users = (int)parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--auth") == 0) g.auth = v;
        else if (strcmp(a, "--conns") == 0) g.conns = (int)parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--active") == 0) g.active_n = (int)parse_long(a, v, 0, 1000000);
        else if (strcmp(a, "--duration") == 0) g.duration = (int)parse_long(a, v, 0, 86400);
        else if (strcmp(a, "--pipeline") == 0) g.pipeline = (int)parse_long(a, v, 1, 1024);
        else if (strcmp(a, "--connect-rate") == 0) g.connect_rate = (double)parse_long(a, v, 0, 10000000);
        else if (strcmp(a, "--max-pending") == 0) g.max_pending = (int)parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--server-pid") == 0) g.server_pid = (int)parse_long(a, v, 0, 1 << 30);
        else if (strcmp(a, "--settle-ms") == 0) g.settle_ms = (int)parse_long(a, v, 0, 600000);
        else if (strcmp(a, "--timeout") == 0) g.timeout_s = (int)parse_long(a, v, 1, 86400);
        else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "ping") == 0) g.mode = MODE_PING;
            else if (strcmp(v, "appping") == 0) g.mode = MODE_APPPING;
            else die("--mode must be ping or appping");
        } else {
            usage(stderr);
            die("unknown option %s", a);
        }
    }
    if (!g.port) die("--port is required");
    if (!g.secret || !*g.secret) die("--secret is required");
    if (strcmp(g.auth, "header") != 0 && strcmp(g.auth, "query") != 0) die("--auth must be header or query");
    if (strlen(g.path) > 256 || g.path[0] != '/' || strpbrk(g.path, " \r\n?")) die("bad --path");
    if (strlen(g.sub) > 100 || strpbrk(g.sub, "\"\\")) die("bad --sub");
    if (g.users > g.conns) g.users = g.conns;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    g.fd_soft = rl.rlim_cur == RLIM_INFINITY ? 1 << 30 : (int)(rl.rlim_cur > (1u << 30) ? 1u << 30 : rl.rlim_cur);
    g.fd_hard = rl.rlim_max == RLIM_INFINITY ? 1 << 30 : (int)(rl.rlim_max > (1u << 30) ? 1u << 30 : rl.rlim_max);
    if (g.fd_soft < g.conns + 32)
        fprintf(stderr, "wsload: warning: open-file limit %d is below %d connections; expect failures\n", g.fd_soft,
                g.conns);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    raise_nofile();
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sockaddr_in *a4 = (struct sockaddr_in *)&g.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&g.addr;
    if (uv_ip4_addr(g.host, g.port, a4) == 0)
        snprintf(g.host_hdr, sizeof g.host_hdr, "%s:%d", g.host, g.port);
    else if (uv_ip6_addr(g.host, g.port, a6) == 0)
        snprintf(g.host_hdr, sizeof g.host_hdr, "[%s]:%d", g.host, g.port);
    else
        die("--host must be a numeric IPv4 or IPv6 address: %s", g.host);

    g.tokens = xcalloc((size_t)g.users, sizeof *g.tokens);
    for (int i = 0; i < g.users; i++) {
        char sub[160];
        if (g.users == 1)
            snprintf(sub, sizeof sub, "%s", g.sub);
        else
            snprintf(sub, sizeof sub, "%s_%d", g.sub, i);
        g.tokens[i] = mint_token(sub);
    }

    g.c = xcalloc((size_t)g.conns, sizeof *g.c);
    for (int i = 0; i < g.conns; i++) {
        g.c[i].id = (uint32_t)i;
        g.c[i].active = -1;
    }
    g.rss_base_kib = g.rss_after_kib = -1;
    if (g.server_pid > 0) {
        g.rss_base_kib = read_rss_kib(g.server_pid);
        if (g.rss_base_kib < 0) fprintf(stderr, "wsload: cannot read /proc/%d/status\n", g.server_pid);
    }
    g.self_rss_base_kib = read_rss_kib(0);

    g.loop = uv_default_loop();
    uv_timer_init(g.loop, &g.phase_timer);
    uv_timer_init(g.loop, &g.pump_timer);
    uv_timer_init(g.loop, &g.progress_timer);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_start(&g.sigint, on_sigint, SIGINT);

    if (!g.quiet)
        printf("wsload: %d connections to ws://%s%s (users %d, max pending %d, rate %s, fd limit %d)\n", g.conns,
               g.host_hdr, g.path, g.users, g.max_pending, g.connect_rate > 0 ? "limited" : "unlimited",
               g.fd_soft);
    g.phase = PH_CONNECT;
    g.t_start_ns = uv_hrtime();
    uv_update_time(g.loop);
    uv_timer_start(&g.phase_timer, on_connect_timeout, (uint64_t)g.timeout_s * 1000, 0);
    if (g.connect_rate > 0) uv_timer_start(&g.pump_timer, on_pump_timer, 5, 5);
    uv_timer_start(&g.progress_timer, on_progress, 2000, 2000);
    pump();
    if (g.phase == PH_CONNECT && g.ok + g.failed == g.conns) phase_connect_done();

    uv_run(g.loop, UV_RUN_DEFAULT);
    report();

    int rc = uv_loop_close(g.loop);
    if (rc != 0) fprintf(stderr, "wsload: loop not closed cleanly: %s\n", uv_strerror(rc));
    for (int i = 0; i < g.act_count; i++) free(g.act[i].sent);
    free(g.act);
    free(g.lat);
    free(g.c);
    for (int i = 0; i < g.users; i++) free(g.tokens[i]);
    free(g.tokens);

    if (g.ok == 0) return 2;
    if (g.failed > 0 || g.ping_errors > 0 || g.seq_mismatch > 0 || g.dropped_idle > 0) return 3;
    return 0;
}
