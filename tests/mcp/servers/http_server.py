"""A Streamable HTTP MCP server (MCP 2025-11-25 "Transports") for agentd's client tests, misbehaving on request.

  /usr/bin/python3 http_server.py [--port N]    prints `listening on PORT` once bound

POST /mcp: initialize answers JSON with a fresh Mcp-Session-Id; every other POST needs a live session (else 404);
notifications get 202.  tools/call of
  echo     answers as an SSE stream: a data line that is no JSON, a progress notification, then the answer;
  huge     answers a 3 MiB JSON body;
  resume   sends one SSE event (id r1) and ends the stream without the answer; a GET with Last-Event-ID: r1
           then gets the answer (event id r2);
  forget   answers, then forgets every session (the next request with one gets 404);
  badreq   answers HTTP 400 with a JSON-RPC error for the call's id (an answer, not a lost session).
GET /mcp without Last-Event-ID: 405 (no server stream).  DELETE /mcp: 200.  Every request is appended as one
JSON line {"method","path","session","last_event_id","protocol_version","accept","body"} to $MCP_TEST_LOG.
"""
import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SESSIONS = set()
PENDING = {}  # session -> answer JSON of a `resume` call
COUNTER = [0]

TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "huge", "inputSchema": {"type": "object"}},
    {"name": "resume", "inputSchema": {"type": "object"}},
    {"name": "forget", "inputSchema": {"type": "object"}},
    {"name": "badreq", "inputSchema": {"type": "object"}},
]


def text(t):
    return {"content": [{"type": "text", "text": t}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _log(self, body):
        path = os.environ.get("MCP_TEST_LOG")
        if not path:
            return
        rec = {"method": self.command, "path": self.path, "session": self.headers.get("Mcp-Session-Id"),
               "last_event_id": self.headers.get("Last-Event-ID"),
               "protocol_version": self.headers.get("MCP-Protocol-Version"),
               "accept": self.headers.get("Accept"), "body": body}
        with LOCK, open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _send(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        if body or status != 202:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, headers=()):
        self._send(200, json.dumps(obj).encode(), headers=headers)

    def _sse(self, events, close=True):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for ev_id, data in events:
            chunk = ""
            if ev_id:
                chunk += "id: %s\n" % ev_id
            chunk += "data: %s\n\n" % data
            self.wfile.write(chunk.encode())
            self.wfile.flush()
        self.close_connection = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        try:
            msg = json.loads(raw)
        except ValueError:
            self._log(None)
            return self._send(400, b'{"error":"bad json"}')
        self._log(msg)
        sid = self.headers.get("Mcp-Session-Id")
        method = msg.get("method")
        if method == "initialize":
            with LOCK:
                COUNTER[0] += 1
                sid = "sess-%d" % COUNTER[0]
                SESSIONS.add(sid)
            return self._json({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "py-http", "version": "1"}}}, headers=[("Mcp-Session-Id", sid)])
        with LOCK:
            live = sid in SESSIONS
        if not live:
            return self._send(404, b'{"jsonrpc":"2.0","error":{"code":-32001,"message":"session not found"}}')
        if "id" not in msg:
            return self._send(202)
        mid = msg["id"]
        if method == "tools/list":
            return self._json({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
        if method != "tools/call":
            return self._json({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no"}})
        name = msg["params"]["name"]
        args = msg["params"].get("arguments") or {}
        if name == "echo":
            return self._sse([(None, "this is not json"),
                              (None, json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                                 "params": {"progressToken": 1, "progress": 1}})),
                              ("e1", json.dumps({"jsonrpc": "2.0", "id": mid,
                                                 "result": text("echo: " + args.get("text", ""))}))])
        if name == "huge":
            return self._json({"jsonrpc": "2.0", "id": mid, "result": text("x" * (3 << 20))})
        if name == "resume":
            with LOCK:
                PENDING[sid] = {"jsonrpc": "2.0", "id": mid, "result": text("resumed")}
            return self._sse([("r1", json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                                 "params": {"progressToken": 1, "progress": 1}}))])
        if name == "badreq":
            body = json.dumps({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "bad arguments"}})
            return self._send(400, body.encode())
        if name == "forget":
            self._json({"jsonrpc": "2.0", "id": mid, "result": text("forgotten")})
            with LOCK:
                SESSIONS.clear()
            return
        return self._json({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool"}})

    def do_GET(self):
        self._log(None)
        sid = self.headers.get("Mcp-Session-Id")
        last = self.headers.get("Last-Event-ID")
        with LOCK:
            live = sid in SESSIONS
            answer = PENDING.pop(sid, None) if last == "r1" else None
        if not live:
            return self._send(404, b"{}")
        if answer is None:
            return self._send(405, b"{}", headers=[("Allow", "POST, DELETE")])
        return self._sse([("r2", json.dumps(answer))])

    def do_DELETE(self):
        self._log(None)
        with LOCK:
            SESSIONS.discard(self.headers.get("Mcp-Session-Id"))
        self._send(200, b"{}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("listening on %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
