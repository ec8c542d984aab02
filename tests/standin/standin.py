"""Start the OpenAI stand-in (openai_standin.py) from a test.

    from standin import Standin
    with Standin() as s:                 # or Standin(extra_args=("--api-key", "K"))
        env = s.agentd_env()             # OPENAI_BASE_URL / OPENAI_MODEL / OPENAI_API_KEY
        ... point agentd (or any OpenAI client) at s.base_url ...
        log = s.requests()               # the stand-in's request log, oldest first
        s.wait_requests(lambda log: any(e["client_closed"] for e in log))
        s.reset()

tests/e2e/conftest.py puts this directory on sys.path.  The protocol is in README.md.
"""
import json
import os
import re
import select
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "openai_standin.py")
PYTHON = "/usr/bin/python3"
LISTEN_RE = re.compile(r"standin listening on (http://127\.0\.0\.1:(\d+))")
MODEL = "standin-model"
API_KEY = "sk-test"


class Standin:
    def __init__(self, extra_args=(), start_timeout=30.0):
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.root = None        # http://127.0.0.1:PORT
        self.base_url = None    # http://127.0.0.1:PORT/v1
        self.port = None
        self._stderr = None

    # ---- lifecycle

    def start(self):
        self._stderr = tempfile.NamedTemporaryFile(prefix="standin-", suffix=".stderr", delete=False)
        self.proc = subprocess.Popen([PYTHON, SCRIPT, "--port", "0"] + self.extra_args,
                                     stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    break
                line += b
        m = LISTEN_RE.search(line.decode("utf-8", "replace"))
        if not m:
            self.stop()
            raise RuntimeError("stand-in did not start: stdout %r, stderr %r" % (line, self.stderr_text()))
        self.root = m.group(1)
        self.port = int(m.group(2))
        self.base_url = self.root + "/v1"
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self._stderr is not None:
            try:
                os.unlink(self._stderr.name)
            except OSError:
                pass
        return False

    # ---- the stand-in's own endpoints

    def _call(self, method, path, timeout=30):
        req = urllib.request.Request(self.root + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def requests(self):
        """The log: one dict per completion request, oldest first (see README.md)."""
        return self._call("GET", "/_standin/requests")

    def reset(self):
        self._call("POST", "/_standin/reset")

    def wait_requests(self, pred, timeout=60.0):
        """Poll the log until pred(log) is true; returns the log (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.requests()
            if pred(log):
                return log
            if time.monotonic() > deadline:
                raise AssertionError("stand-in log never satisfied the condition: %s" % json.dumps(log)[:2000])
            time.sleep(0.05)

    def stderr_text(self):
        if self._stderr is None:
            return ""
        with open(self._stderr.name, "r", errors="replace") as f:
            return f.read()

    def agentd_env(self, api_key=API_KEY, model=MODEL):
        """The environment that points agentd's --llm openai at this stand-in."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_MODEL": model, "OPENAI_API_KEY": api_key}
