"""Process lifecycle (SPEC §10): start line, graceful shutdown with open
WebSockets (close 1001, exit 0), a second signal, and configuration errors."""
import asyncio
import json
import os
import re
import signal
import subprocess
import time

import pytest
import websockets

from agentd import (AGENTD_BIN, OP_TEXT, HttpConn, RawWS, build_frame, check_welcome, random_secret,
                    sanitizer_env)

USER = "usr_e2e_life"


def run_cli(args, tmp_path, timeout=30):
    p = subprocess.run([AGENTD_BIN] + args, cwd=str(tmp_path), env=sanitizer_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def no_sanitizer_report(text):
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in text, text


# ---- configuration errors ---------------------------------------------------------

@pytest.mark.parametrize("args,flag", [
    (["--port", "abc"], "--port"),
    (["--port", "70000"], "--port"),
    (["--port", "-1"], "--port"),
    (["--jwt-secret", "short"], "--jwt-secret"),
    (["--log-level", "loudest"], "--log-level"),
    (["--request-timeout", "soon"], "--request-timeout"),
    (["--max-ws-frame", "-5"], "--max-ws-frame"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, args, flag):
    base = ["--data-dir", str(tmp_path / "data")]
    if "--jwt-secret" not in args:
        base += ["--jwt-secret", random_secret()]
    rc, out, err = run_cli(base + args, tmp_path)
    assert rc == 2, (rc, out, err)
    no_sanitizer_report(err)
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line, got %r" % lines
    assert flag in lines[0], lines[0]
    assert "listening" not in out


def test_missing_flag_value_exits_2(tmp_path):
    rc, out, err = run_cli(["--data-dir", str(tmp_path / "d"), "--port"], tmp_path)
    assert rc == 2, (rc, out, err)
    assert "--port" in out + err


def test_version_flag(tmp_path):
    rc, out, err = run_cli(["--version"], tmp_path)
    assert rc == 0, (rc, out, err)
    assert re.search(r"\d+\.\d+", out), out
    assert "agentd" in out.lower() or re.match(r"^v?\d", out.strip()), out
    no_sanitizer_report(err)


def test_help_flag(tmp_path):
    rc, out, err = run_cli(["--help"], tmp_path)
    assert rc == 0, (rc, out, err)
    text = out + err
    for flag in ("--port", "--host", "--data-dir", "--jwt-secret", "--tls-cert", "--cors-origins"):
        assert flag in text, flag
    no_sanitizer_report(err)


def test_env_var_and_flag_precedence(tmp_path):
    """Every option has an environment variable; the flag wins (SPEC §10)."""
    env = sanitizer_env()
    env["AGENTD_PORT"] = "abc"
    p = subprocess.run([AGENTD_BIN, "--data-dir", str(tmp_path / "d"), "--jwt-secret", random_secret()],
                       cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 2, p
    assert b"port" in (p.stdout + p.stderr).lower()


def test_port_in_use_exits_nonzero(server_factory, tmp_path):
    a = server_factory()
    rc, out, err = run_cli(["--port", str(a.port), "--data-dir", str(tmp_path / "other"),
                            "--jwt-secret", random_secret()], tmp_path)
    assert rc != 0, (rc, out, err)
    assert "listening" not in out
    assert a.get("/health").status == 200


# ---- start and graceful shutdown ----------------------------------------------------

def test_listening_line_and_sigint_exit_0(server_factory):
    srv = server_factory()
    assert srv.scheme == "http" and srv.host == "127.0.0.1" and 0 < srv.port < 65536
    assert srv.get("/health").status == 200
    srv.stop_and_check(sig=signal.SIGINT)


def test_json_logs(server_factory):
    srv = server_factory()
    srv.get("/health")
    srv.stop_and_check()
    logs = [ln for ln in srv.stderr_text().splitlines() if ln.startswith("{")]
    assert logs, "no JSON log lines on stderr"
    for ln in logs:
        json.loads(ln)


def test_sigterm_closes_websockets_1001_and_exits_0(server_factory):
    srv = server_factory("--shutdown-grace", "10")

    async def go():
        socks = []
        for i in range(5):
            ws = await websockets.connect(srv.ws_base + ("/ws" if i % 2 else "/websocket"),
                                          extra_headers=[("Authorization", "Bearer " + srv.token(sub=USER))],
                                          open_timeout=10, close_timeout=10, ping_interval=None)
            check_welcome(json.loads(await asyncio.wait_for(ws.recv(), 5)), USER)
            socks.append(ws)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in socks)), 10)
        assert time.monotonic() - t0 < 10
        return [ws.close_code for ws in socks]

    codes = asyncio.run(go())
    assert codes == [1001] * 5, codes
    rc = srv.wait(20)
    srv.check_sanitizers()
    assert rc == 0, (rc, srv.stderr_tail())


def test_sigterm_idle_http_and_raw_ws(server_factory):
    """Idle keep-alive HTTP connections are closed; a raw WebSocket gets close 1001."""
    srv = server_factory("--shutdown-grace", "5")
    c = HttpConn(srv.addr)
    c.request("GET", "/health")
    assert c.read_response().status == 200
    ws = RawWS(srv.addr, token=srv.token(sub=USER))
    ws.recv_json()
    srv.send_signal(signal.SIGTERM)
    code = ws.read_close(timeout=5)
    assert code == 1001, code
    try:
        ws.send_frame(0x8, b"\x03\xe9")     # answer the close
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.wait_closed(6) < 6
    ws.close()
    c.close()
    rc = srv.wait(20)
    srv.check_sanitizers()
    assert rc == 0, (rc, srv.stderr_tail())


def _flood_until_stalled(ws, seconds=5.0):
    """Send pings without reading until the server stops reading (its send queue
    is past the high mark and the kernel buffers are full)."""
    s = ws.sock
    s.setblocking(False)
    batch = build_frame(OP_TEXT, b'{"type":"ping"}') * 256
    pending = b""
    blocked_since = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pending:
            pending = batch
        try:
            pending = pending[s.send(pending):]
            blocked_since = None
        except BlockingIOError:
            if blocked_since is None:
                blocked_since = time.monotonic()
            elif time.monotonic() - blocked_since > 0.5:
                return True
            time.sleep(0.02)
    return False


def test_second_signal_exits_at_once(server_factory):
    # Keep the shutdown busy with an agent run that takes a while (the builtin
    # provider's simulated latency): runs get --shutdown-grace to finish.
    srv = server_factory("--shutdown-grace", "30", "--llm-latency-ms", "3000", "--rate-limit", "0")
    token = srv.token(sub=USER)
    c = HttpConn(srv.addr)
    c.request("POST", "/api/agents/start", body=json.dumps({"message": "how can I cut my LLM costs?"}).encode(),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert c.read_response().status == 202
    c.close()
    time.sleep(0.3)
    srv.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert srv.alive(), "shutdown finished at once despite a running run"
    t0 = time.monotonic()
    srv.send_signal(signal.SIGINT)
    srv.wait(10)
    assert time.monotonic() - t0 < 3, "second signal did not exit at once"
    assert srv.proc.returncode != 0
    err = srv.stderr_text()
    assert "runtime error:" not in err, err[-4000:]


def test_sigterm_lets_a_run_finish_then_exits_0(server_factory):
    """DESIGN.md shutdown: a run in flight gets the grace period, its events are stored."""
    srv = server_factory("--shutdown-grace", "20", "--llm-latency-ms", "200", "--rate-limit", "0")
    token = srv.token(sub=USER)
    c = HttpConn(srv.addr)
    c.request("POST", "/api/agents/start", body=json.dumps({"message": "summarise my usage"}).encode(),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.read_response()
    assert r.status == 202
    run_id = json.loads(r.body)["id"]
    c.close()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(30)
    srv.check_sanitizers()
    assert rc == 0, (rc, srv.stderr_tail())
    srv.start()
    c = HttpConn(srv.addr)
    c.request("GET", "/api/runs/" + run_id, headers={"Authorization": "Bearer " + token})
    r = c.read_response()
    assert r.status == 200
    assert json.loads(r.body)["status"] == "completed"
    c.close()


def test_data_dir_created_and_reused(server_factory):
    a = server_factory()
    assert os.path.isdir(a.data_dir)
    a.stop_and_check()
    a.start()
    assert a.get("/health").status == 200
