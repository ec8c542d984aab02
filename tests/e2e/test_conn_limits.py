"""Silent connections and the connection cap (issue 13, defect 16; docs/protocol.md, HTTP).

- A connection that never sends a request is closed after --request-timeout, not --idle-timeout;
  keep-alive idleness between requests keeps --idle-timeout.
- At the connection cap (RLIMIT_NOFILE - 64 descriptors; the server here runs under
  `prlimit --nofile=68`, so the cap is 4) the oldest idle keep-alive connection is closed to make
  room; with none, the new client gets 503 UNAVAILABLE with Retry-After and is closed.
"""
import shutil
import socket
import time

import pytest

from agentd import Agentd, HttpConn, check_envelope

NOFILE = 68   # server.c: cap = RLIMIT_NOFILE - 64
CAP = NOFILE - 64


class CappedAgentd(Agentd):
    def cmdline(self):
        return ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"] + super().cmdline()


@pytest.fixture
def capped(tmp_path):
    if not shutil.which("prlimit"):
        pytest.fail("prlimit (util-linux) is needed to give the server a small descriptor limit", pytrace=False)
    srv = CappedAgentd(tmp_path / "capped", ["--request-timeout", "30", "--rate-limit", "0"], name="capped")
    srv.start()
    yield srv
    srv.stop_and_check()


@pytest.fixture
def short_request_timeout(server_factory):
    return server_factory("--request-timeout", "1", "--idle-timeout", "30", "--rate-limit", "0")


def test_silent_connection_closed_after_request_timeout(short_request_timeout):
    srv = short_request_timeout
    with HttpConn(srv.addr) as served, HttpConn(srv.addr) as silent:
        served.request("GET", "/health")
        assert served.read_response().status == 200
        waited = silent.wait_closed(10)     # before the fix: held for the 30 s idle timeout
        assert waited < 1 + 5, waited
        assert silent.buf == b"", silent.buf[:200]
        # The keep-alive connection idles on past the request timeout.
        served.request("GET", "/health")
        assert served.read_response().status == 200


def test_cap_answers_503_then_evicts_idle_keepalive(capped):
    srv = capped
    conns = []
    try:
        # CAP - 1 silent connections, and one busy in the middle of a request.
        for _ in range(CAP - 1):
            conns.append(HttpConn(srv.addr))
        busy = HttpConn(srv.addr)
        conns.append(busy)
        busy.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        # The server has taken all of them once a probe is refused; until then the
        # probe may still be accepted (then it is answered, and closes).
        deadline = time.monotonic() + 20
        while True:
            with HttpConn(srv.addr) as probe:
                probe.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                r = probe.read_response()
                if r.status == 503:
                    break
                assert r.status == 200, r
            assert time.monotonic() < deadline, "never refused at the cap"
        j = check_envelope(r, "UNAVAILABLE", 503)
        assert j["message"]
        assert r.header("retry-after") == "1", r
        assert (r.header("connection") or "").lower() == "close", r

        # busy finishes its request and becomes idle keep-alive: the next client
        # takes its slot and is served, and busy is closed.
        busy.send(b"\r\n")
        assert busy.read_response().status == 200
        with HttpConn(srv.addr) as newcomer:
            newcomer.request("GET", "/health")
            assert newcomer.read_response().status == 200
            assert busy.wait_closed(10) < 10
    finally:
        for c in conns:
            c.close()
    assert srv.alive()
