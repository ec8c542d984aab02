"""Auth routes of SPEC §2 on all three prefixes, the Bearer-only REST auth
(SPEC conventions), token validation, logout with open WebSockets, and
tokens we issue on the WebSocket handshake (SPEC §6).

The /api rate limit is raised (not off: the failed-login limit stays on) so
the many requests of this module from one IP are never throttled.
"""
import asyncio
import json
import secrets
import signal
import time

import pytest
import websockets
import websockets.exceptions

from agentd import b64url, check_envelope, check_welcome, agentd_server
from auth_helpers import PASSWORD, PREFIXES, call, jwt_claims, login, register, unique_email

server = agentd_server("--rate-limit", "1000/1000", name="auth")
dev_server = agentd_server("--rate-limit", "1000/1000", "--dev-login", name="authdev")

ME_PATHS = ["/auth/me", "/api/auth/me", "/api/v1/auth/me", "/api/me", "/api/users/me"]


def run(coro):
    return asyncio.run(coro)


def check_token_response(j, email):
    assert isinstance(j.get("access_token"), str) and j["access_token"].count(".") == 2, j
    assert isinstance(j.get("refresh_token"), str) and j["refresh_token"].count(".") == 2, j
    assert j.get("token_type") == "Bearer", j
    assert j.get("expires_in") == 1800, j
    u = j.get("user")
    assert isinstance(u, dict) and u.get("id", "").startswith("usr_") and u.get("email") == email, j
    assert "name" in u, j
    return u


def check_user(j, uid=None, email=None):
    for k in ("id", "email", "name", "created_at", "permissions", "plan_tier"):
        assert k in j, (k, j)
    assert isinstance(j["permissions"], list), j
    assert isinstance(j["created_at"], (int, float)), j
    if uid:
        assert j["id"] == uid, j
    if email:
        assert j["email"] == email, j


def validation_fields(r):
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert isinstance(j.get("details"), list) and j["details"], j
    return [d.get("field") for d in j["details"]]


# ---- register -----------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_register(server, prefix):
    email = unique_email("Reg")
    r = call(server, "POST", prefix + "/register", {"email": "  " + email.upper() + " ", "password": PASSWORD,
                                                   "name": "Ada", "unknown_field": [1, 2]})
    assert r.status == 201, r
    u = check_token_response(r.json(), email.lower())
    assert u["name"] == "Ada"
    me = call(server, "GET", "/api/me", token=r.json()["access_token"])
    assert me.status == 200, me
    check_user(me.json(), u["id"], email.lower())
    assert me.json()["name"] == "Ada"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_register_duplicate_409(server, prefix):
    email, _ = register(server)
    r = call(server, "POST", prefix + "/register", {"email": email.upper(), "password": PASSWORD})
    check_envelope(r, "CONFLICT", 409)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("body,field", [
    ({"email": "x@example.test", "password": "short"}, "password"),
    ({"email": "x@example.test", "password": "1234567"}, "password"),
    ({"email": "not-an-email", "password": PASSWORD}, "email"),
    ({"email": "a@b", "password": PASSWORD}, "email"),
    ({"password": PASSWORD}, "email"),
    ({"email": "x@example.test"}, "password"),
    ({"email": 5, "password": PASSWORD}, "email"),
    ({"email": "x@example.test", "password": ["a"]}, "password"),
    ({"email": "x@example.test", "password": PASSWORD, "name": 7}, "name"),
    ({"email": "x@example.test", "password": PASSWORD, "name": "n" * 256}, "name"),  # the user record holds 255 bytes
])
def test_register_validation_422(server, prefix, body, field):
    r = call(server, "POST", prefix + "/register", body)
    assert field in validation_fields(r), r


def test_register_password_exactly_8_ok(server):
    register(server, password="12345678")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_register_malformed_400_and_media_415(server, prefix):
    r = call(server, "POST", prefix + "/register", raw_body='{"email": "a@b.co", ')
    check_envelope(r, "BAD_REQUEST", 400)
    r = call(server, "POST", prefix + "/register", raw_body="email=a@b.co", content_type="text/plain")
    check_envelope(r, "UNSUPPORTED_MEDIA_TYPE", 415)
    r = call(server, "POST", prefix + "/register", raw_body="[1,2]")
    check_envelope(r, "VALIDATION_ERROR", 422)


def test_register_disabled_403(server_factory):
    srv = server_factory("--no-registration")
    for prefix in PREFIXES:
        r = call(srv, "POST", prefix + "/register", {"email": unique_email(), "password": PASSWORD})
        check_envelope(r, "FORBIDDEN", 403)
    assert call(srv, "GET", "/auth/config").json()["registration"] is False


# ---- login ----------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_login(server, prefix):
    email, reg = register(server)
    r = login(server, email.upper(), prefix=prefix)
    assert r.status == 200, r
    u = check_token_response(r.json(), email)
    assert u["id"] == reg["user"]["id"]
    assert call(server, "GET", "/api/me", token=r.json()["access_token"]).status == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_login_wrong_password_same_as_unknown_email(server, prefix):
    email, _ = register(server)
    wrong = login(server, email, "wrong password!", prefix=prefix)
    unknown = login(server, unique_email("ghost"), "wrong password!", prefix=prefix)
    invalid = login(server, "not an email", "wrong password!", prefix=prefix)
    bodies = []
    for r in (wrong, unknown, invalid):
        j = check_envelope(r, "AUTH_INVALID", 401)
        assert r.header("www-authenticate", "").startswith("Bearer"), r
        j.pop("request_id")
        bodies.append(j)
    assert bodies[0] == bodies[1] == bodies[2], bodies
    assert bodies[0]["message"] == "invalid email or password"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_login_validation(server, prefix):
    assert "password" in validation_fields(call(server, "POST", prefix + "/login", {"email": "a@b.co"}))
    assert "email" in validation_fields(call(server, "POST", prefix + "/login", {"email": 1, "password": "x"}))
    check_envelope(call(server, "POST", prefix + "/login", raw_body="{"), "BAD_REQUEST", 400)


# ---- tokens ---------------------------------------------------------------------

def test_issued_claims(server):
    email, j = register(server)
    a, r = jwt_claims(j["access_token"]), jwt_claims(j["refresh_token"])
    for c in (a, r):
        for k in ("sub", "iat", "exp", "jti", "iss", "type", "token_type"):
            assert k in c, (k, c)
        assert c["sub"] == j["user"]["id"] and c["iss"] == "netra-auth-service"
    assert a["type"] == a["token_type"] == "access" and a["email"] == email
    assert isinstance(a["permissions"], list)
    assert r["type"] == r["token_type"] == "refresh"
    # both tokens of a pair name the same refresh family (per-session logout)
    assert isinstance(a.get("fam"), str) and a["fam"].startswith("fam_") and a["fam"] == r["fam"], (a, r)
    assert 1790 <= a["exp"] - a["iat"] <= 1810
    header = json.loads(__import__("base64").urlsafe_b64decode(j["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"


def _bad_tokens(srv, sub):
    now = int(time.time())
    good = srv.token(sub=sub)
    h, p, s = good.split(".")
    return {
        "expired": srv.token(sub=sub, iat=now - 7200, ttl=60),
        "forged_signature": srv.token(sub=sub, sign_secret="y" * 48),
        "alg_none": srv.token(sub=sub, alg="none"),
        "alg_none_with_sig": b64url(json.dumps({"alg": "none", "typ": "JWT"})) + "." + p + "." + s,
        "hs512": srv.token(sub=sub, alg="HS512"),
        "refresh_type": srv.token(sub=sub, typ="refresh"),
        "tampered": h + "." + b64url(json.dumps({"sub": "usr_other", "exp": now + 900, "iat": now})) + "." + s,
        "garbage": "a.b.c",
        "no_dots": "hello",
    }


@pytest.mark.parametrize("kind", ["expired", "forged_signature", "alg_none", "alg_none_with_sig", "hs512",
                                  "refresh_type", "tampered", "garbage", "no_dots"])
@pytest.mark.parametrize("path", ["/api/me", "/auth/me"])
def test_bad_bearer_401(server, kind, path):
    r = call(server, "GET", path, token=_bad_tokens(server, "usr_e2e_bad")[kind])
    check_envelope(r, "AUTH_INVALID", 401)
    assert r.header("www-authenticate", "").startswith("Bearer"), r


def test_issued_refresh_token_as_bearer_401(server):
    _, j = register(server)
    check_envelope(call(server, "GET", "/api/me", token=j["refresh_token"]), "AUTH_INVALID", 401)


@pytest.mark.parametrize("path", ME_PATHS)
def test_no_credentials_401(server, path):
    r = call(server, "GET", path)
    check_envelope(r, "AUTH_REQUIRED", 401)
    assert r.header("www-authenticate", "").startswith("Bearer"), r


def test_other_schemes_and_empty_bearer(server):
    check_envelope(call(server, "GET", "/api/me", headers=[("Authorization", "Basic dXNlcjpwYXNz")]),
                   "AUTH_REQUIRED", 401)
    check_envelope(call(server, "GET", "/api/me", headers=[("Authorization", "Bearer ")]), "AUTH_INVALID", 401)


def test_x_user_id_never_identifies(server):
    _, a = register(server)
    _, b = register(server)
    r = call(server, "GET", "/api/me", headers=[("X-User-ID", a["user"]["id"])])
    check_envelope(r, "AUTH_REQUIRED", 401)
    r = call(server, "GET", "/api/me", token=a["access_token"], headers=[("X-User-ID", b["user"]["id"])])
    assert r.status == 200 and r.json()["id"] == a["user"]["id"], r


def test_rest_ignores_query_token(server):
    _, a = register(server)
    check_envelope(call(server, "GET", "/api/me?token=" + a["access_token"]), "AUTH_REQUIRED", 401)


def test_unknown_sub_creates_user(server):
    sub = "usr_ext_" + secrets.token_hex(8)
    tok = server.token(sub=sub, email="Ext.%s@Example.test" % sub[-6:])
    for _ in range(2):
        r = call(server, "GET", "/api/me", token=tok)
        assert r.status == 200, r
        check_user(r.json(), sub)
    assert r.json()["email"].lower() == r.json()["email"]
    # the row exists: a second token of the same sub (another jti) sees the same user
    r2 = call(server, "GET", "/api/users/me", token=server.token(sub=sub))
    assert r2.status == 200 and r2.json()["created_at"] == r.json()["created_at"], r2


# ---- me --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ME_PATHS)
def test_me_paths(server, path):
    email, j = register(server, name="Grace")
    r = call(server, "GET", path, token=j["access_token"])
    assert r.status == 200, r
    check_user(r.json(), j["user"]["id"], email)
    assert r.json()["name"] == "Grace" and r.json()["plan_tier"]


def test_patch_me(server):
    email, j = register(server)
    tok = j["access_token"]
    r = call(server, "PATCH", "/api/users/me", {"name": "Linus", "ignored": True}, token=tok)
    assert r.status == 200 and r.json()["name"] == "Linus", r
    check_user(r.json(), j["user"]["id"], email)
    assert call(server, "GET", "/api/me", token=tok).json()["name"] == "Linus"
    r = call(server, "PATCH", "/api/users/me", {}, token=tok)
    assert r.status == 200 and r.json()["name"] == "Linus", r
    r = call(server, "PATCH", "/api/users/me", {"name": "é" * 100 + "x" * 55}, token=tok)
    assert r.status == 200 and r.json()["name"] == "é" * 100 + "x" * 55, r
    r = call(server, "PATCH", "/api/users/me", {"name": "x" * 200}, token=tok)
    assert r.status == 200 and r.json()["name"] == "x" * 200, r
    # the stored name is at most 255 bytes of UTF-8
    assert "name" in validation_fields(call(server, "PATCH", "/api/users/me", {"name": "é" * 150}, token=tok))
    r = call(server, "PATCH", "/api/users/me", {"name": None}, token=tok)
    assert r.status == 200 and r.json()["name"] is None, r
    # no 200-character cap of its own (issue 13, defect 13): only the user record's 255 bytes
    r = call(server, "PATCH", "/api/users/me", {"name": "x" * 255}, token=tok)
    assert r.status == 200 and r.json()["name"] == "x" * 255, r
    assert "name" in validation_fields(call(server, "PATCH", "/api/users/me", {"name": 3}, token=tok))
    check_envelope(call(server, "PATCH", "/api/users/me", raw_body="{", token=tok), "BAD_REQUEST", 400)
    check_envelope(call(server, "PATCH", "/api/users/me", {"name": "x"}), "AUTH_REQUIRED", 401)


# ---- refresh ---------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_refresh_rotation_and_reuse(server, prefix):
    _, j = register(server)
    r1 = j["refresh_token"]
    r = call(server, "POST", prefix + "/refresh", {"refresh_token": r1})
    assert r.status == 200, r
    j2 = r.json()
    check_token_response(j2, j["user"]["email"])
    r2 = j2["refresh_token"]
    assert r2 != r1 and j2["access_token"] != j["access_token"]
    assert jwt_claims(r2)["fam"] == jwt_claims(r1)["fam"] == jwt_claims(j2["access_token"])["fam"]
    assert call(server, "GET", "/api/me", token=j2["access_token"]).status == 200
    # reuse of the spent token: 401, and the whole family dies (the sibling r2 too)
    check_envelope(call(server, "POST", prefix + "/refresh", {"refresh_token": r1}), "AUTH_INVALID", 401)
    check_envelope(call(server, "POST", prefix + "/refresh", {"refresh_token": r2}), "AUTH_INVALID", 401)


def test_refresh_single_use_chain(server):
    _, j = register(server)
    tok = j["refresh_token"]
    for _ in range(3):
        r = call(server, "POST", "/auth/refresh", {"refresh_token": tok})
        assert r.status == 200, r
        tok = r.json()["refresh_token"]


def test_refresh_rejects(server):
    _, j = register(server)
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": j["access_token"]}), "AUTH_INVALID", 401)
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": "a.b.c"}), "AUTH_INVALID", 401)
    forged = server.token(sub=j["user"]["id"], typ="refresh", extra={"fam": "fam_x"})
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": forged}), "AUTH_INVALID", 401)
    assert "refresh_token" in validation_fields(call(server, "POST", "/auth/refresh", {}))
    assert "refresh_token" in validation_fields(call(server, "POST", "/auth/refresh", {"refresh_token": 1}))


# ---- logout ----------------------------------------------------------------------

async def ws_connect(srv, path="/ws", token=None, subprotocols=None):
    hdrs = [("Authorization", "Bearer " + token)] if token else []
    return await websockets.connect(srv.ws_base + path, extra_headers=hdrs, subprotocols=subprotocols,
                                    open_timeout=10, close_timeout=5, ping_interval=None)


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_logout(server, prefix):
    _, j = register(server)
    tok, uid = j["access_token"], j["user"]["id"]
    # a second session of the same user, kept open through the logout of the first
    other = login(server, j["user"]["email"]).json()
    assert jwt_claims(other["access_token"])["fam"] != jwt_claims(tok)["fam"]
    # the token has been used (and verified) before the logout
    assert call(server, "GET", "/api/me", token=tok).status == 200

    async def go():
        ws = await ws_connect(server, token=tok)
        ws_other = await ws_connect(server, token=other["access_token"])
        try:
            check_welcome(await recv_json(ws), uid)
            check_welcome(await recv_json(ws_other), uid)
            r = await asyncio.get_running_loop().run_in_executor(
                None, lambda: call(server, "POST", prefix + "/logout", token=tok))
            assert r.status == 200 and r.json()["status"] == "success", r
            with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                await asyncio.wait_for(ws.recv(), 5)
            assert ei.value.code == 1008, ei.value
            # the other token's socket stays open
            await ws_other.send(json.dumps({"type": "ping", "id": 1}))
            assert (await recv_json(ws_other))["type"] == "pong"
        finally:
            await ws.close()
            await ws_other.close()
    run(go())
    check_envelope(call(server, "GET", "/api/me", token=tok), "AUTH_INVALID", 401)
    check_envelope(call(server, "POST", prefix + "/logout", token=tok), "AUTH_INVALID", 401)
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]}), "AUTH_INVALID", 401)

    async def handshake():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            await ws_connect(server, token=tok)
        assert ei.value.status_code == 401
    run(handshake())
    # the second session keeps working: its access token, and its refresh token
    r = call(server, "GET", "/api/me", token=other["access_token"])
    assert r.status == 200 and r.json()["id"] == uid, r
    r = call(server, "POST", "/auth/refresh", {"refresh_token": other["refresh_token"]})
    assert r.status == 200, r
    assert call(server, "GET", "/api/me", token=r.json()["access_token"]).status == 200
    # logging in again works
    assert login(server, j["user"]["email"]).status == 200


def test_logout_ends_the_whole_session(server):
    """Logout with a refreshed access token also stops the session's earlier
    access token (same family) and its latest refresh token."""
    _, j = register(server)
    r = call(server, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]})
    assert r.status == 200, r
    j2 = r.json()
    for t in (j["access_token"], j2["access_token"]):
        assert call(server, "GET", "/api/me", token=t).status == 200
    assert call(server, "POST", "/auth/logout", token=j2["access_token"]).status == 200
    for t in (j["access_token"], j2["access_token"]):
        check_envelope(call(server, "GET", "/api/me", token=t), "AUTH_INVALID", 401)
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": j2["refresh_token"]}), "AUTH_INVALID", 401)


def test_session_logout_survives_restart(server_factory):
    """The session's family stays revoked across a restart: its earlier access
    token (issued before a refresh) stays refused."""
    srv = server_factory()
    _, j = register(srv)
    r = call(srv, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]})
    assert r.status == 200, r
    other = login(srv, j["user"]["email"]).json()
    assert call(srv, "POST", "/auth/logout", token=r.json()["access_token"]).status == 200
    srv.stop(signal.SIGKILL)
    srv.start()
    check_envelope(call(srv, "GET", "/api/me", token=j["access_token"]), "AUTH_INVALID", 401)
    check_envelope(call(srv, "GET", "/api/me", token=r.json()["access_token"]), "AUTH_INVALID", 401)
    check_envelope(call(srv, "POST", "/auth/refresh", {"refresh_token": r.json()["refresh_token"]}),
                   "AUTH_INVALID", 401)
    assert call(srv, "GET", "/api/me", token=other["access_token"]).status == 200
    assert call(srv, "POST", "/auth/refresh", {"refresh_token": other["refresh_token"]}).status == 200


def test_logout_without_family_revokes_every_refresh_token(server):
    """A token from another issuer (no fam claim) cannot name its session: its
    logout stops every refresh token of the user, as before."""
    _, j = register(server)
    uid = j["user"]["id"]
    ext = server.token(sub=uid)
    assert "fam" not in jwt_claims(ext)
    assert call(server, "GET", "/api/me", token=ext).status == 200
    assert call(server, "POST", "/auth/logout", token=ext).status == 200
    check_envelope(call(server, "GET", "/api/me", token=ext), "AUTH_INVALID", 401)
    # the user's own access token was not the one logged out
    assert call(server, "GET", "/api/me", token=j["access_token"]).status == 200
    # but its refresh token is dead (and presenting it revokes its family, as a reuse does)
    check_envelope(call(server, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]}), "AUTH_INVALID", 401)


def test_logout_requires_bearer(server):
    check_envelope(call(server, "POST", "/auth/logout"), "AUTH_REQUIRED", 401)


# ---- verify / validate ---------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", ["verify", "validate"])
def test_verify(server, prefix, name):
    email, j = register(server)
    path = prefix + "/" + name
    tok = j["access_token"]
    for r in (call(server, "GET", path, token=tok), call(server, "POST", path, token=tok),
              call(server, "POST", path, {"token": tok})):
        assert r.status == 200, r
        v = r.json()
        assert v["valid"] is True and v["user_id"] == j["user"]["id"] and v["email"] == email, v
        assert v["exp"] == jwt_claims(tok)["exp"], v
    bad = _bad_tokens(server, "usr_e2e_v")
    for t in (bad["expired"], bad["forged_signature"], bad["alg_none"], j["refresh_token"]):
        for r in (call(server, "POST", path, {"token": t}), call(server, "GET", path, token=t)):
            assert r.status == 200, r
            v = r.json()
            assert v["valid"] is False and isinstance(v["error"], str) and v["error"], v
    r = call(server, "GET", path)
    assert r.status == 200 and r.json()["valid"] is False, r


# ---- dev login, config -------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_dev_login_disabled_403(server, prefix):
    check_envelope(call(server, "POST", prefix + "/dev/login", {}), "FORBIDDEN", 403)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_dev_login(dev_server, prefix):
    r = call(dev_server, "POST", prefix + "/dev/login", {})
    assert r.status == 200, r
    u = check_token_response(r.json(), "dev@agentd.local")
    r2 = call(dev_server, "POST", prefix + "/dev/login", {})
    assert r2.json()["user"]["id"] == u["id"]
    me = call(dev_server, "GET", "/api/me", token=r.json()["access_token"])
    assert me.status == 200 and me.json()["email"] == "dev@agentd.local", me


@pytest.mark.parametrize("prefix", PREFIXES)
def test_auth_config(server, dev_server, prefix):
    r = call(server, "GET", prefix + "/config")
    assert r.status == 200, r
    assert r.json()["registration"] is True and r.json()["dev_login"] is False and r.json()["token_lifetime_s"] == 1800
    assert call(dev_server, "GET", prefix + "/config").json()["dev_login"] is True


def test_methods_405(server):
    r = call(server, "GET", "/auth/login")
    check_envelope(r, "METHOD_NOT_ALLOWED", 405)
    assert "POST" in r.header("allow", "")


# ---- our tokens on the WebSocket handshake (SPEC §6) --------------------------------------

@pytest.mark.parametrize("where", ["header", "subprotocol", "query"])
def test_ws_token_places(server, where):
    _, j = register(server)
    tok, uid = j["access_token"], j["user"]["id"]

    async def go():
        if where == "header":
            ws = await ws_connect(server, token=tok)
        elif where == "subprotocol":
            ws = await ws_connect(server, subprotocols=["jwt." + b64url(tok)])
        else:
            ws = await websockets.connect(server.ws_base + "/ws?token=" + tok, open_timeout=10, ping_interval=None)
        try:
            assert ws.subprotocol is None
            check_welcome(await recv_json(ws), uid)
        finally:
            await ws.close()
    run(go())


def test_ws_first_use_creates_user(server):
    """SPEC §2 create-on-first-use on the WebSocket handshake: a sub never seen
    before connects by WebSocket first; the user row exists before any REST call."""
    sub = "usr_wsfirst_" + secrets.token_hex(8)
    email = "WS.%s@Example.test" % sub[-6:]
    tok = server.token(sub=sub, email=email)
    t0 = time.time()

    async def go():
        ws = await ws_connect(server, token=tok)
        try:
            check_welcome(await recv_json(ws), sub)
        finally:
            await ws.close()
    run(go())
    time.sleep(0.3)
    t_rest = time.time()
    r = call(server, "GET", "/api/me", token=tok)
    assert r.status == 200, r
    u = r.json()
    assert u["id"] == sub and u["email"] == email.lower(), u
    assert t0 - 2 <= u["created_at"] < t_rest, (t0, u["created_at"], t_rest)
    # the other credential places on a fresh sub too, and concurrent first handshakes
    subs = ["usr_wsfirst_" + secrets.token_hex(8) for _ in range(3)]

    async def many():
        socks = await asyncio.gather(
            ws_connect(server, subprotocols=["jwt." + b64url(server.token(sub=subs[0]))]),
            websockets.connect(server.ws_base + "/ws?token=" + server.token(sub=subs[1]), open_timeout=10,
                               ping_interval=None),
            *[ws_connect(server, token=server.token(sub=subs[2])) for _ in range(3)])
        try:
            for ws, s in zip(socks, subs[:2] + [subs[2]] * 3):
                check_welcome(await recv_json(ws), s)
        finally:
            for ws in socks:
                await ws.close()
    run(many())
    for s in subs:
        r = call(server, "GET", "/api/users/me", token=server.token(sub=s))
        assert r.status == 200 and r.json()["id"] == s, r


def test_ws_first_use_rejects_keep_their_order(server):
    """No credentials: 403; a bad token: 401 (the user is never created); an
    unusable sub (too long): 401."""
    async def status(**kw):
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            await ws_connect(server, **kw)
        return ei.value.status_code
    sub = "usr_wsbad_" + secrets.token_hex(8)
    assert run(status()) == 403
    assert run(status(token=server.token(sub=sub, sign_secret="z" * 48))) == 401
    long_sub = server.token(sub="usr_" + "u" * 96)  # fits the token, not a user id
    assert run(status(token=long_sub)) == 401
    check_envelope(call(server, "GET", "/api/me", token=long_sub), "AUTH_INVALID", 401)
    # the bad token's sub was not created: a good token of it is a first use now
    time.sleep(0.05)
    t = time.time()
    r = call(server, "GET", "/api/me", token=server.token(sub=sub))
    assert r.status == 200 and r.json()["created_at"] >= t - 0.01, (t, r)


def test_me_answers_stay_consistent(server):
    """/api/me is served from a short-lived cache: same bytes as a fresh read,
    and PATCH, register and login show at once."""
    email, j = register(server, name="Ada")
    tok = j["access_token"]
    bodies = [call(server, "GET", p, token=tok).body for p in ME_PATHS]
    assert len(set(bodies)) == 1, bodies
    me = json.loads(bodies[0])
    assert me["name"] == "Ada" and set(me) >= {"id", "email", "name", "created_at", "permissions", "plan_tier"}, me
    r = call(server, "PATCH", "/api/users/me", {"name": "Ada L."}, token=tok)
    assert r.status == 200, r
    for p in ME_PATHS:
        r2 = call(server, "GET", p, token=tok)
        assert r2.status == 200 and r2.body == r.body, (r2, r)
    # a new session of the same user sees the same row
    tok2 = login(server, email).json()["access_token"]
    assert call(server, "GET", "/api/me", token=tok2).body == r.body


def test_ws_jwt_auth_echo(server):
    _, j = register(server)
    tok, uid = j["access_token"], j["user"]["id"]

    async def go():
        ws = await ws_connect(server, subprotocols=["jwt-auth", "jwt." + b64url(tok)])
        try:
            assert ws.subprotocol == "jwt-auth"
            check_welcome(await recv_json(ws), uid)
        finally:
            await ws.close()
        ws = await ws_connect(server, token=tok, subprotocols=["chat", "jwt-auth"])
        try:
            assert ws.subprotocol == "jwt-auth"
        finally:
            await ws.close()
        ws = await ws_connect(server, token=tok, subprotocols=["chat"])
        try:
            assert ws.subprotocol is None  # never a value other than jwt-auth
        finally:
            await ws.close()
    run(go())


# ---- one verifier for every entry point (issue 13, defect 6) ---------------------------

def _ws_handshake_status(srv, tok):
    async def go():
        try:
            ws = await ws_connect(srv, token=tok)
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101
    return run(go())


def _ingest(srv, tok):
    rec = {"timestamp": 1718000000, "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 10,
           "completion_tokens": 5, "latency_ms": 100.0}
    return call(srv, "POST", "/api/workloads", token=tok, raw_body=json.dumps([rec]))


def test_revoked_token_refused_by_every_entry_point(server):
    """A logout revokes the token and its login session: REST, the WebSocket
    handshake and the upload route all refuse both the logged-out token and the
    session's earlier access token (issued before a refresh) with 401 — each
    having accepted (and cached) them before — and a socket opened with the
    earlier token is closed 1008, not only the logged-out token's."""
    _, j = register(server)
    uid = j["user"]["id"]
    r = call(server, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]})
    assert r.status == 200, r
    first, second = j["access_token"], r.json()["access_token"]
    assert jwt_claims(first)["fam"] == jwt_claims(second)["fam"]
    for t in (first, second):
        assert call(server, "GET", "/api/me", token=t).status == 200
        assert _ws_handshake_status(server, t) == 101
        r = _ingest(server, t)
        assert r.status == 201, r

    async def go():
        ws = await ws_connect(server, token=first)
        try:
            check_welcome(await recv_json(ws), uid)
            r = await asyncio.get_running_loop().run_in_executor(
                None, lambda: call(server, "POST", "/auth/logout", token=second))
            assert r.status == 200, r
            with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                while True:  # frames already on their way may come first
                    await asyncio.wait_for(ws.recv(), 15)
            assert ei.value.code == 1008, ei.value
        finally:
            await ws.close()
    run(go())
    for t in (first, second):
        check_envelope(call(server, "GET", "/api/me", token=t), "AUTH_INVALID", 401)
        assert _ws_handshake_status(server, t) == 401
        check_envelope(_ingest(server, t), "AUTH_INVALID", 401)
    # another session of the user is untouched everywhere
    other = login(server, j["user"]["email"]).json()["access_token"]
    assert call(server, "GET", "/api/me", token=other).status == 200
    assert _ws_handshake_status(server, other) == 101
    assert _ingest(server, other).status == 201
