"""Writes garbage on stdout around every answer: text, a JSON array, an object that is no JSON-RPC
message, an answer to an id nobody asked, a half line; the real answers still come through."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402


class Garbage(mcplib.Server):
    def before_answer(self, msg):
        self.write_raw("Starting server... this is not JSON\n[1,2,3]\n{\"hello\":\"world\"}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":\n\n")


Garbage("garbage", mcplib.standard_tools()).serve()
