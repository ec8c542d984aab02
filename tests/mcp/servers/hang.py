"""Initializes and lists its tools, then never answers anything again (reads and ignores)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402


class Hang(mcplib.Server):
    listed = False

    def handle(self, msg):
        if self.listed and msg.get("method") not in (None, "notifications/cancelled"):
            self.log(msg)
            return
        if msg.get("method") == "tools/list":
            self.listed = True
        super().handle(msg)


Hang("hang", mcplib.standard_tools()).serve()
