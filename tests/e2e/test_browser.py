"""The web UI in a real browser (issue 16, SPEC §14, docs/ui.md): tests/browser/ui.mjs
drives Debian's chromium through playwright-core (tests/browser/node_modules,
installed by scripts/deps.sh) against an agentd started here.  Each scenario is one
node process printing one JSON line; screenshots go to tests/browser/screenshots/.

Scenarios: chat (register, upload a CSV with a rejected line, ask, the five event
kinds in order, the answer), stop, reload mid-run (finishes, no duplicate step or
seq), edit and re-run, a queued turn (--max-runs 1), a network drop mid-run and a
server restart with an approval pending (no event lost or doubled, the UI reconnects
by itself), approval (--llm openai with the stand-in, --approve-tools), xss (markup
and javascript: links in messages render inert).
"""
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
sys.path.insert(0, os.path.join(HERE, "..", "standin"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"


def run_scenario(srv, name, controls=None):
    """Run one scenario; a line {"control": action} it prints calls controls[action]() (e.g. restart
    the server) and answers "ok" on its stdin."""
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.fail("tests/browser/node_modules is missing: run `make deps` (scripts/deps.sh runs npm ci)")
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: run `make deps` (scripts/deps.sh installs Debian's chromium)" % CHROMIUM)
    p = subprocess.Popen([NODE, os.path.join(BROWSER_DIR, "ui.mjs"), srv.base_url, name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, CHROMIUM=CHROMIUM))
    watchdog = threading.Timer(300, p.kill)
    watchdog.start()
    err = []
    drain = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    drain.start()
    out = []
    try:
        for raw in p.stdout:
            line = raw.decode(errors="replace").strip()
            out.append(line)
            if line.startswith('{"control"'):
                action = json.loads(line)["control"]
                (controls or {})[action]()
                p.stdin.write(b"ok\n")
                p.stdin.flush()
        p.wait()
    finally:
        watchdog.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
        drain.join(5)
    stderr = (err[0] if err else b"").decode(errors="replace")
    assert out, stderr[-3000:]
    res = json.loads(out[-1])
    assert p.returncode == 0 and res["ok"], (res, stderr[-2000:], srv.stderr_tail())
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


@pytest.mark.parametrize("scenario", ["chat", "stop", "reload", "edit", "netdrop", "xss"])
def test_browser(slow_server, scenario):
    run_scenario(slow_server, scenario)


def test_browser_approval(server_factory):
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        run_scenario(srv, "approval")


def test_browser_queued(server_factory):
    """--max-runs 1: the server's run queue holds a second turn while the first runs."""
    srv = server_factory("--dev-login", "--rate-limit", "0", "--llm-latency-ms", "400", "--max-runs", "1")
    run_scenario(srv, "queued")


def test_browser_restart(server_factory):
    """agentd restarts on the same port and data dir with an approval pending; the page carries on."""
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        run_scenario(srv, "restart", {"stop": srv.stop_and_check, "start": srv.restart})
