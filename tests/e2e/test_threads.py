"""Threads and messages (SPEC §3) and the WebSocket thread frames (SPEC §6).

One server for the module with the /api rate limit off (--rate-limit 0), two users
(tokens minted with the server's secret; a valid token for an unknown sub creates the
user on first use).  Every route: shapes, pagination errors, ordering, validation,
soft/hard delete, and isolation between the two users for every route and frame.
"""
import json
import secrets

import httpx
import pytest

from agentd import RawWS, agentd_server, check_welcome

server = agentd_server("--rate-limit", "0", name="threads")

THREAD_KEYS = {"id", "object", "title", "created_at", "updated_at", "message_count", "status", "metadata"}
MESSAGE_KEYS = {"id", "object", "thread_id", "role", "content", "created_at", "metadata"}


class User:
    def __init__(self, srv, sub):
        self.sub = sub
        self.token = srv.token(sub=sub)
        self.c = httpx.Client(base_url=srv.base_url, timeout=20.0,
                              headers={"Authorization": "Bearer " + self.token})

    def __getattr__(self, name):  # get/post/put/patch/delete/request
        return getattr(self.c, name)

    def thread(self, title="t", **kw):
        body = {"title": title}
        body.update(kw)
        r = self.c.post("/api/threads", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def message(self, thread_id, content="hello", **kw):
        body = {"content": content}
        body.update(kw)
        r = self.c.post("/api/threads/%s/messages" % thread_id, json=body)
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="module")
def alice(server):
    u = User(server, "usr_thr_alice_" + secrets.token_hex(4))
    yield u
    u.c.close()


@pytest.fixture(scope="module")
def bob(server):
    u = User(server, "usr_thr_bob_" + secrets.token_hex(4))
    yield u
    u.c.close()


def envelope(r, status, code):
    """SPEC conventions: the error envelope, request_id == X-Request-ID."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    j = r.json()
    assert j["error"] is True and j["error_code"] == code, j
    assert isinstance(j["message"], str) and j["message"] and j["detail"] == j["message"], j
    assert j["request_id"] == r.headers["x-request-id"], j
    return j


def check_thread(t):
    assert THREAD_KEYS <= set(t), t
    assert t["object"] == "thread" and t["id"].startswith("thr_"), t
    assert t["status"] in ("active", "archived"), t
    assert isinstance(t["created_at"], (int, float)) and isinstance(t["updated_at"], (int, float)), t
    assert isinstance(t["message_count"], int) and isinstance(t["metadata"], dict), t
    assert t["title"] is None or isinstance(t["title"], str), t


def check_message(m):
    assert MESSAGE_KEYS <= set(m), m
    assert m["object"] == "thread.message" and m["id"].startswith("msg_"), m
    assert m["thread_id"].startswith("thr_"), m
    assert m["role"] in ("user", "assistant", "system", "tool"), m
    assert isinstance(m["content"], str) and isinstance(m["created_at"], (int, float)), m
    assert isinstance(m["metadata"], dict), m


# ---- auth ---------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/api/threads"), ("POST", "/api/threads"),
                                         ("GET", "/api/threads/thr_x"), ("GET", "/api/messages"),
                                         ("POST", "/api/chat/messages"), ("GET", "/api/history?thread_id=x"),
                                         ("DELETE", "/api/messages/msg_x")])
def test_requires_auth(server, method, path):
    r = httpx.request(method, server.base_url + path, json={} if method == "POST" else None)
    envelope(r, 401, "AUTH_REQUIRED")


# ---- threads --------------------------------------------------------------------

def test_create_and_get_shape(alice):
    r = alice.post("/api/threads", json={"title": "First", "metadata": {"k": [1, 2], "s": "v"}, "junk": 1})
    assert r.status_code == 201, r.text
    t = r.json()
    check_thread(t)
    assert t["title"] == "First" and t["metadata"] == {"k": [1, 2], "s": "v"}, t
    assert t["status"] == "active" and t["message_count"] == 0, t
    g = alice.get("/api/threads/" + t["id"])
    assert g.status_code == 200, g.text
    assert g.json() == t
    # An empty body makes a thread without title and with empty metadata.
    r = alice.post("/api/threads", json={})
    assert r.status_code == 201, r.text
    e = r.json()
    check_thread(e)
    assert e["title"] is None and e["metadata"] == {}, e


def test_create_validation(alice):
    for body, field in [({"title": 5}, "title"), ({"title": None}, "title"),
                        ({"metadata": [1]}, "metadata"), ({"metadata": "x"}, "metadata")]:
        j = envelope(alice.post("/api/threads", json=body), 422, "VALIDATION_ERROR")
        assert j["details"][0]["field"] == field, j
    ok = alice.post("/api/threads", json={"title": "é" * 500})  # 500 characters, 1000 bytes
    assert ok.status_code == 201 and ok.json()["title"] == "é" * 500, ok.text
    envelope(alice.post("/api/threads", content=b"{bad"), 400, "BAD_REQUEST")
    envelope(alice.post("/api/threads", content=b"[1]"), 422, "VALIDATION_ERROR")


def test_415_text_plain(alice):
    r = alice.post("/api/threads", content=b'{"title":"x"}', headers={"Content-Type": "text/plain"})
    envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    t = alice.thread()
    r = alice.post("/api/threads/%s/messages" % t["id"], content=b'{"content":"x"}',
                   headers={"Content-Type": "text/plain"})
    envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    # No Content-Type is read as JSON.
    r = alice.post("/api/threads/%s/messages" % t["id"], content=b'{"content":"x"}',
                   headers={"Content-Type": ""})
    assert r.status_code in (201, 415), r.text


def test_update_put_patch(alice):
    t = alice.thread("before", metadata={"a": 1})
    r = alice.put("/api/threads/" + t["id"], json={"title": "after", "other": True})
    assert r.status_code == 200, r.text
    u = r.json()
    check_thread(u)
    assert u["title"] == "after" and u["metadata"] == {"a": 1}, u
    assert u["updated_at"] >= t["updated_at"]
    r = alice.patch("/api/threads/" + t["id"], json={"metadata": {"b": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "after" and r.json()["metadata"] == {"b": 2}, r.text
    for body, field in [({"title": ["x"]}, "title"), ({"metadata": 3}, "metadata")]:
        j = envelope(alice.patch("/api/threads/" + t["id"], json=body), 422, "VALIDATION_ERROR")
        assert j["details"][0]["field"] == field
    assert alice.get("/api/threads/" + t["id"]).json()["title"] == "after"
    envelope(alice.put("/api/threads/thr_doesnotexist", json={"title": "x"}), 404, "NOT_FOUND")


def test_list_order_and_pagination(server):
    u = User(server, "usr_thr_lister_" + secrets.token_hex(4))
    ids = [u.thread("t%d" % i)["id"] for i in range(5)]
    r = u.get("/api/threads")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["total"] == 5 and j["has_more"] is False and j["limit"] == 20 and j["offset"] == 0, j
    assert [t["id"] for t in j["threads"]] == ids[::-1]  # newest activity first
    for t in j["threads"]:
        check_thread(t)
    u.message(ids[0], "bump")  # the oldest thread becomes the most recent
    j = u.get("/api/threads?limit=2").json()
    assert [t["id"] for t in j["threads"]] == [ids[0], ids[4]] and j["has_more"] is True and j["total"] == 5, j
    j = u.get("/api/threads?limit=2&offset=4").json()
    assert [t["id"] for t in j["threads"]] == [ids[1]] and j["has_more"] is False, j
    j = u.get("/api/threads?offset=50").json()
    assert j["threads"] == [] and j["total"] == 5 and j["has_more"] is False, j
    u.c.close()


PAGED = ["/api/threads", "/api/threads/{tid}/messages", "/api/messages", "/api/chat/messages",
         "/api/history?thread_id={tid}"]


@pytest.mark.parametrize("path", PAGED)
def test_pagination_errors(alice, path):
    tid = alice.thread()["id"]
    p = path.format(tid=tid)
    sep = "&" if "?" in p else "?"
    for q in ["limit=0", "limit=101", "limit=abc", "limit=-1", "limit=", "limit=1.5", "offset=-1", "offset=x",
              "limit=99999999999999999999",
              # issue 13 defect 12: an escape that decodes to NUL (or not at all) is a bad value, not absent
              "limit=5%00abc", "limit=%00", "offset=2%00x", "limit=%zz", "limit=5%"]:
        envelope(alice.get(p + sep + q), 400, "BAD_REQUEST")
    for q in ["limit=1", "limit=100", "offset=0", "offset=1000"]:
        r = alice.get(p + sep + q)
        assert r.status_code == 200, (q, r.text)
        assert "total" in r.json() and "has_more" in r.json()


# ---- messages ---------------------------------------------------------------------

def test_ten_messages_in_order(alice):
    t = alice.thread("order")
    posted = [alice.message(t["id"], "message %d" % i) for i in range(10)]
    for m in posted:
        check_message(m)
        assert m["thread_id"] == t["id"] and m["role"] == "user"
    r = alice.get("/api/threads/%s/messages" % t["id"])
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["thread_id"] == t["id"] and j["total"] == 10 and j["limit"] == 20 and j["offset"] == 0, j
    assert j["has_more"] is False
    assert [m["id"] for m in j["messages"]] == [m["id"] for m in posted]
    assert [m["content"] for m in j["messages"]] == ["message %d" % i for i in range(10)]
    j = alice.get("/api/threads/%s/messages?limit=3&offset=3" % t["id"]).json()
    assert [m["content"] for m in j["messages"]] == ["message 3", "message 4", "message 5"] and j["has_more"], j
    th = alice.get("/api/threads/" + t["id"]).json()
    assert th["message_count"] == 10 and th["updated_at"] >= posted[-1]["created_at"] - 1e-3, th
    # /api/history has the same shape and order.
    h = alice.get("/api/history?thread_id=%s&limit=4&offset=8" % t["id"])
    assert h.status_code == 200, h.text
    h = h.json()
    assert h["thread_id"] == t["id"] and h["total"] == 10 and h["limit"] == 4 and h["offset"] == 8
    assert [m["content"] for m in h["messages"]] == ["message 8", "message 9"] and h["has_more"] is False


def test_message_validation(alice):
    t = alice.thread("v")
    url = "/api/threads/%s/messages" % t["id"]
    for body, field in [({}, "content"), ({"content": ""}, "content"), ({"content": "  \n\t "}, "content"),
                        ({"content": 5}, "content"), ({"content": "x", "role": "robot"}, "role"),
                        ({"content": "x", "role": 1}, "role"), ({"content": "x", "metadata": []}, "metadata"),
                        ({"content": "x", "run": "yes"}, "run")]:
        j = envelope(alice.post(url, json=body), 422, "VALIDATION_ERROR")
        assert j["details"][0]["field"] == field, (body, j)
    big = alice.post(url, json={"content": "é" * 100000})
    assert big.status_code == 201 and len(big.json()["content"]) == 100000, big.text[:200]
    for role in ("user", "assistant", "system", "tool"):
        m = alice.message(t["id"], "as " + role, role=role, ignored_field=1)
        assert m["role"] == role
    m = alice.message(t["id"], "meta", metadata={"x": 1})
    assert m["metadata"] == {"x": 1}
    assert alice.get("/api/threads/" + t["id"]).json()["message_count"] == 6


def test_run_flag(alice):
    t = alice.thread("runs")
    r = alice.post("/api/threads/%s/messages" % t["id"], json={"content": "go", "run": True})
    if r.status_code == 503:  # no runs module yet: nothing is stored
        envelope(r, 503, "UNAVAILABLE")
        assert alice.get("/api/threads/" + t["id"]).json()["message_count"] == 0
    else:
        assert r.status_code == 202, r.text
    m = alice.post("/api/threads/%s/messages" % t["id"], json={"content": "no run", "run": False})
    assert m.status_code == 201, m.text


@pytest.mark.parametrize("path", ["/api/messages", "/api/chat/messages"])
def test_post_creates_thread_with_title(alice, path):
    text = "Please summarise the quarterly figures for the northern region and compare them with last year"
    r = alice.post(path, json={"content": text})
    assert r.status_code == 201, r.text
    m = r.json()
    check_message(m)
    t = alice.get("/api/threads/" + m["thread_id"]).json()
    assert t["message_count"] == 1, t
    title = t["title"]
    assert len(title) <= 60 and title.endswith("…"), title
    assert text.startswith(title[:-1]) and text[len(title) - 1] == " ", title  # cut at a word boundary
    # Short content is the title as is; whitespace runs collapse.
    m2 = alice.post(path, json={"content": "  Short   question\nhere  "}).json()
    assert alice.get("/api/threads/" + m2["thread_id"]).json()["title"] == "Short question here"
    # With thread_id it goes into that thread.
    m3 = alice.post(path, json={"content": "more", "thread_id": m["thread_id"], "role": "assistant"})
    assert m3.status_code == 201 and m3.json()["thread_id"] == m["thread_id"], m3.text
    assert m3.json()["role"] == "assistant"
    envelope(alice.post(path, json={"content": "x", "thread_id": "thr_nope"}), 404, "NOT_FOUND")
    envelope(alice.post(path, json={"content": "x", "thread_id": 7}), 422, "VALIDATION_ERROR")
    envelope(alice.post(path, json={"content": ""}), 422, "VALIDATION_ERROR")


def test_list_user_messages(server):
    u = User(server, "usr_thr_msgs_" + secrets.token_hex(4))
    a = u.thread("a")["id"]
    b = u.thread("b")["id"]
    ms = [u.message(a if i % 2 == 0 else b, "m%d" % i) for i in range(6)]
    for path in ("/api/messages", "/api/chat/messages"):
        j = u.get(path).json()
        assert j["total"] == 6 and j["has_more"] is False, j
        assert [m["id"] for m in j["messages"]] == [m["id"] for m in ms[::-1]]  # newest first
        j = u.get(path + "?thread_id=%s&limit=2" % a).json()
        assert [m["content"] for m in j["messages"]] == ["m4", "m2"] and j["total"] == 3 and j["has_more"], j
        j = u.get(path + "?thread_id=%s&limit=2&offset=2" % a).json()
        assert [m["content"] for m in j["messages"]] == ["m0"] and j["has_more"] is False, j
        envelope(u.get(path + "?thread_id=thr_nope"), 404, "NOT_FOUND")
    u.c.close()


def test_message_get_delete(alice):
    t = alice.thread("gd")
    m1 = alice.message(t["id"], "one")
    m2 = alice.message(t["id"], "two")
    r = alice.get("/api/messages/" + m1["id"])
    assert r.status_code == 200 and r.json() == m1, r.text
    r = alice.delete("/api/messages/" + m1["id"])
    assert r.status_code == 200, r.text
    assert r.json()["id"] == m1["id"]
    j = envelope(alice.get("/api/messages/" + m1["id"]), 404, "NOT_FOUND")
    assert j["message"] == "message not found"
    envelope(alice.delete("/api/messages/" + m1["id"]), 404, "NOT_FOUND")
    th = alice.get("/api/threads/" + t["id"]).json()
    assert th["message_count"] == 1
    j = alice.get("/api/threads/%s/messages" % t["id"]).json()
    assert [m["id"] for m in j["messages"]] == [m2["id"]] and j["total"] == 1


def test_history_requires_thread(alice):
    envelope(alice.get("/api/history"), 400, "BAD_REQUEST")
    j = envelope(alice.get("/api/history?thread_id=thr_nope"), 404, "NOT_FOUND")
    assert j["message"] == "thread not found"


# ---- delete ----------------------------------------------------------------------

def test_soft_and_hard_delete(server):
    u = User(server, "usr_thr_del_" + secrets.token_hex(4))
    soft = u.thread("soft")
    hard = u.thread("hard")
    keep = u.thread("keep")
    hm = u.message(hard["id"], "bye")
    r = u.delete("/api/threads/" + soft["id"])
    assert r.status_code == 200 and r.json() == {"status": "archived", "id": soft["id"]}, r.text
    assert u.delete("/api/threads/" + soft["id"]).status_code == 200  # idempotent
    ids = [t["id"] for t in u.get("/api/threads").json()["threads"]]
    assert soft["id"] not in ids and keep["id"] in ids
    j = u.get("/api/threads?include_archived=true").json()
    assert soft["id"] in [t["id"] for t in j["threads"]] and j["total"] == 3, j
    g = u.get("/api/threads/" + soft["id"])
    assert g.status_code == 200 and g.json()["status"] == "archived", g.text
    envelope(u.get("/api/threads?include_archived=maybe"), 400, "BAD_REQUEST")

    r = u.delete("/api/threads/%s?hard=true" % hard["id"])
    assert r.status_code == 200 and r.json()["id"] == hard["id"], r.text
    envelope(u.get("/api/threads/" + hard["id"]), 404, "NOT_FOUND")
    envelope(u.get("/api/messages/" + hm["id"]), 404, "NOT_FOUND")
    envelope(u.get("/api/threads/%s/messages" % hard["id"]), 404, "NOT_FOUND")
    envelope(u.delete("/api/threads/%s?hard=true" % hard["id"]), 404, "NOT_FOUND")
    assert u.get("/api/messages").json()["total"] == 0
    j = u.get("/api/threads?include_archived=true").json()
    assert hard["id"] not in [t["id"] for t in j["threads"]] and j["total"] == 2
    u.c.close()


def test_unknown_ids(alice):
    for method, path in [("GET", "/api/threads/thr_nope"), ("PATCH", "/api/threads/thr_nope"),
                         ("DELETE", "/api/threads/thr_nope"), ("GET", "/api/threads/thr_nope/messages"),
                         ("POST", "/api/threads/thr_nope/messages"), ("GET", "/api/threads/" + "x" * 300)]:
        body = {"content": "x", "title": "x"} if method in ("POST", "PATCH") else None
        j = envelope(alice.request(method, path, json=body), 404, "NOT_FOUND")
        assert j["message"] == "thread not found", j
    for method in ("GET", "DELETE"):
        j = envelope(alice.request(method, "/api/messages/msg_nope"), 404, "NOT_FOUND")
        assert j["message"] == "message not found"


# ---- isolation ---------------------------------------------------------------------

def test_isolation_every_route(alice, bob):
    t = alice.thread("alice private", metadata={"secret": 1})
    m = alice.message(t["id"], "alice says")
    tid, mid = t["id"], m["id"]

    def nf(r, what="thread"):
        j = envelope(r, 404, "NOT_FOUND")
        assert j["message"] == what + " not found", j

    nf(bob.get("/api/threads/" + tid))
    nf(bob.put("/api/threads/" + tid, json={"title": "bob"}))
    nf(bob.patch("/api/threads/" + tid, json={"metadata": {"bob": 1}}))
    nf(bob.delete("/api/threads/" + tid))
    nf(bob.delete("/api/threads/%s?hard=true" % tid))
    nf(bob.get("/api/threads/%s/messages" % tid))
    nf(bob.post("/api/threads/%s/messages" % tid, json={"content": "bob was here"}))
    nf(bob.post("/api/messages", json={"content": "bob", "thread_id": tid}))
    nf(bob.post("/api/chat/messages", json={"content": "bob", "thread_id": tid}))
    nf(bob.get("/api/messages?thread_id=" + tid))
    nf(bob.get("/api/chat/messages?thread_id=" + tid))
    nf(bob.get("/api/history?thread_id=" + tid))
    nf(bob.get("/api/messages/" + mid), "message")
    nf(bob.delete("/api/messages/" + mid), "message")
    assert tid not in [x["id"] for x in bob.get("/api/threads?include_archived=true&limit=100").json()["threads"]]
    assert mid not in [x["id"] for x in bob.get("/api/messages?limit=100").json()["messages"]]
    # Alice's data is untouched.
    t2 = alice.get("/api/threads/" + tid).json()
    assert t2["title"] == "alice private" and t2["metadata"] == {"secret": 1} and t2["status"] == "active"
    assert t2["message_count"] == 1
    j = alice.get("/api/threads/%s/messages" % tid).json()
    assert [x["content"] for x in j["messages"]] == ["alice says"]


# ---- WebSocket frames (SPEC §6) -------------------------------------------------------

def ws_open(srv, user):
    ws = RawWS(srv.addr, token=user.token)
    check_welcome(ws.recv_json(), user.sub)
    return ws


def ws_call(ws, frame, want_type):
    ws.send_json(frame)
    msg = ws.recv_json(timeout=10)
    assert msg["type"] == want_type, msg
    if "id" in frame:
        assert msg.get("reply_to") == frame["id"], msg
    return msg


def test_ws_thread_frames(server, alice):
    ws = ws_open(server, alice)
    try:
        created = ws_call(ws, {"type": "create_thread", "id": "c1", "payload": {"title": "from ws"}},
                          "thread_created")["data"]
        check_thread(created)
        assert created["title"] == "from ws"
        tid = created["id"]
        assert alice.get("/api/threads/" + tid).status_code == 200
        # Without payload the frame itself is the payload.
        renamed = ws_call(ws, {"type": "rename_thread", "id": 2, "thread_id": tid, "title": "renamed"},
                          "thread_renamed")["data"]
        assert renamed["id"] == tid and renamed["title"] == "renamed"
        ms = [alice.message(tid, "w%d" % i) for i in range(5)]
        sw = ws_call(ws, {"type": "switch_thread", "id": "s", "payload": {"thread_id": tid}}, "thread_switched")
        assert sw["data"]["thread_id"] == tid
        assert [m["id"] for m in sw["data"]["messages"]] == [m["id"] for m in ms]
        h = ws_call(ws, {"type": "get_thread_history", "id": "h1",
                         "payload": {"thread_id": tid, "limit": 2, "before": ms[3]["id"]}}, "thread_history")["data"]
        assert h["thread_id"] == tid and [m["content"] for m in h["messages"]] == ["w1", "w2"] and h["has_more"]
        h = ws_call(ws, {"type": "get_thread_history", "payload": {"thread_id": tid, "limit": 5,
                                                                  "before": ms[1]["id"]}}, "thread_history")["data"]
        assert [m["content"] for m in h["messages"]] == ["w0"] and h["has_more"] is False
        lst = ws_call(ws, {"type": "list_threads", "id": "l"}, "thread_list")["data"]
        assert {"threads", "total", "has_more"} <= set(lst) and tid in [t["id"] for t in lst["threads"]]
        assert lst["threads"][0]["id"] == tid  # the most recent activity
        d = ws_call(ws, {"type": "delete_thread", "id": "d", "payload": {"thread_id": tid}}, "thread_deleted")
        assert d["data"] == {"thread_id": tid, "status": "archived"}
        assert alice.get("/api/threads/" + tid).json()["status"] == "archived"
        # Errors keep the socket open.
        e = ws_call(ws, {"type": "switch_thread", "id": "e1", "payload": {"thread_id": "thr_nope"}}, "error")
        assert e["code"] == "NOT_FOUND" and e["data"]["code"] == "NOT_FOUND", e
        e = ws_call(ws, {"type": "rename_thread", "id": "e2", "payload": {"title": "x"}}, "error")
        assert e["code"] == "VALIDATION_ERROR", e
        e = ws_call(ws, {"type": "get_thread_history", "id": "e3", "payload": {"thread_id": tid, "limit": 0}},
                    "error")
        assert e["code"] == "VALIDATION_ERROR", e
        e = ws_call(ws, {"type": "get_thread_history", "id": "e4",
                         "payload": {"thread_id": tid, "before": "msg_nope"}}, "error")
        assert e["code"] == "NOT_FOUND", e
        e = ws_call(ws, {"type": "create_thread", "id": "e5", "payload": {"title": 5}}, "error")
        assert e["code"] == "VALIDATION_ERROR", e
        ws_call(ws, {"type": "ping", "id": "p"}, "pong")
    finally:
        ws.close()


def test_ws_isolation(server, alice, bob):
    t = alice.thread("alice ws secret")
    m = alice.message(t["id"], "secret words")
    ws = ws_open(server, bob)
    try:
        for frame in [{"type": "switch_thread", "payload": {"thread_id": t["id"]}},
                      {"type": "get_thread_history", "payload": {"thread_id": t["id"]}},
                      {"type": "rename_thread", "payload": {"thread_id": t["id"], "title": "bob"}},
                      {"type": "delete_thread", "payload": {"thread_id": t["id"]}}]:
            frame["id"] = frame["type"]
            e = ws_call(ws, frame, "error")
            assert e["code"] == "NOT_FOUND" and e["message"] == "thread not found", e
            assert "secret" not in json.dumps(e)
        lst = ws_call(ws, {"type": "list_threads", "id": "l", "payload": {"include_archived": True, "limit": 100}},
                      "thread_list")["data"]
        assert t["id"] not in [x["id"] for x in lst["threads"]]
        # Bob's own history paging cannot use Alice's message as a cursor.
        own = ws_call(ws, {"type": "create_thread", "id": "c"}, "thread_created")["data"]
        e = ws_call(ws, {"type": "get_thread_history", "id": "h",
                         "payload": {"thread_id": own["id"], "before": m["id"]}}, "error")
        assert e["code"] == "NOT_FOUND"
    finally:
        ws.close()
    t2 = alice.get("/api/threads/" + t["id"]).json()
    assert t2["title"] == "alice ws secret" and t2["status"] == "active"


# ---- issue 13: "\u0000" is valid JSON (defect 7); no field cap below the body limit (defect 13) --------

NUL_CONTENT = b'{"content":"a\\u0000b"}'  # the JSON text {"content":"a\u0000b"}


def test_nul_escape_is_422_naming_the_field(alice):
    """A NUL character is valid JSON: never 400, never stored cut short at the NUL."""
    t = alice.thread("nul")
    url = "/api/threads/%s/messages" % t["id"]
    hdr = {"Content-Type": "application/json"}
    for path, raw, field in [(url, NUL_CONTENT, "content"),
                             (url, b'{"content":"\\u0000"}', "content"),
                             (url, b'{"content":"ok","role":"user\\u0000x"}', "role"),
                             (url, b'{"content":"ok","metadata":{"k":["x\\u0000"]}}', "metadata"),
                             ("/api/messages", b'{"content":"ok","thread_id":"%s\\u0000x"}' % t["id"].encode(),
                              "thread_id"),
                             ("/api/threads", b'{"title":"t\\u0000x"}', "title"),
                             ("/api/threads", b'{"metadata":{"a":"\\u0000"}}', "metadata"),
                             ("/api/threads", b'{"\\u0000":1}', "body")]:
        j = envelope(alice.post(path, content=raw, headers=hdr), 422, "VALIDATION_ERROR")
        assert j["details"] == [{"field": field, "message": j["details"][0]["message"]}], (raw, j)
        assert "NUL" in j["details"][0]["message"], j
    j = envelope(alice.patch("/api/threads/" + t["id"], content=b'{"title":"x\\u0000"}', headers=hdr), 422,
                 "VALIDATION_ERROR")
    assert j["details"][0]["field"] == "title", j
    j = envelope(alice.post("/api/agents/execute", content=b'{"message":"hi\\u0000there"}', headers=hdr), 422,
                 "VALIDATION_ERROR")
    assert j["details"][0]["field"] == "message", j
    # Nothing was stored, under any truncated form.
    assert alice.get("/api/threads/" + t["id"]).json()["message_count"] == 0
    assert alice.get("/api/threads/" + t["id"]).json()["title"] == "nul"


def test_ws_user_message_with_nul_is_validation_error(server, alice):
    ws = ws_open(server, alice)
    try:
        ws.send_text('{"type":"user_message","id":"n1","payload":{"content":"a\\u0000b"}}')
        e = ws.recv_json(timeout=10)
        assert e["type"] == "error" and e["code"] == "VALIDATION_ERROR", e
        assert e.get("reply_to") == "n1" and "content" in e["message"] and "NUL" in e["message"], e
        ws.send_text('{"type":"create_thread","id":"n2","payload":{"title":"a\\u0000b"}}')
        e = ws.recv_json(timeout=10)
        assert e["type"] == "error" and e["code"] == "VALIDATION_ERROR" and "title" in e["message"], e
        ws.send_text('{"type":"ping","\\u0000":1}')  # a NUL in a key: still valid JSON
        e = ws.recv_json(timeout=10)
        assert e["type"] == "error" and e["code"] == "VALIDATION_ERROR", e
        ws.send_text('{"type":"ping"')  # malformed stays INVALID_JSON
        e = ws.recv_json(timeout=10)
        assert e["type"] == "error" and e["code"] == "INVALID_JSON", e
        ws_call(ws, {"type": "ping", "id": "p"}, "pong")  # the socket stays open
    finally:
        ws.close()


def test_content_and_title_up_to_the_body_limit(alice):
    """SPEC: within the body limit no field has a smaller cap (old caps: 100,000 / 500 characters)."""
    body_limit = 1 << 20
    content = "x" * (body_limit - len('{"content":""}'))  # the whole default body
    t = alice.thread("t" * 5000)
    assert t["title"] == "t" * 5000
    r = alice.post("/api/threads/%s/messages" % t["id"], content=json.dumps({"content": content}, separators=(",", ":")).encode(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:300]
    m = r.json()
    assert m["content"] == content
    h = alice.get("/api/threads/%s/messages" % t["id"]).json()
    assert h["messages"][-1]["content"] == content
    u = alice.patch("/api/threads/" + t["id"], json={"title": "é" * 100000})
    assert u.status_code == 200 and u.json()["title"] == "é" * 100000, u.text[:200]


def test_big_message_runs_and_every_event_arrives(server):
    """Defect 13 downstream: a message far past the old 100,000-character cap goes through a run,
    and every event of it reaches an open WebSocket and the store (none is dropped or closes the
    socket); the events that carry the message stay within the socket's send queue."""
    from test_events import WSClient, check_run_events, is_final, stored_events
    sub = "usr_thr_big_" + secrets.token_hex(4)
    token = server.token(sub=sub)
    ws = WSClient(server, sub)
    try:
        # nearly the whole 1 MiB body: a frame carrying it whole would pass the 1 MiB send queue
        content = ("What are my LLM costs by model, and how can I cut them? " + "pad " * 270000)[:(1 << 20) - 64]
        with httpx.Client(base_url=server.base_url, timeout=60.0,
                          headers={"Authorization": "Bearer " + token}) as c:
            t = c.post("/api/threads", json={"title": "big"}).json()
            r = c.post("/api/threads/%s/messages" % t["id"], headers={"Content-Type": "application/json"},
                       content=json.dumps({"content": content, "run": True}, separators=(",", ":")).encode())
            assert r.status_code == 202, r.text[:300]
            run = r.json()["run"]
            assert r.json()["message"]["content"] == content
            final = ws.wait_for(lambda f: f.get("run_id") == run["id"] and "seq" in f and is_final(f), timeout=120)
            assert final["type"] == "agent_completed", final
            got = [e for e in ws.events() if e["run_id"] == run["id"]]
            check_run_events(got)
            stored = stored_events(server, token, run_id=run["id"])
            assert [e["seq"] for e in stored] == [e["seq"] for e in got]
            for e in got:  # every frame fits well within the send queue
                assert len(json.dumps(e)) < 256 * 1024, (e["type"], len(json.dumps(e)))
            h = c.get("/api/threads/%s/messages" % t["id"]).json()
            assert h["messages"][0]["content"] == content and h["messages"][-1]["role"] == "assistant"
            rr = c.get("/api/runs/" + run["id"]).json()
            assert rr["status"] == "completed", rr
            started = [e for e in got if e["type"] == "agent_started"]
            for e in started:  # the events carry the message's head, not 1 MB per sub-agent
                msg = e["data"]["message"]
                assert msg.endswith("\u2026") and content.startswith(msg[:-1]), msg[:80]
                assert len(msg.encode()) <= 16384, len(msg.encode())
            # WS history frames stay under the send queue: the 1 MB message is not sent whole there
            # (the socket would be closed 1013), older messages come on the next page.
            ws.send_json({"type": "switch_thread", "id": "sw", "payload": {"thread_id": t["id"]}})
            sw = ws.wait_for(lambda f: f.get("reply_to") == "sw", timeout=30)
            assert sw["type"] == "thread_switched", sw
            msgs = sw["data"]["messages"]
            assert [m["role"] for m in msgs] == ["assistant"] and sw["data"]["has_more"] is True, sw
            ws.send_json({"type": "get_thread_history", "id": "h2",
                          "payload": {"thread_id": t["id"], "before": msgs[0]["id"]}})
            h2 = ws.wait_for(lambda f: f.get("reply_to") == "h2", timeout=30)
            assert h2["type"] == "thread_history", h2
            (m,) = h2["data"]["messages"]
            assert m["role"] == "user" and m["content_truncated"] is True and content.startswith(m["content"]), m
            assert 0 < len(m["content"]) <= 16384 and h2["data"]["has_more"] is False, h2["data"]
            full = c.get("/api/messages/" + m["id"]).json()
            assert full["content"] == content and "content_truncated" not in full
            ws.send_json({"type": "ping", "id": "alive"})
            assert ws.wait_for(lambda f: f.get("reply_to") == "alive", timeout=30)["type"] == "pong"
    finally:
        ws.close()
