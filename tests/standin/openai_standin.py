#!/usr/bin/python3
"""A stand-in for an OpenAI-compatible chat-completions server (issue 14).

agentd's tests and benchmarks point `--llm openai` at this instead of a real
provider.  It speaks the real wire format (checked by tests/e2e/test_standin.py
with the official `openai` npm client) and misbehaves on request, one scenario
per marker.  The protocol — endpoints, scenarios, markers, the request log —
is documented in tests/standin/README.md; keep the two in step.

Python standard library only.  Run:
    /usr/bin/python3 tests/standin/openai_standin.py --port 0 [--api-key K]
It prints exactly one line `standin listening on http://127.0.0.1:PORT` once
bound, then serves until killed.  Diagnostics go to stderr.
"""
import argparse
import hashlib
import json
import os
import re
import secrets
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 << 20            # a request body larger than this is refused (413)
STALL_LIMIT_S = 600            # `stall` holds the socket at most this long
HUGE_TOTAL = 10 * 1024 * 1024  # `huge`: bytes of content
HUGE_DELTA = 64 * 1024         # `huge`: bytes per content delta
HUGE_LINE = (1 << 20) + 4096   # `huge_line`: content bytes in the one long data: line
CLASSIFY_TOOL = "classify_intent"
SCENARIOS = {
    "text", "tool_split", "multi_tool", "ollama_tool", "reasoning_vllm", "reasoning_llamacpp",
    "usage_null", "pings", "rate_limited", "rate_limited_always", "error500_once", "error500_always",
    "drop", "stall", "slow", "malformed", "huge_line", "huge", "loop_forever", "bad_tool", "approval",
}
REASONING = ["Let me think about the question. ", "The stand-in weighs what it was told. ",
             "It settles on a deterministic answer."]


def log(msg):
    sys.stderr.write("standin: %s\n" % msg)
    sys.stderr.flush()


class ClientClosed(Exception):
    """The client went away before the response was complete."""


# ---------------------------------------------------------------- state

class State:
    """The request log and the retry counters, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.attempts = {}
        self.count = 0
        self.log_limit = 0      # --log-limit: keep only the newest N entries (0: all)
        self.issued = set()     # every tool call id this stand-in sent (the step rule counts turns of its own)

    def reset(self):
        with self.lock:
            self.entries = []
            self.attempts = {}
            self.count = 0
            self.issued = set()

    def new_entry(self, **fields):
        with self.lock:
            self.count += 1
            entry = dict(n=self.count, scenario=None, step=0, body=None, headers={},
                         status=None, client_closed=False, completed=False, call_ids=[])
            entry.update(fields)
            self.entries.append(entry)
            if self.log_limit and len(self.entries) > self.log_limit:
                del self.entries[:len(self.entries) - self.log_limit]
            return entry

    def update(self, entry, **fields):
        with self.lock:
            entry.update(fields)

    def add_call_id(self, entry, call_id):
        with self.lock:
            entry["call_ids"].append(call_id)
            self.issued.add(call_id)

    def own_turns(self, messages):
        """How many assistant turns in messages carry a tool call this stand-in issued."""
        with self.lock:
            n = 0
            for m in messages:
                if not isinstance(m, dict) or m.get("role") != "assistant":
                    continue
                calls = m.get("tool_calls")
                if isinstance(calls, list) and any(isinstance(c, dict) and c.get("id") in self.issued
                                                   for c in calls):
                    n += 1
            return n

    def snapshot(self):
        with self.lock:
            return json.dumps(self.entries)

    def attempt(self, key):
        """How many earlier requests had this (scenario, step, messages) key."""
        with self.lock:
            n = self.attempts.get(key, 0)
            self.attempts[key] = n + 1
            return n


STATE = State()


# ---------------------------------------------------------------- request analysis

def content_text(content):
    """A message's text whether content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict)
                       and isinstance(p.get("text"), str))
    return ""


def last_user_index(messages):
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == "user":
            return i
    return -1


def parse_markers(text):
    """[[scenario:X]] [[tool:X]] [[args:{json}]] [[chunks:N]] [[interval_ms:N]] [[classify:X]]."""
    m = {}
    for name in ("scenario", "tool", "classify"):
        r = re.search(r"\[\[%s:([^\]]*)\]\]" % name, text)
        if r:
            m[name] = r.group(1).strip()
    for name in ("chunks", "interval_ms"):
        r = re.search(r"\[\[%s:(\d+)\]\]" % name, text)
        if r:
            m[name] = int(r.group(1))
    pos = text.find("[[args:")
    if pos >= 0:
        # raw_decode, not a regex: the JSON may itself contain "]]".
        try:
            obj, end = json.JSONDecoder().raw_decode(text, pos + len("[[args:"))
            if text.startswith("]]", end) and isinstance(obj, dict):
                m["args"] = obj
        except ValueError:
            pass
    return m


def strip_markers(text):
    pos = text.find("[[args:")
    if pos >= 0:
        try:
            _, end = json.JSONDecoder().raw_decode(text, pos + len("[[args:"))
            if text.startswith("]]", end):
                text = text[:pos] + text[end + 2:]
        except ValueError:
            pass
    return re.sub(r"\[\[[a-z_]+:[^\]]*\]\]", "", text).strip()


def offered_tools(body):
    names = []
    for t in body.get("tools") or []:
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            name = t["function"].get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def forces_classify(body):
    tc = body.get("tool_choice")
    return (isinstance(tc, dict) and isinstance(tc.get("function"), dict)
            and tc["function"].get("name") == CLASSIFY_TOOL)


def last_tool_result(messages, start):
    for msg in reversed(messages[start + 1:]):
        if isinstance(msg, dict) and msg.get("role") == "tool":
            return content_text(msg.get("content"))
    return None


def answer_text(messages, ui, user_text):
    """The deterministic final answer: quotes the user's words and, when the
    conversation has a tool result, its first 200 bytes and whether it was an error."""
    said = strip_markers(user_text)[:120]
    text = "Stand-in answer: you said \"%s\"." % said
    result = last_tool_result(messages, ui)
    if result is not None:
        is_error = False
        try:
            obj = json.loads(result)
            is_error = isinstance(obj, dict) and "error" in obj
        except ValueError:
            pass
        quoted = result.encode("utf-8")[:200].decode("utf-8", "ignore")
        text += " The tool %s: %s" % ("reported an error" if is_error else "returned", quoted)
    return text


def compact(obj):
    """JSON as OpenAI sends it: no spaces after separators."""
    return json.dumps(obj, separators=(",", ":")).encode()


def new_call_id():
    return "call_" + secrets.token_hex(12)


def split_pieces(s, n):
    """s in n contiguous pieces (some may be empty when s is shorter than n)."""
    n = max(1, n)
    size, extra = divmod(len(s), n)
    out, pos = [], 0
    for i in range(n):
        k = size + (1 if i < extra else 0)
        out.append(s[pos:pos + k])
        pos += k
    return out


# ---------------------------------------------------------------- the HTTP handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-standin/1"
    sys_version = ""

    def handle(self):
        # A client may reset an idle keep-alive connection (closing with unread
        # data sends RST): that is the end of the connection, not an error.
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.close_connection = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # the request log is the record; keep stderr quiet
        pass

    # ---- low-level writing

    def _send_raw(self, data):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            raise ClientClosed() from e

    def _chunk(self, data):
        if data:
            self._send_raw(b"%x\r\n%s\r\n" % (len(data), data))

    def _client_gone(self):
        """True when the peer has closed its side (EOF or reset on a non-blocking peek)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            data = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return data == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _pause(self, seconds):
        """Sleep between chunks, noticing a client that leaves meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            if self._client_gone():
                raise ClientClosed()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _json_response(self, status, obj, extra_headers=()):
        body = compact(obj)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self._send_raw(body)

    def _error(self, status, message, etype, code=None, extra_headers=()):
        self._json_response(status, {"error": {"message": message, "type": etype, "param": None,
                                               "code": code}}, extra_headers)

    # ---- routing

    def do_GET(self):
        try:
            if self.path.split("?")[0] == "/_standin/requests":
                body = STATE.snapshot().encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self._send_raw(body)
            elif self.path.split("?")[0] == "/v1/models":
                self._json_response(200, {"object": "list", "data": [
                    {"id": "standin-model", "object": "model", "created": 0, "owned_by": "standin"}]})
            else:
                self._error(404, "no such path", "invalid_request_error")
        except ClientClosed:
            self.close_connection = True

    def do_POST(self):
        path = self.path.split("?")[0]
        try:
            raw = self._read_body()
            if raw is None:
                return
            if path == "/_standin/reset":
                STATE.reset()
                self._json_response(200, {"ok": True})
            elif path == "/v1/chat/completions":
                self._completions(raw)
            else:
                self._error(404, "no such path", "invalid_request_error")
        except ClientClosed:
            self.close_connection = True

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        else:
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = -1
            if 0 <= n <= MAX_BODY:
                return self.rfile.read(n)
        self.close_connection = True
        self._error(413, "request body too large or malformed", "invalid_request_error")
        return None

    # ---- the completions endpoint

    def _completions(self, raw):
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = STATE.new_entry(headers=headers)
        self.entry = entry
        try:
            self._completions_inner(raw, entry)
        except ClientClosed:
            STATE.update(entry, client_closed=True)
            log("request %d (%s step %s): client_closed" % (entry["n"], entry["scenario"], entry["step"]))
            raise

    def _completions_inner(self, raw, entry):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            STATE.update(entry, body=raw.decode("utf-8", "replace"), status=400)
            self._error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
            STATE.update(entry, completed=True)
            return
        messages = body["messages"]
        ui = last_user_index(messages)
        user_text = content_text(messages[ui].get("content")) if ui >= 0 else ""
        markers = parse_markers(user_text)
        scenario = markers.get("scenario", "text")
        # The step counts the assistant turns after the user's message that answer a tool call of ours: a
        # client may replay tool calls it made itself before asking (agentd sends its run's earlier calls,
        # e.g. triage's classification, as an assistant turn), and those are not rounds of this scenario.
        step = STATE.own_turns(messages[ui + 1:])
        classify = forces_classify(body)
        STATE.update(entry, body=body, scenario=scenario, step=step)
        if classify:
            STATE.update(entry, classify=True)

        want = self.server.api_key
        if want is not None and self.headers.get("Authorization", "") != "Bearer " + want:
            STATE.update(entry, status=401)
            self._error(401, "Incorrect API key provided. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                        "invalid_api_key")
            STATE.update(entry, completed=True)
            return
        if scenario not in SCENARIOS:
            STATE.update(entry, status=400)
            self._error(400, "standin: unknown scenario '%s'" % scenario, "invalid_request_error")
            STATE.update(entry, completed=True)
            return

        ctx = Reply(self, entry, body, messages, ui, user_text, markers, step)
        if classify:
            ctx.classification()
            return

        key = (scenario, step, hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest())
        attempt = STATE.attempt(key)
        if scenario == "rate_limited" and attempt < 2 or scenario == "rate_limited_always":
            STATE.update(entry, status=429)
            self._error(429, "Rate limit reached for standin-model: please try again in 1s.",
                        "requests", "rate_limit_exceeded", [("Retry-After", "1")])
            STATE.update(entry, completed=True)
            return
        if scenario == "error500_once" and attempt == 0 or scenario == "error500_always":
            STATE.update(entry, status=500)
            self._error(500, "The server had an error while processing your request. Sorry about that!",
                        "server_error")
            STATE.update(entry, completed=True)
            return
        ctx.run(scenario)


class Reply:
    """One completion response: collects the choices' pieces as events and writes
    them either as an SSE stream or, for "stream": false, as one chat.completion."""

    def __init__(self, h, entry, body, messages, ui, user_text, markers, step):
        self.h = h
        self.entry = entry
        self.body = body
        self.messages = messages
        self.ui = ui
        self.user_text = user_text
        self.markers = markers
        self.step = step
        self.stream = body.get("stream") is True
        so = body.get("stream_options")
        self.include_usage = isinstance(so, dict) and so.get("include_usage") is True
        self.model = body.get("model") if isinstance(body.get("model"), str) else "standin-model"
        self.id = "chatcmpl-" + secrets.token_hex(14)
        self.created = int(time.time())
        self.output_len = 0
        self.started = False
        self.role_every_delta = False
        # for "stream": false
        self.acc_content = []
        self.acc_reasoning = ([], None)
        self.acc_calls = []

    # ---- choosing what to say

    def tool_name(self, k=0):
        if "tool" in self.markers:
            return self.markers["tool"]
        names = [n for n in offered_tools(self.body) if n != CLASSIFY_TOOL]
        if not names:
            return None
        return names[k] if k < len(names) else names[0]

    def args_json(self):
        return json.dumps(self.markers.get("args", {}))

    def answer(self, min_len=0):
        text = answer_text(self.messages, self.ui, self.user_text)
        i = 0
        while len(text) < min_len:   # long streams (`slow`) need a character per chunk
            text += " more%d" % i
            i += 1
        return text

    def usage(self):
        prompt = max(1, len(json.dumps(self.messages)) // 4)
        completion = max(1, self.output_len // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # ---- the stream's framing

    def start(self, status=200):
        if self.started:
            return
        self.started = True
        h = self.h
        STATE.update(self.entry, status=status)
        h.send_response(status)
        if self.stream:
            h.send_header("Content-Type", "text/event-stream; charset=utf-8")
            h.send_header("Cache-Control", "no-cache")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.flush()

    def chunk_obj(self, delta, finish=None, usage_field=True):
        c = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
             "system_fingerprint": "fp_standin",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage and usage_field:
            c["usage"] = None   # OpenAI sends "usage": null on every chunk but the last
        return c

    def send_data(self, payload):
        self.h._chunk(b"data: " + payload + b"\n\n")

    def delta(self, delta, finish=None):
        if self.role_every_delta:
            delta = {"role": "assistant", **delta}
        for k in ("content", "reasoning", "reasoning_content"):
            if isinstance(delta.get(k), str):
                self.output_len += len(delta[k])
        for tc in delta.get("tool_calls", []):
            f = tc.get("function", {})
            self.output_len += len(f.get("name", "")) + len(f.get("arguments", ""))
        if self.stream:
            self.start()
            self.send_data(compact(self.chunk_obj(delta, finish)))
            return
        # accumulate for the non-streamed answer
        if isinstance(delta.get("content"), str):
            self.acc_content.append(delta["content"])
        for k in ("reasoning", "reasoning_content"):
            if isinstance(delta.get(k), str):
                self.acc_reasoning[0].append(delta[k])
                self.acc_reasoning = (self.acc_reasoning[0], k)
        for tc in delta.get("tool_calls", []):
            i = tc["index"]
            while len(self.acc_calls) <= i:
                self.acc_calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            c = self.acc_calls[i]
            if "id" in tc:
                c["id"] = tc["id"]
            f = tc.get("function", {})
            c["function"]["name"] += f.get("name", "")
            c["function"]["arguments"] += f.get("arguments", "")
        if finish:
            self.finish_reason = finish

    def ping(self):
        if self.stream:
            self.start()
            self.h._chunk(b": ping\n\n")

    def pause(self):
        ms = self.markers.get("interval_ms", self.default_interval)
        if ms > 0:
            self.h._pause(ms / 1000.0)

    def end(self, usage_choices=()):
        """The usage chunk (when asked for), [DONE], the chunked terminator."""
        if self.stream:
            if self.include_usage:
                u = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                     "model": self.model, "system_fingerprint": "fp_standin",
                     "choices": list(usage_choices) if usage_choices is not None else None,
                     "usage": self.usage()}
                self.send_data(compact(u))
            self.send_data(b"[DONE]")
            self.h._send_raw(b"0\r\n\r\n")
        else:
            msg = {"role": "assistant", "content": "".join(self.acc_content) if self.acc_content else None,
                   "refusal": None}
            if self.acc_reasoning[1]:
                msg[self.acc_reasoning[1]] = "".join(self.acc_reasoning[0])
            if self.acc_calls:
                msg["tool_calls"] = self.acc_calls
            obj = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                   "system_fingerprint": "fp_standin",
                   "choices": [{"index": 0, "message": msg, "logprobs": None,
                                "finish_reason": getattr(self, "finish_reason", "stop")}],
                   "usage": self.usage()}
            STATE.update(self.entry, status=200)
            self.h._json_response(200, obj)
        STATE.update(self.entry, completed=True)

    # ---- building blocks

    default_interval = 0

    def text(self, chunks=8, reasoning_key=None, pings=False):
        n = self.markers.get("chunks", chunks)
        text = self.answer(min_len=n)
        first = True
        if reasoning_key:
            for piece in REASONING:
                d = {reasoning_key: piece}
                if first:
                    d = {"role": "assistant", reasoning_key: piece}
                    first = False
                if pings:
                    self.ping()
                self.delta(d)
                self.pause()
        for piece in split_pieces(text, n):
            if pings:
                self.ping()
            d = {"content": piece}
            if first:
                d = {"role": "assistant", "content": piece}
                first = False
            self.delta(d)
            self.pause()
        if pings:
            self.ping()
        self.delta({}, "stop")

    def tool_calls(self, names_args, whole=False):
        """Tool calls as OpenAI streams them: per call a first fragment with id,
        type and name, then arguments pieces; several calls interleave."""
        calls = []
        for i, (name, args) in enumerate(names_args):
            cid = new_call_id()
            STATE.add_call_id(self.entry, cid)
            calls.append((i, cid, name, args))
        if whole:
            d = {"content": None,
                 "tool_calls": [{"index": i, "id": cid, "type": "function",
                                 "function": {"name": name, "arguments": args}}
                                for i, cid, name, args in calls]}
            self.delta(d)
            self.delta({}, "tool_calls")
            return
        first = True
        for i, cid, name, _ in calls:
            d = {"tool_calls": [{"index": i, "id": cid, "type": "function",
                                 "function": {"name": name, "arguments": ""}}]}
            if first:
                d = {"role": "assistant", "content": None, **d}
                first = False
            self.delta(d)
            self.pause()
        # arguments in ≥3 pieces each (the empty first fragment counts as one)
        pieces = {i: [p for p in split_pieces(args, max(2, min(6, len(args)))) if p]
                  for i, _, _, args in calls}
        while any(pieces.values()):
            for i, _, _, _ in calls:
                if pieces[i]:
                    self.delta({"tool_calls": [{"index": i, "function": {"arguments": pieces[i].pop(0)}}]})
                    self.pause()
        self.delta({}, "tool_calls")

    # ---- scenarios

    def classification(self):
        intent = self.markers.get("classify", "cost")
        if intent == "stall":   # holds the classification like sc_stall (cancel tests of classify_request)
            self.sc_stall()
            return
        if intent == "nonsense":
            self.delta({"role": "assistant", "content": "I am not sure"})
            self.delta({}, "stop")
        else:
            args = json.dumps({"intent": intent, "confidence": 0.9, "reasoning": "stand-in",
                               "keywords": ["cost"]})
            self.tool_calls([(CLASSIFY_TOOL, args)])
        self.end()

    def run(self, scenario):
        getattr(self, "sc_" + scenario)()

    def _tool_or_text(self, calls_fn):
        if self.tool_name() is None:   # no tool offered and none named: nothing to call
            self.text()
        else:
            calls_fn()
        self.end()

    def sc_text(self):
        self.text()
        self.end()

    sc_rate_limited = sc_rate_limited_always = sc_error500_once = sc_error500_always = sc_text

    def sc_tool_split(self):
        if self.step == 0:
            self._tool_or_text(lambda: self.tool_calls([(self.tool_name(), self.args_json())]))
        else:
            self.sc_text()

    def sc_loop_forever(self):
        self._tool_or_text(lambda: self.tool_calls([(self.tool_name(), self.args_json())]))

    def sc_approval(self):
        self.sc_tool_split()

    def sc_multi_tool(self):
        if self.step == 0:
            self._tool_or_text(lambda: self.tool_calls([(self.tool_name(0), self.args_json()),
                                                         (self.tool_name(1), self.args_json())]))
        else:
            self.sc_text()

    def sc_ollama_tool(self):
        self.role_every_delta = True
        if self.step == 0:
            self._tool_or_text(lambda: self.tool_calls([(self.tool_name(), self.args_json())], whole=True))
        else:
            self.sc_text()

    def sc_bad_tool(self):
        if self.step == 0:
            self.tool_calls([("no_such_tool", self.args_json())])
            self.end()
        elif self.step == 1:
            self._tool_or_text(lambda: self.tool_calls([(self.tool_name(), json.dumps({"from": "not a number"}))]))
        else:
            self.sc_text()

    def sc_reasoning_vllm(self):
        self.text(reasoning_key="reasoning")
        self.end()

    def sc_reasoning_llamacpp(self):
        self.text(reasoning_key="reasoning_content")
        self.end()

    def sc_usage_null(self):
        self.text()
        self.end(usage_choices=None)

    def sc_pings(self):
        self.text(pings=True)
        self.end()

    def sc_slow(self):
        self.default_interval = 50
        self.text(chunks=200)
        self.end()

    def sc_drop(self):
        text = self.answer()
        a, b = split_pieces(text, 2)
        self.delta({"role": "assistant", "content": a})
        self.delta({"content": b})
        if not self.stream:
            # a body shorter than its Content-Length, then the close
            body = json.dumps({"id": self.id, "object": "chat.completion"}).encode()
            STATE.update(self.entry, status=200)
            self.h.send_response(200)
            self.h.send_header("Content-Type", "application/json")
            self.h.send_header("Content-Length", str(len(body) + 100))
            self.h.end_headers()
            self.h._send_raw(body)
        self._hard_close()

    def _hard_close(self):
        """Close the connection mid-response: no [DONE], no chunked terminator."""
        self.h.close_connection = True
        try:
            self.h.wfile.flush()
            self.h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        log("request %d: dropped the connection on purpose" % self.entry["n"])

    def sc_stall(self):
        self.stream = True   # a stall only makes sense as a stream; headers go out either way
        self.delta({"role": "assistant", "content": "Stand-in answer: "})
        deadline = time.monotonic() + STALL_LIMIT_S
        sock = self.h.connection
        while time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], 1.0)
            if r:
                if self.h._client_gone():
                    raise ClientClosed()
                time.sleep(0.1)   # the client sent bytes but is still there
        self._hard_close()

    def sc_malformed(self):
        if not self.stream:
            STATE.update(self.entry, status=200)
            self.h.send_response(200)
            self.h.send_header("Content-Type", "application/json")
            self.h.send_header("Content-Length", "10")
            self.h.end_headers()
            self.h._send_raw(b"{not json}")
            STATE.update(self.entry, completed=True)
            return
        self.delta({"role": "assistant", "content": "Stand-in answer: "})
        # The bad line is the only fault: the stream is otherwise well terminated.
        self.send_data(b"{not json}")
        self.send_data(b"[DONE]")
        self.h._send_raw(b"0\r\n\r\n")
        STATE.update(self.entry, completed=True)

    def sc_huge_line(self):
        self.delta({"role": "assistant", "content": "x" * HUGE_LINE})
        self.delta({}, "stop")
        self.end()

    def sc_huge(self):
        piece = ("0123456789abcdef" * (HUGE_DELTA // 16))[:HUGE_DELTA]
        for i in range(HUGE_TOTAL // HUGE_DELTA):
            self.delta({"role": "assistant", "content": piece} if i == 0 else {"content": piece})
        self.delta({}, "stop")
        self.end()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024   # benchmarks open many connections at once

    def handle_error(self, request, client_address):
        # A handler thread's failure is logged, never fatal to the stand-in.
        log("error while serving %s: %r" % (client_address, sys.exc_info()[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (401 otherwise)")
    ap.add_argument("--log-limit", type=int, default=0,
                    help="keep only the newest N request-log entries (long benchmarks; default: all)")
    args = ap.parse_args(argv)
    STATE.log_limit = max(0, args.log_limit)
    srv = Server((args.host, args.port), Handler)
    srv.api_key = args.api_key
    port = srv.server_address[1]
    sys.stdout.write("standin listening on http://%s:%d\n" % (args.host, port))
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
