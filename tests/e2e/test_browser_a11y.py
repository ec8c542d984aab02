"""The web UI's accessibility, phone width and keyboard use (issue 16, docs/ui.md, Accessible):
tests/browser/a11y.mjs runs axe-core (WCAG 2.0/2.1 A and AA; serious or critical violations
fail) on every screen in light and dark, at desktop (1280×800) and phone (390×844) sizes,
checks that the page never scrolls sideways on a phone and that the composer, Send, Stop
and the thread list are reachable and work by touch, and makes a keyboard-only pass with
a visible focus ring on every control it reaches.  Screenshots: tests/browser/screenshots/a11y-*.png.
"""
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "standin"))
import test_browser  # noqa: E402  (run_scenario: the node process, its watchdog, its one JSON line)

A11Y = os.path.join(HERE, "..", "browser", "a11y.mjs")


def run_part(srv, part):
    if not os.path.isdir(os.path.join(test_browser.BROWSER_DIR, "node_modules", "axe-core")):
        pytest.fail("tests/browser/node_modules/axe-core is missing: run `make deps` (scripts/deps.sh runs npm ci)")
    out = test_browser.run_scenario(srv, part, script=A11Y, timeout=600)
    # moderate and minor findings do not fail; they are shown with -s / on failure
    print(json.dumps(out["notes"], indent=1))
    return out


def test_a11y_builtin(server_factory):
    """Sign-in, Workloads, chat with a thread list, a finished run, the editor, wide content; keyboard pass."""
    srv = server_factory("--dev-login", "--rate-limit", "0")
    out = run_part(srv, "builtin")
    for screen in ("sign-in", "workloads", "run", "edit", "wide"):
        for mode in ("light-desktop", "dark-desktop", "light-phone", "dark-phone"):
            assert "%s (%s)" % (screen, mode) in out["screens"], out["screens"]


def test_a11y_approval(server_factory):
    """The approval prompt, the queued tray and its editor, Approve (keyboard) and Stop."""
    mod = pytest.importorskip("standin", reason="tests/standin (the OpenAI stand-in) is not in this tree")
    with mod.Standin() as s:
        srv = server_factory("--dev-login", "--rate-limit", "0", "--llm", "openai", "--approve-tools", "calculator",
                             env=s.agentd_env())
        out = run_part(srv, "approval")
    for screen in ("approval", "queued", "queued-edit", "stopped"):
        for mode in ("light-desktop", "dark-desktop", "light-phone", "dark-phone"):
            assert "%s (%s)" % (screen, mode) in out["screens"], out["screens"]
