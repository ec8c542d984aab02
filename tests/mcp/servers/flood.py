"""Floods notifications (log messages, progress, list_changed) after initialization and on every
call of its `flood` tool, and writes a large stderr; the real answers still come through."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

N = 50000


class Flood(mcplib.Server):
    def burst(self):
        chunk = []
        for i in range(N):
            if i % 3 == 0:
                chunk.append('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"n%d"}}' % i)
            elif i % 3 == 1:
                chunk.append('{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":%d}}' % i)
            else:
                chunk.append('{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')
            if len(chunk) == 1000:
                self.write_raw("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            self.write_raw("\n".join(chunk) + "\n")
        sys.stderr.write("noise on stderr\n" * 5000)
        sys.stderr.flush()

    def on_initialized(self):
        self.burst()


tools = mcplib.standard_tools()
srv = None


def flood(args, msg):
    srv.burst()
    return mcplib.text("flooded")


tools["flood"] = ({"description": "Send a flood of notifications"}, flood)
srv = Flood("flood", tools)
srv.serve()
