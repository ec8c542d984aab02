"""Interop with the official MCP TypeScript SDK (issue 15): its Client over StreamableHTTPClientTransport
(tests/mcp/sdk_client.mjs, @modelcontextprotocol/sdk pinned in tests/mcp/package-lock.json, installed by
scripts/deps.sh) initializes with agentd's /mcp, lists its tools through every page, calls them, pings, sets
the log level and ends its session.
"""
import json
import os
import shutil
import subprocess

import pytest

from agentd import agentd_server
from auth_helpers import call

server = agentd_server("--rate-limit", "0", name="mcpsdk")
HERE = os.path.dirname(os.path.abspath(__file__))
MCP_DIR = os.path.join(HERE, "..", "mcp")


def run_client(url, token):
    if not shutil.which("node"):
        pytest.fail("node is not installed (scripts/deps.sh installs it)", pytrace=False)
    if not os.path.isdir(os.path.join(MCP_DIR, "node_modules", "@modelcontextprotocol", "sdk")):
        pytest.fail("tests/mcp/node_modules is missing: run scripts/deps.sh", pytrace=False)
    p = subprocess.run(["node", os.path.join(MCP_DIR, "sdk_client.mjs"), url, token or ""], capture_output=True,
                       timeout=120, cwd=MCP_DIR)
    assert p.returncode == 0, (p.returncode, p.stderr.decode(errors="replace")[-3000:])
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def test_official_client_lists_and_calls(server):
    token = server.token(sub="usr_mcp_sdk")
    out = run_client(server.base_url + "/mcp", token)
    assert out["protocolVersion"] == "2025-11-25"
    assert out["sessionId"].startswith("mcs_")
    assert out["serverVersion"]["name"] == "agentd"
    assert out["capabilities"]["tools"] == {"listChanged": False}
    builtin = [t["name"] for t in call(server, "GET", "/api/tools", token=token).json()["tools"]
               if t["source"] == "builtin"]
    assert out["tools"] == builtin
    assert out["pages"] >= 2
    assert out["calc"]["isError"] is False and out["calc"]["structuredContent"]["result"] == 42
    assert out["badArgs"]["isError"] is True and "arguments.expression" in out["badArgs"]["content"][0]["text"]
    assert out["unknown"]["code"] == -32602
    assert out["ping"] == {} and out["setLevel"] == {}


def test_official_client_is_refused_without_token(server):
    if not shutil.which("node"):
        pytest.fail("node is not installed", pytrace=False)
    p = subprocess.run(["node", os.path.join(MCP_DIR, "sdk_client.mjs"), server.base_url + "/mcp", ""],
                       capture_output=True, timeout=120, cwd=MCP_DIR)
    assert p.returncode != 0
    assert "401" in p.stderr.decode(errors="replace"), p.stderr[-2000:]
