"""The live event stream of agent runs (SPEC §4 events routes, §5, §6 run frames).

Every run's events in SPEC §5 order with seq +1 per user; partial_result deltas
joined == agent_response == the persisted assistant message; users never see
each other's events (WS and SSE); a client that disconnects mid-run and resumes
(WS `resume`, SSE Last-Event-ID and ?after_seq=) gets every missed event exactly
once, including those emitted while the replay is sent; the stored-event routes
return exactly what was streamed; a slow reader is closed while another user's
run finishes.

The helpers at the top (event checks, WS/SSE clients) are shared with
test_runs.py.
"""
import json
import os
import socket
import threading
import time

import pytest

from agentd import Closed, HttpConn, RawWS, agentd_server, check_envelope, check_welcome, metric_value
from auth_helpers import call

EVENT_TYPES = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "partial_result",
               "agent_completed", "agent_response", "agent_error", "agent_stopped", "approval_required"]
FINAL_TYPES = ("agent_completed", "agent_error", "agent_stopped")
QUESTION = "What are my LLM costs by model, and how can I cut them?"


# ---- helpers: event checks --------------------------------------------------

def is_final(ev, top="supervisor"):
    """The last event of a run whose top agent is `top` (SPEC §5)."""
    if ev.get("type") in ("agent_error", "agent_stopped"):
        return True
    return ev.get("type") == "agent_completed" and ev.get("agent_name") == top


def check_event_shape(ev):
    assert isinstance(ev, dict), ev
    assert ev.get("type") in EVENT_TYPES, ev
    assert isinstance(ev.get("seq"), int) and ev["seq"] > 0, ev
    assert isinstance(ev.get("run_id"), str) and ev["run_id"].startswith("run_"), ev
    assert isinstance(ev.get("thread_id"), str) and ev["thread_id"].startswith("thr_"), ev
    assert isinstance(ev.get("agent_name"), str) and ev["agent_name"], ev
    assert isinstance(ev.get("timestamp"), (int, float)) and ev["timestamp"] > 1e9, ev
    assert isinstance(ev.get("data"), dict), "event without a data object: %r" % ev


def check_run_events(events, top="supervisor", run_id=None, contiguous=True):
    """SPEC §5 order of one completed run; returns the agent_response event.

    First agent_started(top); every agent started is completed; ≥1
    agent_thinking per agent; tool_executing/tool_completed paired by call_id;
    agent_response then agent_completed(top) last; seq strictly +1 (when the
    user ran nothing else at the same time); partial_result joined ==
    agent_response content."""
    assert len(events) >= 4, events
    rid = run_id or events[0].get("run_id")
    tid = events[0].get("thread_id")
    for ev in events:
        check_event_shape(ev)
        assert ev["run_id"] == rid, ("event of another run", ev)
        assert ev["thread_id"] == tid, ev
    seqs = [e["seq"] for e in events]
    if contiguous:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq not +1: %r" % seqs
    else:
        assert all(b > a for a, b in zip(seqs, seqs[1:])), "seq not increasing: %r" % seqs
    types = [e["type"] for e in events]
    first, last = events[0], events[-1]
    assert first["type"] == "agent_started" and first["agent_name"] == top, first
    assert first["data"].get("agent_name") == top and first["data"].get("status") == "started", first
    assert isinstance(first["data"].get("message"), str), first
    assert last["type"] == "agent_completed" and last["agent_name"] == top, ("last event", types)
    assert last["data"].get("agent_name") == top and last["data"].get("status") == "completed", last
    assert isinstance(last["data"].get("result"), dict), last
    assert isinstance(last["data"].get("execution_time_ms"), (int, float)), last
    assert events[-2]["type"] == "agent_response", ("agent_response must come right before the last", types)
    assert types.count("agent_response") == 1, types
    assert not any(t in ("agent_error", "agent_stopped") for t in types), types

    stack = []          # agents started and not yet completed
    thinking = {}       # agent -> agent_thinking count within its span
    open_calls = {}     # call_id -> tool_executing event
    for ev in events:
        t, data, agent = ev["type"], ev["data"], ev["agent_name"]
        if t == "agent_started":
            assert data.get("agent_name") == agent, ev
            stack.append(agent)
            thinking[len(stack)] = 0
        elif t == "agent_completed":
            assert stack and stack[-1] == agent, ("agent_completed without its agent_started", ev, stack)
            assert thinking[len(stack)] >= 1, "agent %s completed without any agent_thinking" % agent
            assert data.get("status") == "completed" and data.get("agent_name") == agent, ev
            stack.pop()
        elif t == "agent_thinking":
            assert stack and stack[-1] == agent, ("agent_thinking outside its agent", ev, stack)
            assert isinstance(data.get("reasoning"), str) and data["reasoning"], ev
            assert isinstance(data.get("step_number"), int) and data.get("status") == "thinking", ev
            thinking[len(stack)] += 1
        elif t == "tool_executing":
            assert stack and stack[-1] == agent, ev
            cid = data.get("call_id")
            assert isinstance(cid, str) and cid and cid not in open_calls, ev
            assert isinstance(data.get("tool_name"), str) and isinstance(data.get("parameters"), dict), ev
            assert data.get("status") == "executing", ev
            open_calls[cid] = ev
        elif t == "tool_completed":
            cid = data.get("call_id")
            assert cid in open_calls, ("tool_completed without tool_executing", ev)
            ex = open_calls.pop(cid)
            assert data.get("tool_name") == ex["data"]["tool_name"] and agent == ex["agent_name"], (ex, ev)
            assert data.get("status") in ("completed", "error"), ev
            assert "result" in data and isinstance(data.get("execution_time_ms"), (int, float)), ev
        elif t == "partial_result":
            assert isinstance(data.get("content"), str), ev
        elif t == "agent_response":
            assert isinstance(data.get("content"), str) and data["content"], ev
            assert isinstance(data.get("message_id"), str) and data["message_id"].startswith("msg_"), ev
    assert not stack, ("agents never completed", stack)
    assert not open_calls, ("tool calls never completed", list(open_calls))
    resp = events[-2]
    joined = "".join(e["data"]["content"] for e in events if e["type"] == "partial_result")
    assert joined == resp["data"]["content"], "partial_result deltas joined != agent_response content"
    return resp


def check_stopped_events(events, reason="cancelled", top="supervisor"):
    """A cancelled run: agent_started(top) first, agent_stopped last, seq +1."""
    for ev in events:
        check_event_shape(ev)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert events[0]["type"] == "agent_started" and events[0]["agent_name"] == top, events[0]
    last = events[-1]
    assert last["type"] == "agent_stopped", [e["type"] for e in events]
    assert last["data"].get("reason") == reason, last
    assert [e["type"] for e in events].count("agent_stopped") == 1, events


def persisted_answer(srv, token, thread_id, message_id):
    r = call(srv, "GET", "/api/threads/%s/messages?limit=100" % thread_id, token=token)
    assert r.status == 200, r
    for m in r.json()["messages"]:
        if m["id"] == message_id:
            return m
    raise AssertionError("assistant message %s not in thread %s: %r" % (message_id, thread_id, r.json()))


def check_persisted(srv, token, resp_event):
    m = persisted_answer(srv, token, resp_event["thread_id"], resp_event["data"]["message_id"])
    assert m["role"] == "assistant", m
    assert m["content"] == resp_event["data"]["content"], "persisted answer differs from agent_response"
    assert m.get("run_id") == resp_event["run_id"], m
    return m


def stored_events(srv, token, after_seq=0, run_id=None, path="/api/events"):
    """Every stored event after after_seq (paged by seq)."""
    out = []
    while True:
        q = "%s?after_seq=%d&limit=1000" % (path, after_seq)
        if run_id and path == "/api/events":
            q += "&run_id=" + run_id
        r = call(srv, "GET", q, token=token)
        assert r.status == 200, r
        j = r.json()
        assert isinstance(j.get("events"), list) and isinstance(j.get("has_more"), bool), j
        out += j["events"]
        if not j["has_more"] or not j["events"]:
            return out
        after_seq = j["events"][-1]["seq"]


# ---- helpers: clients -------------------------------------------------------

class WSClient(RawWS):
    """A synchronous WebSocket client that collects events by run."""

    def __init__(self, srv, sub, **kw):
        self.srv = srv
        self.user = sub
        super().__init__(srv.addr, token=srv.token(sub=sub), timeout=kw.pop("timeout", 30.0), **kw)
        welcome = self.recv_json()
        check_welcome(welcome, sub)
        self.frames = []   # every text frame after the welcome

    def next(self, timeout=30.0):
        m = self.recv_json(timeout=timeout)
        self.frames.append(m)
        return m

    def events(self):
        return [f for f in self.frames if f.get("type") in EVENT_TYPES and "seq" in f]

    def send_message(self, content=QUESTION, thread_id=None, id=None, timeout=30.0):
        """user_message → the message_received reply (frames before it are kept)."""
        payload = {"content": content}
        if thread_id:
            payload["thread_id"] = thread_id
        frame = {"type": "user_message", "payload": payload}
        if id is not None:
            frame["id"] = id
        start = len(self.frames)
        self.send_json(frame)
        return self.wait_for(lambda f: f.get("type") in ("message_received", "error"), timeout, start=start)

    def wait_for(self, pred, timeout=30.0, start=0):
        """The first frame (already received from index start on, or next) matching pred."""
        for f in self.frames[start:]:
            if pred(f):
                return f
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("frame not seen within %.0fs; last frames: %r" % (timeout, self.frames[-5:]))
            f = self.next(timeout=left)
            if pred(f):
                return f

    def run_events(self, run_id, top="supervisor", timeout=60.0):
        """Wait for the run's final event; return the run's events in arrival order."""
        self.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") in EVENT_TYPES and is_final(f, top),
                      timeout)
        return [e for e in self.events() if e.get("run_id") == run_id]


class SSEClient(HttpConn):
    """A text/event-stream reader over a raw HTTP/1.1 connection (chunked)."""

    def __init__(self, srv, method, path, token, body=None, headers=None, timeout=30.0):
        super().__init__(srv.addr, timeout=timeout)
        hdrs = [("Authorization", "Bearer " + token), ("Accept", "text/event-stream")] + list(headers or [])
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.append(("Content-Type", "application/json"))
        self.request(method, path, headers=hdrs, body=data)
        self.status, _, self.header_list, _ = self.read_head()
        self.headers = {k.lower(): v for k, v in self.header_list}
        self.text = b""
        self.ended = False
        self.frames = []     # (id, event, data JSON) of every frame with data
        self.comments = 0

    def _read_chunk(self):
        line = self._read_line()
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            self.ended = True
            return False
        self.text += self._read_exact(size)
        assert self._read_exact(2) == b"\r\n"
        return True

    def _parse(self):
        while b"\n\n" in self.text:
            block, self.text = self.text.split(b"\n\n", 1)
            fid = fev = None
            data = []
            for ln in block.decode().split("\n"):
                if ln.startswith(":"):
                    self.comments += 1
                elif ln.startswith("id: "):
                    fid = ln[4:]
                elif ln.startswith("event: "):
                    fev = ln[7:]
                elif ln.startswith("data: "):
                    data.append(ln[6:])
            if data:
                self.frames.append((fid, fev, json.loads("\n".join(data))))

    def read_until(self, pred, timeout=30.0):
        """Read frames until pred(frame data) or the stream ends; True when pred matched."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for f in self.frames[seen:]:
                if pred(f[2]):
                    return True
            seen = len(self.frames)
            if self.ended:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("SSE: frame not seen within %.0fs; last %r" % (timeout, self.frames[-3:]))
            self.timeout = left  # HttpConn._fill applies it to each recv
            self._read_chunk()
            self._parse()

    def read_to_end(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            assert left > 0, "SSE stream did not end within %.0fs" % timeout
            self.timeout = left  # HttpConn._fill applies it to each recv
            self._read_chunk()
            self._parse()
        return self.frames

    def events(self):
        out = []
        for fid, fev, d in self.frames:
            if fev in EVENT_TYPES:
                assert fid == str(d["seq"]), ("SSE id must be the seq", fid, d)
                assert fev == d["type"], ("SSE event must be the type", fev, d)
                out.append(d)
        return out


def start_run(srv, token, message=QUESTION, **extra):
    body = {"message": message}
    body.update(extra)
    r = call(srv, "POST", "/api/agents/start", body, token=token)
    assert r.status == 202, r
    run = r.json()
    assert run["id"].startswith("run_") and run["status"] in ("queued", "running"), run
    return run


def wait_run_status(srv, token, run_id, want, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        r = call(srv, "GET", "/api/runs/" + run_id, token=token)
        assert r.status == 200, r
        run = r.json()
        if run["status"] in want:
            return run
        assert time.monotonic() < deadline, "run %s still %s after %.0fs" % (run_id, run["status"], timeout)
        time.sleep(0.05)


def check_exactly_once(got_seqs, expected_seqs, what):
    dups = sorted({s for s in got_seqs if got_seqs.count(s) > 1})
    assert not dups, "%s: events delivered more than once: seqs %r" % (what, dups[:20])
    missing = sorted(set(expected_seqs) - set(got_seqs))
    assert not missing, "%s: missed events never delivered: seqs %r" % (what, missing[:20])
    extra = sorted(set(got_seqs) - set(expected_seqs))
    assert not extra, "%s: unexpected events: %r" % (what, extra[:20])
    assert got_seqs == sorted(got_seqs), "%s: events out of seq order" % what


# ---- servers ---------------------------------------------------------------

server = agentd_server("--rate-limit", "0", name="events")
# Runs long enough (each model/tool step waits 150 ms) to disconnect and resume mid-run.
slow_server = agentd_server("--rate-limit", "0", "--llm-latency-ms", "150", name="events_slow")


# ---- order, content, persistence --------------------------------------------

def test_event_types(server):
    r = call(server, "GET", "/api/events/types", token=server.token(sub="usr_ev_types"))
    assert r.status == 200, r
    assert sorted(r.json()["event_types"]) == sorted(EVENT_TYPES), r.json()


def test_ws_run_order_and_persisted_answer(server):
    user = "usr_ev_ws_order"
    token = server.token(sub=user)
    ws = WSClient(server, user)
    try:
        ack = ws.send_message(id="m1")
        assert ack["type"] == "message_received", ack
        assert ack.get("reply_to") == "m1", ack
        d = ack["data"]
        assert d["run_id"].startswith("run_") and d["thread_id"].startswith("thr_") and d["message_id"], ack
        evs = ws.run_events(d["run_id"])
        resp = check_run_events(evs)
        assert evs[0]["thread_id"] == d["thread_id"]
        check_persisted(server, token, resp)
        # A second turn in the same thread: seq continues +1 across runs.
        ack2 = ws.send_message("Now show the latency of my calls.", thread_id=d["thread_id"])
        evs2 = ws.run_events(ack2["data"]["run_id"])
        check_run_events(evs2)
        assert evs2[0]["seq"] == evs[-1]["seq"] + 1, (evs[-1]["seq"], evs2[0]["seq"])
        msgs = call(server, "GET", "/api/threads/%s/messages" % d["thread_id"], token=token).json()["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"], msgs
        # The run row counts its events and is completed.
        run = call(server, "GET", "/api/runs/" + d["run_id"], token=token).json()
        assert run["status"] == "completed" and run["event_count"] == len(evs), run
        assert run["agent"] == "supervisor" and run["thread_id"] == d["thread_id"], run
    finally:
        ws.close()


def test_ws_start_agent_single_agent(server):
    user = "usr_ev_ws_agent"
    ws = WSClient(server, user)
    try:
        ws.send_json({"type": "start_agent", "payload": {"user_request": "classify this: my latency is bad",
                                                         "agent": "triage"}})
        ack = ws.wait_for(lambda f: f.get("type") in ("message_received", "error"))
        assert ack["type"] == "message_received", ack
        assert ack["type"] == "message_received", ack
        evs = ws.run_events(ack["data"]["run_id"], top="triage")
        resp = check_run_events(evs, top="triage")
        check_persisted(server, server.token(sub=user), resp)
    finally:
        ws.close()


def test_sse_chat_stream_order(server):
    user = "usr_ev_sse_chat"
    token = server.token(sub=user)
    for path in ("/api/chat/stream", "/api/agents/stream"):
        s = SSEClient(server, "POST", path, token, body={"message": QUESTION})
        try:
            assert s.status == 200, s.status
            assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
            s.read_to_end()
            evs = s.events()
            resp = check_run_events(evs)
            check_persisted(server, token, resp)
            # What was streamed is what was stored.
            assert stored_events(server, token, run_id=evs[0]["run_id"]) == evs
        finally:
            s.close()


def test_rest_execute_order_and_stored_events(server):
    user = "usr_ev_rest"
    token = server.token(sub=user)
    ws = WSClient(server, user)
    try:
        r = call(server, "POST", "/api/agents/execute", {"message": QUESTION}, token=token)
        assert r.status == 200, r
        j = r.json()
        run = j["run"]
        assert run["status"] == "completed" and run["agent"] == "supervisor", run
        resp = check_run_events(j["events"])
        assert j["response"] == resp["data"]["content"], "execute response != agent_response content"
        assert j["result"] == run["result"] and isinstance(j["result"], dict), j
        check_persisted(server, token, resp)
        # The same events went live to the user's socket, byte for byte the stored ones.
        live = ws.run_events(run["id"])
        assert live == j["events"]
        assert stored_events(server, token) == live
        assert stored_events(server, token, path="/api/runs/%s/events" % run["id"]) == live
        mid = live[10]["seq"]
        assert stored_events(server, token, after_seq=mid) == [e for e in live if e["seq"] > mid]
        assert stored_events(server, token, after_seq=mid, path="/api/runs/%s/events" % run["id"]) == \
            [e for e in live if e["seq"] > mid]
        assert stored_events(server, token, after_seq=live[-1]["seq"]) == []
        r = call(server, "GET", "/api/events?limit=5", token=token)
        assert r.status == 200 and len(r.json()["events"]) == 5 and r.json()["has_more"] is True, r
        assert r.json()["events"] == live[:5]
    finally:
        ws.close()


def test_events_bad_query_400(server_factory):
    """SPEC conventions: a bad after_seq/limit is 400 (own server: the answer
    must also leave nothing behind — checked by LeakSanitizer at its stop)."""
    srv = server_factory("--rate-limit", "0")
    token = srv.token(sub="usr_ev_badq")
    touch_user(srv, token)
    for path in ("/api/events", "/api/runs/run_nope/events"):
        for bad in ("after_seq=-1", "after_seq=abc", "limit=0", "limit=100000", "limit=5%00abc", "limit=%00",
                    "after_seq=2%00x", "after_seq=+2", "after_seq=%202"):
            check_envelope(call(srv, "GET", path + "?" + bad, token=token), "BAD_REQUEST", 400)
    # A run id no run can have: 404 (SPEC §4), also without leaking.
    check_envelope(call(srv, "GET", "/api/agents/status?run_id=" + "r" * 300, token=token), "NOT_FOUND", 404)
    srv.stop_and_check()


# ---- isolation ---------------------------------------------------------------

def test_two_users_ws_isolation(server):
    users = ["usr_ev_iso_a", "usr_ev_iso_b"]
    clients = [WSClient(server, u) for u in users]
    try:
        run_ids = {}
        for u, c in zip(users, clients):
            run_ids[u] = [c.send_message()["data"]["run_id"], c.send_message()["data"]["run_id"]]
        for u, c in zip(users, clients):
            for rid in run_ids[u]:
                c.run_events(rid)
        time.sleep(0.3)
        for u, c in zip(users, clients):
            try:
                while True:
                    c.next(timeout=0.2)
            except socket.timeout:
                pass
            mine = set(run_ids[u])
            evs = c.events()
            assert evs and all(e["run_id"] in mine for e in evs), \
                "user %s received another user's events: %r" % (u, {e["run_id"] for e in evs} - mine)
            seqs = [e["seq"] for e in evs]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq of %s not +1: %r" % (u, seqs)
            # Two runs at once of one user: each run still in order, seq increasing.
            for rid in run_ids[u]:
                check_run_events([e for e in evs if e["run_id"] == rid], contiguous=False)
    finally:
        for c in clients:
            c.close()


def touch_user(srv, token):
    """One plain request first, so the user row exists before a stream opens (the
    first-request case has its own test: test_events_stream_as_first_request)."""
    assert call(srv, "GET", "/api/threads", token=token).status == 200


def test_events_stream_as_first_request(server_factory):
    """A new user's very first request is GET /api/events/stream (a browser
    that opens its event stream at page load)."""
    srv = server_factory("--rate-limit", "0")
    for i, how in enumerate(["/api/events/stream", "/api/events/stream?after_seq=0"]):
        user = "usr_ev_first_%d" % i
        token = srv.token(sub=user)
        s = SSEClient(srv, "GET", how, token)
        try:
            assert s.status == 200, s.status
            run = start_run(srv, token)
            s.read_until(lambda d: d.get("run_id") == run["id"] and is_final(d))
            check_run_events(s.events())
        finally:
            s.close()
    srv.stop_and_check()


def test_two_users_sse_isolation(server):
    users = ["usr_ev_sse_iso_a", "usr_ev_sse_iso_b"]
    tokens = {u: server.token(sub=u) for u in users}
    for t in tokens.values():
        touch_user(server, t)
    streams = {u: SSEClient(server, "GET", "/api/events/stream", tokens[u]) for u in users}
    try:
        for s in streams.values():
            assert s.status == 200 and s.headers.get("content-type", "").startswith("text/event-stream")
        runs = {u: [start_run(server, tokens[u])["id"] for _ in range(2)] for u in users}
        for u in users:
            for rid in runs[u]:
                assert streams[u].read_until(lambda d, rid=rid: d.get("run_id") == rid and is_final(d)), rid
        for u in users:
            evs = streams[u].events()
            mine = set(runs[u])
            assert all(e["run_id"] in mine for e in evs), \
                "user %s's stream carried another user's events: %r" % (u, {e["run_id"] for e in evs} - mine)
            for rid in runs[u]:
                check_run_events([e for e in evs if e["run_id"] == rid], contiguous=False)
            seqs = [e["seq"] for e in evs]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        # A stream filtered by run_id carries only that run; stored lists stay per user.
        other = runs[users[1]][0]
        r = call(server, "GET", "/api/events?run_id=" + other, token=tokens[users[0]])
        assert r.status == 200 and r.json()["events"] == [], r
    finally:
        for s in streams.values():
            s.close()


def test_sse_run_filter(server):
    user = "usr_ev_sse_filter"
    token = server.token(sub=user)
    r1 = call(server, "POST", "/api/agents/execute", {"message": QUESTION}, token=token).json()
    touch_user(server, token)
    s = SSEClient(server, "GET", "/api/events/stream?after_seq=0&run_id=" + r1["run"]["id"], token)
    try:
        start_run(server, token)  # a second run, filtered out
        s.read_until(lambda d: is_final(d))
        assert s.events() == r1["events"]
    finally:
        s.close()


# ---- resume after a disconnect -------------------------------------------------

def _start_runs_later(srv, token, n, gap, out):
    for _ in range(n):
        out.append(start_run(srv, token)["id"])
        time.sleep(gap)


def _resume_scenario(srv, user, reconnect):
    """Run several long runs; disconnect after a few events; start more runs while
    away; reconnect while they still emit.  reconnect(last_seq) returns
    (received events after reconnect, closer).  Checks exactly-once delivery."""
    token = srv.token(sub=user)
    ws = WSClient(srv, user)
    first = ws.send_message()["data"]["run_id"]
    ws.wait_for(lambda f: f.get("run_id") == first and f.get("type") == "tool_completed")
    last_seq = ws.events()[-1]["seq"]
    ws.close()
    # While away: more runs, started over REST, keep emitting.
    runs = [first]
    starter = threading.Thread(target=_start_runs_later, args=(srv, token, 8, 0.15, runs))
    starter.start()
    # Long enough that the backlog passes one replay page (200 events), short
    # enough that the last runs are still emitting during the replay.
    time.sleep(1.9)
    backlog = len(stored_events(srv, token, after_seq=last_seq))
    print("backlog at reconnect: %d events" % backlog)
    got, closer = reconnect(last_seq, runs, starter)
    try:
        starter.join()
        stored = stored_events(srv, token, after_seq=last_seq)
        expected = [e["seq"] for e in stored]
        # While the client was replaying, the runs were still emitting.
        finals = {e["run_id"]: e for e in stored if is_final(e)}
        assert set(finals) == set(runs), "not every run ended"
        check_exactly_once([e["seq"] for e in got], expected, user)
        assert len(expected) > backlog, "no event was emitted after the reconnect"
        assert got == stored, "replayed/live events differ from the stored ones"
        for rid in runs[1:]:
            check_run_events([e for e in got if e["run_id"] == rid], contiguous=False)
    finally:
        closer()
    return got


def test_ws_resume_gets_missed_events_once(slow_server):
    srv = slow_server

    def reconnect(last_seq, runs, starter):
        ws = WSClient(srv, "usr_ev_resume_ws")
        ws.send_json({"type": "resume", "payload": {"after_seq": last_seq}, "id": "r1"})
        starter.join()
        emitting = call(srv, "GET", "/api/agents/status", token=srv.token(sub="usr_ev_resume_ws")).json()["runs"]
        assert emitting, "the runs ended before the resume: the test did not overlap replay and live events"
        for rid in runs:
            ws.wait_for(lambda f, rid=rid: f.get("run_id") == rid and f.get("type") in EVENT_TYPES and is_final(f),
                        60)
        time.sleep(0.3)
        try:
            while True:
                ws.next(timeout=0.2)
        except socket.timeout:
            pass
        started = [f for f in ws.frames if f.get("type") == "resume_started"]
        assert started and started[0].get("reply_to") == "r1", ws.frames[:3]
        return ws.events(), ws.close

    _resume_scenario(srv, "usr_ev_resume_ws", reconnect)


@pytest.mark.parametrize("how", ["last_event_id", "after_seq"])
def test_sse_resume_gets_missed_events_once(slow_server, how):
    srv = slow_server
    user = "usr_ev_resume_sse_" + how
    token = srv.token(sub=user)
    touch_user(srv, token)

    def reconnect(last_seq, runs, starter):
        if how == "last_event_id":
            s = SSEClient(srv, "GET", "/api/events/stream", token, headers=[("Last-Event-ID", str(last_seq))])
        else:
            s = SSEClient(srv, "GET", "/api/events/stream?after_seq=%d" % last_seq, token)
        assert s.status == 200, s.status
        starter.join()
        emitting = call(srv, "GET", "/api/agents/status", token=token).json()["runs"]
        assert emitting, "the runs ended before the resume: the test did not overlap replay and live events"
        for rid in runs:
            s.read_until(lambda d, rid=rid: d.get("run_id") == rid and is_final(d), 60)
        try:
            s.read_until(lambda d: False, 0.3)
        except (AssertionError, socket.timeout):
            pass
        return s.events(), s.close

    _resume_scenario(srv, user, reconnect)


@pytest.mark.parametrize("how", ["after_seq", "last_event_id"])
def test_ws_handshake_resume_gets_missed_events_once(slow_server, how):
    """Issue 13 defect 1: the resume point given in the handshake replays before any live event."""
    srv = slow_server
    user = "usr_ev_resume_hs_" + how

    def reconnect(last_seq, runs, starter):
        if how == "after_seq":
            ws = WSClient(srv, user, path="/ws?after_seq=%d" % last_seq)
        else:
            ws = WSClient(srv, user, headers=[("Last-Event-ID", str(last_seq))])
        starter.join()
        emitting = call(srv, "GET", "/api/agents/status", token=srv.token(sub=user)).json()["runs"]
        assert emitting, "the runs ended before the resume: the test did not overlap replay and live events"
        for rid in runs:
            ws.wait_for(lambda f, rid=rid: f.get("run_id") == rid and f.get("type") in EVENT_TYPES and is_final(f),
                        60)
        time.sleep(0.3)
        try:
            while True:
                ws.next(timeout=0.2)
        except socket.timeout:
            pass
        return ws.events(), ws.close

    _resume_scenario(srv, user, reconnect)


@pytest.mark.parametrize("q,hdr", [("after_seq=-1", None), ("after_seq=abc", None), ("after_seq=5%00", None),
                                   ("", "x"), ("", "-3")])
def test_ws_handshake_resume_point_400(server, q, hdr):
    hdrs = [("Last-Event-ID", hdr)] if hdr else []
    ws = RawWS(server.addr, path="/ws" + ("?" + q if q else ""), token=server.token(sub="usr_ev_hs_bad"),
               headers=hdrs, handshake=False)
    try:
        r = ws.handshake()
        assert r.status == 400, r
    finally:
        ws.close()


def test_ws_silent_socket_still_gets_live_events(server):
    """A socket that never sends a frame is held only briefly: it gets every event, in order."""
    user = "usr_ev_silent"
    ws = WSClient(server, user)
    try:
        run = start_run(server, server.token(sub=user))
        ws.wait_for(lambda f: f.get("run_id") == run["id"] and is_final(f), 30.0)
    finally:
        ws.close()
    got = [e for e in ws.events() if e["run_id"] == run["id"]]
    assert got == stored_events(server, server.token(sub=user), run_id=run["id"])
    check_run_events(got)


def test_ws_resume_validation(server):
    ws = WSClient(server, "usr_ev_resume_bad")
    try:
        for bad in ({}, {"after_seq": -1}, {"after_seq": "x"}):
            ws.send_json({"type": "resume", "payload": bad, "id": "b"})
            f = ws.wait_for(lambda f: f.get("type") == "error" and f.get("reply_to") == "b")
            assert f["code"] == "VALIDATION_ERROR", f
            ws.frames.clear()
    finally:
        ws.close()


# ---- slow reader ---------------------------------------------------------------

def test_slow_reader_closed_other_user_unaffected(server_factory):
    srv = server_factory("--rate-limit", "0", "--send-queue-limit", "65536")
    slow_user, ok_user = "usr_ev_slow", "usr_ev_fast"
    slow = RawWS(srv.addr, token=srv.token(sub=slow_user), rcvbuf=4096)
    slow.recv_json()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fast = WSClient(srv, ok_user)
    assert srv.ws_open_count() == 2
    slow_token = srv.token(sub=slow_user)
    t0 = time.monotonic()
    closed = False
    fast_run = None
    runs = 0
    while time.monotonic() - t0 < 60:
        r = call(srv, "POST", "/api/agents/execute", {"message": QUESTION}, token=slow_token)
        assert r.status == 200, r
        runs += 1
        if fast_run is None and runs == 3:
            fast_run = fast.send_message()["data"]["run_id"]
        if srv.ws_open_count() == 1:
            closed = True
            break
    assert closed, "the slow reader was never closed (%d runs of events queued to it)" % runs
    # The other user's run finished normally on its socket.
    check_run_events(fast.run_events(fast_run))
    ack = fast.send_message()
    check_run_events(fast.run_events(ack["data"]["run_id"]))
    # Draining the slow socket now ends in a close frame 1013 (or a reset).
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        code = slow.read_close(timeout=10)
    except (Closed, ConnectionResetError):
        code = None
    assert code in (1013, None), code
    slow.close()
    fast.close()


def test_failed_commit_is_retried_never_delivered_unstored(server_factory):
    """Issue 13 defect 3: while another process holds the database's write lock past the
    server's busy timeout, the event writer's transaction fails.  No event of that batch
    may reach a socket before it is stored: the batch is retried, and once the lock goes
    every event the socket got is in the store, in order, and the run completes."""
    import sqlite3
    srv = server_factory("--rate-limit", "0", "--llm-latency-ms", "200")
    user = "usr_events_locked"
    token = srv.token(sub=user)
    ws = WSClient(srv, user, timeout=60.0)
    try:
        run = start_run(srv, token)
        ws.wait_for(lambda f: f.get("run_id") == run["id"] and f.get("type") == "agent_started", 30.0)
        db = sqlite3.connect(os.path.join(srv.data_dir, "agentd.db"), timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            time.sleep(7.0)  # past the server's 5 s busy timeout: its commit fails at least once
            during = [e["seq"] for e in ws.events() if e["run_id"] == run["id"]]
            stored_now = {e["seq"] for e in stored_events(srv, token, run_id=run["id"])}
            assert set(during) <= stored_now, ("delivered before stored", sorted(set(during) - stored_now))
            db.execute("ROLLBACK")
        finally:
            db.close()
        ws.wait_for(lambda f: f.get("run_id") == run["id"] and is_final(f), 90.0)
    finally:
        ws.close()
    got = [e for e in ws.events() if e["run_id"] == run["id"]]
    stored = stored_events(srv, token, run_id=run["id"])
    assert [e["seq"] for e in got] == [e["seq"] for e in stored]
    check_run_events(stored)
    assert wait_run_status(srv, token, run["id"], ("completed", "failed", "cancelled"))["status"] == "completed"
    m = metric_value(srv.get("/metrics").text(), "agentd_events_commit_failures_total")
    assert m is not None and m >= 1, m


# ---- SSE streams end with their token (issue 13, defect 10) -----------------------------

def _auth_end_frame(s):
    """The stream's final frame when it was ended for its token: its message."""
    assert s.frames, "the stream ended without a frame"
    fid, fev, d = s.frames[-1]
    assert fev == "error" and fid is None, s.frames[-3:]
    assert d.get("code") == "AUTH_INVALID" and d.get("error_code") == "AUTH_INVALID", d
    return d.get("message")


def test_sse_stream_ends_at_logout(server):
    """An open /api/events/stream ends when its token is logged out, and never
    carries the events of a run started afterwards by a new login of the same user."""
    from auth_helpers import login, register
    email, j = register(server)
    tok = j["access_token"]
    touch_user(server, tok)
    s = SSEClient(server, "GET", "/api/events/stream", tok)
    try:
        assert s.status == 200, s.status
        run1 = start_run(server, tok)
        assert s.read_until(lambda d: d.get("run_id") == run1["id"] and is_final(d)), "stream ended early"
        r = call(server, "POST", "/auth/logout", token=tok)
        assert r.status == 200, r
        # a new login of the same user starts a run and waits for its end
        tok2 = login(server, email).json()["access_token"]
        run2 = start_run(server, tok2)
        wait_run_status(server, tok2, run2["id"], ("completed", "failed", "cancelled"))
        s.read_to_end(timeout=30)
        assert _auth_end_frame(s) == "token revoked"
        leaked = [d for _, _, d in s.frames if d.get("run_id") == run2["id"]]
        assert not leaked, "the logged-out stream carried the new session's run: %r" % leaked[:2]
    finally:
        s.close()
    # the new session's own stream works
    s2 = SSEClient(server, "GET", "/api/events/stream?after_seq=0&run_id=" + run2["id"], tok2)
    try:
        assert s2.read_until(lambda d: d.get("run_id") == run2["id"] and is_final(d))
    finally:
        s2.close()


def test_sse_stream_ends_at_expiry(server):
    """A stream whose token expires ends (as a WebSocket is closed 1008).  The
    token's exp is 20 s in the past: still inside the server's 30 s leeway when
    the stream opens, expired for it about 10 s later."""
    user = "usr_ev_sse_exp"
    touch_user(server, server.token(sub=user))
    now = int(time.time())
    tok = server.token(sub=user, iat=now - 100, ttl=80)
    s = SSEClient(server, "GET", "/api/events/stream", tok)
    try:
        assert s.status == 200, s.status
        s.read_to_end(timeout=60)
        assert _auth_end_frame(s) == "token expired"
    finally:
        s.close()
    check_envelope(call(server, "GET", "/api/threads", token=tok), "AUTH_INVALID", 401)


def test_sse_chat_stream_ends_at_logout(server_factory):
    """POST /api/chat/stream ends at logout of its token, before its run's end
    (1 s per model step keeps the run going for several seconds, far longer than
    one logout takes even on a loaded machine); the run itself goes on."""
    from auth_helpers import register
    slow_server = server_factory("--rate-limit", "0", "--llm-latency-ms", "1000")
    _, j = register(slow_server)
    tok = j["access_token"]
    touch_user(slow_server, tok)
    s = SSEClient(slow_server, "POST", "/api/chat/stream", tok, body={"message": QUESTION})
    try:
        assert s.status == 200, s.status
        assert s.read_until(lambda d: d.get("type") == "agent_started"), "stream ended early"
        run_id = s.events()[0]["run_id"]
        assert call(slow_server, "POST", "/auth/logout", token=tok).status == 200
        s.read_to_end(timeout=30)
        assert _auth_end_frame(s) == "token revoked"
        assert not any(is_final(e) for e in s.events()), "the run ended before the logout: %r" % s.events()[-1:]
    finally:
        s.close()
    # the run was not the stream: it finishes and is stored (another session reads it)
    from auth_helpers import login
    tok2 = login(slow_server, j["user"]["email"]).json()["access_token"]
    assert wait_run_status(slow_server, tok2, run_id, ("completed", "failed", "cancelled"), timeout=60)["status"] \
        == "completed"
