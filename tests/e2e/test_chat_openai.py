"""A whole chat turn on `--llm openai` against the OpenAI stand-in (SPEC §4, §5, §11; tests/standin).

Over WS, SSE (POST /api/chat/stream) and REST (POST /api/agents/execute): the SPEC §5 order, the model's call
ids as tool_executing's call_id (equal to the stand-in log's), partial_result joined == agent_response, the
run's usage (GET /api/runs/{id}), a cancel mid-stream (the stand-in sees the connection closed), 429s retried,
each failure scenario as its agent_error code, bad tool calls answered with error results, and --record-usage
adding agentd's own calls to the user's workload records (feature "agentd").

The WS turn is a real chat turn (`user_message`: the supervisor, triage classifying with the model, then the
loop); most scenario tests run the `reporting` agent alone, which makes the loop's request the run's first model
call.  The stand-in counts a scenario's steps by its own tool calls only, so triage's replayed classify_request
call (sent before the loop's first request) does not shift them.
"""
import json
import os
import sys
import time
import uuid

import pytest

from agentd import Agentd
from auth_helpers import call
from test_events import SSEClient, WSClient, check_run_events, check_stopped_events, wait_run_status

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "standin"))

TOOL = "workload_summary"   # a registry tool whose arguments are all optional ({} is valid)


@pytest.fixture(scope="module")
def standin():
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        yield s


def _start(tmp_path_factory, standin, name, *args):
    """An agentd on --llm openai pointed at the stand-in (the OPENAI_* variables are read at start)."""
    srv = Agentd(tmp_path_factory.mktemp(name), ("--rate-limit", "0", "--llm", "openai") + args, name=name,
                 env=standin.agentd_env())
    srv.start()
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory, standin):
    srv = _start(tmp_path_factory, standin, "openai_chat", "--record-usage")
    try:
        yield srv
    finally:
        srv.stop_and_check()


@pytest.fixture(scope="module")
def short_server(tmp_path_factory, standin):
    srv = _start(tmp_path_factory, standin, "openai_short", "--llm-max-steps", "2")
    try:
        yield srv
    finally:
        srv.stop_and_check()


# ---- helpers ------------------------------------------------------------------

def tagged(text):
    """A message with a unique tag, so this test's requests can be found in the shared stand-in log."""
    tag = "ref-" + uuid.uuid4().hex[:12]
    return "%s %s" % (text, tag), tag


def _last_user_text(body):
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


def _is_classification(entry):
    tc = entry["body"].get("tool_choice")
    return isinstance(tc, dict) and (tc.get("function") or {}).get("name") == "classify_intent"


def log_for(standin, tag, classification=False):
    """The stand-in's log entries of this test's turn (the loop's requests; classification ones on demand)."""
    return [e for e in standin.requests()
            if tag in _last_user_text(e["body"]) and _is_classification(e) == classification]


def model_call_ids(entries):
    return [cid for e in entries for cid in e.get("call_ids") or []]


def tool_events(events, kind="tool_executing", agent="reporting"):
    return [e for e in events if e["type"] == kind and e["agent_name"] == agent]


def check_critical_order(events, with_tool):
    """agent_started … tool_executing → tool_completed … partial_result … agent_response → agent_completed."""
    types = [e["type"] for e in events]
    assert types[0] == "agent_started" and types[-1] == "agent_completed" and types[-2] == "agent_response", types
    assert "agent_thinking" in types and "partial_result" in types, types
    if with_tool:
        ex = types.index("tool_executing")
        done = types.index("tool_completed")
        last_partial = len(types) - 1 - types[::-1].index("partial_result")
        assert ex < done < last_partial < types.index("agent_response"), types


def check_usage(srv, token, run_id, calls):
    run = wait_run_status(srv, token, run_id, ("completed", "failed", "cancelled"))
    u = run.get("usage")
    assert isinstance(u, dict), run
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "llm_calls"}, u
    assert u["llm_calls"] == calls, (u, calls)
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0, u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    assert u["cost_usd"] == 0, u   # standin-model is not in the price table
    return run


def execute(srv, token, message, agent="reporting"):
    r = call(srv, "POST", "/api/agents/execute", {"message": message, "agent": agent}, token=token)
    assert r.status == 200, r
    return r.json()


def error_event(events):
    last = events[-1]
    assert last["type"] == "agent_error", [e["type"] for e in events]
    return last["data"]


# ---- a whole turn over each transport --------------------------------------------

def test_ws_turn_with_a_split_tool_call(server, standin):
    user = "usr_oai_ws"
    token = server.token(sub=user)
    msg, tag = tagged("Summarise my usage. [[scenario:tool_split]] [[tool:%s]]" % TOOL)
    ws = WSClient(server, user)
    try:
        start = len(ws.frames)
        ws.send_json({"type": "user_message", "payload": {"content": msg}})
        ack = ws.wait_for(lambda f: f.get("type") in ("message_received", "error"), start=start)
        assert ack["type"] == "message_received", ack
        run_id = ack["data"]["run_id"]
        evs = ws.run_events(run_id, timeout=90)
    finally:
        ws.close()
    resp = check_run_events(evs)
    check_critical_order(evs, with_tool=True)
    assert log_for(standin, tag, classification=True), "triage did not ask the model"
    log = log_for(standin, tag)
    assert [e["step"] for e in log] == [0, 1], log
    ids = model_call_ids(log)
    assert len(ids) == 1 and ids[0].startswith("call_"), log
    assert [e["data"]["call_id"] for e in tool_events(evs)] == ids
    done = tool_events(evs, "tool_completed")
    assert done[0]["data"]["tool_name"] == TOOL and done[0]["data"]["status"] == "completed", done
    # the tool's result went back to the model, answering the model's call id
    tool_msgs = [m for m in log[1]["body"]["messages"] if m.get("role") == "tool"]
    assert tool_msgs and tool_msgs[-1]["tool_call_id"] == ids[0], tool_msgs
    assert resp["data"]["content"].startswith("Stand-in answer"), resp
    check_usage(server, token, run_id, calls=3)   # the classification and the loop's two rounds


def test_sse_supervisor_turn(server, standin):
    user = "usr_oai_sse"
    token = server.token(sub=user)
    msg, tag = tagged("How can I cut my LLM costs? [[scenario:text]]")
    s = SSEClient(server, "POST", "/api/chat/stream", token, body={"message": msg}, timeout=90)
    try:
        assert s.status == 200, s.status
        s.read_to_end(timeout=120)
        evs = s.events()
    finally:
        s.close()
    resp = check_run_events(evs)
    check_critical_order(evs, with_tool=False)
    assert resp["data"]["content"].startswith("Stand-in answer"), resp
    # triage classified with the model (no fallback)
    cls = [e for e in evs if e["type"] == "tool_completed" and e["data"]["tool_name"] == "classify_request"]
    assert cls and cls[0]["data"]["result"]["intent"] == "cost", cls
    assert not cls[0]["data"]["result"].get("fallback"), cls
    assert log_for(standin, tag, classification=True), "triage did not ask the model"
    # the loop's request carried the run's earlier tool calls: triage's classify_request, answered by its id
    loop = log_for(standin, tag)
    assert len(loop) == 1, loop
    messages = loop[0]["body"]["messages"]
    assert messages[0]["role"] == "system", messages[0]
    sent_calls = [c for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
    sent_ids = {c["id"] for c in sent_calls}
    run_ids = {e["data"]["call_id"] for e in evs if e["type"] == "tool_executing"}
    assert run_ids and run_ids == sent_ids, (run_ids, sent_calls)
    assert {m["tool_call_id"] for m in messages if m.get("role") == "tool"} == sent_ids
    offered = {t["function"]["name"] for t in loop[0]["body"].get("tools") or []}
    assert TOOL in offered and "classify_request" not in offered and "thread_context" not in offered, offered
    # the classification and the answer
    check_usage(server, token, evs[0]["run_id"], calls=2)


def test_rest_turn_with_two_tool_calls(server, standin):
    user = "usr_oai_rest"
    token = server.token(sub=user)
    msg, tag = tagged('Compute. [[scenario:multi_tool]] [[tool:calculator]] [[args:{"expression": "6*7"}]]')
    j = execute(server, token, msg)
    evs = j["events"]
    resp = check_run_events(evs, top="reporting")
    assert j["response"] == resp["data"]["content"]
    check_critical_order(evs, with_tool=True)
    log = log_for(standin, tag)
    ids = model_call_ids(log)
    assert len(ids) == 2, log
    assert [e["data"]["call_id"] for e in tool_events(evs)] == ids
    done = tool_events(evs, "tool_completed")
    assert [d["data"]["result"].get("result") for d in done] == [42, 42], done
    assert j["run"]["usage"]["llm_calls"] == 2, j["run"]
    check_usage(server, token, j["run"]["id"], calls=2)


def test_reasoning_becomes_thinking(server, standin):
    token = server.token(sub="usr_oai_reason")
    msg, _ = tagged("Think first. [[scenario:reasoning_vllm]]")
    j = execute(server, token, msg)
    evs = j["events"]
    check_run_events(evs, top="reporting")
    thinking = [e["data"]["reasoning"] for e in evs if e["type"] == "agent_thinking"]
    assert any("stand-in" in t for t in thinking), thinking
    steps = [e["data"]["step_number"] for e in evs if e["type"] == "agent_thinking"]
    assert steps == list(range(1, len(steps) + 1)), steps


# ---- cancel, retries, failures --------------------------------------------------------

def test_cancel_mid_stream_closes_the_model_call(server, standin):
    user = "usr_oai_cancel"
    token = server.token(sub=user)
    msg, tag = tagged("Tell me a long story. [[scenario:slow]]")
    ws = WSClient(server, user)
    try:
        start = len(ws.frames)
        ws.send_json({"type": "start_agent", "payload": {"user_request": msg, "agent": "reporting"}})
        ack = ws.wait_for(lambda f: f.get("type") in ("message_received", "error"), start=start)
        assert ack["type"] == "message_received", ack
        run_id = ack["data"]["run_id"]
        ws.wait_for(lambda f: f.get("run_id") == run_id and f.get("type") == "partial_result", timeout=60)
        r = call(server, "POST", "/api/agents/stop", {"run_id": run_id}, token=token)
        assert r.status == 200, r
        evs = ws.run_events(run_id, top="reporting", timeout=30)
    finally:
        ws.close()
    check_stopped_events(evs, reason="cancelled", top="reporting")
    assert not [e for e in evs if e["type"] == "agent_response"], evs
    log = standin.wait_requests(lambda log: any(tag in _last_user_text(e["body"]) and e["client_closed"]
                                                for e in log), timeout=30)
    entry = [e for e in log if tag in _last_user_text(e["body"])][-1]
    assert entry["client_closed"] and not entry["completed"], entry
    wait_run_status(server, token, run_id, ("cancelled",))


def test_rate_limited_is_retried_then_completes(server, standin):
    token = server.token(sub="usr_oai_429")
    msg, tag = tagged("Hello. [[scenario:rate_limited]]")
    j = execute(server, token, msg)
    check_run_events(j["events"], top="reporting")
    assert j["run"]["status"] == "completed", j["run"]
    statuses = [e["status"] for e in log_for(standin, tag)]
    assert statuses == [429, 429, 200], statuses


@pytest.mark.parametrize("scenario,code", [
    ("error500_always", "LLM_UNAVAILABLE"),
    ("rate_limited_always", "LLM_RATE_LIMITED"),
    ("malformed", "LLM_BAD_RESPONSE"),
])
def test_failure_scenarios(server, standin, scenario, code):
    token = server.token(sub="usr_oai_fail_" + scenario)
    msg, _ = tagged("Hello. [[scenario:%s]]" % scenario)
    j = execute(server, token, msg)
    err = error_event(j["events"])
    assert err["error_code"] == code, err
    assert j["run"]["status"] == "failed", j["run"]
    assert j["run"]["error"]["error_code"] == code, j["run"]
    assert not [e for e in j["events"] if e["type"] == "agent_response"]


def test_loop_forever_is_too_many_steps(short_server, standin):
    token = short_server.token(sub="usr_oai_loop")
    msg, tag = tagged("Loop. [[scenario:loop_forever]] [[tool:%s]]" % TOOL)
    j = execute(short_server, token, msg)
    err = error_event(j["events"])
    assert err["error_code"] == "LLM_TOO_MANY_STEPS", err
    assert len(log_for(standin, tag)) == 2   # --llm-max-steps 2: two model rounds, no third
    assert j["run"]["usage"]["llm_calls"] == 2, j["run"]


def test_bad_tool_calls_get_error_results(server, standin):
    token = server.token(sub="usr_oai_badtool")
    msg, tag = tagged("Try tools. [[scenario:bad_tool]] [[tool:%s]]" % TOOL)
    j = execute(server, token, msg)
    evs = j["events"]
    resp = check_run_events(evs, top="reporting")
    log = log_for(standin, tag)
    assert [e["step"] for e in log] == [0, 1, 2], log
    ids = model_call_ids(log)
    assert len(ids) == 2 and [e["data"]["call_id"] for e in tool_events(evs)] == ids
    done = tool_events(evs, "tool_completed")
    assert [d["data"]["status"] for d in done] == ["error", "error"], done
    assert "unknown tool" in done[0]["data"]["result"]["error"], done[0]
    assert "from" in done[1]["data"]["result"]["error"], done[1]
    # each error went back to the model as the answer to its call
    tool_msgs = [m for m in log[2]["body"]["messages"] if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs][-2:] == ids
    assert all('"error"' in m["content"] for m in tool_msgs[-2:]), tool_msgs
    assert "reported an error" in resp["data"]["content"], resp


# ---- --record-usage ---------------------------------------------------------------

def test_record_usage_adds_agentd_calls_to_the_users_records(server, standin):
    user = "usr_oai_record"
    token = server.token(sub=user)
    msg, _ = tagged("Hello. [[scenario:text]]")
    j = execute(server, token, msg)
    assert j["run"]["status"] == "completed", j["run"]
    deadline = time.monotonic() + 30
    while True:
        r = call(server, "GET", "/api/workloads/summary", token=token)
        assert r.status == 200, r
        s = r.json()
        feats = {g.get("feature"): g for g in s.get("by_feature") or []}
        if "agentd" in feats:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.1)
    assert s["totals"]["calls"] == 1, s   # the one model call of this turn, nothing else of this user
    assert feats["agentd"]["calls"] == 1, feats
    # another user's records are untouched
    other = call(server, "GET", "/api/workloads/summary", token=server.token(sub="usr_oai_nobody")).json()
    assert other["totals"]["calls"] == 0, other
