"""A well-behaved MCP server: standard tools, tools/list in pages of 2, a destructive tool, a tool
whose schema agentd refuses (skipped), a tool that never answers, one whose answer is over 1 MiB, and `pwd`/`env`
to show the working directory and environment agentd gave it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

tools = mcplib.standard_tools()
tools["wipe"] = ({"description": "Delete everything", "annotations": {"destructiveHint": True}},
                 lambda a, m: mcplib.text("wiped"))
tools["badschema"] = ({"inputSchema": {"type": "object", "properties": {"x": {"type": "string", "pattern": "(("}}}},
                      lambda a, m: mcplib.text("never"))
tools["hang"] = ({"description": "Never answers"}, lambda a, m: None)
tools["huge"] = ({"description": "Answers 3 MiB"}, lambda a, m: mcplib.text("x" * (3 << 20)))
tools["pwd"] = ({"description": "The working directory"}, lambda a, m: mcplib.text(os.getcwd()))
tools["env"] = ({"description": "An environment variable", "inputSchema": {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    lambda a, m: mcplib.text(os.environ.get(a["name"], "<unset>")))
tools["big"] = ({"description": "Answers 512 KiB"}, lambda a, m: mcplib.text("y" * (512 << 10)))
mcplib.Server("good", tools, page_size=2).serve()
