"""The OpenAI stand-in (tests/standin, issue 14): its wire format, checked with the
official `openai` npm client (parse.mjs), its scenarios and request log, and the
parity of agentd's C probe (llm_probe) with that client.

- Official client: each text/tool scenario is parsed by openai-node and must come
  out as the scenario promises; a stand-in whose chunks were off would fail here.
  parse.mjs runs with maxRetries 0 (error statuses reach the test at once), except
  where a test sets PARSE_MAX_RETRIES to watch the client retry on Retry-After.
- Parity: llm_probe (next to AGENTD_BIN) and parse.mjs parse the same scenarios and
  must print the same JSON: text, reasoning, tool calls (ids checked against each
  run's own log entry, since ids are fresh per request; names compared after mapping
  '.' to '_', because llm_probe's second tool is agentd's `weather.forecast`, which
  agentd sends as the legal wire name `weather_forecast`, where parse.mjs declares
  `weather_forecast` directly), arguments, finish and usage.  For the error scenarios
  only the outcome is compared: the client reports the HTTP status ("429") or its own
  message, llm_probe agentd's SPEC §11 error_code for the same failure (LLM_RATE_LIMITED,
  LLM_BAD_RESPONSE for a malformed stream, LLM_UNAVAILABLE for a broken one); agentd
  retries itself (up to 3 times) where the client was told not to, and its final
  outcome is the same.
  The parity test FAILS when llm_probe is missing: it must run once the branches meet.
"""
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess

import pytest

from agentd import AGENTD_BIN, SANITIZER_MARKERS, sanitizer_env
from standin import HERE as STANDIN_DIR, MODEL, Standin

NODE = shutil.which("node") or "/usr/bin/node"
PARSE = os.path.join(STANDIN_DIR, "parse.mjs")
LLM_PROBE = os.path.join(os.path.dirname(os.path.abspath(AGENTD_BIN)), "llm_probe")
QUESTION = "What is the weather in Paris?"
ARGS = {"city": "Paris"}
REASONING = ("Let me think about the question. The stand-in weighs what it was told. "
             "It settles on a deterministic answer.")
ANSWER = 'Stand-in answer: you said "%s".' % QUESTION


def message(scenario, **markers):
    extra = "".join(" [[%s:%s]]" % (k, v) for k, v in markers.items())
    return "%s [[scenario:%s]] [[args:%s]]%s" % (QUESTION, scenario, json.dumps(ARGS), extra)


@pytest.fixture(scope="module")
def standin():
    with Standin() as s:
        yield s


@pytest.fixture
def sv(standin):
    standin.reset()
    yield standin
    err = standin.stderr_text()
    assert "error while serving" not in err and "Traceback" not in err, err


def run_parse(base_url, msg, api_key="sk-test", max_retries=0):
    if not os.path.isdir(os.path.join(STANDIN_DIR, "node_modules", "openai")):
        pytest.fail("tests/standin/node_modules is missing: run `make deps` (scripts/deps.sh runs npm ci)",
                    pytrace=False)
    env = dict(os.environ, OPENAI_API_KEY=api_key, PARSE_MAX_RETRIES=str(max_retries))
    p = subprocess.run([NODE, PARSE, base_url, MODEL, msg], capture_output=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def run_probe(base_url, msg):
    if not os.access(LLM_PROBE, os.X_OK):
        pytest.fail("llm_probe not found at %s (built next to agentd by the openai provider's branch; "
                    "the parity test must run once both branches are merged)" % LLM_PROBE, pytrace=False)
    env = sanitizer_env()
    env.update(OPENAI_API_KEY="sk-test")
    p = subprocess.run([LLM_PROBE, base_url, MODEL, msg], capture_output=True, env=env, timeout=180)
    err = p.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-4000:]
    lines = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
    assert lines, "llm_probe printed nothing (exit %d): %s" % (p.returncode, err[-2000:])
    return json.loads(lines[-1])


def completions(sv):
    return [e for e in sv.requests() if not e.get("classify")]


def expected_usage(entry, out_len):
    prompt = max(1, len(json.dumps(entry["body"]["messages"])) // 4)
    return prompt, max(1, out_len // 4)


def check_log_ok(entry, scenario):
    assert entry["scenario"] == scenario and entry["step"] == 0
    assert entry["status"] == 200 and entry["completed"] and not entry["client_closed"]
    assert entry["headers"]["authorization"] == "Bearer sk-test"
    assert entry["body"]["stream"] is True and entry["body"]["stream_options"] == {"include_usage": True}
    assert [t["function"]["name"] for t in entry["body"]["tools"]] == ["get_weather", "weather_forecast"]


# ---------------------------------------------------------------- the official client

@pytest.mark.parametrize("scenario", ["text", "usage_null", "pings", "reasoning_vllm", "reasoning_llamacpp"])
def test_official_client_text(sv, scenario):
    out = run_parse(sv.base_url, message(scenario))
    (entry,) = completions(sv)
    check_log_ok(entry, scenario)
    reasoning = REASONING if scenario.startswith("reasoning") else ""
    assert out["error"] is None
    assert out["text"] == ANSWER
    assert out["reasoning"] == reasoning
    assert out["tool_calls"] == [] and out["finish"] == "stop"
    assert (out["prompt_tokens"], out["completion_tokens"]) == expected_usage(entry, len(ANSWER) + len(reasoning))


@pytest.mark.parametrize("scenario", ["tool_split", "ollama_tool", "multi_tool"])
def test_official_client_tool_calls(sv, scenario):
    out = run_parse(sv.base_url, message(scenario))
    (entry,) = completions(sv)
    check_log_ok(entry, scenario)
    names = ["get_weather", "weather_forecast"] if scenario == "multi_tool" else ["get_weather"]
    assert out["error"] is None and out["finish"] == "tool_calls"
    assert out["text"] == "" and out["reasoning"] == ""
    assert [c["id"] for c in out["tool_calls"]] == entry["call_ids"]
    assert all(len(i) == 29 and i.startswith("call_") for i in entry["call_ids"])
    assert len(set(entry["call_ids"])) == len(names)
    assert [c["name"] for c in out["tool_calls"]] == names
    assert [c["arguments"] for c in out["tool_calls"]] == [ARGS] * len(names)
    out_len = sum(len(n) + len(json.dumps(ARGS)) for n in names)
    assert (out["prompt_tokens"], out["completion_tokens"]) == expected_usage(entry, out_len)


def test_official_client_malformed(sv):
    out = run_parse(sv.base_url, message("malformed"))
    assert out["error"] is not None and "json" in out["error"].lower()
    assert out["text"] == "Stand-in answer: " and out["finish"] is None and out["prompt_tokens"] is None


def test_official_client_drop(sv):
    out = run_parse(sv.base_url, message("drop"))
    assert out["error"] is not None and out["finish"] is None and out["prompt_tokens"] is None
    assert out["text"] == ANSWER    # both content chunks came before the close
    (entry,) = sv.wait_requests(lambda log: log and log[0]["status"] == 200)
    assert not entry["completed"]


def test_official_client_rate_limited_always(sv):
    out = run_parse(sv.base_url, message("rate_limited_always"), max_retries=0)
    assert out["error"] == "429" and out["text"] == "" and out["tool_calls"] == []
    (entry,) = completions(sv)
    assert entry["status"] == 429 and entry["completed"]


def test_official_client_retries_rate_limited_after_retry_after(sv):
    # The client honours Retry-After: 1 twice, then gets the answer: the retry
    # counter is per (scenario, step, messages), so each attempt is counted.
    out = run_parse(sv.base_url, message("rate_limited"), max_retries=3)
    assert out["error"] is None and out["text"] == ANSWER
    assert [e["status"] for e in completions(sv)] == [429, 429, 200]


def test_official_client_error500_once(sv):
    out = run_parse(sv.base_url, message("error500_once"), max_retries=0)
    assert out["error"] == "500"
    out = run_parse(sv.base_url, message("error500_once"), max_retries=0)   # same messages: 2nd attempt
    assert out["error"] is None and out["text"] == ANSWER
    assert [e["status"] for e in completions(sv)] == [500, 200]
    assert run_parse(sv.base_url, message("error500_always"))["error"] == "500"
    assert run_parse(sv.base_url, message("error500_always"))["error"] == "500"


def test_wrong_api_key_is_401():
    with Standin(extra_args=("--api-key", "sk-right")) as s:
        out = run_parse(s.base_url, message("text"), api_key="sk-wrong")
        assert out["error"] == "401"
        out = run_parse(s.base_url, message("text"), api_key="sk-right")
        assert out["error"] is None and out["text"] == ANSWER
        log = s.requests()
        assert [e["status"] for e in log] == [401, 200]
        assert log[0]["headers"]["authorization"] == "Bearer sk-wrong"


# ---------------------------------------------------------------- parity with llm_probe

PARITY = ["text", "tool_split", "multi_tool", "ollama_tool", "reasoning_vllm", "reasoning_llamacpp",
          "usage_null", "pings", "malformed", "drop", "rate_limited_always"]


# The error scenarios: (what the official client reports, or None for "some message";
# the SPEC §11 error_code agentd reports for the same failure).
PARITY_ERRORS = {
    "malformed": (None, "LLM_BAD_RESPONSE"),
    "drop": (None, "LLM_UNAVAILABLE"),
    "rate_limited_always": ("429", "LLM_RATE_LIMITED"),
}


def normalised(out, call_ids):
    """out without what legitimately differs: ids (checked against the run's log, then
    replaced by their position) and agentd's tool names ('.' is '_' on the wire)."""
    assert [c["id"] for c in out["tool_calls"]] == call_ids
    calls = [{"id": i, "name": c["name"].replace(".", "_"), "arguments": c["arguments"]}
             for i, c in enumerate(out["tool_calls"])]
    return dict(out, tool_calls=calls)


@pytest.mark.parametrize("scenario", PARITY)
def test_llm_probe_parses_like_the_official_client(sv, scenario):
    msg = message(scenario)
    probe = run_probe(sv.base_url, msg)
    probe_log = completions(sv)
    sv.reset()
    node = run_parse(sv.base_url, msg)
    node_log = completions(sv)
    assert set(probe) >= {"text", "reasoning", "tool_calls", "finish", "error", "prompt_tokens",
                          "completion_tokens"}, probe
    if scenario in PARITY_ERRORS:
        node_error, agentd_code = PARITY_ERRORS[scenario]
        assert node["error"] is not None and (node_error is None or node["error"] == node_error), node
        assert probe["error"] == agentd_code, probe
        return
    assert probe_log and node_log
    keys = ("text", "reasoning", "tool_calls", "finish", "error", "prompt_tokens", "completion_tokens")
    p = normalised(probe, probe_log[-1]["call_ids"])
    n = normalised(node, node_log[-1]["call_ids"])
    assert {k: p[k] for k in keys} == {k: n[k] for k in keys}


# ---------------------------------------------------------------- the wire, the steps, the log

def post(sv, body, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", sv.port, timeout=timeout)
    c.request("POST", "/v1/chat/completions", json.dumps(body),
              {"Content-Type": "application/json", "Authorization": "Bearer sk-test"})
    return c, c.getresponse()


def sse_events(raw):
    """(data payloads, comment lines) of an event stream."""
    data, comments = [], []
    for event in raw.decode().split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith(":"):
                comments.append(line)
    return data, comments


def stream_body(content, tools=("get_weather", "weather_forecast"), extra=()):
    msgs = [{"role": "user", "content": content}] + list(extra)
    return {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "messages": msgs,
            "tools": [{"type": "function", "function": {"name": t, "parameters": {"type": "object"}}}
                      for t in tools]}


def chunks_of(sv, body):
    c, r = post(sv, body)
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    data, comments = sse_events(r.read())
    c.close()
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]], comments


def test_tool_split_wire_fragments(sv):
    chunks, _ = chunks_of(sv, stream_body(message("tool_split")))
    for ch in chunks:
        assert ch["id"].startswith("chatcmpl-") and ch["object"] == "chat.completion.chunk"
        assert isinstance(ch["created"], int) and ch["model"] == MODEL
    frags = [ch["choices"][0]["delta"]["tool_calls"][0] for ch in chunks
             if ch["choices"] and "tool_calls" in ch["choices"][0]["delta"]]
    assert len(frags) >= 3
    assert "id" in frags[0] and frags[0]["function"]["name"] == "get_weather"
    assert all("id" not in f and "name" not in f["function"] for f in frags[1:])
    assert json.loads("".join(f["function"]["arguments"] for f in frags)) == ARGS
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_multi_tool_fragments_interleave(sv):
    chunks, _ = chunks_of(sv, stream_body(message("multi_tool")))
    order = [ch["choices"][0]["delta"]["tool_calls"][0]["index"] for ch in chunks
             if ch["choices"] and "tool_calls" in ch["choices"][0]["delta"]]
    assert sorted(set(order)) == [0, 1]
    assert any(a != b for a, b in zip(order, order[1:])) and order != sorted(order)


def test_pings_and_usage_null_on_the_wire(sv):
    chunks, comments = chunks_of(sv, stream_body(message("pings")))
    assert len(comments) >= len(chunks) - 1 and all(c == ": ping" for c in comments)
    chunks, _ = chunks_of(sv, stream_body(message("usage_null")))
    assert chunks[-1]["choices"] is None and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_ollama_tool_every_delta_has_role(sv):
    chunks, _ = chunks_of(sv, stream_body(message("ollama_tool")))
    deltas = [ch["choices"][0]["delta"] for ch in chunks if ch["choices"]]
    assert all(d.get("role") == "assistant" for d in deltas)
    assert deltas[0]["tool_calls"][0]["function"]["arguments"] == json.dumps(ARGS)


def test_huge_line_and_huge(sv):
    c, r = post(sv, stream_body(message("huge_line")))
    data, _ = sse_events(r.read())
    c.close()
    assert max(len(d) for d in data) > 1 << 20
    chunks, _ = chunks_of(sv, stream_body(message("huge")))
    pieces = [ch["choices"][0]["delta"].get("content") for ch in chunks if ch["choices"]]
    pieces = [p for p in pieces if p]
    assert sum(map(len, pieces)) == 10 * 1024 * 1024 and {len(p) for p in pieces} == {64 * 1024}


def test_slow_defaults_to_200_chunks(sv):
    chunks, _ = chunks_of(sv, stream_body(message("slow", interval_ms=0)))
    assert len([ch for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content")]) == 200


def tool_round(call_id, name, result):
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": result}]


def text_of(chunks):
    return "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])


def calls_of(chunks):
    return [tc for ch in chunks if ch["choices"] for tc in ch["choices"][0]["delta"].get("tool_calls", [])]


def issued_id(sv, scenario="tool_split"):
    """A tool call id the stand-in itself issued (its step rule counts only turns answering those)."""
    chunks, _ = chunks_of(sv, stream_body(message(scenario)))
    return calls_of(chunks)[0]["id"]


def test_steps_follow_assistant_messages(sv):
    result = json.dumps({"temperature": 21, "city": "Paris"})
    c1 = issued_id(sv)
    chunks, _ = chunks_of(sv, stream_body(message("tool_split"), extra=tool_round(c1, "get_weather", result)))
    assert calls_of(chunks) == [] and text_of(chunks) == ANSWER + " The tool returned: " + result
    c2 = issued_id(sv, "approval")
    chunks, _ = chunks_of(sv, stream_body(message("approval"), extra=tool_round(c2, "get_weather",
                                                                                '{"error":"denied"}')))
    assert "reported an error" in text_of(chunks)
    # bad_tool: an unknown tool, then bad arguments, then text
    extra = []
    chunks, _ = chunks_of(sv, stream_body(message("bad_tool"), extra=extra))
    assert calls_of(chunks)[0]["function"]["name"] == "no_such_tool"
    extra += tool_round(calls_of(chunks)[0]["id"], "no_such_tool", '{"error":"unknown tool"}')
    chunks, _ = chunks_of(sv, stream_body(message("bad_tool"), extra=extra))
    args = "".join(tc["function"]["arguments"] for tc in calls_of(chunks))
    assert calls_of(chunks)[0]["function"]["name"] == "get_weather" and json.loads(args) == {"from": "not a number"}
    extra += tool_round(calls_of(chunks)[0]["id"], "get_weather", '{"error":"invalid arguments"}')
    chunks, _ = chunks_of(sv, stream_body(message("bad_tool"), extra=extra))
    assert calls_of(chunks) == [] and text_of(chunks).startswith("Stand-in answer: ")
    # loop_forever calls at every step; the log's step counts the stand-in's own rounds
    extra = tool_round(issued_id(sv, "loop_forever"), "get_weather", "{}")
    extra += tool_round(issued_id(sv, "loop_forever"), "get_weather", "{}")
    chunks, _ = chunks_of(sv, stream_body(message("loop_forever"), extra=extra))
    assert len(calls_of(chunks)) >= 1
    assert [(e["scenario"], e["step"]) for e in sv.requests()] == [
        ("tool_split", 0), ("tool_split", 1), ("approval", 0), ("approval", 1), ("bad_tool", 0), ("bad_tool", 1),
        ("bad_tool", 2), ("loop_forever", 0), ("loop_forever", 0), ("loop_forever", 2)]


def test_replayed_calls_of_the_client_are_not_steps(sv):
    """A client's own earlier tool calls (agentd replays its run's classification) leave the step at 0."""
    extra = tool_round("call_made_by_the_client", "get_weather", "{}")
    chunks, _ = chunks_of(sv, stream_body(message("tool_split"), extra=extra))
    assert calls_of(chunks)[0]["function"]["name"] == "get_weather"
    assert [(e["scenario"], e["step"]) for e in sv.requests()] == [("tool_split", 0)]
    sv.reset()   # reset forgets the ids issued: a round answering one is step 0 again
    c = issued_id(sv)
    sv.reset()
    chunks, _ = chunks_of(sv, stream_body(message("tool_split"), extra=tool_round(c, "get_weather", "{}")))
    assert sv.requests()[0]["step"] == 0


def test_classification_requests(sv):
    body = stream_body(message("drop", classify="billing"), tools=("classify_intent", "get_weather"))
    body["tool_choice"] = {"type": "function", "function": {"name": "classify_intent"}}
    chunks, _ = chunks_of(sv, body)   # any scenario: answered, not dropped
    args = json.loads("".join(tc["function"]["arguments"] for tc in calls_of(chunks)))
    assert calls_of(chunks)[0]["function"]["name"] == "classify_intent"
    assert args == {"intent": "billing", "confidence": 0.9, "reasoning": "stand-in", "keywords": ["cost"]}
    body["messages"][0]["content"] = "hello [[classify:nonsense]]"
    chunks, _ = chunks_of(sv, body)
    assert calls_of(chunks) == [] and text_of(chunks) == "I am not sure"
    log = sv.requests()
    assert [e.get("classify") for e in log] == [True, True] and len(log[0]["call_ids"]) == 1


def test_non_streaming_completion(sv):
    body = stream_body(message("tool_split"))
    body["stream"] = False
    c, r = post(sv, body)
    obj = json.loads(r.read())
    c.close()
    assert obj["object"] == "chat.completion" and obj["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = obj["choices"][0]["message"]["tool_calls"]
    assert call["id"] == sv.requests()[0]["call_ids"][0] and json.loads(call["function"]["arguments"]) == ARGS
    assert obj["usage"]["total_tokens"] == obj["usage"]["prompt_tokens"] + obj["usage"]["completion_tokens"]


def test_keep_alive_serves_several_requests_on_one_connection(sv):
    c = http.client.HTTPConnection("127.0.0.1", sv.port, timeout=60)
    for _ in range(3):
        c.request("POST", "/v1/chat/completions", json.dumps(stream_body(message("text"))),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and b"data: [DONE]" in r.read()
    sock_before = c.sock
    c.request("POST", "/v1/chat/completions", json.dumps(stream_body(message("rate_limited_always"))))
    r = c.getresponse()
    assert r.status == 429 and r.getheader("Retry-After") == "1"
    assert json.loads(r.read())["error"]["code"] == "rate_limit_exceeded"
    assert c.sock is sock_before   # the same connection throughout
    c.close()
    assert [e["n"] for e in sv.requests()] == [1, 2, 3, 4]


def test_log_and_reset(sv):
    run_parse(sv.base_url, message("rate_limited_always"))
    run_parse(sv.base_url, message("tool_split"))
    log = sv.requests()
    assert [(e["n"], e["scenario"], e["status"]) for e in log] == [(1, "rate_limited_always", 429),
                                                                  (2, "tool_split", 200)]
    assert set(log[1]) >= {"n", "scenario", "step", "body", "headers", "status", "client_closed", "completed",
                           "call_ids"}
    assert log[1]["body"]["messages"][0]["content"] == message("tool_split")
    assert log[1]["headers"]["content-type"] == "application/json"
    # reset clears the log and the retry counters: rate_limited starts over with 429s
    run_parse(sv.base_url, message("rate_limited"))
    sv.reset()
    assert sv.requests() == []
    assert run_parse(sv.base_url, message("rate_limited"))["error"] == "429"
    assert [e["n"] for e in sv.requests()] == [1]


def read_until(sock, marker, limit=1 << 20):
    buf = b""
    while marker not in buf and len(buf) < limit:
        b = sock.recv(65536)
        if not b:
            break
        buf += b
    return buf


@pytest.mark.parametrize("scenario", ["stall", "slow"])
def test_client_closed_is_noticed(sv, scenario):
    body = json.dumps(stream_body(message(scenario))).encode()
    s = socket.create_connection(("127.0.0.1", sv.port), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert b"data: {" in read_until(s, b"data: {")
    s.close()
    (entry,) = sv.wait_requests(lambda log: log and log[0]["client_closed"])
    assert entry["scenario"] == scenario and not entry["completed"] and entry["status"] == 200
    sv.wait_requests(lambda log: "(%s step 0): client_closed" % scenario in sv.stderr_text())
    # the stand-in is unharmed
    out = run_parse(sv.base_url, message("text"))
    assert out["text"] == ANSWER


def test_drop_closes_without_terminator(sv):
    s = socket.create_connection(("127.0.0.1", sv.port), timeout=60)
    body = json.dumps(stream_body(message("drop"))).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    buf = read_until(s, b"\x00never")
    s.close()
    assert buf.count(b"data: {") == 2 and b"[DONE]" not in buf and not buf.endswith(b"0\r\n\r\n")
    (entry,) = sv.wait_requests(lambda log: log)
    assert not entry["completed"] and not entry["client_closed"]


def test_log_limit_keeps_the_newest_entries():
    with Standin(extra_args=("--log-limit", "2")) as s:
        for i in range(4):
            c, r = post(s, stream_body("question %d" % i))
            assert r.status == 200 and r.read().endswith(b"data: [DONE]\n\n")
            c.close()
        log = s.requests()
        assert [e["n"] for e in log] == [3, 4]
        assert log[1]["body"]["messages"][0]["content"] == "question 3"


def test_reset_of_an_idle_keep_alive_connection_is_no_error(sv):
    # A client that closes with unread data sends RST; the handler waiting for the
    # connection's next request must take it as a close (this was logged as an error).
    body = json.dumps(stream_body(message("text"))).encode()
    s = socket.create_connection(("127.0.0.1", sv.port), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    assert b"data: [DONE]" in read_until(s, b"data: [DONE]")
    sv.wait_requests(lambda log: log and log[0]["completed"])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    assert run_parse(sv.base_url, message("text"))["text"] == ANSWER   # the stand-in serves on
    # (the sv fixture's teardown fails on any "error while serving" in the stand-in's stderr)
