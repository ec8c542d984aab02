"""Agent runs over REST and WebSocket (SPEC §3 "run": true, §4, §6 run frames, §9 run limits).

Single-agent routes, validation, status and listing routes, per-user isolation,
stop mid-run (REST and WS) with its latency, stop of finished/unknown/foreign
runs, the per-user concurrent run limit, the run deadline, and a server restart
during a run.  Event order itself is checked with test_events.py's helpers.
"""
import json
import signal
import threading
import time

import pytest

from agentd import agentd_server, check_envelope, metric_value
from auth_helpers import call
from test_events import (QUESTION, WSClient, check_persisted, check_run_events, check_stopped_events, start_run,
                         stored_events, wait_run_status)

LATENCY_MS = 2000
SLICE_S = 0.005          # agents/agent.c waits in 5 ms slices that notice a cancel
STOP_BOUND_S = 0.100 + SLICE_S

server = agentd_server("--rate-limit", "0", name="runs")
# Every model step and tool call waits 2 s: a run is mid-step when it is stopped.
slow_server = agentd_server("--rate-limit", "0", "--llm-latency-ms", str(LATENCY_MS), name="runs_slow")

RUN_KEYS = {"id", "thread_id", "agent", "status", "created_at", "started_at", "completed_at", "input", "result",
            "error", "event_count"}


def check_run_shape(run):
    assert RUN_KEYS <= set(run), run
    assert run["id"].startswith("run_") and run["thread_id"].startswith("thr_"), run
    assert run["status"] in ("queued", "running", "completed", "failed", "cancelled"), run
    assert isinstance(run["created_at"], (int, float)), run
    assert isinstance(run["event_count"], int), run


# ---- execute, single agents, validation --------------------------------------

@pytest.mark.parametrize("agent", ["triage", "reporting"])
def test_single_agent_route(server, agent):
    user = "usr_runs_single"
    token = server.token(sub=user)
    r = call(server, "POST", "/api/agents/" + agent, {"message": QUESTION}, token=token)
    assert r.status == 200, r
    j = r.json()
    run = j["run"]
    check_run_shape(run)
    assert run["agent"] == agent and run["status"] == "completed", run
    resp = check_run_events(j["events"], top=agent)
    assert j["response"] == resp["data"]["content"]
    check_persisted(server, token, resp)
    assert call(server, "GET", "/api/runs/" + run["id"], token=token).json()["agent"] == agent


def test_execute_with_agent_field_and_thread(server):
    user = "usr_runs_exec_thread"
    token = server.token(sub=user)
    t = call(server, "POST", "/api/threads", {"title": "runs"}, token=token).json()
    r = call(server, "POST", "/api/agents/execute", {"message": QUESTION, "agent": "triage", "thread_id": t["id"]},
             token=token)
    assert r.status == 200, r
    run = r.json()["run"]
    assert run["agent"] == "triage" and run["thread_id"] == t["id"] and run["input"] == QUESTION, run
    check_run_events(r.json()["events"], top="triage")
    r = call(server, "POST", "/api/agents/execute", {"message": QUESTION, "thread_id": "thr_nope"}, token=token)
    check_envelope(r, "NOT_FOUND", 404)


@pytest.mark.parametrize("body,field", [
    ({}, "message"),
    ({"message": ""}, "message"),
    ({"message": "   "}, "message"),
    ({"message": 5}, "message"),
    ({"message": "hi", "agent": "nobody"}, "agent"),
    ({"message": "hi", "agent": 3}, "agent"),
])
@pytest.mark.parametrize("path", ["/api/agents/execute", "/api/agents/start", "/api/chat/stream"])
def test_run_validation_422(server, body, field, path):
    r = call(server, "POST", path, body, token=server.token(sub="usr_runs_422"))
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert any(d.get("field") == field for d in j.get("details", [])), j


def test_named_agent_422_and_unknown(server):
    token = server.token(sub="usr_runs_422b")
    check_envelope(call(server, "POST", "/api/agents/triage", {}, token=token), "VALIDATION_ERROR", 422)
    r = call(server, "POST", "/api/agents/nobody", {"message": "hi"}, token=token)
    assert r.status in (404, 422), r


def test_ws_validation_errors(server):
    ws = WSClient(server, "usr_runs_ws422")
    try:
        ws.send_json({"type": "user_message", "payload": {"content": ""}, "id": "a"})
        f = ws.wait_for(lambda f: f.get("reply_to") == "a")
        assert f["type"] == "error" and f["code"] == "VALIDATION_ERROR", f
        ws.send_json({"type": "start_agent", "payload": {"user_request": "hi", "agent": "nobody"}, "id": "b"})
        f = ws.wait_for(lambda f: f.get("reply_to") == "b")
        assert f["type"] == "error" and f["code"] == "VALIDATION_ERROR", f
        ws.send_json({"type": "stop_agent", "payload": {"run_id": "run_nope"}, "id": "c"})
        f = ws.wait_for(lambda f: f.get("reply_to") == "c")
        assert f["type"] == "error" and f["code"] == "NOT_FOUND", f
    finally:
        ws.close()


# ---- routes about runs -----------------------------------------------------------

def test_thread_runs_and_messages_with_run(server):
    user, other = "usr_runs_thread", "usr_runs_thread_other"
    token, otoken = server.token(sub=user), server.token(sub=other)
    t = call(server, "POST", "/api/threads", {"title": "with runs"}, token=token).json()
    r = call(server, "POST", "/api/threads/%s/messages" % t["id"], {"content": QUESTION, "run": True}, token=token)
    assert r.status == 202, r
    j = r.json()
    msg, run = j["message"], j["run"]
    assert msg["role"] == "user" and msg["content"] == QUESTION and msg["thread_id"] == t["id"], msg
    check_run_shape(run)
    assert run["thread_id"] == t["id"] and run["agent"] == "supervisor" and run["input"] == QUESTION, run
    done = wait_run_status(server, token, run["id"], ("completed", "failed", "cancelled"))
    assert done["status"] == "completed", done
    evs = stored_events(server, token, run_id=run["id"])
    resp = check_run_events(evs)
    check_persisted(server, token, resp)
    msgs = call(server, "GET", "/api/threads/%s/messages" % t["id"], token=token).json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"], msgs
    assert msgs[0]["id"] == msg["id"]
    # Without "run": a plain 201 Message.
    r = call(server, "POST", "/api/threads/%s/messages" % t["id"], {"content": "no run"}, token=token)
    assert r.status == 201 and r.json()["role"] == "user", r
    # A second run in the thread; the thread lists both.
    r2 = call(server, "POST", "/api/agents/execute", {"message": "again", "thread_id": t["id"]}, token=token)
    assert r2.status == 200, r2
    r = call(server, "GET", "/api/threads/%s/runs" % t["id"], token=token)
    assert r.status == 200, r
    runs = r.json()["runs"]
    for x in runs:
        check_run_shape(x)
        assert x["thread_id"] == t["id"], x
    assert {x["id"] for x in runs} == {run["id"], r2.json()["run"]["id"]}, runs
    check_envelope(call(server, "GET", "/api/threads/%s/runs" % t["id"], token=otoken), "NOT_FOUND", 404)
    check_envelope(call(server, "GET", "/api/threads/thr_nope/runs", token=token), "NOT_FOUND", 404)
    r = call(server, "POST", "/api/threads/%s/messages" % t["id"], {"content": "x", "run": True}, token=otoken)
    check_envelope(r, "NOT_FOUND", 404)


def test_run_isolation_404(server):
    user, other = "usr_runs_iso_a", "usr_runs_iso_b"
    token, otoken = server.token(sub=user), server.token(sub=other)
    run = call(server, "POST", "/api/agents/execute", {"message": QUESTION}, token=token).json()["run"]
    for path in ("/api/runs/" + run["id"], "/api/runs/%s/events" % run["id"],
                 "/api/agents/status?run_id=" + run["id"], "/api/runs/run_nope", "/api/runs/run_nope/events",
                 "/api/agents/status?run_id=run_nope"):
        check_envelope(call(server, "GET", path, token=otoken), "NOT_FOUND", 404)
    r = call(server, "GET", "/api/events?run_id=" + run["id"], token=otoken)
    assert r.status == 200 and r.json()["events"] == [], r
    check_envelope(call(server, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=otoken), "NOT_FOUND", 404)
    assert call(server, "GET", "/api/runs/" + run["id"], token=token).status == 200


# ---- mid-run: status, stop -------------------------------------------------------

def test_agents_status_with_and_without_run_id(slow_server):
    srv = slow_server
    user = "usr_runs_status"
    token = srv.token(sub=user)
    run = start_run(srv, token)
    r = call(srv, "GET", "/api/agents/status", token=token)
    assert r.status == 200, r
    active = r.json()["runs"]
    assert [x["id"] for x in active] == [run["id"]], active
    assert active[0]["status"] in ("queued", "running"), active
    r = call(srv, "GET", "/api/agents/status?run_id=" + run["id"], token=token)
    assert r.status == 200 and r.json()["id"] == run["id"], r
    check_run_shape(r.json())
    # Another user sees none of it.
    assert call(srv, "GET", "/api/agents/status", token=srv.token(sub="usr_runs_status_b")).json()["runs"] == []
    r = call(srv, "POST", "/api/agents/cancel", {"agent_id": run["id"]}, token=token)  # alias route and field
    assert r.status == 200 and r.json()["status"] == "cancelled", r
    assert call(srv, "GET", "/api/agents/status", token=token).json()["runs"] == []
    r = call(srv, "GET", "/api/agents/status?run_id=" + run["id"], token=token)
    assert r.json()["status"] == "cancelled" and r.json()["completed_at"], r


def _stop_mid_run(srv, user, how):
    """Start a run over WS, stop it while its first model step waits; returns
    (seconds from the stop request to agent_stopped on the socket, run id)."""
    token = srv.token(sub=user)
    ws = WSClient(srv, user)
    try:
        ack = ws.send_message()
        run_id = ack["data"]["run_id"]
        ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "agent_started")
        time.sleep(0.3)  # well inside the 2 s step
        answer = {}
        t0 = time.monotonic()
        if how == "rest":
            def stop():
                answer["r"] = call(srv, "POST", "/api/agents/stop", {"run_id": run_id}, token=token)
                answer["t"] = time.monotonic() - t0
            th = threading.Thread(target=stop)
            th.start()
        else:
            ws.send_json({"type": "stop_agent", "payload": {"run_id": run_id}, "id": "s1"})
        stopped = ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "agent_stopped", 10)
        latency = time.monotonic() - t0
        if how == "rest":
            th.join()
            r = answer["r"]
            assert r.status == 200, r
            assert r.json()["id"] == run_id and r.json()["status"] == "cancelled", r.json()
        else:
            rep = ws.wait_for(lambda f: f.get("reply_to") == "s1")
            assert rep["type"] == "stop_requested" and rep["data"]["run_id"] == run_id, rep
        assert stopped["data"]["reason"] == "cancelled", stopped
        evs = [e for e in ws.events() if e["run_id"] == run_id]
        check_stopped_events(evs)
        time.sleep(0.2)
        assert [e for e in ws.events() if e["run_id"] == run_id][-1]["type"] == "agent_stopped", "event after stop"
        run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
        assert run["status"] == "cancelled", run
        assert run["event_count"] == len(evs), (run, len(evs))
        assert stored_events(srv, token, run_id=run_id) == evs
        return latency, run_id
    finally:
        ws.close()


@pytest.mark.parametrize("how", ["rest", "ws"])
def test_stop_mid_run_latency(slow_server, how):
    latency, run_id = _stop_mid_run(slow_server, "usr_runs_stop_" + how, how)
    print("stop over %s: agent_stopped %.1f ms after the request" % (how, latency * 1000))
    assert latency < STOP_BOUND_S, "agent_stopped arrived %.1f ms after the stop request (bound %.0f ms)" % (
        latency * 1000, STOP_BOUND_S * 1000)
    token = slow_server.token(sub="usr_runs_stop_" + how)
    # Stopping it again: 409; unknown: 404.
    check_envelope(call(slow_server, "POST", "/api/agents/stop", {"run_id": run_id}, token=token), "CONFLICT", 409)
    check_envelope(call(slow_server, "POST", "/api/agents/stop", {"run_id": "run_nope"}, token=token), "NOT_FOUND",
                   404)
    check_envelope(call(slow_server, "POST", "/api/agents/stop", {}, token=token), "VALIDATION_ERROR", 422)


def test_ws_stop_default_latest_run(slow_server):
    srv = slow_server
    ws = WSClient(srv, "usr_runs_stop_default")
    try:
        run_id = ws.send_message()["data"]["run_id"]
        ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "agent_started")
        ws.send_json({"type": "cancel_agent", "id": "x"})
        rep = ws.wait_for(lambda f: f.get("reply_to") == "x")
        assert rep["type"] == "stop_requested" and rep["data"]["run_id"] == run_id, rep
        ev = ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "agent_stopped", 5)
        assert ev["data"]["reason"] == "cancelled"
    finally:
        ws.close()


def test_stop_other_users_active_run_404(slow_server):
    srv = slow_server
    token, otoken = srv.token(sub="usr_runs_own"), srv.token(sub="usr_runs_thief")
    run = start_run(srv, token)
    check_envelope(call(srv, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=otoken), "NOT_FOUND", 404)
    ws = WSClient(srv, "usr_runs_thief")
    try:
        ws.send_json({"type": "stop_agent", "payload": {"run_id": run["id"]}, "id": "t"})
        f = ws.wait_for(lambda f: f.get("reply_to") == "t")
        assert f["type"] == "error" and f["code"] == "NOT_FOUND", f
    finally:
        ws.close()
    assert call(srv, "GET", "/api/runs/" + run["id"], token=token).json()["status"] in ("queued", "running")
    r = call(srv, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=token)
    assert r.status == 200 and r.json()["status"] == "cancelled", r


def test_completed_run_stop_409(server):
    token = server.token(sub="usr_runs_done409")
    run = call(server, "POST", "/api/agents/execute", {"message": QUESTION}, token=token).json()["run"]
    check_envelope(call(server, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=token), "CONFLICT", 409)
    assert call(server, "GET", "/api/runs/" + run["id"], token=token).json()["status"] == "completed"


# ---- limits ------------------------------------------------------------------------

def test_per_user_concurrent_run_limit(server_factory):
    """SPEC §9: 10 concurrent runs per user; the 11th start is 429 (default limits)."""
    srv = server_factory("--llm-latency-ms", "3000")
    token = srv.token(sub="usr_runs_limit")
    otoken = srv.token(sub="usr_runs_limit_other")
    runs, runs_other = [], []
    try:
        for i in range(10):
            runs.append(start_run(srv, token)["id"])
            time.sleep(0.4)  # under the 3 starts/s rate
        active = call(srv, "GET", "/api/agents/status", token=token).json()["runs"]
        assert len(active) == 10, active
        r = call(srv, "POST", "/api/agents/start", {"message": QUESTION}, token=token)
        j = check_envelope(r, "RATE_LIMITED", 429)
        r2 = call(srv, "POST", "/api/agents/execute", {"message": QUESTION}, token=token)
        check_envelope(r2, "RATE_LIMITED", 429)
        ws = WSClient(srv, "usr_runs_limit")
        try:
            ws.send_json({"type": "user_message", "payload": {"content": "one more"}, "id": "m"})
            f = ws.wait_for(lambda f: f.get("reply_to") == "m")
            assert f["type"] == "error" and f["code"] == "RATE_LIMITED", f
        finally:
            ws.close()
        # Another user is not limited by this one.
        runs_other.append(start_run(srv, otoken)["id"])
        assert r.header("retry-after") is not None, "429 without Retry-After (SPEC §9): %r" % (j,)
    finally:
        for rid in runs:
            call(srv, "POST", "/api/agents/stop", {"run_id": rid}, token=token)
        for rid in runs_other:
            call(srv, "POST", "/api/agents/stop", {"run_id": rid}, token=otoken)
    time.sleep(0.4)
    # Once they ended, starting works again.
    run = start_run(srv, token)
    call(srv, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=token)


def test_run_deadline_504(server_factory):
    srv = server_factory("--rate-limit", "0", "--run-timeout", "1", "--llm-latency-ms", "2000")
    user = "usr_runs_deadline"
    token = srv.token(sub=user)
    ws = WSClient(srv, user)
    try:
        t0 = time.monotonic()
        r = call(srv, "POST", "/api/agents/execute", {"message": QUESTION}, token=token)
        took = time.monotonic() - t0
        assert r.status == 504, r
        j = r.json()
        assert j.get("error") is True and j.get("request_id") == r.header("x-request-id"), j
        assert 0.9 <= took < 1.6, "504 after %.2fs with --run-timeout 1" % took
        stopped = ws.wait_for(lambda f: f.get("type") == "agent_stopped", 5)
        assert stopped["data"]["reason"] == "timeout", stopped
        run_id = stopped["run_id"]
        check_stopped_events([e for e in ws.events() if e["run_id"] == run_id], reason="timeout")
        run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
        assert run["status"] == "cancelled", run
        assert run["error"] and run["error"].get("error_code") == "TIMEOUT", run
        # The same deadline applies to background runs.
        bg = start_run(srv, token)
        ev = ws.wait_for(lambda f: f.get("run_id") == bg["id"] and f.get("type") == "agent_stopped", 5)
        assert ev["data"]["reason"] == "timeout"
    finally:
        ws.close()


# ---- restart during a run ----------------------------------------------------------

@pytest.mark.parametrize("how", ["kill9", "sigterm_grace0"])
def test_restart_during_run_marks_failed(server_factory, how):
    flags = ["--rate-limit", "0", "--llm-latency-ms", "2000"]
    if how == "sigterm_grace0":
        flags += ["--shutdown-grace", "0"]
    srv = server_factory(*flags)
    token = srv.token(sub="usr_runs_restart")
    run = start_run(srv, token)
    wait_run_status(srv, token, run["id"], ("running",), timeout=10)
    deadline = time.monotonic() + 10
    before = []
    while not before and time.monotonic() < deadline:
        time.sleep(0.05)
        before = stored_events(srv, token)
    assert before and before[0]["type"] == "agent_started", before
    if how == "kill9":
        srv.stop(signal.SIGKILL)
    else:
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGTERM, timeout=15)
        assert rc == 0, (rc, srv.stderr_tail())
        assert time.monotonic() - t0 < 5, "SIGTERM with --shutdown-grace 0 took %.1fs" % (time.monotonic() - t0)
        srv.check_sanitizers()
    srv.start()
    r = call(srv, "GET", "/api/runs/" + run["id"], token=token)
    assert r.status == 200, r
    got = r.json()
    assert got["status"] == "failed", "after a restart the run is %r, want failed (INTERRUPTED)" % got["status"]
    assert got["error"] and got["error"].get("error_code") == "INTERRUPTED", got
    assert got["completed_at"], got
    assert call(srv, "GET", "/api/agents/status", token=token).json()["runs"] == []
    check_envelope(call(srv, "POST", "/api/agents/stop", {"run_id": run["id"]}, token=token), "CONFLICT", 409)
    # seq never repeats across the restart.
    last = stored_events(srv, token)[-1]["seq"]
    nxt = start_run(srv, token)
    deadline = time.monotonic() + 10
    newer = []
    while not newer and time.monotonic() < deadline:  # its agent_started is stored soon after it starts
        time.sleep(0.05)
        newer = stored_events(srv, token, after_seq=last)
    assert newer and newer[0]["seq"] == last + 1 and newer[0]["run_id"] == nxt["id"], (last, newer[:1])
    call(srv, "POST", "/api/agents/stop", {"run_id": nxt["id"]}, token=token)


# ---- what a client sees is already in the store ---------------------------------

def test_store_is_ahead_of_every_frame(server):
    """The rows a frame speaks of are readable the moment the frame arrives: the run
    and the user's message at message_received, the assistant message at
    agent_response, the run's final status at its last event (they share the event
    writer's group commit, and a frame goes out only after its commit)."""
    user = "usr_runs_read_your_writes"
    token = server.token(sub=user)
    ws = WSClient(server, user)
    try:
        for _ in range(20):
            start = len(ws.frames)
            ack = ws.send_message()
            assert ack["type"] == "message_received", ack
            d = ack["data"]
            r = call(server, "GET", "/api/runs/" + d["run_id"], token=token)
            assert r.status == 200, r
            assert r.json()["thread_id"] == d["thread_id"]
            msgs = call(server, "GET", "/api/threads/%s/messages" % d["thread_id"], token=token).json()
            ids = [m["id"] for m in msgs["messages"]]
            assert d["message_id"] in ids, msgs

            resp = ws.wait_for(lambda f: f.get("type") == "agent_response" and f.get("run_id") == d["run_id"],
                               start=start)
            m = call(server, "GET", "/api/messages/" + resp["data"]["message_id"], token=token)
            assert m.status == 200, m
            assert m.json()["content"] == resp["data"]["content"]

            last = ws.wait_for(lambda f: f.get("type") == "agent_completed" and f.get("agent_name") == "supervisor"
                               and f.get("run_id") == d["run_id"], start=start)
            run = call(server, "GET", "/api/runs/" + d["run_id"], token=token).json()
            assert run["status"] == "completed", (run, last)
            assert run["completed_at"] and run["result"], run
    finally:
        ws.close()


# ---- where an event's time goes, on GET /metrics -----------------------------------

def _event_histograms(srv):
    text = srv.get("/metrics").text()
    out = {}
    for name in ("agentd_event_store_seconds", "agentd_event_delivery_seconds"):
        lines = [ln for ln in text.splitlines() if ln.startswith(name + "_bucket{")]
        cum = [float(ln.rsplit(" ", 1)[1]) for ln in lines]
        assert lines and lines[-1].startswith(name + '_bucket{le="+Inf"}'), text[-3000:]
        assert cum == sorted(cum), (name, cum)  # cumulative
        count = metric_value(text, name + "_count")
        assert count == cum[-1], (name, count, cum)
        out[name] = (count, metric_value(text, name + "_sum"))
    return out


def test_event_latency_histograms(server):
    """Every stored event is timed from emit to its commit, and every event that had a
    live subscriber from emit to its sockets (agentd_event_*_seconds histograms)."""
    before = _event_histograms(server)
    ws = WSClient(server, "usr_runs_histograms")
    try:
        ack = ws.send_message()
        run_id = ack["data"]["run_id"]
        ws.wait_for(lambda f: f.get("type") == "agent_completed" and f.get("agent_name") == "supervisor"
                    and f.get("run_id") == run_id)
        frames = [f for f in ws.frames if f.get("run_id") == run_id]
    finally:
        ws.close()
    after = _event_histograms(server)
    for name in after:
        n = after[name][0] - before[name][0]
        assert n >= len(frames) >= 5, (name, n, len(frames))
        assert after[name][1] > before[name][1], name
        assert after[name][1] - before[name][1] < 30 * n, name  # seconds, not nanoseconds
    # The database and worker-pool side of the same page (SPEC §1 "DB pool").
    text = server.get("/metrics").text()
    assert metric_value(text, "agentd_db_connections_open") >= 2, text[-3000:]  # loop's workers, event writer
    assert metric_value(text, "agentd_db_write_wait_seconds_count") > 0
    assert metric_value(text, "agentd_jobs_in_flight") >= 0


def _thread_state(srv, token, thread_id):
    msgs = call(srv, "GET", "/api/threads/%s/messages" % thread_id, token=token).json()["messages"]
    runs = call(srv, "GET", "/api/threads/%s/runs" % thread_id, token=token).json()["runs"]
    return [m for m in msgs if m["role"] == "user"], runs


def _check_no_orphans(srv, token, thread_id, started):
    """Only the started runs exist, each ended; nothing stays queued or active."""
    for rid in started:
        wait_run_status(srv, token, rid, ("completed", "failed", "cancelled"))
    users, runs = _thread_state(srv, token, thread_id)
    assert len(users) == len(started), users
    assert sorted(r["id"] for r in runs) == sorted(started), runs
    assert all(r["status"] == "completed" for r in runs), runs
    assert call(srv, "GET", "/api/agents/status", token=token).json()["runs"] == []


def test_start_rate_refusal_stores_nothing_ws(server_factory):
    """Issue 13 defect 2: the 4th user_message inside a second (SPEC §9: 3 starts/s) is refused
    before anything is stored: no 4th message, no run left queued."""
    srv = server_factory()
    user = "usr_orphans_ws"
    token = srv.token(sub=user)
    t = call(srv, "POST", "/api/threads", {"title": "orphans"}, token=token).json()
    ws = WSClient(srv, user)
    try:
        # One write: the four frames reach the server inside the same second.
        ws.send_many([{"type": "user_message", "id": "m%d" % i, "payload": {"content": "q%d" % i, "thread_id": t["id"]}}
                      for i in range(4)])
        replies = [ws.wait_for(lambda f, i=i: f.get("reply_to") == "m%d" % i) for i in range(4)]
    finally:
        ws.close()
    ok = [f for f in replies if f["type"] == "message_received"]
    refused = [f for f in replies if f["type"] == "error"]
    assert len(ok) == 3 and len(refused) == 1, replies
    assert refused[0]["code"] == "RATE_LIMITED", refused
    _check_no_orphans(srv, token, t["id"], [f["data"]["run_id"] for f in ok])


def test_start_rate_refusal_stores_nothing_rest(server_factory):
    """The same over REST: 4 pipelined starts, 3 × 202 and one 429, and only 3 messages and runs."""
    from agentd import HttpConn, build_request
    srv = server_factory()
    token = srv.token(sub="usr_orphans_rest")
    t = call(srv, "POST", "/api/threads", {"title": "orphans"}, token=token).json()
    hdrs = [("Authorization", "Bearer " + token), ("Content-Type", "application/json")]
    c = HttpConn(srv.addr, timeout=30.0)
    try:
        c.send(b"".join(build_request("POST", "/api/agents/start", hdrs,
                                      json.dumps({"message": "q%d" % i, "thread_id": t["id"]}), "%s:%d" % srv.addr)
                        for i in range(4)))
        rs = [c.read_response() for _ in range(4)]
    finally:
        c.close()
    assert sorted(r.status for r in rs) == [202, 202, 202, 429], rs
    check_envelope([r for r in rs if r.status == 429][0], "RATE_LIMITED", 429)
    _check_no_orphans(srv, token, t["id"], [r.json()["id"] for r in rs if r.status == 202])


def test_run_usage_is_zeros_without_a_model(server):
    """SPEC §11: every Run has "usage"; the builtin provider is no model, so it counts nothing."""
    token = server.token(sub="usr_runs_usage")
    zeros = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0, "llm_calls": 0}
    r = call(server, "POST", "/api/agents/execute", {"message": QUESTION}, token=token)
    assert r.status == 200, r
    run = r.json()["run"]
    assert run["usage"] == zeros, run
    got = call(server, "GET", "/api/runs/" + run["id"], token=token).json()
    assert got["usage"] == zeros, got
    listed = call(server, "GET", "/api/agents/status?run_id=" + run["id"], token=token).json()
    assert listed["usage"] == zeros, listed
