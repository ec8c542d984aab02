"""Run threads share a few database connections (issue 14; src/store/sqlite_db.c's pool).

Each run has a thread of its own (up to --max-runs); before the pool every one of them
opened a SQLite connection on its first store call and kept it, so
agentd_db_connections_open grew with the runs in flight.  Here 64 runs overlap (every
model step waits --llm-latency-ms) and the gauge must stay under a bound made of the
dedicated connections (main thread, worker pool, event writer, checkpointer) and the
pool's at most 8 — far below the runs in flight — while every run still completes.
"""
import threading
import time

from agentd import agentd_server, metric_value
from auth_helpers import call
from test_events import start_run

RUNS = 64
# main 1 + workers 8 (UV_THREADPOOL_SIZE) + event writer 1 + checkpointer 1 + pool <= 8,
# and a few to spare: anything per run would pass it.
BOUND = 30

server = agentd_server("--rate-limit", "0", "--llm-latency-ms", "3000", "--max-runs", "200", name="store_pool")


def test_run_threads_share_a_few_connections(server):
    tokens = [server.token(sub="usr_pool_%d" % i) for i in range(RUNS)]
    runs = [None] * RUNS
    errors = []

    def starter(lo):
        try:
            for i in range(lo, RUNS, 8):
                runs[i] = start_run(server, tokens[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    starters = [threading.Thread(target=starter, args=(k,)) for k in range(8)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert not errors, errors

    peak_conns, peak_active = 0, 0
    deadline = time.monotonic() + 240
    while True:
        text = server.get("/metrics", timeout=30).text()
        conns = metric_value(text, "agentd_db_connections_open")
        active = metric_value(text, "agentd_runs_active")
        peak_conns, peak_active = max(peak_conns, conns), max(peak_active, active)
        if active == 0:
            break
        assert time.monotonic() < deadline, "runs still active: %s" % active
        time.sleep(0.1)

    # The runs did overlap (else the bound proves nothing), and the connections did not follow.
    assert peak_active >= RUNS * 3 // 4, peak_active
    assert peak_conns <= BOUND, "%d connections open with %d runs in flight" % (peak_conns, peak_active)
    for i, run in enumerate(runs):
        got = call(server, "GET", "/api/runs/" + run["id"], token=tokens[i]).json()
        assert got["status"] == "completed", got
