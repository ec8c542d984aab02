"""SPEC §9 rate limits over HTTP: the per-user (per-IP when anonymous) token
bucket on /api/*, its headers, /health never limited, the failed-login limit
(5/min per email+IP, on unless --rate-limit 0), and --rate-limit 0.

Requests that must land inside one bucket window are pipelined on one
connection so a slow (sanitized) build cannot refill the bucket in between.
"""
import pytest

from agentd import check_envelope, metric_value
from auth_helpers import PASSWORD, call, login, register, unique_email, pipelined

RL_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
def limited(server_factory):
    # 1 token per second, burst 5: the 6th request inside a second is refused.
    return server_factory("--rate-limit", "1/5")


def bearer(tok):
    return [("Authorization", "Bearer " + tok)]


def test_sixth_request_429(limited):
    _, j = register(limited)  # /auth/register is not under /api
    rs = pipelined(limited, [("GET", "/api/me", bearer(j["access_token"]))] * 6)
    for i, r in enumerate(rs[:5]):
        assert r.status == 200, (i, r)
        assert r.header("x-ratelimit-limit") == "5", r
        assert r.header("x-ratelimit-remaining") == str(4 - i), r
        assert int(r.header("x-ratelimit-reset")) >= 0, r
    r = rs[5]
    check_envelope(r, "RATE_LIMITED", 429)
    assert int(r.header("retry-after")) >= 1, r
    for h in RL_HEADERS:
        assert r.header(h) is not None, (h, r)
    assert r.header("x-ratelimit-remaining") == "0"
    m = metric_value(limited.get("/metrics").text(), "agentd_ratelimit_rejections_total", {"kind": "http"})
    assert m is not None and m >= 1


def test_exact_spec_flag_5_5(server_factory):
    srv = server_factory("--rate-limit", "5/5")
    _, j = register(srv)
    rs = pipelined(srv, [("GET", "/api/me", bearer(j["access_token"]))] * 6)
    assert [r.status for r in rs[:5]] == [200] * 5, rs
    check_envelope(rs[5], "RATE_LIMITED", 429)
    assert rs[5].header("retry-after") is not None


def test_buckets_per_user_and_per_ip(limited):
    _, a = register(limited)
    _, b = register(limited)
    rs = pipelined(limited, [("GET", "/api/me", bearer(a["access_token"]))] * 6)
    assert rs[5].status == 429
    # another user has a bucket of its own
    assert call(limited, "GET", "/api/me", token=b["access_token"]).status == 200
    # anonymous /api requests are limited per IP
    rs = pipelined(limited, [("GET", "/api/config/public", [])] * 6)
    assert [r.status for r in rs[:5]] == [200] * 5, rs
    check_envelope(rs[5], "RATE_LIMITED", 429)


def test_health_and_metrics_never_limited(limited):
    rs = pipelined(limited, [("GET", p, []) for p in ("/health", "/api/health", "/health/live", "/metrics") * 10])
    for r in rs:
        assert r.status == 200, r
        assert r.header("x-ratelimit-limit") is None, r


def test_failed_logins_limited(limited):
    email, _ = register(limited)
    for i in range(5):
        check_envelope(login(limited, email, "wrong password"), "AUTH_INVALID", 401)
    r = login(limited, email, "wrong password")
    check_envelope(r, "RATE_LIMITED", 429)
    assert int(r.header("retry-after")) >= 1, r
    for h in RL_HEADERS:
        assert r.header(h) is not None, (h, r)
    # even the right password waits now
    check_envelope(login(limited, email, PASSWORD), "RATE_LIMITED", 429)
    check_envelope(login(limited, email, PASSWORD, prefix="/api/v1/auth"), "RATE_LIMITED", 429)
    # another email from the same IP is not affected
    other, _ = register(limited)
    assert login(limited, other).status == 200
    m = metric_value(limited.get("/metrics").text(), "agentd_ratelimit_rejections_total", {"kind": "login"})
    assert m is not None and m >= 1


def test_failed_logins_unknown_email_limited_too(limited):
    ghost = unique_email("ghost")
    for _ in range(5):
        check_envelope(login(limited, ghost, "whatever1"), "AUTH_INVALID", 401)
    check_envelope(login(limited, ghost, "whatever1"), "RATE_LIMITED", 429)


def test_successful_logins_do_not_count(limited):
    email, _ = register(limited)
    for _ in range(8):
        assert login(limited, email).status == 200


def test_rate_limit_0_disables_everything(server_factory):
    srv = server_factory("--rate-limit", "0")
    email, j = register(srv)
    rs = pipelined(srv, [("GET", "/api/me", bearer(j["access_token"]))] * 60)
    assert all(r.status == 200 for r in rs), [r.status for r in rs]
    for _ in range(8):
        check_envelope(login(srv, email, "wrong password"), "AUTH_INVALID", 401)
    assert login(srv, email).status == 200


def _burst_of_pings(srv, sub, n):
    """n ping frames with ids in one write; the n replies ([frame]) by id."""
    from test_events import WSClient
    ws = WSClient(srv, sub)
    try:
        ws.send_many([{"type": "ping", "id": "p%d" % i} for i in range(n)])
        return [ws.wait_for(lambda f, i=i: f.get("reply_to") == "p%d" % i) for i in range(n)]
    finally:
        ws.close()


@pytest.mark.parametrize("flag", ["1/5", None])
def test_ws_frame_limit_20_per_s_burst_40_with_reply_to(server_factory, flag):
    """SPEC §9: 20 frames/s per socket (bursts of 40) whatever --rate-limit says but 0; a refused
    frame's error answers its id (issue 13, defects 4 and 14)."""
    srv = server_factory(*(["--rate-limit", flag] if flag else []))
    replies = _burst_of_pings(srv, "usr_ws_frames_%s" % ("flag" if flag else "default"), 60)
    pongs = [f for f in replies if f["type"] == "pong"]
    refused = [f for f in replies if f["type"] == "error"]
    assert len(pongs) + len(refused) == 60, replies
    assert 40 <= len(pongs) < 60, len(pongs)
    for f in refused:
        assert f["code"] == "RATE_LIMITED" and f["data"]["code"] == "RATE_LIMITED", f
    m = metric_value(srv.get("/metrics").text(), "agentd_ratelimit_rejections_total", {"kind": "ws_frame"})
    assert m is not None and m >= len(refused)
    # the bucket is per socket: another socket starts full
    assert all(f["type"] == "pong" for f in _burst_of_pings(srv, "usr_ws_frames_x", 40))


def test_ws_frame_limit_off_with_rate_limit_0(server_factory):
    srv = server_factory("--rate-limit", "0")
    assert all(f["type"] == "pong" for f in _burst_of_pings(srv, "usr_ws_frames_off", 100))
