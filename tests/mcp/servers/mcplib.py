"""A small MCP stdio server for agentd's client tests (tests/e2e/test_mcp_client.py).

Newline-delimited JSON-RPC on stdin/stdout (MCP revision 2025-11-25).  Each test
server (good.py, garbage.py, ...) builds a Server with its tools and quirks.
Tool calls run on their own threads, so a hanging call does not stop others,
and notifications/cancelled is honoured.  Every request and notification the
server receives is appended, one JSON line each, to $MCP_TEST_LOG when set, so
a test can see what agentd sent (notifications/cancelled, the initialize).
"""
import json
import os
import sys
import threading
import time

VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")


class Server:
    def __init__(self, name="test", tools=None, page_size=0, answer_initialize=True, version=None):
        self.name = name
        self.tools = dict(tools or {})  # name -> (spec dict, handler(args, call) -> result dict)
        self.page_size = page_size
        self.answer_initialize = answer_initialize
        self.version = version
        self.out_lock = threading.Lock()
        self.cancelled = set()
        self.log_path = os.environ.get("MCP_TEST_LOG")

    # -- output ------------------------------------------------------------
    def write_raw(self, text):
        with self.out_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def send(self, msg):
        self.write_raw(json.dumps(msg) + "\n")

    def notify(self, method, params=None):
        m = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            m["params"] = params
        self.send(m)

    def log(self, msg):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(msg) + "\n")

    # -- hooks a test server may replace -------------------------------------
    def on_initialized(self):
        pass

    def before_answer(self, msg):
        pass

    # -- protocol ------------------------------------------------------------
    def tool_specs(self):
        out = []
        for name, (spec, _) in self.tools.items():
            s = {"name": name, "inputSchema": {"type": "object"}}
            s.update(spec)
            out.append(s)
        return out

    def handle(self, msg):
        self.log(msg)
        method = msg.get("method")
        mid = msg.get("id")
        if method == "initialize":
            if not self.answer_initialize:
                return
            asked = msg.get("params", {}).get("protocolVersion")
            version = self.version or (asked if asked in VERSIONS else VERSIONS[0])
            self.answer(msg, {"protocolVersion": version, "capabilities": {"tools": {"listChanged": True}},
                              "serverInfo": {"name": self.name, "version": "1.0"}})
        elif method == "notifications/initialized":
            self.on_initialized()
        elif method == "tools/list":
            specs = self.tool_specs()
            start = int(msg.get("params", {}).get("cursor") or 0)
            if self.page_size:
                page, nxt = specs[start:start + self.page_size], start + self.page_size
                res = {"tools": page}
                if nxt < len(specs):
                    res["nextCursor"] = str(nxt)
            else:
                res = {"tools": specs}
            self.answer(msg, res)
        elif method == "tools/call":
            name = msg.get("params", {}).get("name")
            args = msg.get("params", {}).get("arguments", {})
            if name not in self.tools:
                self.send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool " + str(name)}})
                return
            handler = self.tools[name][1]
            threading.Thread(target=self.run_call, args=(msg, handler, args), daemon=True).start()
        elif method == "notifications/cancelled":
            self.cancelled.add(msg.get("params", {}).get("requestId"))
        elif method == "ping":
            self.answer(msg, {})
        elif mid is not None:
            self.send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no method " + str(method)}})

    def run_call(self, msg, handler, args):
        try:
            res = handler(args, msg)
        except Exception as e:  # a tool's bug is a tool error
            res = {"content": [{"type": "text", "text": "exception: %s" % e}], "isError": True}
        if res is None or msg.get("id") in self.cancelled:
            return
        self.answer(msg, res)

    def answer(self, msg, result):
        self.before_answer(msg)
        self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def serve(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            self.handle(msg)
        # stdin closed: the client is done with us
        os._exit(0)


def text(t):
    return {"content": [{"type": "text", "text": t}]}


def standard_tools():
    """The tools every test server offers."""
    def echo(args, msg):
        return text("echo: " + args.get("text", ""))

    def add(args, msg):
        s = args["a"] + args["b"]
        return {"content": [{"type": "text", "text": str(s)}], "structuredContent": {"sum": s}}

    def fail(args, msg):
        return {"content": [{"type": "text", "text": "it failed on purpose"}], "isError": True}

    def sleep(args, msg):
        time.sleep(float(args.get("seconds", 1)))
        return text("slept")

    return {
        "echo": ({"description": "Echo the text back", "inputSchema": {
            "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}, echo),
        "add": ({"description": "Add two numbers", "inputSchema": {
            "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"]}}, add),
        "fail": ({"description": "Always an error result"}, fail),
        "sleep": ({"description": "Sleep for a while", "inputSchema": {
            "type": "object", "properties": {"seconds": {"type": "number"}}}}, sleep),
    }
