"""Request limits and timeouts (SPEC conventions: limits, path normalisation;
flags --request-timeout, --idle-timeout, --max-header-bytes, --max-body-bytes)."""
import socket
import time

import pytest

from agentd import Closed, HttpConn, agentd_server, check_envelope

REQUEST_TIMEOUT = 1
IDLE_TIMEOUT = 1

server = agentd_server("--request-timeout", str(REQUEST_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT),
                       "--rate-limit", "0", name="limits")


def read_or_closed(c):
    """The response, or None when the server closed/reset without one."""
    try:
        return c.read_response()
    except (Closed, ConnectionResetError, BrokenPipeError):
        return None


# ---- header size -------------------------------------------------------------

def test_headers_over_16k_get_431(server):
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 * 1024) + b"\r\n\r\n")
        r = c.read_response()
        check_envelope(r, "HEADERS_TOO_LARGE", 431)
        assert r.header("x-content-type-options") == "nosniff"


def test_many_headers_over_16k_get_431(server):
    hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        check_envelope(c.read_response(), "HEADERS_TOO_LARGE", 431)


def test_headers_just_under_limit_ok(server):
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (14 * 1024) + b"\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r


def test_long_request_line_431(server):
    with HttpConn(server.addr) as c:
        c.send(b"GET /health?q=" + b"a" * (17 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status in (414, 431), r
        assert r.json()["error"] is True


# ---- body size -----------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("POST", "/api/threads"), ("GET", "/health")])
def test_content_length_over_1mib_refused_before_body(server, method, path):
    """413 from Content-Length alone: only the head is sent, the answer must come anyway.
    (POST /api/threads carries a valid token so that auth is not what refuses it.)"""
    with HttpConn(server.addr, timeout=5) as c:
        c.send(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
               % (method.encode(), path.encode(), server.token().encode(), 1024 * 1024 + 1))
        t0 = time.monotonic()
        r = c.read_response()
        assert time.monotonic() - t0 < REQUEST_TIMEOUT, "answered only after the request timeout"
        check_envelope(r, "PAYLOAD_TOO_LARGE", 413)


def test_content_length_huge_refused(server):
    with HttpConn(server.addr, timeout=5) as c:
        c.send(b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
        r = read_or_closed(c)
        assert r is not None and r.status in (400, 413), r


def test_body_within_limit_ok(server):
    with HttpConn(server.addr, timeout=5) as c:
        body = b'{"x":"' + b"a" * 1000 + b'"}'
        c.request("GET", "/health", headers={"Content-Type": "application/json"}, body=body)
        assert c.read_response().status == 200


# ---- timeouts ------------------------------------------------------------------

def test_trickling_client_cut_off(server):
    """One header byte every 0.5 s: the whole head must arrive within --request-timeout."""
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200 + b"\r\n\r\n"
    c = HttpConn(server.addr, timeout=0.5)
    t0 = time.monotonic()
    closed_at = None
    try:
        for b in req:
            try:
                c.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - t0
                break
            try:
                c._fill(timeout=0.5)
                # Some bytes came back: a 408/400 answer before the close is fine.
            except socket.timeout:
                pass
            except Closed:
                closed_at = time.monotonic() - t0
                break
            if time.monotonic() - t0 > REQUEST_TIMEOUT + 5:
                break
    finally:
        c.close()
    assert closed_at is not None, "trickling client still connected after %.1fs" % (time.monotonic() - t0)
    assert closed_at < REQUEST_TIMEOUT + 2.5, closed_at
    assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 4"), c.buf[:200]


def test_body_trickle_cut_off(server):
    with HttpConn(server.addr, timeout=0.5) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        closed = None
        for _ in range(20):
            try:
                c.send(b"a")
                c._fill(timeout=0.5)
            except socket.timeout:
                continue
            except (Closed, BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - t0
                break
            if c.buf and b"\r\n\r\n" in c.buf:
                # A 408 answer: then it must close.
                assert c.buf.startswith(b"HTTP/1.1 4"), c.buf[:200]
        assert closed is not None and closed < REQUEST_TIMEOUT + 2.5, closed


def test_idle_keepalive_closed(server):
    with HttpConn(server.addr) as c:
        c.request("GET", "/health")
        assert c.read_response().status == 200
        waited = c.wait_closed(IDLE_TIMEOUT + 4)
        assert IDLE_TIMEOUT * 0.5 <= waited < IDLE_TIMEOUT + 2.5, waited


def test_active_keepalive_not_closed(server):
    """Requests more often than the idle timeout keep the connection open."""
    with HttpConn(server.addr) as c:
        for _ in range(5):
            c.request("GET", "/health/live")
            assert c.read_response().status == 200
            time.sleep(IDLE_TIMEOUT * 0.5)


def test_silent_connection_closed(server):
    """A connection that never sends a byte is dropped (request or idle timeout)."""
    with HttpConn(server.addr) as c:
        waited = c.wait_closed(max(REQUEST_TIMEOUT, IDLE_TIMEOUT) + 4)
        assert waited < max(REQUEST_TIMEOUT, IDLE_TIMEOUT) + 2.5


# ---- malformed requests ----------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"\x01\x02\x03garbage\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /health\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Name: y\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # RFC 9112 framing llhttp lets through (issue 13, defect 15)
    b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET /health HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
    b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    b"POST /health HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["garbage", "http_9_9", "http_0_9_no_version", "space_in_header_name", "two_content_lengths",
        "cl_and_te", "obs_fold_te", "obs_fold_other", "http11_no_host", "two_hosts", "http_2_0",
        "te_chunked_twice", "te_on_http10"])
def test_malformed_request_400_and_close(server, raw):
    with HttpConn(server.addr) as c:
        c.send(raw)
        r = c.read_response()
        check_envelope(r, "BAD_REQUEST", 400)
        assert c.wait_closed(3) < 3


@pytest.mark.parametrize("te", [b"gzip, chunked", b"gzip", b"deflate,chunked"])
def test_unknown_transfer_coding_501_and_close(server, te):
    """RFC 9112 §6.1: a transfer coding the server does not decode is 501, never ignored."""
    with HttpConn(server.addr) as c:
        c.send(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n")
        r = c.read_response()
        check_envelope(r, "NOT_IMPLEMENTED", 501)
        assert c.wait_closed(3) < 3


def test_http10_without_host_allowed(server):
    """Host is required of HTTP/1.1 only."""
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200


def test_server_survives_malformed(server):
    assert server.get("/health").status == 200


# ---- path normalisation -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/../health", "/./health", "//health", "/api/./health", "/x/y/../../health",
                                  "/%68ealth"])
def test_path_normalised(server, path):
    r = server.get(path)
    assert r.status == 200, r
    assert r.json()["status"] == "healthy"


@pytest.mark.parametrize("path", ["/%2e%2e/etc/passwd", "/../../etc/passwd", "/..%2f..%2fetc%2fpasswd",
                                  "/static/../../../../etc/passwd", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "/etc/passwd"])
def test_traversal_never_a_file(server, path):
    r = server.get(path)
    assert r.status in (400, 404), r
    assert b"root:" not in r.body
    assert r.json()["error"] is True


# ---- issue 13, defect 7: a "\u0000" escape is valid JSON: 422 naming the field, never 400 -------------

def test_auth_fields_with_nul_are_422(server):
    from auth_helpers import call, register, unique_email

    def field_of(r):
        j = check_envelope(r, "VALIDATION_ERROR", 422)
        assert len(j["details"]) == 1 and "NUL" in j["details"][0]["message"], j
        return j["details"][0]["field"]

    email = unique_email("nul")
    pw = '"correct horse battery"'
    for raw, field in [('{"email":"%s","password":%s,"name":"Ann\\u0000ie"}' % (email, pw), "name"),
                       ('{"email":"%s\\u0000x","password":%s}' % (email, pw), "email"),
                       ('{"email":"%s","password":"correct horse\\u0000battery"}' % email, "password")]:
        assert field_of(call(server, "POST", "/auth/register", raw_body=raw)) == field, raw
    # none of them registered anyone, under any cut-short form
    _, j = register(server, email=email)
    tok = j["access_token"]
    assert field_of(call(server, "PATCH", "/api/users/me", raw_body='{"name":"Bob\\u0000by"}', token=tok)) == "name"
    r = call(server, "GET", "/api/users/me", token=tok)
    assert r.status == 200 and r.json()["name"] is None, r.json()
    assert field_of(call(server, "POST", "/auth/login",
                         raw_body='{"email":"%s","password":"x\\u0000"}' % email)) == "password"
    # a malformed body is still 400
    check_envelope(call(server, "PATCH", "/api/users/me", raw_body='{"name":"x', token=tok), "BAD_REQUEST", 400)


def test_display_name_has_no_200_character_cap(server):
    from auth_helpers import call, register

    _, j = register(server, name="é" * 127)  # 127 characters, 254 bytes: was fine, still is
    assert j["user"]["name"] == "é" * 127
    r = call(server, "PATCH", "/api/users/me", {"name": "n" * 250}, token=j["access_token"])
    assert r.status == 200 and r.json()["name"] == "n" * 250, r  # the old API cap was 200 characters
