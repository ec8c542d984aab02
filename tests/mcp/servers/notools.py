"""A server with no tools capability (prompts only): it must count as connected, with no tools, and never be
asked tools/list (which it would answer -32601)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402


class NoTools(mcplib.Server):
    def handle(self, msg):
        if msg.get("method") == "initialize":
            self.log(msg)
            return self.answer(msg, {"protocolVersion": "2025-03-26", "capabilities": {"prompts": {}},
                                     "serverInfo": {"name": "notools", "version": "1"}})
        if msg.get("method") == "tools/list":
            self.log(msg)
            return self.send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no tools"}})
        return super().handle(msg)


NoTools("notools").serve()
