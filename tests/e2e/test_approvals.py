"""Approvals of a model's tool calls: human in the loop (SPEC §11; docs/protocol.md "Approvals").

API-level tests (no model needed): POST /api/runs/{id}/approvals and GET of the same, the WS frame
approve_tool — validation (422 / VALIDATION_ERROR), unknown or another user's run or call (404 /
NOT_FOUND), expired (409 / CONFLICT), replies carrying reply_to; and the restart rules, on runs made
to look as a stopped server leaves them (a run `running` with a pending approval in the database,
written with sqlite3 while the server is down): such a run is resumed, not failed; an unreadable
checkpoint fails the run as INTERRUPTED; an approval that expired while the server was down can no
longer be decided.  (One decision wins of two racing ones: tests/unit/test_store_approvals.c, and
test_flow_approved below.)

test_flow_*: the whole flow with a model (the OpenAI stand-in, scenario `approval`, and
`--llm openai --approve-tools`): a tool call waits (run status `waiting`), is approved, denied,
times out, is cancelled, or stays pending across a restart.  They need tests/standin (skipped when
it is not there).
"""
import json
import os
import signal
import sqlite3
import sys
import threading
import time

import pytest

from agentd import agentd_server, check_envelope
from auth_helpers import call
from test_events import WSClient, start_run, wait_run_status

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "standin"))

server = agentd_server("--rate-limit", "0", name="approvals")

REASON_MAX = 4095  # bytes (docs/protocol.md)


def decide(srv, token, run_id, body):
    return call(srv, "POST", "/api/runs/%s/approvals" % run_id, body, token=token)


def finished_run(srv, token):
    r = call(srv, "POST", "/api/agents/execute", {"message": "What did we spend last week?"}, token=token)
    assert r.status == 200, r
    return r.json()["run"]


# ---- REST: validation, 404 -------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({}, "call_id"),
    ({"approved": True}, "call_id"),
    ({"call_id": "", "approved": True}, "call_id"),
    ({"call_id": 5, "approved": True}, "call_id"),
    ({"call_id": "call_a\u0000b", "approved": True}, "call_id"),
    ({"call_id": "call_1"}, "approved"),
    ({"call_id": "call_1", "approved": "yes"}, "approved"),
    ({"call_id": "call_1", "approved": 1}, "approved"),
    ({"call_id": "call_1", "approved": None}, "approved"),
    ({"call_id": "call_1", "approved": True, "reason": 7}, "reason"),
    ({"call_id": "call_1", "approved": False, "reason": "x" * (REASON_MAX + 1)}, "reason"),
    ({"call_id": "call_1", "approved": False, "reason": "a\u0000"}, "reason"),
])
def test_decide_validation_422(server, body, field):
    token = server.token(sub="usr_appr_422")
    run = finished_run(server, token)
    r = decide(server, token, run["id"], body)
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert any(d.get("field") == field for d in j.get("details", [])), j


def test_decide_body_not_an_object_or_json(server):
    token = server.token(sub="usr_appr_422b")
    run = finished_run(server, token)
    check_envelope(decide(server, token, run["id"], [1, 2]), "VALIDATION_ERROR", 422)
    r = call(server, "POST", "/api/runs/%s/approvals" % run["id"], raw_body="{nope", token=token)
    check_envelope(r, "BAD_REQUEST", 400)


def test_unknown_run_call_and_other_users_404(server):
    token, otoken = server.token(sub="usr_appr_404_a"), server.token(sub="usr_appr_404_b")
    run = finished_run(server, token)
    ok = {"call_id": "call_nope", "approved": True}
    # a run without that call
    j = check_envelope(decide(server, token, run["id"], ok), "NOT_FOUND", 404)
    assert j["message"] == "approval not found", j
    # no such run; a run id too long to exist; a call id too long to exist
    j = check_envelope(decide(server, token, "run_nope", ok), "NOT_FOUND", 404)
    assert j["message"] == "run not found", j
    check_envelope(decide(server, token, "run_" + "x" * 200, ok), "NOT_FOUND", 404)
    check_envelope(decide(server, token, run["id"], {"call_id": "c" * 300, "approved": True}), "NOT_FOUND", 404)
    # another user's run: exactly like one that does not exist
    j = check_envelope(decide(server, otoken, run["id"], ok), "NOT_FOUND", 404)
    assert j["message"] == "run not found", j
    check_envelope(call(server, "GET", "/api/runs/%s/approvals" % run["id"], token=otoken), "NOT_FOUND", 404)
    check_envelope(call(server, "GET", "/api/runs/run_nope/approvals", token=token), "NOT_FOUND", 404)
    # without credentials
    check_envelope(call(server, "POST", "/api/runs/%s/approvals" % run["id"], ok), "AUTH_REQUIRED", 401)
    check_envelope(call(server, "GET", "/api/runs/%s/approvals" % run["id"]), "AUTH_REQUIRED", 401)


def test_list_of_a_run_without_approvals(server):
    token = server.token(sub="usr_appr_list")
    run = finished_run(server, token)
    r = call(server, "GET", "/api/runs/%s/approvals" % run["id"], token=token)
    assert r.status == 200, r
    assert r.json() == {"run_id": run["id"], "approvals": [], "total": 0, "has_more": False}, r.json()


# ---- WebSocket approve_tool: errors carry reply_to ------------------------------------------

def test_ws_approve_tool_errors(server):
    user = "usr_appr_ws"
    token = server.token(sub=user)
    run = finished_run(server, token)
    other_run = finished_run(server, server.token(sub="usr_appr_ws_other"))
    ws = WSClient(server, user)
    try:
        cases = [
            ("v1", {"call_id": "call_1", "approved": True}, "VALIDATION_ERROR", "run_id"),
            ("v2", {"run_id": run["id"], "approved": True}, "VALIDATION_ERROR", "call_id"),
            ("v3", {"run_id": run["id"], "call_id": "call_1", "approved": "no"}, "VALIDATION_ERROR", "approved"),
            ("v4", {"run_id": run["id"], "call_id": "call_1", "approved": True, "reason": ["x"]},
             "VALIDATION_ERROR", "reason"),
            ("v5", {"run_id": 12, "call_id": "call_1", "approved": True}, "VALIDATION_ERROR", "run_id"),
            ("n1", {"run_id": "run_nope", "call_id": "call_1", "approved": True}, "NOT_FOUND", None),
            ("n2", {"run_id": run["id"], "call_id": "call_1", "approved": False}, "NOT_FOUND", None),
            ("n3", {"run_id": other_run["id"], "call_id": "call_1", "approved": True}, "NOT_FOUND", None),
        ]
        for fid, payload, code, field in cases:
            ws.send_json({"type": "approve_tool", "payload": payload, "id": fid})
            f = ws.wait_for(lambda f, fid=fid: f.get("reply_to") == fid)
            assert f["type"] == "error" and f["code"] == code, (fid, f)
            assert f["data"]["code"] == code, f
            if field:
                assert f["message"].startswith(field + ":"), (fid, f)
        # without payload the frame is the payload; without an id no reply_to
        start = len(ws.frames)
        ws.send_json({"type": "approve_tool", "run_id": "run_nope", "call_id": "c", "approved": True})
        f = ws.wait_for(lambda f: f.get("type") == "error", start=start)
        assert f["code"] == "NOT_FOUND" and "reply_to" not in f, f
        # the socket stays usable
        ws.send_json({"type": "ping", "id": "p"})
        assert ws.wait_for(lambda f: f.get("reply_to") == "p")["type"] == "pong"
    finally:
        ws.close()


# ---- restart: runs left waiting by a stopped server -----------------------------------------

def _db(srv):
    return os.path.join(srv.data_dir, "agentd.db")


def _park(srv, user, run_id, call_id, checkpoint, expires_in=3600.0):
    """With the server stopped: make run_id look as a server that stopped while the run waited for
    an approval of call_id leaves it (running, approval pending)."""
    now = time.time()
    con = sqlite3.connect(_db(srv))
    try:
        with con:
            con.execute("UPDATE runs SET status = 'running', completed_at = NULL, result = NULL, error = NULL"
                        " WHERE id = ?", (run_id,))
            con.execute("INSERT INTO approvals(run_id, call_id, user_id, tool_name, parameters, checkpoint,"
                        " created_at, expires_at, status) VALUES (?, ?, ?, 'calculator', ?, ?, ?, ?, 'pending')",
                        (run_id, call_id, user, json.dumps({"expression": "6*7"}), checkpoint, now,
                         now + expires_in))
    finally:
        con.close()


def _approval(srv, token, run_id, call_id):
    r = call(srv, "GET", "/api/runs/%s/approvals" % run_id, token=token)
    assert r.status == 200, r
    got = [a for a in r.json()["approvals"] if a["call_id"] == call_id]
    assert len(got) == 1, r.json()
    return got[0]


def test_restart_unreadable_checkpoint_fails_the_run(server_factory):
    srv = server_factory("--rate-limit", "0")
    user = "usr_appr_restart_bad"
    token = srv.token(sub=user)
    run = finished_run(srv, token)
    srv.stop_and_check()
    _park(srv, user, run["id"], "call_bad", "{not json")
    srv.start()
    got = wait_run_status(srv, token, run["id"], ("failed",), timeout=10)
    assert got["error"] and got["error"]["error_code"] == "INTERRUPTED", got
    a = _approval(srv, token, run["id"], "call_bad")
    assert a["status"] == "expired" and a["approved"] is None and a["decided_at"], a
    j = check_envelope(decide(srv, token, run["id"], {"call_id": "call_bad", "approved": True}), "CONFLICT", 409)
    assert j["message"] == "approval expired", j
    assert call(srv, "GET", "/api/agents/status", token=token).json()["runs"] == []


def test_restart_waiting_run_is_resumed_not_interrupted(server_factory):
    """A run left waiting with a readable checkpoint is not failed as INTERRUPTED at start: a run
    thread takes it up again (its events go on after the restart).  What it does with a checkpoint
    that is no agent's own is the agents' business; once it ends, its approval can no longer be
    decided (409, REST and WS), and the list shows it expired."""
    srv = server_factory("--rate-limit", "0")
    user = "usr_appr_restart_resume"
    token = srv.token(sub=user)
    run = finished_run(srv, token)
    before = call(srv, "GET", "/api/runs/%s/events" % run["id"], token=token).json()["events"]
    last = before[-1]["seq"]
    srv.stop_and_check()
    _park(srv, user, run["id"], "call_r", json.dumps({"not": "an agent's checkpoint"}))
    srv.start()
    done = wait_run_status(srv, token, run["id"], ("completed", "failed", "cancelled"), timeout=30)
    assert not (done["error"] or {}).get("error_code") == "INTERRUPTED", done
    after = call(srv, "GET", "/api/runs/%s/events?after_seq=%d" % (run["id"], last), token=token).json()["events"]
    assert after, "the resumed run emitted nothing"
    a = _approval(srv, token, run["id"], "call_r")
    assert a["status"] == "expired" and a["approved"] is None, a
    j = check_envelope(decide(srv, token, run["id"], {"call_id": "call_r", "approved": True}), "CONFLICT", 409)
    assert j["message"] == "approval expired", j
    ws = WSClient(srv, user)
    try:
        ws.send_json({"type": "approve_tool", "id": 7,
                      "payload": {"run_id": run["id"], "call_id": "call_r", "approved": False}})
        f = ws.wait_for(lambda f: f.get("reply_to") == 7)
        assert f["type"] == "error" and f["code"] == "CONFLICT" and f["data"]["code"] == "CONFLICT", f
    finally:
        ws.close()


def test_restart_expired_approval_cannot_be_decided(server_factory):
    srv = server_factory("--rate-limit", "0")
    user = "usr_appr_restart_exp"
    token = srv.token(sub=user)
    run = finished_run(srv, token)
    srv.stop_and_check()
    _park(srv, user, run["id"], "call_old", json.dumps({"resume": 1}), expires_in=-5)
    srv.start()
    j = check_envelope(decide(srv, token, run["id"], {"call_id": "call_old", "approved": True}), "CONFLICT", 409)
    assert j["message"] == "approval expired", j
    assert _approval(srv, token, run["id"], "call_old")["approved"] is None


# ---- the whole flow, with a model (the OpenAI stand-in) ----------------------------------------

# The run's top agent is `reporting` (start_agent), whose model loop makes the run's first model call:
# under the supervisor, triage's classify call is replayed to the model as an earlier assistant turn, so
# the loop's first request is the stand-in's step 1 and scenario `approval` answers it with text.
FLOW_AGENT = "reporting"
FLOW_TOOL = "calculator"      # a builtin tool the model loop offers
FLOW_ARGS = {"expression": "6*7"}
FLOW_PATTERN = "calc*"        # --approve-tools (a wildcard)


def _standin():
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    return mod.Standin()


def _flow_server(server_factory, standin, *extra):
    return server_factory("--rate-limit", "0", "--llm", "openai", "--approve-tools", FLOW_PATTERN, *extra,
                          env=standin.agentd_env())


def _flow_message():
    return "Please compute it. [[scenario:approval]] [[tool:%s]] [[args:%s]]" % (FLOW_TOOL, json.dumps(FLOW_ARGS))


def _start_and_wait_approval(srv, ws, token):
    start = len(ws.frames)
    ws.send_json({"type": "start_agent", "payload": {"user_request": _flow_message(), "agent": FLOW_AGENT}})
    ack = ws.wait_for(lambda f: f.get("type") in ("message_received", "error"), start=start)
    assert ack["type"] == "message_received", ack
    run_id = ack["data"]["run_id"]
    ev = ws.wait_for(lambda f: f.get("run_id") == run_id and (
        f.get("type") in ("approval_required", "agent_error", "agent_stopped")
        or (f.get("type") == "agent_completed" and f.get("agent_name") == FLOW_AGENT)), timeout=60)
    assert ev["type"] == "approval_required", ev
    d = ev["data"]
    assert d["tool_name"] == FLOW_TOOL and d["parameters"] == FLOW_ARGS and d["call_id"].startswith("call_"), ev
    assert ev["agent_name"], ev
    # Stored before the event went out: the run reads waiting, the approval is listed pending.
    r = call(srv, "GET", "/api/runs/" + run_id, token=token)
    assert r.json()["status"] == "waiting", r.json()
    active = call(srv, "GET", "/api/agents/status", token=token).json()["runs"]
    assert [(x["id"], x["status"]) for x in active] == [(run_id, "waiting")], active
    a = _approval(srv, token, run_id, d["call_id"])
    assert a["status"] == "pending" and a["approved"] is None, a
    # No tool ran yet.
    assert not [f for f in ws.frames if f.get("type") == "tool_executing" and f["data"].get("call_id") == d["call_id"]]
    return run_id, d["call_id"]


def _decide_all_until_end(srv, ws, token, run_id, approved, decided=(), start=0):
    """Answer every approval_required of the run (but the calls in decided) until its final event;
    returns the run's events."""
    seen = set(decided)
    i = start
    while True:
        f = ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") in (
            "approval_required", "agent_completed", "agent_error", "agent_stopped"), timeout=60, start=i)
        i = ws.frames.index(f) + 1
        if f["type"] == "approval_required":
            cid = f["data"]["call_id"]
            if cid not in seen:
                seen.add(cid)
                r = decide(srv, token, run_id, {"call_id": cid, "approved": approved, "reason": "flow test"})
                assert r.status == 200, r
            continue
        if f["type"] == "agent_completed" and f.get("agent_name") != FLOW_AGENT:
            continue
        return [e for e in ws.frames if e.get("run_id") == run_id and "seq" in e]


def test_flow_approved(server_factory):
    with _standin() as s:
        srv = _flow_server(server_factory, s)
        user = "usr_flow_ok"
        token = srv.token(sub=user)
        ws = WSClient(srv, user)
        try:
            run_id, call_id = _start_and_wait_approval(srv, ws, token)
            # Two decisions at once: one is taken (200), the other refused (409).
            answers = {}

            def one(approved):
                answers[approved] = decide(srv, token, run_id, {"call_id": call_id, "approved": approved})

            ts = [threading.Thread(target=one, args=(v,)) for v in (True, False)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert sorted(r.status for r in answers.values()) == [200, 409], answers
            won = [v for v, r in answers.items() if r.status == 200][0]
            assert answers[won].json()["approved"] is won, answers[won].json()
            check_envelope(answers[not won], "CONFLICT", 409)
            evs = _decide_all_until_end(srv, ws, token, run_id, True, decided=(call_id,))
            done = [e for e in evs if e["type"] == "tool_completed" and e["data"]["call_id"] == call_id]
            assert len(done) == 1, evs
            if won:
                assert done[0]["data"]["status"] == "completed", done
                assert "42" in json.dumps(done[0]["data"]["result"]), done
            else:
                assert done[0]["data"]["status"] == "error", done
            assert evs[-1]["type"] == "agent_completed", evs[-1]
            run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
            assert run["status"] == "completed", run
            assert _approval(srv, token, run_id, call_id)["status"] == ("approved" if won else "denied")
            j = check_envelope(decide(srv, token, run_id, {"call_id": call_id, "approved": won}), "CONFLICT", 409)
            assert j["message"] == "approval already decided", j
        finally:
            ws.close()


def test_flow_denied_over_ws(server_factory):
    with _standin() as s:
        srv = _flow_server(server_factory, s)
        user = "usr_flow_deny"
        token = srv.token(sub=user)
        ws = WSClient(srv, user)
        try:
            run_id, call_id = _start_and_wait_approval(srv, ws, token)
            ws.send_json({"type": "approve_tool", "id": "d1",
                          "payload": {"run_id": run_id, "call_id": call_id, "approved": False, "reason": "no"}})
            f = ws.wait_for(lambda f: f.get("reply_to") == "d1")
            assert f["type"] == "approval_recorded" and f["data"]["status"] == "denied", f
            evs = _decide_all_until_end(srv, ws, token, run_id, False, decided=(call_id,))
            done = [e for e in evs if e["type"] == "tool_completed" and e["data"]["call_id"] == call_id]
            assert all(e["data"]["status"] == "error" for e in done), done
            assert evs[-1]["type"] == "agent_completed", evs[-1]
            a = _approval(srv, token, run_id, call_id)
            assert a["status"] == "denied" and a["reason"] == "no", a
        finally:
            ws.close()


def test_flow_timeout_stops_the_run(server_factory):
    with _standin() as s:
        srv = _flow_server(server_factory, s, "--approval-timeout", "2")
        user = "usr_flow_timeout"
        token = srv.token(sub=user)
        ws = WSClient(srv, user)
        try:
            run_id, call_id = _start_and_wait_approval(srv, ws, token)
            f = ws.wait_for(lambda f: f.get("run_id") == run_id and (
                f.get("type") in ("agent_stopped", "agent_error")
                or (f.get("type") == "agent_completed" and f.get("agent_name") == FLOW_AGENT)), timeout=60)
            assert f["type"] == "agent_stopped" and f["data"]["reason"] == "approval_timeout", f
            run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
            assert run["status"] == "cancelled", run
            assert _approval(srv, token, run_id, call_id)["status"] == "expired"
            j = check_envelope(decide(srv, token, run_id, {"call_id": call_id, "approved": True}), "CONFLICT", 409)
            assert j["message"] == "approval expired", j
            assert not [e for e in ws.frames if e.get("type") == "tool_executing"
                        and e["data"].get("call_id") == call_id]
        finally:
            ws.close()


def test_flow_cancel_while_waiting(server_factory):
    with _standin() as s:
        srv = _flow_server(server_factory, s)
        user = "usr_flow_cancel"
        token = srv.token(sub=user)
        ws = WSClient(srv, user)
        try:
            run_id, call_id = _start_and_wait_approval(srv, ws, token)
            r = call(srv, "POST", "/api/agents/stop", {"run_id": run_id}, token=token)
            assert r.status == 200 and r.json()["status"] == "cancelled", r
            f = ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "agent_stopped", timeout=30)
            assert f["data"]["reason"] == "cancelled", f
            assert _approval(srv, token, run_id, call_id)["status"] == "expired"
            check_envelope(decide(srv, token, run_id, {"call_id": call_id, "approved": True}), "CONFLICT", 409)
        finally:
            ws.close()


def test_flow_pending_across_restart(server_factory):
    with _standin() as s:
        srv = _flow_server(server_factory, s, "--shutdown-grace", "120")
        user = "usr_flow_restart"
        token = srv.token(sub=user)
        ws = WSClient(srv, user)
        try:
            run_id, call_id = _start_and_wait_approval(srv, ws, token)
            last_seq = max(e["seq"] for e in ws.frames if e.get("run_id") == run_id and "seq" in e)
        finally:
            ws.close()
        # A waiting run is parked at once, not waited for: far within the 120 s grace.
        assert srv.stop(signal.SIGTERM, timeout=60) == 0, srv.stderr_tail()
        srv.check_sanitizers()
        srv.start()
        # Still waiting, the same approval pending, no run failed.
        run = wait_run_status(srv, token, run_id, ("waiting",), timeout=30)
        assert run["error"] is None, run
        assert _approval(srv, token, run_id, call_id)["status"] == "pending"
        ws = WSClient(srv, user)
        try:
            ws.send_json({"type": "resume", "payload": {"after_seq": last_seq}, "id": "r"})
            ws.wait_for(lambda f: f.get("reply_to") == "r")
            r = decide(srv, token, run_id, {"call_id": call_id, "approved": True})
            assert r.status == 200, r
            evs = _decide_all_until_end(srv, ws, token, run_id, True, decided=(call_id,))
            after = [e for e in evs if e["seq"] > last_seq]
            # nothing of the run's end before the restart, no second approval_required for the call
            assert not [e for e in after if e["type"] == "approval_required" and e["data"]["call_id"] == call_id]
            done = [e for e in after if e["type"] == "tool_completed" and e["data"]["call_id"] == call_id]
            assert len(done) == 1 and done[0]["data"]["status"] == "completed", after
            assert after[-1]["type"] == "agent_completed", after[-1]
            run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
            assert run["status"] == "completed", run
        finally:
            ws.close()
