"""The web UI in a real browser (issue 16, SPEC §14, docs/ui.md): tests/browser/ui.mjs
drives Debian's chromium through playwright-core (tests/browser/node_modules,
installed by scripts/deps.sh) against an agentd started here.  Each scenario is one
node process printing one JSON line; screenshots go to tests/browser/screenshots/.

Scenarios: chat (register, upload a CSV with a rejected line, ask, the five event
kinds in order, the answer), stop, reload mid-run (finishes, no duplicate step or
seq), approval (--llm openai with the stand-in, --approve-tools), xss (markup and
javascript: links in messages render inert).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
sys.path.insert(0, os.path.join(HERE, "..", "standin"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"


def run_scenario(srv, name):
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.fail("tests/browser/node_modules is missing: run `make deps` (scripts/deps.sh runs npm ci)")
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: run `make deps` (scripts/deps.sh installs Debian's chromium)" % CHROMIUM)
    p = subprocess.run([NODE, os.path.join(BROWSER_DIR, "ui.mjs"), srv.base_url, name],
                       capture_output=True, timeout=300, env=dict(os.environ, CHROMIUM=CHROMIUM))
    out = p.stdout.decode(errors="replace").strip().splitlines()
    assert out, p.stderr.decode(errors="replace")[-3000:]
    res = json.loads(out[-1])
    assert p.returncode == 0 and res["ok"], (res, p.stderr.decode(errors="replace")[-2000:], srv.stderr_tail())
    return res["out"]


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """Builtin agents slowed down so a run can be stopped or reloaded mid-way."""
    from agentd import Agentd
    srv = Agentd(tmp_path_factory.mktemp("browser"), ["--dev-login", "--rate-limit", "0", "--llm-latency-ms", "400"],
                 name="browser")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop_and_check()


@pytest.mark.parametrize("scenario", ["chat", "stop", "reload", "xss"])
def test_browser(slow_server, scenario):
    run_scenario(slow_server, scenario)


def test_browser_approval(server_factory):
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        run_scenario(srv, "approval")
