"""Users and tokens survive restarts (SPEC §2, §10): a clean SIGTERM restart,
a kill -9 right after the 201 (what was acknowledged survives), logout
revocations after a restart, and `agentd user add` (password from stdin).
"""
import signal
import subprocess

from agentd import AGENTD_BIN, check_envelope, sanitizer_env
from auth_helpers import PASSWORD, call, login, register, unique_email


def test_sigterm_restart_keeps_users_and_tokens(server_factory):
    srv = server_factory()
    email, j = register(srv, name="Persist")
    srv.stop_and_check()
    srv.start()
    r = login(srv, email)
    assert r.status == 200, r
    assert r.json()["user"]["id"] == j["user"]["id"]
    # same secret, same data: the old access and refresh tokens still work
    me = call(srv, "GET", "/api/me", token=j["access_token"])
    assert me.status == 200 and me.json()["name"] == "Persist", me
    assert call(srv, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]}).status == 200


def test_kill9_after_201_user_survives(server_factory):
    srv = server_factory()
    email, j = register(srv)
    srv.stop(signal.SIGKILL)
    srv.start()
    r = login(srv, email)
    assert r.status == 200, r
    assert r.json()["user"]["id"] == j["user"]["id"]


def test_kill9_after_refresh_rotation_reuse_still_detected(server_factory):
    srv = server_factory()
    _, j = register(srv)
    r = call(srv, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]})
    assert r.status == 200, r
    srv.stop(signal.SIGKILL)
    srv.start()
    check_envelope(call(srv, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]}), "AUTH_INVALID", 401)
    check_envelope(call(srv, "POST", "/auth/refresh", {"refresh_token": r.json()["refresh_token"]}),
                   "AUTH_INVALID", 401)


def test_logout_survives_restart(server_factory):
    srv = server_factory()
    _, j = register(srv)
    assert call(srv, "POST", "/auth/logout", token=j["access_token"]).status == 200
    srv.stop(signal.SIGKILL)
    srv.start()
    check_envelope(call(srv, "GET", "/api/me", token=j["access_token"]), "AUTH_INVALID", 401)
    check_envelope(call(srv, "POST", "/auth/refresh", {"refresh_token": j["refresh_token"]}), "AUTH_INVALID", 401)


def user_add(srv, email, stdin):
    return subprocess.run([AGENTD_BIN, "user", "add", email, "--data-dir", srv.data_dir, "--log-level", "warn"],
                          input=stdin, capture_output=True, timeout=60, env=sanitizer_env(), cwd=srv.workdir)


def test_user_add_then_login(server_factory):
    srv = server_factory(start=False)
    email = unique_email("Cli")
    p = user_add(srv, email.upper(), (PASSWORD + "\n").encode())
    assert p.returncode == 0, p
    uid = p.stdout.decode().strip()
    assert uid.startswith("usr_"), p
    assert b"ERROR: " not in p.stderr and b"runtime error" not in p.stderr, p.stderr
    # duplicate (any case) and bad passwords are refused with a clear message
    p2 = user_add(srv, email, b"another password\n")
    assert p2.returncode == 1 and b"already exists" in p2.stderr, p2
    p3 = user_add(srv, unique_email(), b"short\n")
    assert p3.returncode == 1 and b"at least 8" in p3.stderr, p3
    p4 = user_add(srv, unique_email(), b"")
    assert p4.returncode == 1 and p4.stderr, p4
    p5 = user_add(srv, "not-an-email", b"long enough password\n")
    assert p5.returncode != 0 and p5.stderr, p5
    srv.start()
    r = login(srv, email)
    assert r.status == 200, r
    assert r.json()["user"]["id"] == uid
    check_envelope(login(srv, email, "another password"), "AUTH_INVALID", 401)
