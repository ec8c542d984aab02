"""Shared fixtures for the agentd end-to-end suite (see agentd.py).

Run: make e2e   (or: AGENTD_BIN=build-test/agentd /usr/bin/python3 -m pytest -q tests/e2e)
"""
import os
import resource
import sys

import pytest

# tests/standin holds the OpenAI stand-in and its Standin() helper (issue 14).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "standin"))

from agentd import Agentd, require_binary

# 1,000 concurrent WebSockets need descriptors on both sides; servers started
# from this process inherit the raised limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 8192 if _hard == resource.RLIM_INFINITY else min(8192, _hard)
if _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    require_binary()


@pytest.fixture
def server_factory(tmp_path):
    """Start servers private to one test; each is stopped at teardown and must
    exit 0 with a sanitizer-clean stderr unless the test already stopped it."""
    started = []

    def make(*args, extra_asan=None, start=True, env=None):
        srv = Agentd(tmp_path / ("srv%d" % len(started)), args, extra_asan=extra_asan,
                     name="agentd%d" % len(started), env=env)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        if srv.proc is not None and srv.proc.returncode is None:
            srv.stop_and_check()
