"""Its `huge` tool answers 3 MiB on one line, id first; `hugetail` the same with the id last
(as Node's SDK writes it); `bigline` sends a 2 MiB notification line; all else is normal."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

srv = None


def hugetail(args, msg):
    body = json.dumps({"result": mcplib.text("z" * (3 << 20)), "jsonrpc": "2.0", "id": msg["id"]})
    srv.write_raw(body + "\n")
    return None


def bigline(args, msg):
    srv.notify("notifications/message", {"level": "info", "data": "q" * (2 << 20)})
    return mcplib.text("after the big line")


tools = mcplib.standard_tools()
tools["huge"] = ({"description": "3 MiB answer"}, lambda a, m: mcplib.text("x" * (3 << 20)))
tools["hugetail"] = ({"description": "3 MiB answer, id last"}, hugetail)
tools["bigline"] = ({"description": "2 MiB notification, then an answer"}, bigline)
srv = mcplib.Server("huge", tools)
srv.serve()
