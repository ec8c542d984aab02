"""WebSocket /ws and /websocket of the server foundation (SPEC §6).

Handshake auth, subprotocol selection, the welcome frame, the base protocol
(ping, heartbeat, errors), RFC 6455 violations and their close codes,
1,000 concurrent sockets, slow readers, and the server heartbeat.
"""
import asyncio
import json
import select
import socket
import struct
import time

import pytest
import websockets
import websockets.exceptions

from agentd import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, b64url, build_frame,
                    check_envelope, check_welcome, agentd_server, metric_value)

server = agentd_server(name="ws")
# Server heartbeat: ping every second, silent sockets closed after 2 s.
hb_server = agentd_server("--ws-ping-interval", "1", "--ws-idle-timeout", "2", name="wshb")

USER = "usr_e2e_alice"
PATHS = ["/ws", "/websocket"]


def run(coro):
    return asyncio.run(coro)


async def ws_connect(srv, path="/ws", token=None, headers=None, subprotocols=None, **kw):
    hdrs = list(headers or [])
    if token:
        hdrs.append(("Authorization", "Bearer " + token))
    return await websockets.connect(srv.ws_base + path, extra_headers=hdrs, subprotocols=subprotocols,
                                    open_timeout=10, close_timeout=5, ping_interval=None, max_size=1 << 22, **kw)


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def handshake_status(srv, path="/ws", token=None, headers=None):
    """Raw handshake; returns the response (101 or the refusal with its body)."""
    ws = RawWS(srv.addr, path=path, token=token, headers=headers, handshake=False)
    try:
        return ws.handshake()
    finally:
        ws.close()


# ---- handshake: credentials --------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_no_credentials_403(server, path):
    r = handshake_status(server, path)
    assert r.status == 403, r
    j = check_envelope(r, r.json().get("error_code"))
    assert j["error_code"] in ("FORBIDDEN", "AUTH_REQUIRED"), j


def test_no_credentials_403_websockets_lib(server):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            await ws_connect(server)
        assert ei.value.status_code == 403
    run(go())


def _bad_tokens(srv):
    now = int(time.time())
    good = srv.token(sub=USER)
    h, p, s = good.split(".")
    return {
        "bad_signature": srv.token(sub=USER, sign_secret="x" * 48),
        "expired": srv.token(sub=USER, iat=now - 7200, ttl=60),
        "alg_none": srv.token(sub=USER, alg="none"),
        "alg_none_with_sig": b64url(json.dumps({"alg": "none", "typ": "JWT"})) + "." + p + "." + s,
        "wrong_alg_hs512": srv.token(sub=USER, alg="HS512"),
        "iat_in_future": srv.token(sub=USER, iat=now + 3600, ttl=7200),
        "garbage": "abc.def.ghi",
        "not_a_jwt": "hello",
        "tampered_payload": h + "." + b64url(json.dumps({"sub": "usr_other", "exp": now + 900, "iat": now,
                                                          "type": "access"})) + "." + s,
    }


@pytest.mark.parametrize("kind", ["bad_signature", "expired", "alg_none", "alg_none_with_sig", "wrong_alg_hs512",
                                  "iat_in_future", "garbage", "not_a_jwt", "tampered_payload"])
def test_invalid_token_401(server, kind):
    tok = _bad_tokens(server)[kind]
    for path in (PATHS[0], PATHS[1] + "?token=" + tok):
        r = handshake_status(server, path, token=tok if "?" not in path else None)
        assert r.status == 401, (kind, path, r)
        check_envelope(r, r.json().get("error_code"))
        assert r.json()["error_code"] in ("AUTH_INVALID",), r.json()


def test_invalid_token_in_subprotocol_401(server):
    tok = _bad_tokens(server)["expired"]
    r = handshake_status(server, headers=[("Sec-WebSocket-Protocol", "jwt." + b64url(tok))])
    assert r.status == 401, r


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("where", ["header", "subprotocol", "query"])
def test_token_locations(server, path, where):
    tok = server.token(sub=USER)

    async def go():
        if where == "header":
            ws = await ws_connect(server, path, token=tok)
        elif where == "subprotocol":
            ws = await ws_connect(server, path, subprotocols=["jwt." + b64url(tok)])
            assert ws.subprotocol is None, "only jwt-auth may be selected"
        else:
            ws = await ws_connect(server, path + "?token=" + tok)
        try:
            check_welcome(await recv_json(ws), USER)
        finally:
            await ws.close()
    run(go())


def test_header_wins_over_query(server):
    """Credentials are taken in order: Authorization first."""
    good = server.token(sub="usr_e2e_header")
    other = server.token(sub="usr_e2e_query")

    async def go():
        ws = await ws_connect(server, "/ws?token=" + other, token=good)
        try:
            check_welcome(await recv_json(ws), "usr_e2e_header")
        finally:
            await ws.close()
    run(go())


def test_subprotocol_jwt_auth_selected(server):
    tok = server.token(sub=USER)

    async def go():
        ws = await ws_connect(server, subprotocols=["jwt-auth", "jwt." + b64url(tok)])
        try:
            assert ws.subprotocol == "jwt-auth"
            check_welcome(await recv_json(ws), USER)
        finally:
            await ws.close()
        ws = await ws_connect(server, token=tok, subprotocols=["chat", "jwt-auth"])
        try:
            assert ws.subprotocol == "jwt-auth"
        finally:
            await ws.close()
    run(go())


def test_other_subprotocols_never_selected(server):
    tok = server.token(sub=USER)
    r = handshake_status(server, token=tok, headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
    assert r.status == 101, r
    assert r.header("sec-websocket-protocol") is None, r

    async def go():
        ws = await ws_connect(server, token=tok, subprotocols=["chat"])
        try:
            assert ws.subprotocol is None
            check_welcome(await recv_json(ws), USER)
        finally:
            await ws.close()
    run(go())


def test_no_subprotocol_offered_none_selected(server):
    r = handshake_status(server, token=server.token(sub=USER))
    assert r.status == 101
    assert r.header("sec-websocket-protocol") is None


def test_x_test_headers_ignored(server):
    spoof = [("X-Test-User-ID", "usr_admin"), ("X-Test-Auth", "bypass"), ("X-Test-Mode", "1"),
             ("X-User-ID", "usr_admin"), ("X-Test-Token", "anything")]
    r = handshake_status(server, headers=spoof)
    assert r.status == 403, r

    async def go():
        ws = await ws_connect(server, token=server.token(sub=USER), headers=spoof)
        try:
            check_welcome(await recv_json(ws), USER)
        finally:
            await ws.close()
    run(go())


def test_bad_version_not_upgraded(server):
    tok = server.token(sub=USER)
    ws = RawWS(server.addr, token=tok, handshake=False)
    with ws:
        ws.request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                          ("Sec-WebSocket-Version", "12"), ("Authorization", "Bearer " + tok)])
        r = ws.read_response()
    assert r.status in (426, 400), r
    if r.status == 426:
        assert "13" in (r.header("sec-websocket-version") or ""), r


def test_missing_key_400(server):
    tok = server.token(sub=USER)
    ws = RawWS(server.addr, token=tok, handshake=False)
    with ws:
        ws.request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Version", "13"), ("Authorization", "Bearer " + tok)])
        r = ws.read_response()
    check_envelope(r, "BAD_REQUEST", 400)


def test_bad_key_400(server):
    tok = server.token(sub=USER)
    ws = RawWS(server.addr, token=tok, handshake=False)
    with ws:
        ws.request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", "short"),
                                          ("Sec-WebSocket-Version", "13"), ("Authorization", "Bearer " + tok)])
        r = ws.read_response()
    assert r.status == 400, r


def test_plain_get_on_ws_path_not_upgraded(server):
    r = server.get("/ws", headers={"Authorization": "Bearer " + server.token(sub=USER)})
    assert 400 <= r.status < 500, r
    assert r.json()["error"] is True


# ---- welcome and base protocol --------------------------------------------------

def test_welcome_frame(server):
    ws = RawWS(server.addr, token=server.token(sub="usr_e2e_welcome"))
    with ws:
        f = ws.recv_frame(timeout=5)
        assert f.opcode == OP_TEXT and f.fin, f
        msg = f.json()
        check_welcome(msg, "usr_e2e_welcome")
        assert abs(msg["timestamp"] - time.time()) < 60


def test_connection_ids_unique(server):
    tok = server.token(sub=USER)
    ids = set()
    for _ in range(3):
        with RawWS(server.addr, token=tok) as ws:
            ids.add(ws.recv_json()["data"]["connection_id"])
    assert len(ids) == 3


def test_base_protocol(server):
    async def go():
        ws = await ws_connect(server, token=server.token(sub=USER))
        try:
            check_welcome(await recv_json(ws), USER)
            await ws.send(json.dumps({"type": "ping"}))
            m = await recv_json(ws)
            assert m["type"] == "pong" and isinstance(m["timestamp"], (int, float)), m

            await ws.send(json.dumps({"type": "ping", "id": "req-1"}))
            m = await recv_json(ws)
            assert m["type"] == "pong" and m["reply_to"] == "req-1", m

            await ws.send(json.dumps({"type": "heartbeat", "id": 7}))
            m = await recv_json(ws)
            assert m["type"] == "heartbeat_ack" and m["reply_to"] == 7, m

            await ws.send(json.dumps({"type": "heartbeat"}))
            m = await recv_json(ws)
            assert m["type"] == "heartbeat_ack", m

            await ws.send(json.dumps({"type": "bogus_kind"}))
            m = await recv_json(ws)
            assert m["type"] == "error", m
            assert m["code"] == "UNKNOWN_TYPE", m
            assert m["message"] == "unknown message type: bogus_kind", m
            assert m["data"] == {"code": "UNKNOWN_TYPE", "message": "unknown message type: bogus_kind"}, m

            await ws.send(json.dumps({"type": "bogus2", "id": "e1"}))
            m = await recv_json(ws)
            assert m["type"] == "error" and m["code"] == "UNKNOWN_TYPE" and m["reply_to"] == "e1", m

            await ws.send("{not json")
            m = await recv_json(ws)
            assert m["type"] == "error" and m["code"] == "INVALID_JSON", m
            assert m["data"]["code"] == "INVALID_JSON" and m["data"]["message"] == m["message"], m

            for bad in ("[1,2]", '"str"', "42", '{"no_type":1}', '{"type":5}'):
                await ws.send(bad)
                m = await recv_json(ws)
                assert m["type"] == "error" and isinstance(m.get("code"), str), (bad, m)

            # still open and answering
            await ws.send(json.dumps({"type": "ping", "id": "after"}))
            m = await recv_json(ws)
            assert m["type"] == "pong" and m["reply_to"] == "after", m

            await ws.send(json.dumps({"type": "pong"}))  # keepalive: no answer required
            await ws.send(json.dumps({"type": "ping", "id": "last"}))
            m = await recv_json(ws)
            while m.get("reply_to") != "last":
                m = await recv_json(ws)
            assert m["type"] == "pong"
            assert ws.open
        finally:
            await ws.close()
        assert ws.close_code == 1000
    run(go())


def test_payload_form(server):
    """`payload` wraps the fields; the frame's own id is still echoed."""
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        ws.send_json({"type": "ping", "payload": {}, "id": "p1"})
        m = ws.recv_json()
        assert m["type"] == "pong" and m["reply_to"] == "p1", m


def test_control_ping_gets_pong(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        ws.send_frame(OP_PING, b"hello-ping")
        f = ws.recv_frame(timeout=5)
        assert f.opcode == OP_PONG and f.payload == b"hello-ping", f
        ws.send_json({"type": "ping", "id": 1})
        assert ws.recv_json()["reply_to"] == 1


def test_fragmented_text_message(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        msg = json.dumps({"type": "ping", "id": "frag"}).encode()
        ws.send_frame(OP_TEXT, msg[:5], fin=False)
        ws.send_frame(OP_PING, b"mid")          # control frames may interleave
        ws.send_frame(OP_CONT, msg[5:10], fin=False)
        ws.send_frame(OP_CONT, msg[10:], fin=True)
        got_pong = False
        while True:
            f = ws.recv_frame(timeout=5)
            if f.opcode == OP_PONG:
                got_pong = True
                continue
            assert f.opcode == OP_TEXT, f
            assert f.json()["reply_to"] == "frag"
            break
        assert got_pong


def test_client_close_echoed(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        ws.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        assert ws.read_close(5) == 1000
        assert ws.wait_closed(5) < 5


def test_metrics_counts_open_ws(server):
    before = server.ws_open_count()
    assert before is not None, "agentd_connections_open{kind=\"ws\"} missing from /metrics"
    socks = [RawWS(server.addr, token=server.token(sub=USER)) for _ in range(3)]
    try:
        for s in socks:
            s.recv_json()
        assert server.ws_open_count() == before + 3
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while server.ws_open_count() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.ws_open_count() == before


# ---- RFC 6455 violations -----------------------------------------------------------

def _expect_close(ws, code, timeout=5):
    got = ws.read_close(timeout)
    assert got == code, "expected close %d, got %r" % (code, got)
    assert ws.wait_closed(5) < 5


@pytest.mark.parametrize("case,code", [
    ("unmasked", 1002),
    ("reserved_opcode_3", 1002),
    ("reserved_opcode_b", 1002),
    ("rsv1_set", 1002),
    ("invalid_utf8", 1007),
    ("invalid_utf8_fragmented", 1007),
    ("fragmented_ping", 1002),
    ("control_too_long", 1002),
    ("continuation_without_start", 1002),
    ("text_inside_fragmented", 1002),
    ("binary", 1003),
])
def test_protocol_violation_close_code(server, case, code):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        ping = b'{"type":"ping"}'
        if case == "unmasked":
            ws.send_frame(OP_TEXT, ping, mask=False)
        elif case == "reserved_opcode_3":
            ws.send_frame(0x3, b"x")
        elif case == "reserved_opcode_b":
            ws.send_frame(0xB, b"x")
        elif case == "rsv1_set":
            ws.send_frame(OP_TEXT, ping, rsv=4)
        elif case == "invalid_utf8":
            ws.send_frame(OP_TEXT, b'{"type":"\xff\xfe"}')
        elif case == "invalid_utf8_fragmented":
            ws.send_frame(OP_TEXT, b'{"type":"\xe2\x82', fin=False)
            ws.send_frame(OP_CONT, b'"}', fin=True)
        elif case == "fragmented_ping":
            ws.send_frame(OP_PING, b"x", fin=False)
        elif case == "control_too_long":
            ws.send_frame(OP_PING, b"x" * 126)
        elif case == "continuation_without_start":
            ws.send_frame(OP_CONT, ping)
        elif case == "text_inside_fragmented":
            ws.send_frame(OP_TEXT, ping[:3], fin=False)
            ws.send_frame(OP_TEXT, ping[3:], fin=True)
        elif case == "binary":
            ws.send_frame(OP_BINARY, b"\x00\x01\x02")
        _expect_close(ws, code)


def _send_big(ws, frames, first_part=4096):
    """Send the head of an oversize message, give the server a moment to refuse
    it from the length alone, then the rest (ignoring a reset)."""
    data = b"".join(frames)
    try:
        ws.send(data[:first_part])
        readable, _, _ = select.select([ws.sock], [], [], 1.5)
        if readable:
            return
        ws.send(data[first_part:])
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_frame_over_64k_closed_1009(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        _send_big(ws, [build_frame(OP_TEXT, b'"' + b"a" * 65536 + b'"')])
        _expect_close(ws, 1009)


def test_fragmented_message_over_64k_closed_1009(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        _send_big(ws, [build_frame(OP_TEXT, b'"' + b"a" * 40000, fin=False),
                       build_frame(OP_CONT, b"a" * 40000 + b'"', fin=True)], first_part=50000)
        _expect_close(ws, 1009)


def test_frame_at_64k_accepted(server):
    ws = RawWS(server.addr, token=server.token(sub=USER))
    with ws:
        ws.recv_json()
        body = json.dumps({"type": "ping", "id": "big", "pad": ""}).encode()
        pad = 65536 - len(body)
        msg = json.dumps({"type": "ping", "id": "big", "pad": "p" * pad}).encode()
        assert len(msg) == 65536
        ws.send_frame(OP_TEXT, msg)
        m = ws.recv_json(timeout=10)
        assert m["type"] == "pong" and m["reply_to"] == "big", m


def test_server_alive_after_violations(server):
    assert server.get("/health").status == 200


# ---- scale -----------------------------------------------------------------------

def test_thousand_concurrent_connections(server):
    N = 1000

    async def go():
        sem = asyncio.Semaphore(64)
        tok = server.token(sub="usr_e2e_many")

        async def one(i):
            async with sem:
                for attempt in range(3):
                    try:
                        ws = await ws_connect(server, token=tok)
                        break
                    except OSError:
                        if attempt == 2:
                            raise
                        await asyncio.sleep(0.2)
                msg = await recv_json(ws, timeout=30)
            check_welcome(msg, "usr_e2e_many")
            return ws, msg["data"]["connection_id"]

        results = await asyncio.gather(*(one(i) for i in range(N)))
        socks = [ws for ws, _ in results]
        try:
            assert len({cid for _, cid in results}) == N
            assert all(ws.open for ws in socks)
            count = await asyncio.get_running_loop().run_in_executor(None, server.ws_open_count)
            assert count is None or count >= N, count
            # every socket still answers
            await asyncio.gather(*(ws.send(json.dumps({"type": "ping", "id": i})) for i, ws in enumerate(socks)))
            replies = await asyncio.gather(*(recv_json(ws, timeout=30) for ws in socks))
            assert [m["reply_to"] for m in replies] == list(range(N))
        finally:
            await asyncio.gather(*(ws.close() for ws in socks), return_exceptions=True)

    t0 = time.monotonic()
    run(go())
    assert time.monotonic() - t0 < 60
    assert server.get("/health").status == 200


def slow_consumer_closes(srv):
    r = srv.get("/metrics")
    return metric_value(r.text(), "agentd_slow_consumer_closed_total") or 0


def test_slow_reader_closed_and_memory_bounded(server_factory):
    """SPEC §6: a slow reader whose send queue passes its bound is closed (1013),
    never allowed to grow the server's memory without limit.  The client floods
    pings and reads nothing until the server has given up on it; then it reads
    everything queued for it, and the last frame must be a close with 1013, not
    a reset (issue 13, defect 11)."""
    srv = server_factory("--send-queue-limit", "65536", "--rate-limit", "0", extra_asan="quarantine_size_mb=16")
    ws = RawWS(srv.addr, token=srv.token(sub=USER))
    ws.recv_json()
    rss0 = srv.rss_kb()
    baseline_ws = srv.ws_open_count()
    assert baseline_ws == 1, baseline_ws
    s = ws.sock
    s.setblocking(False)
    batch = build_frame(OP_TEXT, b'{"type":"ping"}') * 256
    pending = b""
    sent = 0
    t0 = time.monotonic()
    closed = False
    rss_max = rss0
    next_check = t0
    while time.monotonic() - t0 < 30:
        if not pending:
            pending = batch
        try:
            n = s.send(pending)
            pending = pending[n:]
            sent += n
        except BlockingIOError:
            time.sleep(0.02)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 0.5
            rss_max = max(rss_max, srv.rss_kb())
            if slow_consumer_closes(srv) >= 1:
                closed = True
                break
    elapsed = time.monotonic() - t0
    assert closed, "slow reader not given up on after %.0fs (%d bytes sent)" % (elapsed, sent)
    rss_max = max(rss_max, srv.rss_kb())
    assert rss_max - rss0 < 64 * 1024, "server RSS grew by %d KiB" % (rss_max - rss0)
    # Everything queued, then the close frame (before the fix: EOF or a reset, None).
    s.setblocking(True)
    code = ws.read_close(timeout=20)
    ws.close()
    assert code == 1013, code
    deadline = time.monotonic() + 10
    while srv.ws_open_count() != 0:
        assert time.monotonic() < deadline, "the closed socket is still counted"
        time.sleep(0.1)
    assert srv.get("/health").status == 200


def test_slow_reader_sees_1013_with_websockets_lib(server_factory):
    """The same through the websockets library: a client whose application stops
    reading (max_queue=1) gets ConnectionClosed with the server's 1013."""
    srv = server_factory("--send-queue-limit", "65536", "--rate-limit", "0")

    async def go():
        ws = await ws_connect(srv, token=srv.token(sub=USER), max_queue=1, read_limit=4096)
        check_welcome(await recv_json(ws), USER)
        ping = json.dumps({"type": "ping", "id": "x" * 64})

        async def flood():
            while True:
                for _ in range(256):
                    await ws.send(ping)     # blocks once the server stops reading
                await asyncio.sleep(0)

        sender = asyncio.ensure_future(flood())
        try:
            deadline = time.monotonic() + 30
            while await asyncio.get_running_loop().run_in_executor(None, slow_consumer_closes, srv) < 1:
                assert time.monotonic() < deadline, "slow reader never given up on"
                assert not sender.done() or isinstance(sender.exception(), websockets.exceptions.ConnectionClosed), \
                    sender.exception()
                await asyncio.sleep(0.3)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
            while True:
                await asyncio.wait_for(ws.recv(), 20)
        assert ei.value.rcvd is not None, "closed without a close frame (1006)"
        assert ei.value.rcvd.code == 1013, ei.value.rcvd
        await ws.close()

    run(go())
    assert srv.get("/health").status == 200


# ---- server heartbeat -------------------------------------------------------------

def test_server_sends_ping(hb_server):
    ws = RawWS(hb_server.addr, token=hb_server.token(sub=USER))
    with ws:
        ws.recv_json()
        deadline = time.monotonic() + 3.5
        while True:
            f = ws.recv_frame(timeout=max(0.1, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                ws.send_frame(OP_PONG, f.payload)
                break
            assert f.opcode != OP_CLOSE, f


def test_silent_client_closed(hb_server):
    ws = RawWS(hb_server.addr, token=hb_server.token(sub=USER))
    with ws:
        ws.recv_json()
        t0 = time.monotonic()
        code = ws.read_close(timeout=8)    # never answers the pings
        waited = time.monotonic() - t0
        assert 1.0 <= waited < 6, waited
        assert code is None or code in (1000, 1001, 1002, 1008, 1011), code


def test_responsive_client_kept(hb_server):
    async def go():
        ws = await ws_connect(hb_server, token=hb_server.token(sub=USER))  # answers pings itself
        try:
            check_welcome(await recv_json(ws), USER)
            await asyncio.sleep(4.5)
            assert ws.open, ws.close_code
            await ws.send(json.dumps({"type": "ping", "id": "alive"}))
            assert (await recv_json(ws))["reply_to"] == "alive"
        finally:
            await ws.close()
    run(go())
