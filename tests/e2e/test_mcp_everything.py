"""agentd's MCP client against the official reference server `@modelcontextprotocol/server-everything`
(npm, pinned in tests/mcp/client/package-lock.json, installed by scripts/deps.sh), over stdio; and MCP tools
called by the model through a run's tool loop (--llm openai on the stand-in, tests/standin).

The model sees a registry name such as `everything.echo` under a legal OpenAI name (llm/openai.c maps it: each
byte it cannot take as '_', and an 8-hex FNV-1a suffix only for a name over 64 bytes or one that would clash);
`wire_name` computes it, so the stand-in's [[tool:…]] can name it.
"""
import json
import os
import time
import uuid

import pytest

from agentd import Agentd, check_envelope
from auth_helpers import call
from test_events import start_run, wait_run_status

HERE = os.path.dirname(os.path.abspath(__file__))
EVERYTHING = os.path.join(HERE, "..", "mcp", "client", "node_modules", "@modelcontextprotocol",
                          "server-everything", "dist", "index.js")
SERVERS = os.path.join(HERE, "..", "mcp", "servers")


def wire_name(reg):
    """llm/openai.c's map for registry tool `reg` (no clash among these tests' tools, no name over 64 bytes)."""
    ok = lambda c: c.isascii() and (c.isalnum() or c in "_-")  # noqa: E731
    assert 0 < len(reg) <= 64, reg
    return "".join(c if ok(c) else "_" for c in reg)


def wait_for(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def tool_names(srv, token):
    r = call(srv, "GET", "/api/tools", token=token)
    assert r.status == 200, r
    return {t["name"]: t for t in r.json()["tools"]}


@pytest.fixture(scope="module")
def standin():
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, standin):
    assert os.path.isfile(EVERYTHING), "server-everything is not installed (run scripts/deps.sh)"
    d = tmp_path_factory.mktemp("mcpeverything")
    log = os.path.join(str(d), "good.log")
    cfg = os.path.join(str(d), "mcp.json")
    with open(cfg, "w") as f:
        json.dump({"servers": {
            "everything": {"command": ["node", EVERYTHING, "stdio"]},
            "good": {"command": ["/usr/bin/python3", os.path.join(SERVERS, "good.py")], "env": {"MCP_TEST_LOG": log}},
        }}, f)
    srv = Agentd(d, ["--rate-limit", "0", "--llm", "openai", "--mcp-config", cfg], name="mcpeverything",
                 env=standin.agentd_env())
    srv.start()
    srv.good_log = log
    token = srv.token(sub="usr_mcp_everything")
    wait_for(lambda: {"everything.echo", "everything.get-sum", "good.sleep"} <= set(tool_names(srv, token)),
             what="the servers' tools")
    try:
        yield srv
    finally:
        srv.stop_and_check()


def test_everything_tools_listed_with_their_schemas(server):
    t = tool_names(server, server.token(sub="usr_mcp_everything"))
    assert t["everything.echo"]["source"] == "mcp:everything"
    assert t["everything.echo"]["input_schema"]["required"] == ["message"]
    assert t["everything.get-sum"]["input_schema"]["properties"]["a"]["type"] == "number"


def test_everything_called_over_rest(server):
    token = server.token(sub="usr_mcp_everything")
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "everything.echo", "arguments": {"message": "hello"}},
             token=token)
    assert r.status == 200, r
    assert r.json()["result"] == {"text": "Echo: hello"}, r.json()
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "everything.get-sum", "arguments": {"a": 2, "b": 3}},
             token=token)
    assert r.status == 200, r
    assert "5" in json.dumps(r.json()["result"]), r.json()
    # its schema is enforced before the call
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "everything.echo", "arguments": {}}, token=token)
    check_envelope(r, "VALIDATION_ERROR", 422)


def model_echo_run(srv, sub, tool, message):
    """A reporting run on the stand-in whose model calls the MCP echo tool `tool` with `message`
    (split across chunks); returns the run's answer and its tool_completed events of that tool."""
    token = srv.token(sub=sub)
    tag = "ref-" + uuid.uuid4().hex[:12]
    msg = 'Echo. [[scenario:tool_split]] [[tool:%s]] [[args:{"message": "%s"}]] %s' % (wire_name(tool), message, tag)
    r = call(srv, "POST", "/api/agents/execute", {"message": msg, "agent": "reporting"}, token=token)
    assert r.status == 200, r
    evs = r.json()["events"]
    done = [e for e in evs if e["type"] == "tool_completed" and e["data"]["tool_name"] == tool]
    assert len(done) == 1, [e["type"] for e in evs]
    return r.json(), done[0]


def test_everything_called_by_the_model_in_a_run(server, standin):
    answer, done = model_echo_run(server, "usr_mcp_everything_run", "everything.echo", "from the model")
    assert done["data"]["status"] == "completed" and done["data"]["result"] == {"text": "Echo: from the model"}, done
    # the model got the result back and answered with it
    assert "Echo: from the model" in answer["response"], answer["response"]


def test_cancelling_a_run_cancels_its_mcp_call(server, standin):
    token = server.token(sub="usr_mcp_cancel_run")
    tag = "ref-" + uuid.uuid4().hex[:12]
    msg = 'Sleep. [[scenario:tool_split]] [[tool:%s]] [[args:{"seconds": 60}]] %s' % (wire_name("good.sleep"), tag)
    run = start_run(server, token, msg, agent="reporting")

    def calls():
        if not os.path.exists(server.good_log):
            return None
        with open(server.good_log) as f:
            msgs = [json.loads(x) for x in f]
        return [m for m in msgs if m.get("method") == "tools/call" and m["params"]["name"] == "sleep"
                and m["params"]["arguments"].get("seconds") == 60]
    wait_for(calls, what="the model's call of good.sleep reaching the server")
    r = call(server, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=token)
    assert r.status == 200, r
    # the run ends long before the tool's 60 s or --mcp-timeout's 30 s, and the server is told
    wait_run_status(server, token, run["id"], ("cancelled",), timeout=20)

    def cancelled():
        with open(server.good_log) as f:
            msgs = [json.loads(x) for x in f]
        ids = [m["id"] for m in calls()]
        return any(m.get("method") == "notifications/cancelled" and m["params"]["requestId"] in ids for m in msgs)
    wait_for(cancelled, what="notifications/cancelled")


def test_destructive_mcp_tool_waits_for_approval(server, standin):
    """good.wipe carries annotations.destructiveHint: the model's call of it waits for the user."""
    token = server.token(sub="usr_mcp_destructive")
    tag = "ref-" + uuid.uuid4().hex[:12]
    msg = "Wipe it. [[scenario:approval]] [[tool:%s]] %s" % (wire_name("good.wipe"), tag)
    run = start_run(server, token, msg, agent="reporting")
    wait_run_status(server, token, run["id"], ("waiting",), timeout=30)
    r = call(server, "GET", "/api/runs/%s/approvals" % run["id"], token=token)
    assert r.status == 200, r
    pend = [a for a in r.json()["approvals"] if a["status"] == "pending"]
    assert len(pend) == 1 and pend[0]["tool_name"] == "good.wipe", r.json()
    r = call(server, "POST", "/api/runs/%s/approvals" % run["id"], {"call_id": pend[0]["call_id"], "approved": True},
             token=token)
    assert r.status == 200, r
    wait_run_status(server, token, run["id"], ("completed",), timeout=30)
    r = call(server, "GET", "/api/runs/%s/events" % run["id"], token=token)
    done = [e for e in r.json().get("events", []) if e["type"] == "tool_completed"]
    assert any(e["data"]["tool_name"] == "good.wipe" and e["data"]["result"] == {"text": "wiped"} for e in done), done


# ---- over Streamable HTTP ------------------------------------------------------------------------

class EverythingHttp:
    """server-everything's Streamable HTTP mode (`index.js streamableHttp`, PORT from the environment)."""

    def __init__(self, workdir, port=None):
        import socket
        import subprocess
        if port is None:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
        self.port = port
        self.url = "http://127.0.0.1:%d/mcp" % port
        self.log = open(os.path.join(str(workdir), "everything-http-%d.log" % time.monotonic_ns()), "wb")
        env = dict(os.environ, PORT=str(port))
        self.proc = subprocess.Popen(["node", EVERYTHING, "streamableHttp"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=env, start_new_session=True)
        wait_for(lambda: self._listening(), timeout=60, what="server-everything listening")

    def _listening(self):
        with open(self.log.name, "rb") as f:
            return b"listening on port" in f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def http_server(tmp_path_factory, standin):
    assert os.path.isfile(EVERYTHING), "server-everything is not installed (run scripts/deps.sh)"
    d = tmp_path_factory.mktemp("mcphttp")
    ev = EverythingHttp(d)
    cfg = os.path.join(str(d), "mcp.json")
    with open(cfg, "w") as f:
        json.dump({"servers": {"evh": {"url": ev.url, "headers": {"X-Test": "agentd"}}}}, f)
    srv = Agentd(d, ["--rate-limit", "0", "--llm", "openai", "--mcp-config", cfg, "--mcp-timeout", "4"],
                     name="mcphttp", env=standin.agentd_env())
    srv.start()
    srv.ev = ev
    srv.workdir_ = d
    token = srv.token(sub="usr_mcp_http")
    wait_for(lambda: {"evh.echo", "evh.get-sum"} <= set(tool_names(srv, token)), what="evh's tools")
    try:
        yield srv
    finally:
        srv.stop_and_check()
        srv.ev.stop()


def test_http_tools_listed_and_called(http_server):
    token = http_server.token(sub="usr_mcp_http")
    t = tool_names(http_server, token)
    assert t["evh.echo"]["source"] == "mcp:evh" and t["evh.echo"]["input_schema"]["required"] == ["message"]
    r = call(http_server, "POST", "/api/tools/execute", {"tool_name": "evh.echo", "arguments": {"message": "over http"}},
             token=token)
    assert r.status == 200 and r.json()["result"] == {"text": "Echo: over http"}, r
    r = call(http_server, "POST", "/api/tools/execute", {"tool_name": "evh.get-sum", "arguments": {"a": 20, "b": 22}},
             token=token)
    assert r.status == 200 and "42" in json.dumps(r.json()["result"]), r


def test_http_tool_called_by_the_model_in_a_run(http_server, standin):
    _, done = model_echo_run(http_server, "usr_mcp_http_run", "evh.echo", "model over http")
    assert done["data"]["result"] == {"text": "Echo: model over http"}, done


def test_http_call_times_out(http_server):
    token = http_server.token(sub="usr_mcp_http")
    r = call(http_server, "POST", "/api/tools/execute",
             {"tool_name": "evh.trigger-long-running-operation", "arguments": {"duration": 30, "steps": 3}}, token=token)
    j = check_envelope(r, "TIMEOUT", 504)
    assert "did not answer" in j["message"], j
    r = call(http_server, "POST", "/api/tools/execute", {"tool_name": "evh.echo", "arguments": {"message": "after"}},
             token=token)
    assert r.status == 200, r


def test_http_server_restarted_new_session(http_server):
    """The server loses every session (it restarts): agentd initializes a new one and its tools work again."""
    token = http_server.token(sub="usr_mcp_http")
    port = http_server.ev.port
    http_server.ev.stop()
    http_server.ev = EverythingHttp(http_server.workdir_, port=port)

    def works():
        r = call(http_server, "POST", "/api/tools/execute",
                 {"tool_name": "evh.echo", "arguments": {"message": "again"}}, token=token)
        return r.status == 200 and r.json()["result"] == {"text": "Echo: again"}
    wait_for(works, timeout=90, what="a new session with the restarted server")
