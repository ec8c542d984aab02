"""The web UI in a real browser (issue 16, SPEC §14, docs/ui.md): tests/browser/ui.mjs
drives Debian's chromium through playwright-core (tests/browser/node_modules,
installed by scripts/deps.sh) against an agentd started here.  Each scenario is one
node process printing one JSON line; screenshots go to tests/browser/screenshots/.

Scenarios: chat (register, upload a CSV with a rejected line, ask, the five event
kinds in order, the answer), stop, reload mid-run (finishes, no duplicate step or
seq), edit and re-run, queued turns (held by the page while the thread's run is unfinished:
cancel, edit, thread switch, reload, sent one by one), a turn waiting in the server's run
queue (--max-runs 1), a network drop mid-run and a
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


def run_scenario(srv, name, controls=None, script=None, timeout=300):
    """Run one scenario (of ui.mjs, or of `script`); a line {"control": action} it prints calls
    controls[action]() (e.g. restart the server) and answers "ok" on its stdin."""
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.fail("tests/browser/node_modules is missing: run `make deps` (scripts/deps.sh runs npm ci)")
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: run `make deps` (scripts/deps.sh installs Debian's chromium)" % CHROMIUM)
    p = subprocess.Popen([NODE, script or os.path.join(BROWSER_DIR, "ui.mjs"), srv.base_url, name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, CHROMIUM=CHROMIUM))
    watchdog = threading.Timer(timeout, p.kill)
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


def test_browser_waiting(server_factory):
    """--max-runs 1: the server's run queue holds a turn of another thread while the first runs."""
    srv = server_factory("--dev-login", "--rate-limit", "0", "--llm-latency-ms", "400", "--max-runs", "1")
    run_scenario(srv, "waiting")


def test_browser_queue(server_factory):
    """Turns sent while the thread's run is unfinished are held by the page and sent one by one, each
    after the run before it ended: the model's request for a queued turn carries the answer before it."""
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        out = run_scenario(srv, "queue")
        log = s.requests()
    a1, a2 = out["answers"][0], out["answers"][1]

    def last_user(req):
        users = [m for m in req["body"]["messages"] if m["role"] == "user"]
        c = users[-1]["content"] if users else ""
        return c if isinstance(c, str) else "".join(p.get("text", "") for p in c)

    def history(req):
        return [m.get("content") for m in req["body"]["messages"] if m["role"] == "assistant"]

    # the agents' model requests (not triage's classification, which sees the one message)
    turns = [r for r in log if not r.get("classify")]
    second = [r for r in turns if last_user(r).startswith("Second question")]
    third = [r for r in turns if last_user(r).startswith("Third question, edited")]
    assert second and third, [last_user(r)[:40] for r in log]
    assert all(a1 in history(r) for r in second), (a1, [history(r) for r in second])
    assert all(a1 in history(r) and a2 in history(r) for r in third), (a2, [history(r) for r in third])
    assert not [r for r in log if "Fourth question" in json.dumps(r["body"])], "the cancelled turn reached the model"


def test_browser_restart(server_factory):
    """agentd restarts on the same port and data dir with an approval pending; the page carries on."""
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        run_scenario(srv, "restart", {"stop": srv.stop_and_check, "start": srv.restart})
