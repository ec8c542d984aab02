"""agentd as an MCP server (SPEC §7, issue 15): POST/DELETE /mcp (Streamable HTTP 2025-11-25) and the
/api/mcp/* routes.  Every rule of docs/protocol.md "MCP server" has a test here: sessions, headers, Accept
variants, paging, JSON-RPC errors, auth, Origin/Host, batches, logging, cancel, user isolation.
"""
import json
import threading

import httpx
import pytest

from agentd import agentd_server
from auth_helpers import call

server = agentd_server("--rate-limit", "0", name="mcps")
ACCEPT_BOTH = "application/json, text/event-stream"


class Mcp:
    """A minimal Streamable HTTP client over httpx (keep-alive)."""

    def __init__(self, srv, token=None, version="2025-11-25", headers=None):
        self.srv = srv
        self.url = srv.base_url + "/mcp"
        self.token = token
        self.version = version
        self.sid = None
        self.extra = dict(headers or {})
        self.c = httpx.Client(timeout=30.0)
        self.next_id = 1

    def headers(self, accept=ACCEPT_BOTH, session=True, version=True):
        h = {"Content-Type": "application/json"}
        if accept is not None:
            h["Accept"] = accept
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if session and self.sid:
            h["Mcp-Session-Id"] = self.sid
        if version and self.sid:
            h["MCP-Protocol-Version"] = self.version
        h.update(self.extra)
        return h

    def post(self, body, **kw):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.c.post(self.url, content=data, headers=self.headers(**kw))

    def initialize(self, version=None):
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": version or self.version, "capabilities": {},
                                  "clientInfo": {"name": "e2e", "version": "1"}}})
        assert r.status_code == 200, r.text
        self.sid = r.headers["mcp-session-id"]
        self.version = r.json()["result"]["protocolVersion"]
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202 and n.content == b"", n
        return r.json()["result"]

    def request(self, method, params=None, **kw):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        r = self.post(msg, **kw)
        assert r.status_code == 200, (r.status_code, r.text)
        j = r.json()
        assert j["id"] == self.next_id and j["jsonrpc"] == "2.0", j
        return j

    def call_tool(self, name, args=None):
        j = self.request("tools/call", {"name": name, "arguments": args if args is not None else {}})
        return j

    def close(self):
        self.c.close()


@pytest.fixture
def mcp(server):
    m = Mcp(server, server.token(sub="usr_mcp_main"))
    m.initialize()
    yield m
    m.close()


def sse_events(text):
    """The data of each SSE event of a finished stream, parsed as JSON."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


# ---- /api/mcp/* -------------------------------------------------------------------------------------------

def test_servers_is_public_and_lists_agentd(server):
    r = server.get("/api/mcp/servers")
    assert r.status == 200, r
    j = r.json()
    assert j["servers"] == j["data"]
    me = [s for s in j["servers"] if s["name"] == "agentd"]
    assert len(me) == 1, j
    assert me[0]["transport"] == "http" and me[0]["status"] == "connected"
    tools = call(server, "GET", "/api/tools", token=server.token(sub="usr_mcp_list")).json()["tools"]
    assert me[0]["tools"] == len([t for t in tools if t["source"] == "builtin"])


def test_config_names_the_endpoint(server):
    assert call(server, "GET", "/api/mcp/config").status == 401
    r = call(server, "GET", "/api/mcp/config", token=server.token(sub="usr_mcp_cfg"))
    assert r.status == 200, r
    assert r.json() == {"mcp": {"servers": {"agentd": {"transport": "http",
                                                        "endpoint": "http://127.0.0.1:%d/mcp" % server.port}}}}


def test_config_prefers_public_url(server_factory):
    srv = server_factory("--public-url", "https://agentd.example.com/")
    r = call(srv, "GET", "/api/mcp/config", token=srv.token(sub="usr_mcp_cfg2"))
    assert r.json()["mcp"]["servers"]["agentd"]["endpoint"] == "https://agentd.example.com/mcp", r


def test_status_counts_sessions(server):
    tok = server.token(sub="usr_mcp_status")
    before = call(server, "GET", "/api/mcp/status", token=tok).json()
    me = Mcp(server, tok)
    me.initialize()
    after = call(server, "GET", "/api/mcp/status", token=tok).json()
    s0 = [s for s in before["servers"] if s["name"] == "agentd"][0]
    s1 = [s for s in after["servers"] if s["name"] == "agentd"][0]
    assert s1["sessions"] == s0["sessions"] + 1, (before, after)
    assert s1["endpoint"] == "/mcp" and s1["protocol_version"] == "2025-11-25"
    assert after["total"] == len(after["servers"])
    assert call(server, "GET", "/api/mcp/status").status == 401
    me.close()


def test_mcp_tools_lists_only_mcp_sources(server):
    tok = server.token(sub="usr_mcp_tools")
    r = call(server, "GET", "/api/mcp/tools", token=tok)
    assert r.status == 200, r
    j = r.json()
    assert j["total"] == len(j["tools"])
    assert all(t["name"] != "calculator" for t in j["tools"])  # built-ins are /api/tools's
    assert call(server, "GET", "/api/mcp/tools").status == 401


def test_mcp_tools_call_refuses_builtin_and_unknown(server):
    tok = server.token(sub="usr_mcp_tcall")
    r = call(server, "POST", "/api/mcp/tools/call", {"tool_name": "calculator", "arguments": {"expression": "1+1"}},
             token=tok)
    assert r.status == 404 and r.json()["error_code"] == "NOT_FOUND", r
    r = call(server, "POST", "/api/mcp/tools/call", {"server": "nope", "name": "x"}, token=tok)
    assert r.status == 404 and "nope.x" in r.json()["message"], r
    r = call(server, "POST", "/api/mcp/tools/call", {"arguments": {}}, token=tok)
    assert r.status == 422 and r.json()["details"][0]["field"] == "tool_name", r


# ---- auth ---------------------------------------------------------------------------------------------

def test_mcp_without_credentials_is_401_bearer(server):
    m = Mcp(server)
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 401, r
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error_code"] == "AUTH_REQUIRED"
    m.close()


def test_mcp_bad_token_is_401_invalid(server):
    m = Mcp(server, token="not.a.jwt")
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 401 and r.json()["error_code"] == "AUTH_INVALID", r
    m.close()


def test_mcp_anonymous_acts_as_dev_user(server_factory):
    srv = server_factory("--dev-login", "--mcp-anonymous")
    m = Mcp(srv)
    m.initialize()
    dev = call(srv, "POST", "/auth/dev/login", {}).json()["access_token"]
    # the dev user's data: what it uploads through REST is what /mcp sees
    up = call(srv, "POST", "/api/workloads", [rec(i, "gpt-4o") for i in range(3)], token=dev)
    assert up.status == 201, up
    res = m.call_tool("workload_summary")["result"]
    assert res["isError"] is False, res
    assert res["structuredContent"]["totals"]["calls"] == 3, res
    m.close()


def test_mcp_anonymous_needs_dev_login(server_factory):
    srv = server_factory("--mcp-anonymous", start=False)
    with pytest.raises(AssertionError):
        srv.start(timeout=10)
    assert srv.proc.returncode == 2
    assert "--mcp-anonymous" in srv.stderr_text()


# ---- initialize and sessions ---------------------------------------------------------------------------

def test_initialize_answers_capabilities_and_session(server):
    m = Mcp(server, server.token(sub="usr_mcp_init"))
    res = m.initialize()
    assert res["protocolVersion"] == "2025-11-25"
    assert res["serverInfo"]["name"] == "agentd" and res["serverInfo"]["version"]
    assert res["capabilities"]["tools"] == {"listChanged": False}
    assert res["capabilities"]["logging"] == {}
    assert m.sid.startswith("mcs_")
    m.close()


@pytest.mark.parametrize("asked,got", [("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"),
                                       ("2024-11-05", "2025-11-25"), ("bogus", "2025-11-25")])
def test_version_negotiation(server, asked, got):
    m = Mcp(server, server.token(sub="usr_mcp_neg"))
    assert m.initialize(version=asked)["protocolVersion"] == got
    m.close()


def test_session_header_required_then_404_once_ended(server):
    m = Mcp(server, server.token(sub="usr_mcp_sess"))
    m.initialize()
    r = m.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, session=False)
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", r
    assert m.request("ping")["result"] == {}
    d = m.c.delete(m.url, headers=m.headers())
    assert d.status_code == 204, d
    r = m.post({"jsonrpc": "2.0", "id": 6, "method": "ping"})
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", r
    assert m.c.delete(m.url, headers=m.headers()).status_code == 404
    assert m.c.delete(m.url, headers=m.headers(session=False)).status_code == 400
    m.close()


def test_unknown_session_is_404(server):
    m = Mcp(server, server.token(sub="usr_mcp_unk"))
    m.sid = "mcs_doesnotexist"
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 404, r
    m.close()


def test_another_users_session_is_404(server):
    a = Mcp(server, server.token(sub="usr_mcp_owner"))
    a.initialize()
    b = Mcp(server, server.token(sub="usr_mcp_thief"))
    b.sid = a.sid
    r = b.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 404, r
    assert b.c.delete(b.url, headers=b.headers()).status_code == 404
    assert a.request("ping")["result"] == {}  # still a's
    a.close()
    b.close()


def test_protocol_version_header(mcp):
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, version=False)
    assert r.status_code == 200  # absent: the negotiated revision is assumed
    mcp.extra["MCP-Protocol-Version"] = "2099-01-01"
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 400 and "MCP-Protocol-Version" in r.json()["message"], r
    mcp.extra["MCP-Protocol-Version"] = "2025-03-26"  # another supported revision is accepted
    assert mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 200


def test_get_is_405(mcp):
    r = mcp.c.get(mcp.url, headers=mcp.headers(accept="text/event-stream"))
    assert r.status_code == 405, r
    assert "POST" in r.headers["allow"] and "DELETE" in r.headers["allow"]


# ---- Accept and framing --------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [ACCEPT_BOTH, "application/json", None, "*/*", "application/*"])
def test_json_answers(mcp, accept):
    r = mcp.post({"jsonrpc": "2.0", "id": 9, "method": "ping"}, accept=accept)
    assert r.status_code == 200, r
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_sse_answer_when_only_sse_is_accepted(mcp):
    r = mcp.post({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                  "params": {"name": "calculator", "arguments": {"expression": "6*7"}}}, accept="text/event-stream")
    assert r.status_code == 200, r
    assert r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    assert ev[-1]["id"] == 10 and ev[-1]["result"]["isError"] is False, ev


def test_unacceptable_accept_is_400(mcp):
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, accept="text/html")
    assert r.status_code == 400, r


def test_notifications_and_responses_are_202(mcp):
    r = mcp.post({"jsonrpc": "2.0", "method": "notifications/whatever"})
    assert r.status_code == 202 and r.content == b""
    r = mcp.post({"jsonrpc": "2.0", "id": "srv-1", "result": {}})
    assert r.status_code == 202 and r.content == b""


def test_parse_error_and_invalid_request(mcp):
    r = mcp.post(b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700, r.text
    r = mcp.post({"id": 1, "method": "ping"})  # no "jsonrpc"
    assert r.json()["error"]["code"] == -32600, r.text
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]})
    assert r.json()["error"]["code"] == -32600, r.text
    r = mcp.post("[]")
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600


def test_non_json_content_type_is_415(mcp):
    r = mcp.c.post(mcp.url, content=b"ping", headers={**mcp.headers(), "Content-Type": "text/plain"})
    assert r.status_code == 415, r


def test_method_not_found(mcp):
    j = mcp.request("resources/list")
    assert j["error"]["code"] == -32601, j


def test_body_limit_applies(server_factory):
    srv = server_factory("--max-body-bytes", "4096")
    m = Mcp(srv, srv.token(sub="usr_mcp_big"))
    m.initialize()
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "calculator", "arguments": {"expression": "1+" * 4000 + "1"}}})
    assert r.status_code == 413, r
    m.close()


# ---- batches -------------------------------------------------------------------------------------------

def test_batch_in_a_2025_03_26_session(server):
    m = Mcp(server, server.token(sub="usr_mcp_batch"), version="2025-03-26")
    m.initialize()
    r = m.post([{"jsonrpc": "2.0", "id": "a", "method": "ping"},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": "b", "method": "tools/call",
                 "params": {"name": "calculator", "arguments": {"expression": "2+3"}}}])
    assert r.status_code == 200, r.text
    j = r.json()
    assert [x["id"] for x in j] == ["a", "b"], j
    assert j[1]["result"]["structuredContent"]["result"] == 5, j
    only_notes = m.post([{"jsonrpc": "2.0", "method": "notifications/initialized"}])
    assert only_notes.status_code == 202
    m.close()


def test_batch_refused_in_newer_sessions(mcp):
    r = mcp.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600, r.text


# ---- tools -------------------------------------------------------------------------------------------

def test_tools_list_pages(mcp, server):
    names, cursor, pages = [], None, 0
    while True:
        j = mcp.request("tools/list", {"cursor": cursor} if cursor else {})
        res = j["result"]
        pages += 1
        for t in res["tools"]:
            assert t["inputSchema"]["type"] == "object", t
            assert "destructiveHint" in t["annotations"]
        names += [t["name"] for t in res["tools"]]
        cursor = res.get("nextCursor")
        if not cursor:
            break
        assert len(res["tools"]) == 10  # a full page precedes every cursor
    builtin = [t["name"] for t in call(server, "GET", "/api/tools", token=mcp.token).json()["tools"]
               if t["source"] == "builtin"]
    assert names == builtin
    assert pages == (len(builtin) + 9) // 10
    assert len(builtin) > 10, "paging needs more than one page of built-in tools"
    j = mcp.request("tools/list", {"cursor": "garbage"})
    assert j["error"]["code"] == -32602, j


def test_tools_call_text_and_structured(mcp):
    res = mcp.call_tool("calculator", {"expression": "6*7"})["result"]
    assert res["isError"] is False
    assert json.loads(res["content"][0]["text"]) == res["structuredContent"]
    assert res["content"][0]["type"] == "text"
    assert res["structuredContent"]["result"] == 42


def test_tools_call_bad_arguments_is_iserror(mcp):
    res = mcp.call_tool("calculator", {"expression": ""})["result"]
    assert res["isError"] is True
    assert "arguments.expression" in res["content"][0]["text"], res
    res = mcp.call_tool("calculator", {"expression": 5})["result"]
    assert res["isError"] is True, res
    j = mcp.request("tools/call", {"name": "calculator", "arguments": [1]})
    assert j["result"]["isError"] is True, j


def test_tools_call_tool_failure_is_iserror(mcp):
    res = mcp.call_tool("calculator", {"expression": "1/0"})["result"]
    assert res["isError"] is True and "zero" in res["content"][0]["text"], res


def test_tools_call_unknown_tool_is_32602(mcp):
    j = mcp.call_tool("no_such_tool")
    assert j["error"]["code"] == -32602 and "no_such_tool" in j["error"]["message"], j
    j = mcp.request("tools/call", {"arguments": {}})
    assert j["error"]["code"] == -32602, j


# ---- logging ---------------------------------------------------------------------------------------------

def test_logging_set_level_filters_notifications(mcp):
    assert mcp.request("logging/setLevel", {"level": "info"})["result"] == {}
    body = {"jsonrpc": "2.0", "id": 77, "method": "tools/call",
            "params": {"name": "calculator", "arguments": {"expression": "1+1"}}}
    ev = sse_events(mcp.post(body, accept="text/event-stream").text)
    assert [e.get("method") for e in ev] == [None], ev  # a success logs at debug: filtered out at info
    assert mcp.request("logging/setLevel", {"level": "debug"})["result"] == {}
    ev = sse_events(mcp.post(body, accept="text/event-stream").text)
    assert ev[0]["method"] == "notifications/message", ev
    assert ev[0]["params"]["level"] == "debug" and ev[0]["params"]["data"]["tool"] == "calculator"
    assert ev[1]["id"] == 77
    j = mcp.request("logging/setLevel", {"level": "loud"})
    assert j["error"]["code"] == -32602, j


# ---- Origin and Host (DNS rebinding) ------------------------------------------------------------------

def test_foreign_origin_is_403(mcp):
    mcp.extra["Origin"] = "http://evil.example.com"
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 403 and r.json()["error_code"] == "FORBIDDEN", r


def test_own_origin_is_accepted(mcp, server):
    mcp.extra["Origin"] = "http://127.0.0.1:%d" % server.port
    assert mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 200


def test_rebound_host_is_403(mcp, server):
    # a rebinding page's request is same-origin with its own (evil) name: the Host gives it away
    mcp.extra["Host"] = "evil.example.com:%d" % server.port
    mcp.extra["Origin"] = "http://evil.example.com:%d" % server.port
    r = mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 403, r
    mcp.extra["Host"] = "localhost:%d" % server.port
    mcp.extra["Origin"] = "http://localhost:%d" % server.port
    assert mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 200


def test_cors_origin_is_accepted(server_factory):
    srv = server_factory("--cors-origins", "https://inspector.example.com")
    m = Mcp(srv, srv.token(sub="usr_mcp_cors"), headers={"Origin": "https://inspector.example.com"})
    m.initialize()
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 200
    assert "Mcp-Session-Id" in r.headers["access-control-expose-headers"]
    pre = m.c.options(m.url, headers={"Origin": "https://inspector.example.com",
                                      "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "mcp-session-id, mcp-protocol-version"})
    assert pre.status_code == 204, pre
    allowed = pre.headers["access-control-allow-headers"].lower()
    assert "mcp-session-id" in allowed and "mcp-protocol-version" in allowed, allowed
    assert "POST" in pre.headers["access-control-allow-methods"]
    m.close()


def test_origin_is_checked_before_credentials(server):
    m = Mcp(server, headers={"Origin": "http://evil.example.com"})
    r = m.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 403, r
    m.close()


# ---- isolation ----------------------------------------------------------------------------------------

def rec(i, model):
    return {"timestamp": 1700000000 + i, "model": model, "provider": "openai", "prompt_tokens": 100 + i,
            "completion_tokens": 50, "latency_ms": 300 + i, "cost_usd": 0.01}


def test_user_sees_only_own_workloads(server):
    ta, tb = server.token(sub="usr_mcp_iso_a"), server.token(sub="usr_mcp_iso_b")
    assert call(server, "POST", "/api/workloads", [rec(i, "model-of-a") for i in range(4)], token=ta).status == 201
    assert call(server, "POST", "/api/workloads", [rec(i, "model-of-b") for i in range(7)], token=tb).status == 201
    a = Mcp(server, ta)
    a.initialize()
    res = a.call_tool("workload_summary")["result"]
    assert res["isError"] is False, res
    assert res["structuredContent"]["totals"]["calls"] == 4, res
    text = res["content"][0]["text"]
    assert "model-of-a" in text and "model-of-b" not in text
    a.close()


# ---- cancel ------------------------------------------------------------------------------------------

@pytest.fixture
def slow_server(server_factory, monkeypatch):
    """agentd whose classify_request tool asks the OpenAI stand-in, which can be told to stall."""
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        for k, v in s.agentd_env().items():
            monkeypatch.setenv(k, v)
        yield server_factory("--rate-limit", "0", "--llm", "openai"), s


def _stalled_call(srv, standin, accept):
    m = Mcp(srv, srv.token(sub="usr_mcp_cancel"))
    m.initialize()
    got = {}

    def run():
        got["r"] = m.post({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call",
                           "params": {"name": "classify_request",
                                      "arguments": {"text": "how much do I spend? [[classify:stall]]"}}},
                          accept=accept)

    t = threading.Thread(target=run)
    t.start()
    standin.wait_requests(lambda log: len(log) >= 1)  # the call is in flight, stalled on the model
    other = Mcp(srv, srv.token(sub="usr_mcp_cancel"))
    other.sid, other.version = m.sid, m.version
    n = other.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": "slow-1", "reason": "test"}})
    assert n.status_code == 202
    t.join(60)
    assert not t.is_alive(), "the cancelled call never answered"
    # the tool stopped: the model request was abandoned
    standin.wait_requests(lambda log: any(e.get("client_closed") for e in log))
    other.close()
    m.close()
    return got["r"]


def test_cancel_json_answers_32800(slow_server):
    srv, standin = slow_server
    r = _stalled_call(srv, standin, ACCEPT_BOTH)
    assert r.status_code == 200
    assert r.json()["error"]["code"] == -32800 and r.json()["id"] == "slow-1", r.text


def test_cancel_sse_ends_without_an_answer(slow_server):
    srv, standin = slow_server
    r = _stalled_call(srv, standin, "text/event-stream")
    assert r.status_code == 200
    assert [e for e in sse_events(r.text) if e.get("id") == "slow-1"] == [], r.text


def test_cancel_of_unknown_request_is_harmless(mcp):
    n = mcp.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 12345}})
    assert n.status_code == 202
    assert mcp.request("ping")["result"] == {}


# ---- rate limits ---------------------------------------------------------------------------------------

def test_mcp_is_rate_limited_like_api(server_factory):
    srv = server_factory("--rate-limit", "1/3")
    m = Mcp(srv, srv.token(sub="usr_mcp_rl"))
    statuses = []
    for _ in range(12):  # a burst of 3 at 1/s: 12 quick requests cannot all pass
        r = m.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["retry-after"] and r.headers["x-ratelimit-limit"]
            assert r.json()["error_code"] == "RATE_LIMITED"
            break
    assert 429 in statuses, statuses
    m.close()


def test_per_user_session_cap_ends_the_least_recently_used(server):
    tok = server.token(sub="usr_mcp_cap")
    first = Mcp(server, tok)
    first.initialize()
    others = []
    for _ in range(63):  # 64 in all: the cap
        m = Mcp(server, tok)
        m.initialize()
        others.append(m)
    assert first.request("ping")["result"] == {}  # first is now the most recently used
    lru = others[0]
    extra = Mcp(server, tok)
    extra.initialize()  # the 65th ends the user's least recently used idle session
    assert lru.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 404
    assert first.request("ping")["result"] == {}
    assert extra.request("ping")["result"] == {}
    for m in [first, extra] + others:
        m.close()


def test_user_cannot_read_another_users_thread(server):
    ta, tb = server.token(sub="usr_mcp_thr_a"), server.token(sub="usr_mcp_thr_b")
    t = call(server, "POST", "/api/threads", {"title": "b's secrets"}, token=tb)
    assert t.status in (200, 201), t
    tid = t.json()["id"]
    m = call(server, "POST", "/api/threads/%s/messages" % tid, {"role": "user", "content": "b-only text"}, token=tb)
    assert m.status in (200, 201), m
    b = Mcp(server, tb)
    b.initialize()
    own = b.call_tool("thread_context", {"thread_id": tid})["result"]
    assert own["isError"] is False and "b-only text" in own["content"][0]["text"], own
    a = Mcp(server, ta)
    a.initialize()
    res = a.call_tool("thread_context", {"thread_id": tid})["result"]
    assert res["isError"] is True and "not found" in res["content"][0]["text"], res
    assert "b-only text" not in json.dumps(res)
    a.close()
    b.close()


def test_refused_initialize_leaves_no_session(server):
    tok = server.token(sub="usr_mcp_noleak")
    count = lambda: [s for s in call(server, "GET", "/api/mcp/status", token=tok).json()["servers"]
                     if s["name"] == "agentd"][0]["sessions"]
    before = count()
    m = Mcp(server, tok)
    r = m.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
               accept="text/html")
    assert r.status_code == 400 and "mcp-session-id" not in r.headers, r
    assert count() == before
    m.close()
