"""The one message write path (core/messages.h; SPEC §3: "two messages posted in order
come back in that order").

Every kind of message into one thread at once: posts from several connections, runs
started on REST (their user message, their answer) and a post with "run": true.  Each
writer's messages come back in its order, each run's question before its answer, and
the thread counts every one of them.  A post whose run a limit refuses stores nothing.
"""
import threading
import time

from agentd import agentd_server, check_envelope
from auth_helpers import call
from test_events import QUESTION, start_run

server = agentd_server("--rate-limit", "0", name="messages")

POSTERS = 4
PER_POSTER = 15
RUNS = 3


def all_messages(srv, token, thread_id):
    out, offset = [], 0
    while True:
        r = call(srv, "GET", "/api/threads/%s/messages?limit=100&offset=%d" % (thread_id, offset), token=token)
        assert r.status == 200, r
        j = r.json()
        out += j["messages"]
        if not j["has_more"]:
            return out
        offset += len(j["messages"])


def wait_completed(srv, token, run_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        run = call(srv, "GET", "/api/runs/" + run_id, token=token).json()
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_every_writer_keeps_its_order_in_one_thread(server):
    user = "usr_messages_one_path"
    token = server.token(sub=user)
    t = call(server, "POST", "/api/threads", {"title": "busy"}, token=token).json()
    url = "/api/threads/%s/messages" % t["id"]
    errors, runs, posted_run = [], [], []

    def poster(k):
        try:
            for i in range(PER_POSTER):
                r = call(server, "POST", url, {"content": "p%d-%02d" % (k, i)}, token=token)
                if r.status != 201:
                    errors.append(("post", k, i, r.status, r.text()))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(("post", k, repr(e)))

    def runner(k):
        try:
            r = call(server, "POST", "/api/agents/execute", {"message": "%s (run %d)" % (QUESTION, k),
                                                              "thread_id": t["id"]}, token=token)
            if r.status != 200:
                errors.append(("run", k, r.status, r.text()))
            else:
                runs.append((k, r.json()))
        except Exception as e:  # noqa: BLE001
            errors.append(("run", k, repr(e)))

    def post_and_run():
        try:
            r = call(server, "POST", url, {"content": "%s (posted run)" % QUESTION, "run": True}, token=token)
            if r.status != 202:
                errors.append(("post+run", r.status, r.text()))
            else:
                posted_run.append(r.json())
        except Exception as e:  # noqa: BLE001
            errors.append(("post+run", repr(e)))

    workers = [threading.Thread(target=poster, args=(k,)) for k in range(POSTERS)]
    workers += [threading.Thread(target=runner, args=(k,)) for k in range(RUNS)]
    workers.append(threading.Thread(target=post_and_run))
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not any(w.is_alive() for w in workers), "a writer hung"
    assert not errors, errors
    assert len(runs) == RUNS and len(posted_run) == 1
    extra = posted_run[0]
    assert extra["message"]["thread_id"] == t["id"] and extra["run"]["thread_id"] == t["id"], extra
    assert wait_completed(server, token, extra["run"]["id"])["status"] == "completed"

    msgs = all_messages(server, token, t["id"])
    assert len(msgs) == POSTERS * PER_POSTER + 2 * RUNS + 2, [m["content"][:40] for m in msgs]
    at = {m["id"]: i for i, m in enumerate(msgs)}
    # Each poster's messages in the order it posted them.
    for k in range(POSTERS):
        mine = [m["content"] for m in msgs if m["content"].startswith("p%d-" % k)]
        assert mine == ["p%d-%02d" % (k, i) for i in range(PER_POSTER)], mine
    # Each run: its user message, then (later) its answer, with the run's id.
    for k, j in runs:
        run = j["run"]
        assert run["thread_id"] == t["id"] and run["status"] == "completed", run
        q = [i for i, m in enumerate(msgs) if m["role"] == "user" and m["content"] == "%s (run %d)" % (QUESTION, k)]
        a = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("run_id") == run["id"]]
        assert len(q) == 1 and len(a) == 1, (k, q, a)
        assert q[0] < a[0], (k, q, a)
        assert msgs[a[0]]["content"] == j["response"]
    a = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("run_id") == extra["run"]["id"]]
    assert len(a) == 1 and at[extra["message"]["id"]] < a[0], a
    th = call(server, "GET", "/api/threads/" + t["id"], token=token).json()
    assert th["message_count"] == len(msgs), th


def test_a_post_whose_run_is_refused_by_a_limit_stores_nothing(server_factory):
    """runs.h: a run's slot is taken before anything of it is stored, so a request
    refused by a limit (SPEC §9: 10 concurrent runs per user) leaves no message behind;
    POST …/messages with "run": true is such a request."""
    srv = server_factory("--llm-latency-ms", "3000")
    token = srv.token(sub="usr_messages_limited")
    t = call(srv, "POST", "/api/threads", {"title": "limited"}, token=token).json()
    runs = []
    try:
        for _ in range(10):
            runs.append(start_run(srv, token)["id"])
            time.sleep(0.4)  # under the 3 starts/s rate
        r = call(srv, "POST", "/api/threads/%s/messages" % t["id"], {"content": "one run too many", "run": True},
                 token=token)
        check_envelope(r, "RATE_LIMITED", 429)
        assert r.header("retry-after") is not None, r
        assert all_messages(srv, token, t["id"]) == []
        th = call(srv, "GET", "/api/threads/" + t["id"], token=token).json()
        assert th["message_count"] == 0, th
    finally:
        for rid in runs:
            call(srv, "POST", "/api/agents/stop", {"run_id": rid}, token=token)
