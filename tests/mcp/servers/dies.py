"""Dies in the middle of a call of its `die` tool (exit status 3, no answer)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402


def die(args, msg):
    time.sleep(0.2)
    os._exit(3)


tools = mcplib.standard_tools()
tools["die"] = ({"description": "Exit mid-call"}, die)
mcplib.Server("dies", tools).serve()
