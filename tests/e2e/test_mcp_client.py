"""agentd as an MCP client (SPEC §7, §10 --mcp-config; docs/protocol.md "MCP client").

The servers are small Python programs (tests/mcp/servers/) that behave or misbehave on purpose: garbage on
stdout, a hang, death mid-call, answers over 1 MiB, notification floods, no answer to initialize,
tools/list_changed.  Whatever they do, their tools' calls end in a JSON answer, the other servers and agentd
keep serving, and SIGTERM ends agentd with exit 0 and no child left.
"""
import json
import os
import signal
import sys
import time

import pytest

from agentd import Agentd, check_envelope
from auth_helpers import call

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "..", "mcp", "servers")
PY = "/usr/bin/python3"


def stdio(name, **extra):
    cfg = {"command": [PY, os.path.join(SERVERS, name + ".py")]}
    cfg.update(extra)
    return cfg


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def tools(srv, token):
    r = call(srv, "GET", "/api/tools", token=token)
    assert r.status == 200, r
    return {t["name"]: t for t in r.json()["tools"]}


def execute(srv, token, name, args=None):
    return call(srv, "POST", "/api/tools/execute", {"tool_name": name, "arguments": args or {}}, token=token)


def children(pid):
    """Pids of the live (not zombie) children of pid."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return [c for c in out if alive(c)]


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def write_config(dirpath, servers):
    os.makedirs(str(dirpath), exist_ok=True)
    path = os.path.join(str(dirpath), "mcp.json")
    with open(path, "w") as f:
        json.dump({"servers": servers}, f)
    return path


@pytest.fixture(scope="module")
def mcp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcpc")
    log = os.path.join(str(d), "good.log")
    cfg = write_config(d, {
        "good": stdio("good", env={"MCP_TEST_LOG": log, "MCP_TEST_GREETING": "hello"}, cwd=str(d)),
        "garbage": stdio("garbage"),
        "dies": stdio("dies"),
        "huge": stdio("huge"),
        "flood": stdio("flood"),
        "lc": stdio("listchanged"),
        "hang": stdio("hang"),
        "noinit": stdio("noinit"),
        "notools": stdio("notools"),
        "missing": {"command": ["/nonexistent/mcp-server"]},
    })
    srv = Agentd(d, ["--rate-limit", "0", "--mcp-config", cfg, "--mcp-timeout", "3"], name="mcpc")
    srv.start()
    srv.good_log = log
    token = srv.token(sub="usr_mcp_client")
    srv.tok = token
    # every server but noinit lists its tools in the background after boot
    wait_for(lambda: all(any(n.startswith(s + ".") for n in tools(srv, token))
                         for s in ("good", "garbage", "dies", "huge", "flood", "lc", "hang")),
             what="the servers' tools")
    try:
        yield srv
    finally:
        srv.stop_and_check()


def test_tools_join_the_registry(mcp):
    t = tools(mcp, mcp.tok)
    # good.py lists in pages of two: all pages were followed
    for name in ("echo", "add", "fail", "sleep", "wipe", "hang", "huge", "big"):
        assert "good." + name in t, sorted(t)
        assert t["good." + name]["source"] == "mcp:good"
    assert t["good.add"]["input_schema"]["required"] == ["a", "b"]
    assert t["good.echo"]["description"] == "Echo the text back"
    # a schema the registry refuses skips that tool alone
    assert "good.badschema" not in t
    assert "garbage.echo" in t and t["garbage.echo"]["source"] == "mcp:garbage"
    # a server that never answers initialize has no tools, and agentd serves all the same
    assert not any(n.startswith("noinit.") for n in t)
    assert "calculator" in t and t["calculator"]["source"] == "builtin"


def test_call_text_and_structured_results(mcp):
    r = execute(mcp, mcp.tok, "good.echo", {"text": "hi"})
    assert r.status == 200, r
    j = r.json()
    assert j["status"] == "success" and j["tool_name"] == "good.echo" and j["result"] == {"text": "echo: hi"}, j
    r = execute(mcp, mcp.tok, "good.add", {"a": 2, "b": 40})
    assert r.status == 200 and r.json()["result"] == {"sum": 42}, r
    r = execute(mcp, mcp.tok, "good.big")  # 512 KiB: under the bound
    assert r.status == 200 and len(r.json()["result"]["text"]) == 512 << 10, r.status


def test_child_gets_the_configured_cwd_and_env(mcp):
    r = execute(mcp, mcp.tok, "good.pwd")
    assert r.status == 200 and os.path.realpath(r.json()["result"]["text"]) == os.path.realpath(mcp.workdir), r
    r = execute(mcp, mcp.tok, "good.env", {"name": "MCP_TEST_GREETING"})
    assert r.status == 200 and r.json()["result"]["text"] == "hello", r
    r = execute(mcp, mcp.tok, "good.env", {"name": "PATH"})  # agentd's own environment is inherited
    assert r.status == 200 and r.json()["result"]["text"] == os.environ["PATH"], r


def test_concurrent_calls_get_their_own_answers(mcp):
    """Calls from many workers at once share one child: each gets the answer to its own id."""
    import threading
    out = {}

    def one(i):
        tool, args = ("good.sleep", {"seconds": 0.2}) if i % 4 == 0 else ("good.echo", {"text": "n%d" % i})
        out[i] = (tool, execute(mcp, mcp.tok, tool, args))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=60)
    assert len(out) == 32
    for i, (tool, r) in out.items():
        assert r.status == 200, (i, r)
        want = "slept" if tool == "good.sleep" else "echo: n%d" % i
        assert r.json()["result"]["text"] == want, (i, r.json())


def test_arguments_checked_against_the_servers_schema(mcp):
    r = execute(mcp, mcp.tok, "good.add", {"a": "two", "b": 1})
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert {"field": "arguments.a", "message": "must be a number"} in j["details"], j


def test_is_error_is_an_error_answer(mcp):
    r = execute(mcp, mcp.tok, "good.fail")
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert "it failed on purpose" in j["message"], j


def test_hanging_call_times_out_and_is_cancelled(mcp):
    r = execute(mcp, mcp.tok, "good.hang")
    j = check_envelope(r, "TIMEOUT", 504)
    assert "did not answer" in j["message"], j

    def cancelled():
        with open(mcp.good_log) as f:
            msgs = [json.loads(x) for x in f]
        calls = [m["id"] for m in msgs if m.get("method") == "tools/call" and m["params"]["name"] == "hang"]
        cans = [m["params"]["requestId"] for m in msgs if m.get("method") == "notifications/cancelled"]
        return calls and calls[-1] in cans
    wait_for(cancelled, what="notifications/cancelled for the timed-out call")
    # the server and agentd keep serving
    r = execute(mcp, mcp.tok, "good.echo", {"text": "still here"})
    assert r.status == 200 and r.json()["result"]["text"] == "echo: still here", r


def test_server_that_hangs_entirely(mcp):
    r = execute(mcp, mcp.tok, "hang.echo", {"text": "x"})
    check_envelope(r, "TIMEOUT", 504)
    assert call(mcp, "GET", "/health").status == 200


def test_answers_over_1mib_are_refused(mcp):
    for tool in ("good.huge", "huge.huge", "huge.hugetail"):  # the id first, or last (as Node writes it)
        r = execute(mcp, mcp.tok, tool)
        j = check_envelope(r, "PAYLOAD_TOO_LARGE", 413)
        assert "1048576" in j["message"], j
    # a 2 MiB notification line is skipped; the answer after it arrives
    r = execute(mcp, mcp.tok, "huge.bigline")
    assert r.status == 200 and r.json()["result"]["text"] == "after the big line", r
    r = execute(mcp, mcp.tok, "huge.echo", {"text": "ok"})
    assert r.status == 200, r


def test_garbage_on_stdout_is_skipped(mcp):
    for i in range(5):
        r = execute(mcp, mcp.tok, "garbage.echo", {"text": str(i)})
        assert r.status == 200 and r.json()["result"]["text"] == "echo: %d" % i, r
    assert "no JSON-RPC message skipped" in mcp.stderr_text()


def test_server_dying_mid_call_fails_it_at_once_and_restarts(mcp):
    r = execute(mcp, mcp.tok, "dies.die")
    j = check_envelope(r, "UNAVAILABLE", 503)
    # not a timeout: the death ended the call (its status, or the closed stdout that came first)
    assert "exited with status 3" in j["message"] or "closed its stdout" in j["message"], j
    # restarted after the backoff: its tools answer again
    wait_for(lambda: execute(mcp, mcp.tok, "dies.echo", {"text": "back"}).status == 200, what="dies restarted")
    r = execute(mcp, mcp.tok, "dies.add", {"a": 1, "b": 1})
    assert r.status == 200 and r.json()["result"] == {"sum": 2}, r


def test_notification_flood_does_not_stall(mcp):
    r = execute(mcp, mcp.tok, "flood.flood")
    assert r.status == 200 and r.json()["result"]["text"] == "flooded", r
    r = execute(mcp, mcp.tok, "flood.echo", {"text": "after"})
    assert r.status == 200 and r.json()["result"]["text"] == "echo: after", r
    assert call(mcp, "GET", "/health").status == 200
    assert "flood" in {n.split(".")[0] for n in tools(mcp, mcp.tok)}


def test_list_changed_relists(mcp):
    r = execute(mcp, mcp.tok, "lc.grow", {"name": "fresh"})
    assert r.status == 200, r
    wait_for(lambda: "lc.fresh" in tools(mcp, mcp.tok), what="lc.fresh listed")
    r = execute(mcp, mcp.tok, "lc.fresh")
    assert r.status == 200 and r.json()["result"]["text"] == "I am fresh", r
    r = execute(mcp, mcp.tok, "lc.shrink", {"name": "fresh"})
    assert r.status == 200, r
    wait_for(lambda: "lc.fresh" not in tools(mcp, mcp.tok), what="lc.fresh gone")
    check_envelope(execute(mcp, mcp.tok, "lc.fresh"), "NOT_FOUND", 404)


def test_server_that_never_initializes(mcp):
    wait_for(lambda: "did not answer initialize within 3 s" in mcp.stderr_text(), what="the initialize timeout")
    check_envelope(execute(mcp, mcp.tok, "noinit.echo", {"text": "x"}), "NOT_FOUND", 404)
    assert call(mcp, "GET", "/health").status == 200


def test_server_without_tools_is_connected(mcp):
    # a 2025-03-26 server that offers prompts only: connected with no tools, never asked tools/list
    wait_for(lambda: "mcp server 'notools' connected" in mcp.stderr_text(), what="notools connected")
    assert "mcp server 'notools': 0 tools" in mcp.stderr_text()
    assert not any(n.startswith("notools.") for n in tools(mcp, mcp.tok))


def test_server_that_cannot_start(mcp):
    wait_for(lambda: "cannot start '/nonexistent/mcp-server'" in mcp.stderr_text(), what="the spawn failure logged")
    check_envelope(execute(mcp, mcp.tok, "missing.echo", {"text": "x"}), "NOT_FOUND", 404)
    assert call(mcp, "GET", "/health").status == 200


def test_shutdown_ends_children_promptly(tmp_path):
    cfg = write_config(tmp_path, {"good": stdio("good"), "stubborn": stdio("stubborn"), "hang": stdio("hang"),
                                  "noinit": stdio("noinit")})
    srv = Agentd(tmp_path, ["--mcp-config", cfg, "--mcp-timeout", "30"], name="mcpshut")
    srv.start()
    token = srv.token(sub="usr_mcp_shut")
    wait_for(lambda: {"good.echo", "stubborn.echo", "hang.echo"} <= set(tools(srv, token)), what="tools")
    kids = wait_for(lambda: len(children(srv.pid)) == 4 and children(srv.pid), what="4 children")
    # a call in flight when the signal comes ends with the shutdown, not after --mcp-timeout
    import threading
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("r", execute(srv, token, "hang.echo", {"text": "x"})))
    th.start()
    time.sleep(0.5)
    rc = srv.stop(signal.SIGTERM, timeout=20)  # stubborn needs the SIGKILL after the grace
    th.join(timeout=20)
    srv.check_sanitizers()
    assert rc == 0, srv.stderr_tail()
    assert not [k for k in kids if alive(k)], "children left: %r" % kids
    r = res.get("r")
    assert r is None or r.status in (503, 504) or r.status == 0, r


@pytest.mark.parametrize("doc,why", [
    ("{not json", "line 1"),
    ('{"servers": []}', "\"servers\" object"),
    ('{"servers": {"agentd": {"command": ["x"]}}}', "not \"agentd\""),
    ('{"servers": {"a.b": {"command": ["x"]}}}', "[A-Za-z0-9_-]"),
    ('{"servers": {"s": {}}}', "exactly one of"),
    ('{"servers": {"s": {"command": ["x"], "url": "http://h/mcp"}}}', "exactly one of"),
    ('{"servers": {"s": {"command": []}}}', "servers.s.command"),
    ('{"servers": {"s": {"command": ["x", 1]}}}', "servers.s.command[1]"),
    ('{"servers": {"s": {"command": ["x"], "env": {"A": 1}}}}', "servers.s.env.A"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, doc, why):
    path = os.path.join(str(tmp_path), "bad.json")
    with open(path, "w") as f:
        f.write(doc)
    srv = Agentd(tmp_path, ["--mcp-config", path], name="badcfg")
    import subprocess
    from agentd import sanitizer_env
    p = subprocess.run(srv.cmdline(), stdin=subprocess.DEVNULL, capture_output=True, env=sanitizer_env(), timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("agentd: --mcp-config:") and why in lines[0], err


def test_missing_config_file_exits_2(tmp_path):
    import subprocess
    from agentd import sanitizer_env
    srv = Agentd(tmp_path, ["--mcp-config", os.path.join(str(tmp_path), "nope.json")], name="nocfg")
    p = subprocess.run(srv.cmdline(), stdin=subprocess.DEVNULL, capture_output=True, env=sanitizer_env(), timeout=30)
    assert p.returncode == 2 and "cannot read" in p.stderr.decode(), p.stderr


# ---- Streamable HTTP: a server that misbehaves on request (tests/mcp/servers/http_server.py) --------------

@pytest.fixture(scope="module")
def mcp_http(tmp_path_factory):
    import subprocess
    d = tmp_path_factory.mktemp("mcpch")
    log = os.path.join(str(d), "http.log")
    env = dict(os.environ, MCP_TEST_LOG=log)
    py = subprocess.Popen([PY, os.path.join(SERVERS, "http_server.py")], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, env=env, start_new_session=True)
    line = py.stdout.readline().decode()
    assert line.startswith("listening on "), line
    port = int(line.split()[-1])
    cfg = write_config(d, {"py": {"url": "http://127.0.0.1:%d/mcp" % port}})
    srv = Agentd(d, ["--rate-limit", "0", "--mcp-config", cfg, "--mcp-timeout", "5"], name="mcpch")
    srv.start()
    srv.http_log = log
    srv.tok = srv.token(sub="usr_mcp_http_py")
    wait_for(lambda: "py.echo" in tools(srv, srv.tok), what="py's tools")
    try:
        yield srv
    finally:
        srv.stop_and_check()
        py.kill()
        py.wait(timeout=10)


def http_log(srv):
    with open(srv.http_log) as f:
        return [json.loads(x) for x in f]


def test_http_sse_answer_among_other_events(mcp_http):
    r = execute(mcp_http, mcp_http.tok, "py.echo", {"text": "sse"})
    assert r.status == 200 and r.json()["result"] == {"text": "echo: sse"}, r
    log = http_log(mcp_http)
    init = [x for x in log if x["method"] == "POST" and (x["body"] or {}).get("method") == "initialize"]
    assert init and init[0]["session"] is None and "text/event-stream" in init[0]["accept"], init
    later = [x for x in log if x["method"] == "POST" and (x["body"] or {}).get("method") == "tools/call"]
    # after initialize: the session and the negotiated version on every request
    assert later and all(x["session"] and x["protocol_version"] == "2025-06-18" for x in later), later


def test_http_answer_over_1mib(mcp_http):
    j = check_envelope(execute(mcp_http, mcp_http.tok, "py.huge"), "PAYLOAD_TOO_LARGE", 413)
    assert "1048576" in j["message"], j


def test_http_stream_resumed_with_last_event_id(mcp_http):
    r = execute(mcp_http, mcp_http.tok, "py.resume")
    assert r.status == 200 and r.json()["result"] == {"text": "resumed"}, r
    gets = [x for x in http_log(mcp_http) if x["method"] == "GET" and x["last_event_id"] == "r1"]
    assert gets, http_log(mcp_http)


def test_http_error_answer_with_a_4xx_is_the_answer(mcp_http):
    inits = lambda: len([x for x in http_log(mcp_http)  # noqa: E731
                         if x["method"] == "POST" and (x["body"] or {}).get("method") == "initialize"])
    before = inits()
    j = check_envelope(execute(mcp_http, mcp_http.tok, "py.badreq"), "VALIDATION_ERROR", 422)
    assert "bad arguments (code -32602)" in j["message"], j
    r = execute(mcp_http, mcp_http.tok, "py.echo", {"text": "same session"})
    assert r.status == 200 and inits() == before, r


def test_http_lost_session_is_initialized_again(mcp_http):
    n_init = lambda: len([x for x in http_log(mcp_http)  # noqa: E731
                          if x["method"] == "POST" and (x["body"] or {}).get("method") == "initialize"])
    before = n_init()
    r = execute(mcp_http, mcp_http.tok, "py.forget")
    assert r.status == 200, r
    r = execute(mcp_http, mcp_http.tok, "py.echo", {"text": "x"})
    if r.status != 200:  # the first call after the loss may meet the 404 and report it
        j = check_envelope(r, "UNAVAILABLE", 503)
        assert "session" in j["message"] or "not connected" in j["message"], j
    wait_for(lambda: execute(mcp_http, mcp_http.tok, "py.echo", {"text": "y"}).status == 200, what="a new session")
    assert n_init() > before


def test_http_session_deleted_at_shutdown(tmp_path):
    import subprocess
    log = os.path.join(str(tmp_path), "http.log")
    py = subprocess.Popen([PY, os.path.join(SERVERS, "http_server.py")], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, env=dict(os.environ, MCP_TEST_LOG=log), start_new_session=True)
    try:
        port = int(py.stdout.readline().decode().split()[-1])
        cfg = write_config(tmp_path, {"py": {"url": "http://127.0.0.1:%d/mcp" % port}})
        srv = Agentd(tmp_path, ["--mcp-config", cfg], name="mcpdel")
        srv.start()
        tok = srv.token(sub="usr_mcp_del")
        wait_for(lambda: "py.echo" in tools(srv, tok), what="py's tools")
        srv.stop_and_check()
        with open(log) as f:
            recs = [json.loads(x) for x in f]
        sess = [x["session"] for x in recs if x["method"] == "DELETE"]
        assert sess and sess[-1].startswith("sess-"), recs
    finally:
        py.kill()
        py.wait(timeout=10)
