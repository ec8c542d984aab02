"""The web UI's serving (SPEC §14, docs/ui.md): the embedded files of src/web/
at / and /assets/<name>, with their Content-Type, a CSP without
'unsafe-inline', ETag revalidation, and JSON 404s kept for the API prefixes."""
import os
import re

import httpx
import pytest

from agentd import agentd_server

server = agentd_server("--rate-limit", "0", name="ui")

WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "web")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=10.0) as c:
        yield c


def test_index_is_the_app_with_a_strict_csp(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    # No inline script or style in the page itself (the CSP would block them).
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert "<style" not in r.text and " style=" not in r.text and " on" not in re.sub(r"\s+", " ", r.text).replace(" only", "")
    assert '/assets/app.js' in r.text


def test_embedded_files_equal_the_sources(client):
    names = sorted(os.listdir(WEB))
    assert "index.html" in names and "app.js" in names
    for name in names:
        with open(os.path.join(WEB, name), "rb") as f:
            src = f.read()
        r = client.get("/assets/" + name)
        assert r.status_code == 200, name
        assert r.content == src, name
        ext = os.path.splitext(name)[1]
        assert r.headers["content-type"].startswith(TYPES[ext]), (name, r.headers["content-type"])
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/").content == open(os.path.join(WEB, "index.html"), "rb").read()


def test_etag_revalidates_with_304(client):
    r = client.get("/assets/app.js")
    tag = r.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{16}"', tag)
    r2 = client.get("/assets/app.js", headers={"If-None-Match": tag})
    assert r2.status_code == 304 and r2.content == b""
    r3 = client.get("/assets/app.js", headers={"If-None-Match": '"0000000000000000"'})
    assert r3.status_code == 200 and r3.headers["etag"] == tag
    assert client.get("/assets/app.css").headers["etag"] != tag
    # HEAD: the headers without the body.
    h = client.head("/")
    assert h.status_code == 200 and h.content == b"" and h.headers["etag"]


@pytest.mark.parametrize("path", ["/api/unknown", "/auth/nope", "/v1/nope", "/assets/nope.js",
                                  "/assets/../meson.build", "/nothing-here"])
def test_unknown_paths_stay_json_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] is True and r.json()["error_code"] == "NOT_FOUND"


def test_first_load_budget():
    """SPEC/issue 16 budget: JS+CSS of the first load ≤ 150 KB before compression."""
    total = sum(os.path.getsize(os.path.join(WEB, n)) for n in os.listdir(WEB) if n.endswith((".js", ".css")))
    assert total <= 150 * 1024, total


def test_no_inner_html_in_the_ui_sources():
    """The UI is sanitised by construction: no innerHTML/outerHTML/insertAdjacentHTML/eval."""
    for n in os.listdir(WEB):
        if n.endswith(".js"):
            text = open(os.path.join(WEB, n)).read()
            for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "document.write"):
                assert bad not in text, (n, bad)
