"""Helpers shared by the auth, rate-limit and persistence suites (SPEC §2, §9, §10).

Built on agentd.py (the server fixture and raw HTTP client); nothing here starts servers.
"""
import base64
import json
import secrets

from agentd import HttpConn, Response

PREFIXES = ["/auth", "/api/auth", "/api/v1/auth"]
PASSWORD = "correct horse battery"


def unique_email(tag="user"):
    return "%s.%s@example.test" % (tag, secrets.token_hex(6))


def call(srv, method, path, body=None, token=None, headers=None, raw_body=None, content_type="application/json"):
    """One request over a fresh connection; body is JSON-encoded unless raw_body is given."""
    hdrs = [("Connection", "close")]
    if token is not None:
        hdrs.append(("Authorization", "Bearer " + token))
    data = None
    if raw_body is not None:
        data = raw_body if isinstance(raw_body, bytes) else raw_body.encode()
    elif body is not None:
        data = json.dumps(body).encode()
    if data is not None and content_type:
        hdrs.append(("Content-Type", content_type))
    hdrs += list(headers or [])
    c = HttpConn(srv.addr, timeout=15.0)
    try:
        c.request(method, path, headers=hdrs, body=data if data is not None else (b"" if method in ("POST", "PATCH") else None))
        return c.read_response(head_request=(method == "HEAD"))
    finally:
        c.close()


def register(srv, email=None, password=PASSWORD, name=None, prefix="/auth"):
    """Register a user; returns (email, token response JSON).  Asserts 201."""
    email = email or unique_email()
    body = {"email": email, "password": password}
    if name is not None:
        body["name"] = name
    r = call(srv, "POST", prefix + "/register", body)
    assert r.status == 201, r
    return email, r.json()


def login(srv, email, password=PASSWORD, prefix="/auth"):
    return call(srv, "POST", prefix + "/login", {"email": email, "password": password})


def jwt_claims(token):
    """The (unverified) payload of a JWT."""
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def pipelined(srv, requests, timeout=15.0):
    """Send several (method, path, headers) requests in one write on one
    keep-alive connection and read every answer: [Response]."""
    from agentd import build_request
    c = HttpConn(srv.addr, timeout=timeout)
    try:
        data = b"".join(build_request(m, p, h, None, "%s:%d" % srv.addr) for m, p, h in requests)
        c.send(data)
        return [c.read_response() for _ in requests]
    finally:
        c.close()


__all__ = ["PREFIXES", "PASSWORD", "unique_email", "call", "register", "login", "jwt_claims", "pipelined",
           "Response"]
