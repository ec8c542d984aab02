"""Ignores SIGTERM and the end of its stdin: only SIGKILL ends it (agentd's shutdown must not hang)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Stubborn(mcplib.Server):
    def serve(self):
        for line in sys.stdin:
            try:
                self.handle(__import__("json").loads(line))
            except ValueError:
                pass
        while True:
            time.sleep(1)


Stubborn("stubborn", mcplib.standard_tools()).serve()
