"""A fast MCP stdio server for bench/bench_mcp_client.sh: its one tool `noop` answers at once, with the server's own
time for the call (from the request line read to just before the answer is written: parsing and building
the answer) as structuredContent {"server_us"}."""
import json
import sys
import time


def main():
    out = sys.stdout
    for line in sys.stdin:
        t0 = time.perf_counter_ns()
        msg = json.loads(line)
        mid = msg.get("id")
        method = msg.get("method")
        if method == "initialize":
            res = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                   "serverInfo": {"name": "timed", "version": "1"}}
        elif method == "tools/list":
            res = {"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            head = '{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"ok"}],' % mid
            us = (time.perf_counter_ns() - t0) / 1000.0
            out.write(head + '"structuredContent":{"server_us":%.1f}}}\n' % us)
            out.flush()
            continue
        elif mid is None:
            continue
        else:
            res = {}
        out.write(json.dumps({"jsonrpc": "2.0", "id": mid, "result": res}) + "\n")
        out.flush()


main()
