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
 * (HS256 access token, SPEC §2), all through bench/wsclient.h (the client
 * connection shared with bench/fanout.c). Protocol: SPEC §6 (handshake,
 * welcome frame, `ping` -> `pong`).
 *
 * Traffic goes only to the address given with --host (default 127.0.0.1).
 */
#include <inttypes.h>

#define WSC_PROG "wsload"
#include "wsclient.h"

#define OUT_MAX (1u << 20)       /* per-connection pending output bound */
#define RECV_MSG_MAX (1u << 20)  /* largest server message we accept */
#define LAT_MAX_SAMPLES 50000000u

/* The first reasons are wsclient.h's (same values); the rest are wsload's. */
enum fail_reason {
    FR_CONNECT = WSC_FAIL_CONNECT,
    FR_HTTP_STATUS = WSC_FAIL_HTTP_STATUS,
    FR_BAD_ACCEPT = WSC_FAIL_BAD_ACCEPT,
    FR_BAD_RESPONSE = WSC_FAIL_BAD_RESPONSE,
    FR_EOF = WSC_FAIL_EOF,
    FR_IO = WSC_FAIL_IO,
    FR_PROTOCOL = WSC_FAIL_PROTOCOL,
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
    wsc_conn_t w;      /* first: the callbacks of wsclient.h hand back &c->w */
    int32_t active;    /* index among active connections, -1 if none */
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
    char **tokens;
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

static void conn_close(conn_t *c);
static void conn_fail(conn_t *c, enum fail_reason why);
static void pump(void);
static void phase_connect_done(void);
static void phase_close_start(void);
static void ping_send_one(conn_t *c);

/* ---------- small helpers ---------- */

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


/* ---------- connection lifecycle (wsclient.h calls the hooks) ---------- */

static void on_closed(wsc_conn_t *w)
{
    g.live_handles--;
    if (g.phase == PH_CLOSE && g.live_handles == 0) {
        g.phase = PH_DONE;
        uv_close((uv_handle_t *)&g.phase_timer, NULL);
        uv_close((uv_handle_t *)&g.pump_timer, NULL);
        uv_close((uv_handle_t *)&g.progress_timer, NULL);
        uv_close((uv_handle_t *)&g.sigint, NULL);
    }
}

static bool state_pending(int s) { return s == CS_CONNECTING || s == CS_HANDSHAKE || s == CS_WELCOME; }

/* Closes the handle; counts a drop when an open connection goes away before
 * the close phase. Idempotent. */
static void conn_close(conn_t *c)
{
    if (c->w.closing) return;
    c->w.closing = true;
    if (state_pending(c->w.state)) {
        /* a pending connection closed without conn_fail: by the close phase
         * (interrupted) or otherwise counted as an early EOF */
        g.pending--;
        g.failed++;
        g.fail_count[g.phase == PH_CLOSE ? FR_ABORTED : FR_EOF]++;
        if (g.phase == PH_CONNECT) {
            pump();
            if (g.ok + g.failed == g.conns) phase_connect_done();
        }
    } else if (c->w.state == CS_OPEN && g.phase != PH_CLOSE) {
        if (c->active >= 0 && g.phase == PH_PING) {
            g.dropped_ping++;
            g.ping_errors++;
        } else {
            g.dropped_idle++;
        }
    }
    wsc_close_handle(&c->w);
}

static void conn_fail(conn_t *c, enum fail_reason why)
{
    if (c->w.closing) return;
    if (state_pending(c->w.state) || c->w.state == CS_IDLE) {
        c->w.closing = true;
        if (c->w.state != CS_IDLE) g.pending--;
        g.failed++;
        g.fail_count[why]++;
        wsc_close_handle(&c->w);
        if (g.phase == PH_CONNECT) {
            pump();
            if (g.ok + g.failed == g.conns) phase_connect_done();
        }
        return;
    }
    conn_close(c);
}

static void on_close(wsc_conn_t *w) { conn_close((conn_t *)w); }

static void on_fail(wsc_conn_t *w, enum wsc_fail why, int http_status)
{
    if (why == WSC_FAIL_HTTP_STATUS) g.last_http_status = http_status;
    conn_fail((conn_t *)w, (enum fail_reason)why);
}


static void conn_opened(conn_t *c)
{
    c->w.state = CS_OPEN;
    g.pending--;
    g.ok++;
    if (g.phase == PH_CONNECT) {
        pump();
        if (g.ok + g.failed == g.conns) phase_connect_done();
    }
}

/* ---------- messages ---------- */

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
    if (c->w.closing) return;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        if (c->w.state == CS_WELCOME) {
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
    if (arg->opcode == WSLAY_PONG && c->active >= 0 && g.mode == MODE_PING && c->w.state == CS_OPEN)
        ping_reply(c, false, arg->msg, arg->msg_length);
    /* PING is answered by wslay; CLOSE is answered by wslay and ends the conn in wsc_flush. */
}

static const wsc_ops_t ws_ops = {
    .fail = on_fail,
    .close = on_close,
    .closed = on_closed,
    .on_msg = on_ws_msg,
};

static void conn_start(conn_t *c)
{
    g.pending++;
    if (wsc_conn_init(&c->w, g.loop) != 0) {
        conn_fail(c, FR_CONNECT);
        return;
    }
    g.live_handles++;
    wsc_conn_connect(&c->w);
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
    if (c->w.closing || c->w.state != CS_OPEN || a->inflight >= (uint32_t)g.pipeline) return;
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
    if (wslay_event_queue_msg(c->w.ws, &m) != 0) {
        g.ping_errors++;
        return;
    }
    a->sent[(a->head + a->inflight) % (uint32_t)g.pipeline] = uv_hrtime();
    a->inflight++;
    a->seq_sent++;
    wsc_flush(&c->w);
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
        if (c->w.state != CS_OPEN || c->w.closing) continue;
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
        if (c->w.state == CS_IDLE) {
            g.failed++;
            g.fail_count[FR_TIMEOUT]++;
            c->w.state = CS_CLOSED;
        } else if (state_pending(c->w.state) && !c->w.closing) {
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
        if (g.c[i].w.handle_open && !g.c[i].w.closing) conn_close(&g.c[i]);
}

static void phase_close_start(void)
{
    if (g.phase == PH_CLOSE || g.phase == PH_DONE) return;
    g.phase = PH_CLOSE;
    for (int i = g.next; i < g.conns; i++) { /* never started (interrupted while connecting) */
        if (g.c[i].w.state != CS_IDLE) continue;
        g.c[i].w.state = CS_CLOSED;
        g.failed++;
        g.fail_count[FR_ABORTED]++;
    }
    uv_timer_stop(&g.phase_timer);
    uv_timer_stop(&g.pump_timer);
    uv_timer_stop(&g.progress_timer);
    for (int i = 0; i < g.conns; i++) {
        conn_t *c = &g.c[i];
        if (!c->w.handle_open || c->w.closing) continue;
        if (c->w.state == CS_OPEN && c->w.ws) {
            if (wslay_event_queue_close(c->w.ws, 1000, NULL, 0) != 0) {
                conn_close(c);
                continue;
            }
            wsc_flush(&c->w);
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
        if (i + 1 >= argc) wsc_die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0) g.host = v;
        else if (strcmp(a, "--port") == 0) g.port = (int)wsc_parse_long(a, v, 1, 65535);
        else if (strcmp(a, "--path") == 0) g.path = v;
        else if (strcmp(a, "--secret") == 0) g.secret = v;
        else if (strcmp(a, "--sub") == 0) g.sub = v;
        else if (strcmp(a, "--users") == 0) g.users = (int)wsc_parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--auth") == 0) g.auth = v;
        else if (strcmp(a, "--conns") == 0) g.conns = (int)wsc_parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--active") == 0) g.active_n = (int)wsc_parse_long(a, v, 0, 1000000);
        else if (strcmp(a, "--duration") == 0) g.duration = (int)wsc_parse_long(a, v, 0, 86400);
        else if (strcmp(a, "--pipeline") == 0) g.pipeline = (int)wsc_parse_long(a, v, 1, 1024);
        else if (strcmp(a, "--connect-rate") == 0) g.connect_rate = (double)wsc_parse_long(a, v, 0, 10000000);
        else if (strcmp(a, "--max-pending") == 0) g.max_pending = (int)wsc_parse_long(a, v, 1, 1000000);
        else if (strcmp(a, "--server-pid") == 0) g.server_pid = (int)wsc_parse_long(a, v, 0, 1 << 30);
        else if (strcmp(a, "--settle-ms") == 0) g.settle_ms = (int)wsc_parse_long(a, v, 0, 600000);
        else if (strcmp(a, "--timeout") == 0) g.timeout_s = (int)wsc_parse_long(a, v, 1, 86400);
        else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "ping") == 0) g.mode = MODE_PING;
            else if (strcmp(v, "appping") == 0) g.mode = MODE_APPPING;
            else wsc_die("--mode must be ping or appping");
        } else {
            usage(stderr);
            wsc_die("unknown option %s", a);
        }
    }
    if (!g.port) wsc_die("--port is required");
    if (!g.secret || !*g.secret) wsc_die("--secret is required");
    if (strcmp(g.auth, "header") != 0 && strcmp(g.auth, "query") != 0) wsc_die("--auth must be header or query");
    if (strlen(g.path) > 256 || g.path[0] != '/' || strpbrk(g.path, " \r\n?")) wsc_die("bad --path");
    if (strlen(g.sub) > 100 || strpbrk(g.sub, "\"\\")) wsc_die("bad --sub");
    if (g.users > g.conns) g.users = g.conns;
}

static void raise_nofile(void)
{
    if (wsc_raise_nofile(&g.fd_soft, &g.fd_hard) != 0) return;
    if (g.fd_soft < g.conns + 32)
        fprintf(stderr, "wsload: warning: open-file limit %d is below %d connections; expect failures\n", g.fd_soft,
                g.conns);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    raise_nofile();
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (wsc_set_host(g.host, g.port) != 0) wsc_die("--host must be a numeric IPv4 or IPv6 address: %s", g.host);
    wsc.ops = &ws_ops;
    wsc.path = g.path;
    wsc.token_in_query = strcmp(g.auth, "query") == 0;
    wsc.out_max = OUT_MAX;
    wsc.recv_msg_max = RECV_MSG_MAX;

    g.tokens = xcalloc((size_t)g.users, sizeof *g.tokens);
    for (int i = 0; i < g.users; i++) {
        char sub[160];
        if (g.users == 1)
            snprintf(sub, sizeof sub, "%s", g.sub);
        else
            snprintf(sub, sizeof sub, "%s_%d", g.sub, i);
        g.tokens[i] = wsc_mint_token(g.secret, sub);
    }

    g.c = xcalloc((size_t)g.conns, sizeof *g.c);
    for (int i = 0; i < g.conns; i++) {
        g.c[i].w.id = (uint32_t)i;
        g.c[i].w.token = g.tokens[i % g.users];
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
               wsc.host_hdr, g.path, g.users, g.max_pending, g.connect_rate > 0 ? "limited" : "unlimited",
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
