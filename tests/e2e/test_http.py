"""HTTP routes and conventions of the server foundation (SPEC conventions, §1).

One server for the module, with a CORS allow-list and the /api rate limit off
(SPEC §9: --rate-limit 0) so the burst of requests here is never throttled.
"""
import re
import time

import httpx
import pytest

from agentd import REQUEST_ID_RE, HttpConn, agentd_server, check_envelope, metric_value

server = agentd_server("--cors-origins", "http://a.test,http://b2.test", "--rate-limit", "0", name="http")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=10.0) as c:
        yield c


def assert_common_headers(r):
    """SPEC conventions: X-Request-ID and security headers on every response."""
    rid = r.headers.get("x-request-id")
    assert rid and REQUEST_ID_RE.match(rid), r.headers
    assert r.headers.get("x-content-type-options") == "nosniff", r.headers
    assert r.headers.get("x-frame-options") == "DENY", r.headers
    assert r.headers.get("referrer-policy") == "no-referrer", r.headers


# ---- §1 health -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health(client, path):
    t0 = time.time()
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert_common_headers(r)
    j = r.json()
    assert j["status"] == "healthy"
    assert j["service"] == "agentd"
    assert isinstance(j["version"], str) and j["version"]
    assert isinstance(j["uptime_seconds"], (int, float)) and j["uptime_seconds"] >= 0
    assert isinstance(j["timestamp"], (int, float))
    assert abs(j["timestamp"] - t0) < 60, "timestamp is epoch seconds"


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health_head_has_no_body(server, path):
    with HttpConn(server.addr) as c:
        c.request("HEAD", path)
        r = c.read_response(head_request=True)
        assert r.status == 200, r
        assert r.header("x-request-id")
        assert r.header("x-content-type-options") == "nosniff"
        # No body bytes follow the head: the next response on the connection
        # must start right at the status line.
        assert c.buf == b""
        c.request("GET", path)
        r2 = c.read_response()
        assert r2.status == 200, r2
        assert r2.json()["status"] == "healthy"
        if r.header("content-length") is not None:
            # The GET body differs slightly (uptime/timestamp digits).
            assert abs(int(r.header("content-length")) - len(r2.body)) <= 12


def test_health_live(client):
    r = client.get("/health/live")
    assert r.status_code == 200, r.text
    assert_common_headers(r)


@pytest.mark.parametrize("path", ["/health/ready", "/api/health/deep"])
def test_health_ready_deep(client, path):
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert_common_headers(r)
    j = r.json()
    assert isinstance(j["status"], str) and j["status"]
    db = j["checks"]["database"]
    assert isinstance(db["status"], str) and db["status"]
    assert isinstance(db["latency_ms"], (int, float)) and db["latency_ms"] >= 0


@pytest.mark.parametrize("path", ["/version", "/api/version"])
def test_version(client, path):
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert_common_headers(r)
    j = r.json()
    for k in ("version", "git_sha", "build_time"):
        assert isinstance(j[k], str) and j[k], j
    assert j["version"] == client.get("/health").json()["version"]


def test_metrics(server, client):
    for _ in range(3):
        assert client.get("/health").status_code == 200
    client.get("/no/such/route")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    assert_common_headers(r)
    text = r.text
    lines = text.splitlines()
    req = [ln for ln in lines if ln.startswith("agentd_http_requests_total{")]
    assert req, text[:2000]
    assert any('route="' in ln for ln in req), req
    assert any('route="/health"' in ln for ln in req), req
    health = metric_value(text, "agentd_http_requests_total", {"route": "/health"})
    assert health is not None and health >= 3
    assert any(re.match(r'^[a-z_:]+_bucket\{.*le="', ln) for ln in lines), "no histogram _bucket line"
    assert any(re.match(r'^[a-z_:]+_bucket\{.*le="\+Inf"', ln) for ln in lines), "no +Inf bucket"
    ws_open = metric_value(text, "agentd_connections_open", {"kind": "ws"})
    assert ws_open is not None, "agentd_connections_open{kind=\"ws\"} missing"
    assert ws_open == 0
    # Every sample line is "name{labels} value".
    for ln in lines:
        if ln and not ln.startswith("#"):
            assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEInfa]+$', ln), ln


def test_discovery_from_host_header(client):
    r = client.get("/api/discovery/services", headers={"Host": "example.test:1234"})
    assert r.status_code == 200, r.text
    assert_common_headers(r)
    j = r.json()
    be = j["services"]["backend"]
    assert be["url"] == "http://example.test:1234", j
    assert be["api_url"].startswith("http://example.test:1234"), j
    assert be["ws_url"] == "ws://example.test:1234/ws", j
    assert j["services"]["auth"]["url"].startswith("http://example.test:1234"), j
    assert j["available"] is True
    assert isinstance(j["timestamp"], (int, float))


def test_config_public(client):
    r = client.get("/api/config/public")
    assert r.status_code == 200, r.text
    assert_common_headers(r)
    j = r.json()
    assert isinstance(j["app_name"], str) and j["app_name"]
    assert isinstance(j["version"], str) and j["version"]
    assert isinstance(j["features"], dict)
    assert isinstance(j["auth"]["dev_login"], bool)
    assert isinstance(j["auth"]["registration"], bool)
    assert j["auth"]["dev_login"] is False, "dev login is off unless --dev-login"


# ---- X-Request-ID and security headers ---------------------------------------

@pytest.mark.parametrize("rid", ["abc", "A-Z.a_z:0-9", "x" * 128, "req:1.2_3-4"])
def test_request_id_kept_when_valid(client, rid):
    for path in ("/health", "/no/such/route"):
        r = client.get(path, headers={"X-Request-ID": rid})
        assert r.headers["x-request-id"] == rid
        assert_common_headers(r)


@pytest.mark.parametrize("rid", ["x" * 129, "has space", "semi;colon", "slash/x", "<script>", "a\"b", "é"])
def test_request_id_replaced_when_invalid(server, rid):
    with HttpConn(server.addr) as c:
        c.send(("GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\n\r\n" % rid).encode("utf-8"))
        r = c.read_response()
    assert r.status == 200, r
    got = r.header("x-request-id")
    assert got and got != rid and REQUEST_ID_RE.match(got), got


def test_request_id_generated_unique(client):
    ids = {client.get("/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# ---- errors ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/health/nope/deeper", "/api/v1/unknown?x=1"])
def test_404_envelope(server, path):
    r = server.get(path, headers={"X-Request-ID": "rid-404"})
    check_envelope(r, "NOT_FOUND", 404)
    assert r.header("x-request-id") == "rid-404"
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-frame-options") == "DENY"
    assert r.header("referrer-policy") == "no-referrer"


@pytest.mark.parametrize("method,path", [("POST", "/health"), ("DELETE", "/version"), ("PUT", "/api/health"),
                                         ("PATCH", "/metrics"), ("POST", "/api/config/public")])
def test_405_envelope_and_allow(server, method, path):
    with HttpConn(server.addr) as c:
        c.request(method, path, body=b"" if method != "DELETE" else None)
        r = c.read_response()
    check_envelope(r, "METHOD_NOT_ALLOWED", 405)
    allow = {m.strip().upper() for m in (r.header("allow") or "").split(",")}
    assert {"GET", "HEAD"} <= allow, r.header("allow")
    assert method not in allow


# ---- CORS ----------------------------------------------------------------------

def test_cors_preflight_allowed(client):
    r = client.options("/api/health", headers={"Origin": "http://a.test",
                                               "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204, r.text
    assert r.headers.get("access-control-allow-origin") == "http://a.test"
    methods = r.headers.get("access-control-allow-methods", "")
    assert "GET" in methods.upper(), r.headers
    assert r.content == b""
    assert_common_headers(r)


def test_cors_second_listed_origin(client):
    r = client.get("/api/health", headers={"Origin": "http://b2.test"})
    assert r.headers.get("access-control-allow-origin") == "http://b2.test"


@pytest.mark.parametrize("origin", ["http://evil.test", "http://a.test.evil.test", "https://a.test",
                                    "http://a.test:8080", "null"])
def test_cors_unlisted_origin_gets_nothing(client, origin):
    pre = client.options("/api/health", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    simple = client.get("/api/health", headers={"Origin": origin})
    assert simple.status_code == 200
    for r in (pre, simple):
        assert not [k for k in r.headers if k.lower().startswith("access-control-allow-")], r.headers
        assert_common_headers(r)


def test_cors_simple_get_allowed(client):
    r = client.get("/api/health", headers={"Origin": "http://a.test"})
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == "http://a.test"
    assert r.headers.get("access-control-allow-origin") != "*"


def test_no_origin_no_cors(client):
    r = client.get("/api/health")
    assert "access-control-allow-origin" not in r.headers


# ---- connection handling -------------------------------------------------------

def test_keep_alive_many_requests(server):
    with HttpConn(server.addr) as c:
        for i, path in enumerate(["/health", "/version", "/api/config/public", "/nope", "/health/live"] * 2):
            c.request("GET", path, headers={"X-Request-ID": "ka-%d" % i})
            r = c.read_response()
            assert r.header("x-request-id") == "ka-%d" % i
            assert r.status == (404 if path == "/nope" else 200), r
            assert (r.header("connection") or "").lower() != "close"


def test_pipelining_in_order(server):
    paths = ["/version", "/health", "/api/config/public"]
    data = b"".join(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipe-%d\r\n\r\n" % (p, i)).encode()
                    for i, p in enumerate(paths))
    with HttpConn(server.addr) as c:
        c.send(data)
        rs = [c.read_response() for _ in paths]
    assert [r.header("x-request-id") for r in rs] == ["pipe-0", "pipe-1", "pipe-2"]
    assert all(r.status == 200 for r in rs), rs
    assert "git_sha" in rs[0].json()
    assert rs[1].json()["status"] == "healthy"
    assert "app_name" in rs[2].json()


def test_chunked_body_then_connection_reusable(server):
    body = b'{"a":' + b'"' + b"x" * 3000 + b'"}'
    chunks = b""
    for i in range(0, len(body), 1000):
        part = body[i:i + 1000]
        chunks += b"%x\r\n" % len(part) + part + b"\r\n"
    chunks += b"0\r\n\r\n"
    with HttpConn(server.addr) as c:
        c.send(b"POST /api/no-such-route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nX-Request-ID: chunk-1\r\n\r\n")
        time.sleep(0.05)
        c.send(chunks[:1500])
        time.sleep(0.05)
        c.send(chunks[1500:])
        r = c.read_response()
        check_envelope(r, "NOT_FOUND", 404)
        assert r.header("x-request-id") == "chunk-1"
        c.request("GET", "/health", headers={"X-Request-ID": "chunk-2"})
        r2 = c.read_response()
        assert r2.status == 200 and r2.header("x-request-id") == "chunk-2", r2


def test_expect_100_continue(server):
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        r1 = c.read_response()
        assert r1.status == 100, r1
        assert r1.raw_head.startswith(b"HTTP/1.1 100 Continue")
        c.send(b"{}")
        r2 = c.read_response()
        assert r2.status == 200, r2
        c.request("GET", "/version")
        assert c.read_response().status == 200


def test_http10_closes(server):
    with HttpConn(server.addr) as c:
        c.send(b"GET /health HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert c.wait_closed(5) < 5
