"""agentd as the client of the official MCP conformance suite (`@modelcontextprotocol/conformance client`).

  conformance client --command "/usr/bin/python3 tests/mcp/client/conformance_client.py" --scenario initialize

The suite starts a test server and runs this command with the server's URL as the last argument (and the
scenario's name in MCP_CONFORMANCE_SCENARIO).  This wrapper points a fresh agentd (AGENTD_BIN, default
build-test/agentd) at that URL through --mcp-config, waits until agentd's client has connected (its log line
"mcp server 'conformance' connected"), calls every tool the server offers through POST /api/tools/execute
(arguments made up from each tool's schema: numbers 1, 2, 3…, strings "x"), then stops agentd with SIGTERM.
Exit status 0 when agentd connected, every call answered and agentd exited 0.
"""
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
AGENTD = os.environ.get("AGENTD_BIN", os.path.join(ROOT, "build-test", "agentd"))
LISTEN = re.compile(r"agentd listening on (https?)://([^\s:/]+):(\d+)")


def log(*a):
    print("conformance_client:", *a, file=sys.stderr, flush=True)


def http(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def args_for(schema):
    out = {}
    n = 0
    for name, prop in (schema.get("properties") or {}).items():
        t = prop.get("type")
        if "default" in prop:
            continue
        n += 1
        if t in ("number", "integer"):
            out[name] = n
        elif t == "boolean":
            out[name] = True
        elif t == "string":
            out[name] = prop["enum"][0] if prop.get("enum") else "x"
    return out


def main():
    code = drive(sys.argv[-1])
    return code


def drive(url):
    work = tempfile.mkdtemp(prefix="agentd-conformance-")
    cfg = os.path.join(work, "mcp.json")
    with open(cfg, "w") as f:
        json.dump({"servers": {"conformance": {"url": url}}}, f)
    err_path = os.path.join(work, "agentd.stderr")
    err = open(err_path, "wb")
    proc = subprocess.Popen([AGENTD, "--port", "0", "--data-dir", os.path.join(work, "data"), "--dev-login",
                             "--jwt-secret", secrets.token_hex(32), "--log-format", "text", "--mcp-config", cfg,
                             "--mcp-timeout", "20"], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    ok = False
    result = 1
    try:
        line = proc.stdout.readline().decode()
        m = LISTEN.search(line)
        if not m:
            log("agentd did not start:", line)
            return 1
        base = "http://%s:%s" % (m.group(2), m.group(3))
        deadline = time.monotonic() + 20
        while b"mcp server 'conformance' connected" not in open(err_path, "rb").read():
            if time.monotonic() > deadline:
                log("agentd's client did not connect")
                return 1
            time.sleep(0.05)
        st, tok = http(base, "POST", "/auth/dev/login", {})
        token = tok["access_token"]
        st, listing = http(base, "GET", "/api/tools", token=token)
        tools = [t for t in listing["tools"] if t["source"] == "mcp:conformance"]
        ok = True
        for t in tools:
            args = args_for(t["input_schema"])
            st, res = http(base, "POST", "/api/tools/execute", {"tool_name": t["name"], "arguments": args}, token=token)
            log(t["name"], json.dumps(args), "→", st, json.dumps(res)[:300])
            ok = ok and st == 200
        result = 0 if ok else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        err.close()
        if rc != 0:
            log("agentd exited with", rc)
            sys.stderr.write(open(err_path, "rb").read().decode("utf-8", "replace")[-3000:])
            result = 1
    return result


if __name__ == "__main__":
    sys.exit(main())
