"""The openai provider (SPEC §11, docs/protocol.md "The openai provider") against the OpenAI stand-in
(tests/standin), through llm_probe: one llm_chat of the real provider from the command line (built next to
AGENTD_BIN; tests/tools/llm_probe.c).  Each scenario checks what the probe reports (text, reasoning, tool
calls, finish, error code, usage) and what the stand-in saw (the request, the retries, a closed connection).
"""
import json
import os
import subprocess
import sys

import pytest

from agentd import AGENTD_BIN, SANITIZER_MARKERS, sanitizer_env

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "standin"))
from standin import MODEL, Standin  # noqa: E402

LLM_PROBE = os.path.join(os.path.dirname(os.path.abspath(AGENTD_BIN)), "llm_probe")
QUESTION = "What is the weather in Paris?"
ANSWER = 'Stand-in answer: you said "%s".' % QUESTION


def message(scenario, **markers):
    extra = "".join(" [[%s:%s]]" % (k, v) for k, v in markers.items())
    return "%s [[scenario:%s]]%s" % (QUESTION, scenario, extra)


@pytest.fixture(scope="module")
def standin():
    with Standin() as s:
        yield s


@pytest.fixture
def sv(standin):
    standin.reset()
    return standin


def probe(base_url, msg, *opts, api_key="sk-test", timeout=120):
    if not os.access(LLM_PROBE, os.X_OK):
        pytest.fail("llm_probe not found at %s (make build-test)" % LLM_PROBE, pytrace=False)
    env = sanitizer_env()
    env.pop("OPENAI_API_KEY", None)
    if api_key is not None:
        env["OPENAI_API_KEY"] = api_key
    p = subprocess.run([LLM_PROBE] + list(opts) + [base_url, MODEL, msg], capture_output=True, env=env,
                       timeout=timeout)
    err = p.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-4000:]
    assert p.returncode == 0, (p.returncode, err[-2000:])
    lines = [ln for ln in p.stdout.decode().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    out = json.loads(lines[0])
    out["stderr"] = err
    return out


def completions(sv):
    return [e for e in sv.requests() if not e.get("classify")]


def assert_ok_text(out):
    assert out["error"] is None, out
    assert out["finish"] == "stop"
    assert out["text"] == ANSWER
    assert out["tool_calls"] == []
    assert out["prompt_tokens"] >= 1 and out["completion_tokens"] >= 1


# ---------------------------------------------------------------- the request

def test_text_and_the_request_body(sv):
    out = probe(sv.base_url, message("text"))
    assert_ok_text(out)
    assert out["reasoning"] == ""
    (e,) = completions(sv)
    assert e["status"] == 200 and e["completed"] and not e["client_closed"]
    assert e["headers"]["authorization"] == "Bearer sk-test"
    b = e["body"]
    assert b["model"] == MODEL and b["stream"] is True and b["stream_options"] == {"include_usage": True}
    assert b["messages"] == [{"role": "user", "content": message("text")}]
    # the dotted registry name goes out under a legal wire name
    assert [t["type"] for t in b["tools"]] == ["function", "function"]
    assert [t["function"]["name"] for t in b["tools"]] == ["get_weather", "weather_forecast"]
    assert b["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert "tool_choice" not in b and "temperature" not in b and "max_tokens" not in b
    # usage as the stand-in computes it
    assert out["prompt_tokens"] == max(1, len(json.dumps(b["messages"])) // 4)


def test_no_api_key_sends_no_authorization(sv):
    out = probe(sv.base_url, message("text"), api_key=None)
    assert_ok_text(out)
    (e,) = completions(sv)
    assert "authorization" not in e["headers"]


@pytest.mark.parametrize("scenario", ["usage_null", "pings"])
def test_text_variants(sv, scenario):
    assert_ok_text(probe(sv.base_url, message(scenario)))


@pytest.mark.parametrize("scenario", ["reasoning_vllm", "reasoning_llamacpp"])
def test_reasoning(sv, scenario):
    out = probe(sv.base_url, message(scenario))
    assert_ok_text(out)
    assert out["reasoning"].startswith("Let me think")


# ---------------------------------------------------------------- tool calls

@pytest.mark.parametrize("scenario", ["tool_split", "ollama_tool"])
def test_one_tool_call(sv, scenario):
    out = probe(sv.base_url, message(scenario, args=json.dumps({"city": "Paris"})))
    assert out["error"] is None and out["finish"] == "tool_calls", out
    (e,) = completions(sv)
    assert out["tool_calls"] == [{"id": e["call_ids"][0], "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert out["text"] == ""


def test_a_dotted_tool_name_comes_back_under_its_own_name(sv):
    out = probe(sv.base_url, message("tool_split", tool="weather_forecast", args='{"days": 3}'))
    assert out["finish"] == "tool_calls", out
    assert [(c["name"], c["arguments"]) for c in out["tool_calls"]] == [("weather.forecast", {"days": 3})]


def test_multi_tool_in_index_order(sv):
    out = probe(sv.base_url, message("multi_tool"))
    assert out["finish"] == "tool_calls", out
    (e,) = completions(sv)
    assert [c["id"] for c in out["tool_calls"]] == e["call_ids"] and len(e["call_ids"]) == 2
    assert [c["name"] for c in out["tool_calls"]] == ["get_weather", "weather.forecast"]


def test_a_name_not_offered_passes_through(sv):
    out = probe(sv.base_url, message("bad_tool"))
    assert out["finish"] == "tool_calls", out
    assert [c["name"] for c in out["tool_calls"]] == ["no_such_tool"]


# ---------------------------------------------------------------- retries

def test_rate_limited_is_retried_after_retry_after(sv):
    out = probe(sv.base_url, message("rate_limited"))
    assert_ok_text(out)
    assert [e["status"] for e in completions(sv)] == [429, 429, 200]


def test_rate_limited_always(sv):
    out = probe(sv.base_url, message("rate_limited_always"))
    assert out["finish"] == "error" and out["error"] == "LLM_RATE_LIMITED", out
    assert [e["status"] for e in completions(sv)] == [429] * 4  # the call and 3 retries
    assert "429" in out["stderr"]


def test_error500_once_is_retried(sv):
    assert_ok_text(probe(sv.base_url, message("error500_once")))
    assert [e["status"] for e in completions(sv)] == [500, 200]


def test_error500_always(sv):
    out = probe(sv.base_url, message("error500_always"))
    assert out["finish"] == "error" and out["error"] == "LLM_UNAVAILABLE", out
    assert [e["status"] for e in completions(sv)] == [500] * 4


def test_unreachable_server_is_unavailable(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # a port nobody listens on (bound, never listening)
    port = s.getsockname()[1]
    try:
        out = probe("http://127.0.0.1:%d/v1" % port, message("text"))
    finally:
        s.close()
    assert out["finish"] == "error" and out["error"] == "LLM_UNAVAILABLE", out


def test_http_401_is_not_retried(tmp_path):
    with Standin(extra_args=("--api-key", "sk-right")) as s:
        out = probe(s.base_url, message("text"), api_key="sk-wrong")
        assert out["finish"] == "error" and out["error"] == "LLM_UNAVAILABLE", out
        assert [e["status"] for e in s.requests()] == [401]
        # the server's error.message, on one line
        assert "401" in out["stderr"] and "Incorrect API key" in out["stderr"]


# ---------------------------------------------------------------- broken streams

def test_drop_after_text(sv):
    out = probe(sv.base_url, message("drop"))
    assert out["finish"] == "error" and out["error"] == "LLM_UNAVAILABLE", out
    assert out["text"] and ANSWER.startswith(out["text"])


def test_malformed(sv):
    out = probe(sv.base_url, message("malformed"))
    assert out["finish"] == "error" and out["error"] == "LLM_BAD_RESPONSE", out
    assert len(completions(sv)) == 1  # a bad stream is not retried


def test_huge_line(sv):
    out = probe(sv.base_url, message("huge_line"))
    assert out["finish"] == "error" and out["error"] == "LLM_BAD_RESPONSE", out
    sv.wait_requests(lambda log: log and (log[0]["client_closed"] or log[0]["completed"]))


def test_huge_stream_passes_max_output(sv):
    out = probe(sv.base_url, message("huge"))
    assert out["finish"] == "error" and out["error"] == "LLM_BAD_RESPONSE", out
    assert "max-output" in out["stderr"]
    sv.wait_requests(lambda log: log and log[0]["client_closed"])


def test_stall_times_out_and_closes(sv):
    out = probe(sv.base_url, message("stall"), "--timeout", "2")
    assert out["finish"] == "error" and out["error"] == "LLM_TIMEOUT", out
    log = sv.wait_requests(lambda log: log and log[0]["client_closed"])
    assert len(log) == 1


def test_cancel_closes_the_connection(sv):
    out = probe(sv.base_url, message("slow"), "--cancel-after-ms", "400")
    assert out["finish"] == "cancelled" and out["error"] is None, out
    assert out["cancel_to_return_ms"] >= 0
    assert ANSWER.startswith(out["text"]) and out["text"] != ANSWER
    log = sv.wait_requests(lambda log: log and log[0]["client_closed"])
    assert not log[0]["completed"]


# ---------------------------------------------------------------- edges the stand-in has no scenario for

class Scripted:
    """A one-shot HTTP server that answers each request with the next of `answers` (raw bytes) and then
    closes the connection, or holds it open (hold=True) until the client closes it."""

    def __init__(self, answers, hold=False):
        import socket
        import threading
        self.answers = list(answers)
        self.hold = hold
        self.requests = []
        self.client_closed = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.base_url = "http://127.0.0.1:%d/v1" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            b = c.recv(65536)
            if not b:
                return None
            data += b
        head, body = data.split(b"\r\n\r\n", 1)
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(body) < n:
            body += c.recv(65536)
        return head, body

    def _serve(self):
        while self.answers:
            c, _ = self.sock.accept()
            c.settimeout(60)
            req = self._read_request(c)
            if req is None:
                c.close()
                continue
            self.requests.append(req)
            c.sendall(self.answers.pop(0))
            if self.hold:
                try:
                    if c.recv(1) == b"":
                        self.client_closed.set()
                except OSError:
                    self.client_closed.set()
            c.close()

    def close(self):
        self.sock.close()


def sse_answer(events, end=b"0\r\n\r\n", status=b"200 OK", extra_headers=b""):
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            + extra_headers + b"\r\n" + body + end)


def chunk(delta, finish=None):
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() \
        + b"\n\n"


def test_done_then_held_open_is_a_whole_answer():
    s = Scripted([sse_answer([chunk({"content": "held"}), chunk({}, "stop"), b"data: [DONE]\n\n"], end=b"")],
                 hold=True)
    try:
        out = probe(s.base_url, "hi", "--timeout", "30")
        assert out["error"] is None and out["finish"] == "stop" and out["text"] == "held", out
        assert s.client_closed.wait(30)
    finally:
        s.close()


def test_finish_without_done_is_accepted():
    s = Scripted([sse_answer([chunk({"content": "a"}), chunk({}, "length")])])
    try:
        out = probe(s.base_url, "hi")
        assert out["error"] is None and out["finish"] == "length" and out["text"] == "a", out
    finally:
        s.close()


def test_a_clean_end_without_done_or_finish_is_a_bad_response():
    s = Scripted([sse_answer([chunk({"content": "a"})])])
    try:
        out = probe(s.base_url, "hi")
        assert out["finish"] == "error" and out["error"] == "LLM_BAD_RESPONSE", out
        assert out["text"] == "a"
        assert len(s.requests) == 1
    finally:
        s.close()


def test_retry_after_as_an_http_date_and_an_error_event_before_any_text():
    import email.utils
    import time
    date = email.utils.formatdate(time.time() + 1, usegmt=True).encode()
    limited = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: " + date
               + b"\r\nContent-Length: 44\r\n\r\n" + b'{"error":{"message":"slow down","type":"x"}}')
    failed = sse_answer([b'data: {"error":{"message":"overloaded"}}\n\n'])
    good = sse_answer([chunk({"content": "ok"}), chunk({}, "stop"), b"data: [DONE]\n\n"])
    s = Scripted([limited, failed, good])
    try:
        out = probe(s.base_url, "hi")
        assert out["error"] is None and out["text"] == "ok", out
        assert len(s.requests) == 3
        head, body = s.requests[0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1")
        assert b"\r\nexpect:" not in head.lower()
        assert json.loads(body)["model"] == MODEL
    finally:
        s.close()
