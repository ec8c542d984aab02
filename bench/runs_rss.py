#!/usr/bin/python3
"""bench/runs_rss.py: agentd's memory per run in flight (issue 14, docs/performance.md).

Starts AGENTD_BIN (default build/agentd) with --llm builtin --llm-latency-ms 4000
--rate-limit 0 --max-runs 2000 on a throw-away data directory, runs one warm-up run
to its end, reads VmRSS, then starts RUNS (default 1000) runs at once (POST
/api/agents/start, one user each, from 16 client threads) and samples VmRSS and
GET /metrics every 0.2 s until they have all ended.  Prints the RSS before, the
highest RSS seen while every run was in flight (agentd_runs_active == RUNS), and the
difference per run, with the most agentd_db_connections_open seen.

Usage: AGENTD_BIN=build/agentd RUNS=1000 /usr/bin/python3 bench/runs_rss.py
"""
import os
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
os.environ.setdefault("AGENTD_BIN", os.path.join(ROOT, "build", "agentd"))

from agentd import Agentd, metric_value  # noqa: E402
from auth_helpers import call  # noqa: E402

RUNS = int(os.environ.get("RUNS", "1000"))
QUESTION = "What did my workloads cost last week?"


def start(srv, token):
    r = call(srv, "POST", "/api/agents/start", {"message": QUESTION}, token=token)
    assert r.status == 202, r
    return r.json()["id"]


def wait_idle(srv, timeout):
    deadline = time.monotonic() + timeout
    while metric_value(srv.get("/metrics", timeout=30).text(), "agentd_runs_active") != 0:
        assert time.monotonic() < deadline, "runs still active"
        time.sleep(0.2)


def main():
    work = tempfile.mkdtemp(prefix="agentd-rss-")
    srv = Agentd(work, ["--llm", "builtin", "--llm-latency-ms", "4000", "--rate-limit", "0", "--max-runs", "2000",
                        "--log-level", "warn"], name="rss")
    srv.start()
    try:
        start(srv, srv.token(sub="usr_rss_warm"))
        wait_idle(srv, 120)
        time.sleep(1)
        base = srv.rss_kb()
        tokens = [srv.token(sub="usr_rss_%d" % i) for i in range(RUNS)]
        errors = []

        def starter(k):
            try:
                for i in range(k, RUNS, 16):
                    start(srv, tokens[i])
            except Exception as e:  # noqa: BLE001 - printed below
                errors.append(e)

        threads = [threading.Thread(target=starter, args=(k,)) for k in range(16)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started_s = time.monotonic() - t0
        if errors:
            raise SystemExit("starting runs failed: %r" % errors[:3])
        peak_all, peak_any, peak_conns, peak_active = 0, 0, 0, 0
        while True:
            text = srv.get("/metrics", timeout=30).text()
            rss = srv.rss_kb()
            active = metric_value(text, "agentd_runs_active")
            peak_conns = max(peak_conns, metric_value(text, "agentd_db_connections_open"))
            peak_active = max(peak_active, active)
            peak_any = max(peak_any, rss)
            if active >= RUNS:
                peak_all = max(peak_all, rss)
            if active == 0:
                break
            time.sleep(0.2)
        print("runs %d started in %.1f s; most in flight at once %d" % (RUNS, started_s, peak_active))
        print("RSS before %d KiB; with all %d in flight %d KiB (%.1f KiB per run); peak %d KiB (%.1f KiB per run)"
              % (base, RUNS, peak_all, (peak_all - base) / RUNS if peak_all else float("nan"), peak_any,
                 (peak_any - base) / RUNS))
        print("agentd_db_connections_open at most %d" % peak_conns)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
