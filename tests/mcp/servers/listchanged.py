"""Its `grow` tool adds a tool named in its arguments and sends notifications/tools/list_changed;
`shrink` removes one."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

srv = None


def grow(args, msg):
    name = args["name"]
    srv.tools[name] = ({"description": "added at run time"}, lambda a, m: mcplib.text("I am " + name))
    srv.notify("notifications/tools/list_changed")
    return mcplib.text("added " + name)


def shrink(args, msg):
    srv.tools.pop(args["name"], None)
    srv.notify("notifications/tools/list_changed")
    return mcplib.text("removed")


tools = mcplib.standard_tools()
tools["grow"] = ({"inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}, grow)
tools["shrink"] = ({"inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}, shrink)
srv = mcplib.Server("listchanged", tools)
srv.serve()
