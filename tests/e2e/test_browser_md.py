"""The streamed answer's incremental markdown renderer in a real browser (issue 16,
docs/ui.md "Budget"): tests/browser/md_incremental.mjs feeds markdown documents
(tables, fenced code spanning deltas, lists, CRLF, javascript: links) to md.js's
MdStream in random-sized deltas and checks, after every delta, the same DOM as
render() of the text so far, exactly render(text) once final, a growing table
kept (not rebuilt), links inert; then the same through the app (partial_result
deltas and agent_response played over playwright's routeWebSocket).
"""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"


def test_md_incremental_equals_whole_render(server_factory):
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.fail("tests/browser/node_modules is missing: run `make deps` (scripts/deps.sh runs npm ci)")
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: run `make deps` (scripts/deps.sh installs Debian's chromium)" % CHROMIUM)
    srv = server_factory("--dev-login", "--rate-limit", "0")
    p = subprocess.run([NODE, os.path.join(BROWSER_DIR, "md_incremental.mjs"), srv.base_url],
                       capture_output=True, timeout=300, env=dict(os.environ, CHROMIUM=CHROMIUM))
    out = p.stdout.decode(errors="replace").strip().splitlines()
    assert out, p.stderr.decode(errors="replace")[-3000:]
    res = json.loads(out[-1])
    assert p.returncode == 0 and res["ok"], (res, p.stderr.decode(errors="replace")[-2000:], srv.stderr_tail())
    assert res["out"]["unit"]["cases"] >= 300 and len(res["out"]["app"]) == 4
