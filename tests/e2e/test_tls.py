"""TLS (SPEC §10 --tls-cert/--tls-key): HTTPS with HSTS, plain HTTP on the same
port redirected with 301, and wss:// with the §6 welcome."""
import asyncio
import json
import ssl
import subprocess

import httpx
import pytest
import websockets

from agentd import Agentd, HttpConn, check_welcome

USER = "usr_e2e_tls"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    srv = Agentd(d, ["--tls-cert", cert, "--tls-key", key, "--rate-limit", "0"], name="tls")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop_and_check()


def no_verify_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_listening_line_says_https(tls_server):
    assert tls_server.scheme == "https"


def test_https_health_with_hsts(tls_server):
    with httpx.Client(base_url=tls_server.base_url, verify=False, timeout=10) as c:
        r = c.get("/health")
        assert r.status_code == 200
        assert r.json()["status"] == "healthy"
        hsts = r.headers.get("strict-transport-security")
        assert hsts and "max-age=" in hsts, r.headers
        assert r.headers.get("x-content-type-options") == "nosniff"
        r = c.get("/nope")
        assert r.status_code == 404 and r.headers.get("strict-transport-security")
        # keep-alive over TLS
        for _ in range(3):
            assert c.get("/version").status_code == 200


def test_plain_http_redirected(tls_server):
    with HttpConn(tls_server.addr) as c:
        c.send(b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % tls_server.port)
        r = c.read_response()
    assert r.status == 301, r
    loc = r.header("location")
    assert loc in ("https://127.0.0.1:%d/health?x=1" % tls_server.port,
                   "https://127.0.0.1:%d/health" % tls_server.port), loc
    assert r.header("strict-transport-security") is None, "HSTS only over TLS"


def test_plain_http_redirect_uses_path(tls_server):
    with HttpConn(tls_server.addr) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % tls_server.port)
        r = c.read_response()
    assert r.status == 301, r
    assert r.header("location") == "https://127.0.0.1:%d/health" % tls_server.port


def test_server_survives_garbage_handshake(tls_server):
    with HttpConn(tls_server.addr) as c:
        c.send(b"\x16\x03\x01\x00\x05hello-not-tls")
        try:
            c.wait_closed(5)
        except Exception:
            pass
    with httpx.Client(base_url=tls_server.base_url, verify=False, timeout=10) as c:
        assert c.get("/health").status_code == 200


def test_wss_welcome(tls_server):
    async def go():
        ws = await websockets.connect(tls_server.ws_base + "/ws", ssl=no_verify_ctx(),
                                      extra_headers=[("Authorization", "Bearer " + tls_server.token(sub=USER))],
                                      open_timeout=10, ping_interval=None)
        try:
            check_welcome(json.loads(await asyncio.wait_for(ws.recv(), 5)), USER)
            await ws.send(json.dumps({"type": "ping", "id": "tls"}))
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["type"] == "pong" and m["reply_to"] == "tls"
        finally:
            await ws.close()
        assert ws.close_code == 1000
    asyncio.run(go())
