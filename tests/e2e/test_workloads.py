"""SPEC §8 workload data end to end: streamed ingest (JSON array, JSONL, CSV) with
per-record rejections, 415/413/401, isolation between users, DELETE, the exact
summary, synthetic data determinism, the price table, a 20 MB streamed upload that
does not grow the server by its size, and the analyses through the tools API.

Run: AGENTD_BIN=build-test/agentd /usr/bin/python3 -m pytest -q tests/e2e/test_workloads.py
"""
import json
import math
import os
import socket
import time

import pytest

from agentd import HttpConn, agentd_server
from auth_helpers import call

server = agentd_server("--rate-limit", "0", name="workloads")


def tok(srv, user):
    return srv.token(sub=user)


def post_body(srv, token, body, content_type, path="/api/workloads"):
    return call(srv, "POST", path, token=token, raw_body=body, content_type=content_type)


def rec(ts=1718000000, model="gpt-4o-mini", provider="openai", pt=10, ct=5, lat=100.0, **kw):
    r = {"timestamp": ts, "model": model, "provider": provider, "prompt_tokens": pt, "completion_tokens": ct,
         "latency_ms": lat}
    r.update(kw)
    return r


def jsonl(recs):
    return "".join(json.dumps(r) + "\n" for r in recs)


def summary(srv, token, query=""):
    r = call(srv, "GET", "/api/workloads/summary" + query, token=token)
    assert r.status == 200, r
    return r.json()


# ---- ingest formats and line numbers -------------------------------------------------------

def test_jsonl_line_numbers_with_blank_lines(server):
    t = tok(server, "usr_wl_jsonl")
    body = (json.dumps(rec()) + "\n\n" + json.dumps(rec(pt=-1)) + "\n" + "   \n" + "{oops\n" +
            json.dumps(rec(model="unpriced-model", provider="acme")) + "\n" + json.dumps(rec(lat="fast")) + "\n" +
            json.dumps(rec(status="error")))
    r = post_body(server, t, body, "application/x-ndjson")
    assert r.status == 201, r
    j = r.json()
    assert j["inserted"] == 2
    assert [x["line"] for x in j["rejected"]] == [3, 5, 6, 7]
    errs = [x["error"] for x in j["rejected"]]
    assert errs[0].startswith("negative number: prompt_tokens")
    assert errs[1].startswith("invalid JSON")
    assert errs[2] == "unknown model for pricing: unpriced-model; give cost_usd"
    assert errs[3].startswith("wrong type: latency_ms")
    assert j["rejected_total"] == 4
    assert summary(server, t)["totals"]["calls"] == 2


def test_json_array_indices(server):
    t = tok(server, "usr_wl_array")
    recs = [rec(), rec(timestamp="2024-06-10T07:00:00Z"), {"model": "gpt-4o"}, 17, rec(timestamp="not a time"),
            rec(cost_usd=0.5, model="own-model", provider="self")]
    r = post_body(server, t, json.dumps(recs, indent=2), "application/json")
    assert r.status == 201, r
    j = r.json()
    assert j["inserted"] == 3
    assert [x["line"] for x in j["rejected"]] == [3, 4, 5]
    assert j["rejected"][0]["error"].startswith("missing field")
    assert j["rejected"][1]["error"] == "record is not a JSON object"
    assert j["rejected"][2]["error"].startswith("bad timestamp")
    # no Content-Type: read as JSON (SPEC conventions)
    r = call(server, "POST", "/api/workloads", token=t, raw_body=json.dumps([rec()]), content_type=None)
    assert r.status == 201 and r.json()["inserted"] == 1
    # not an array at all: 400, nothing stored
    r = post_body(server, t, json.dumps(rec()), "application/json")
    assert r.status == 400 and r.json()["error_code"] == "BAD_REQUEST"
    assert summary(server, t)["totals"]["calls"] == 4


def test_csv_bad_lines_reported_good_lines_stored(server):
    t = tok(server, "usr_wl_csv")
    body = ("timestamp,model,provider,prompt_tokens,completion_tokens,latency_ms,cost_usd,status,feature,prompt_hash\r\n"
            "1718000000,gpt-4o,openai,100,20,500,,success,chat,h1\r\n"
            "1718000001,gpt-4o,openai,abc,20,500,,success,chat,h1\r\n"
            "1718000002,gpt-4o,openai,100,20,-5,,success,chat,h1\r\n"
            "\r\n"
            "2024-06-10T07:00:00Z,\"my, model\",self,100,20,500,0.25,error,\"multi\nline\",h2\r\n"
            "1718000003,gpt-4o,openai,100,20\r\n"
            "1718000004,gpt-4o,openai,100,20,500,,bogus,chat,h1\r\n"
            "1718000005,claude-3-5-haiku,anthropic,100,20,500,,success,,\r\n")
    r = post_body(server, t, body, "text/csv; charset=utf-8")
    assert r.status == 201, r
    j = r.json()
    assert j["inserted"] == 3
    assert [x["line"] for x in j["rejected"]] == [3, 4, 8, 9]
    assert "prompt_tokens" in j["rejected"][0]["error"]
    assert j["rejected"][1]["error"] == "negative number: latency_ms"
    assert j["rejected"][2]["error"].startswith("wrong number of fields")
    assert j["rejected"][3]["error"].startswith("bad status")
    s = summary(server, t)
    assert s["totals"]["calls"] == 3
    assert s["totals"]["errors"] == 1
    models = {m["model"] for m in s["by_model"]}
    assert models == {"gpt-4o", "my, model", "claude-3-5-haiku"}
    assert {f["feature"] for f in s["by_feature"]} == {"chat", "multi\nline", None}
    # a header without the required columns: 400 and nothing stored
    r = post_body(server, tok(server, "usr_wl_csv2"), "model,latency_ms\ngpt-4o,1\n", "text/csv")
    assert r.status == 400 and "timestamp" in r.json()["message"]
    assert summary(server, tok(server, "usr_wl_csv2"))["totals"]["calls"] == 0


def test_chunked_upload(server):
    t = tok(server, "usr_wl_chunked")
    body = jsonl([rec(ts=1718000000 + i) for i in range(500)]).encode()
    with HttpConn(server.addr, timeout=15) as c:
        head = ("POST /api/workloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % t)
        c.send(head.encode())
        for i in range(0, len(body), 7777):
            piece = body[i:i + 7777]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 201, r
    assert r.json() == {"inserted": 500, "rejected": [], "rejected_total": 0}


# ---- refusals --------------------------------------------------------------------------------

def test_415_401_413(server):
    t = tok(server, "usr_wl_refuse")
    r = post_body(server, t, "a,b\n", "text/plain")
    assert r.status == 415 and r.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = post_body(server, t, "<x/>", "application/xml")
    assert r.status == 415
    r = call(server, "POST", "/api/workloads", raw_body=jsonl([rec()]), content_type="application/x-ndjson")
    assert r.status == 401 and r.json()["error_code"] == "AUTH_REQUIRED"
    r = post_body(server, "not.a.token", jsonl([rec()]), "application/x-ndjson")
    assert r.status == 401 and r.json()["error_code"] == "AUTH_INVALID"
    # over 64 MiB: refused from Content-Length, before any body byte is sent
    with HttpConn(server.addr, timeout=10) as c:
        c.send(("POST /api/workloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n" % (t, 64 * 1024 * 1024 + 1)).encode())
        r = c.read_response()
    assert r.status == 413 and r.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert summary(server, t)["totals"]["calls"] == 0
    # the server is fine afterwards
    assert post_body(server, t, jsonl([rec()]), "application/x-ndjson").status == 201


def test_synthetic_validation(server):
    t = tok(server, "usr_wl_synval")
    for body in ({"records": 0}, {"records": 1000001}, {"records": "10"}, {}, {"records": 5, "seed": -1}):
        r = call(server, "POST", "/api/workloads/synthetic", token=t, body=body)
        assert r.status == 422, (body, r)
    r = call(server, "GET", "/api/workloads/summary?from=yesterday", token=t)
    assert r.status == 400
    r = call(server, "GET", "/api/workloads/summary?from=2000&to=1000", token=t)
    assert r.status == 400
    assert call(server, "GET", "/api/workloads/summary").status == 401


# ---- isolation, delete ---------------------------------------------------------------------------

def test_isolation_and_delete(server):
    a, b = tok(server, "usr_wl_alice"), tok(server, "usr_wl_bob")
    r = post_body(server, a, jsonl([rec(ts=1718000000 + i) for i in range(25)]), "application/x-ndjson")
    assert r.json()["inserted"] == 25
    assert summary(server, b)["totals"]["calls"] == 0
    assert summary(server, b)["by_model"] == []
    r = call(server, "DELETE", "/api/workloads", token=b)
    assert r.status == 200 and r.json() == {"deleted": 0}
    assert summary(server, a)["totals"]["calls"] == 25
    r = call(server, "DELETE", "/api/workloads", token=a)
    assert r.status == 200 and r.json() == {"deleted": 25}
    assert summary(server, a)["totals"]["calls"] == 0
    assert post_body(server, a, jsonl([rec()]), "application/x-ndjson").json()["inserted"] == 1
    assert summary(server, a)["totals"]["calls"] == 1


# ---- exact summary -------------------------------------------------------------------------------

def nearest_rank(values, p):
    v = sorted(values)
    return v[math.ceil(p / 100 * len(v)) - 1]


def test_summary_exact_numbers(server):
    t = tok(server, "usr_wl_exact")
    recs = []
    lat_a = [float(x) for x in range(1, 101)]       # gpt-4o: 100 calls, latency 1..100
    for i, lat in enumerate(reversed(lat_a)):
        recs.append(rec(ts=1718000000 + i * 600, model="gpt-4o", pt=200, ct=50, lat=lat, feature="chat",
                        status="error" if i % 10 == 0 else "success"))
    lat_b = [250.0 * (i + 1) for i in range(7)]     # claude: 7 calls, given cost
    for i, lat in enumerate(lat_b):
        recs.append(rec(ts=1718100000 + i, model="claude-sonnet-4", provider="anthropic", pt=1000, ct=100, lat=lat,
                        cost_usd=0.01, feature="search"))
    assert post_body(server, t, json.dumps(recs), "application/json").json()["inserted"] == 107
    s = summary(server, t)
    tot = s["totals"]
    assert tot["calls"] == 107 and tot["errors"] == 10
    assert tot["error_rate"] == pytest.approx(10 / 107)
    assert tot["prompt_tokens"] == 100 * 200 + 7 * 1000
    assert tot["completion_tokens"] == 100 * 50 + 7 * 100
    assert tot["total_tokens"] == tot["prompt_tokens"] + tot["completion_tokens"]
    cost_a = 100 * (200 * 2.5 + 50 * 10.0) / 1e6
    assert tot["cost_usd"] == pytest.approx(cost_a + 0.07)
    every = lat_a + lat_b
    for p in (50, 95, 99):
        assert tot["latency_p%d_ms" % p] == nearest_rank(every, p)
    by = {m["model"]: m for m in s["by_model"]}
    assert by["gpt-4o"]["latency_p50_ms"] == 50 and by["gpt-4o"]["latency_p95_ms"] == 95
    assert by["gpt-4o"]["latency_p99_ms"] == 99 and by["gpt-4o"]["error_rate"] == pytest.approx(0.1)
    assert by["gpt-4o"]["cost_usd"] == pytest.approx(cost_a)
    assert by["claude-sonnet-4"]["latency_p50_ms"] == 1000 and by["claude-sonnet-4"]["latency_p99_ms"] == 1750
    assert by["claude-sonnet-4"]["provider"] == "anthropic"
    assert {p["provider"]: p["calls"] for p in s["by_provider"]} == {"openai": 100, "anthropic": 7}
    assert {f["feature"]: f["calls"] for f in s["by_feature"]} == {"chat": 100, "search": 7}
    assert sum(d["calls"] for d in s["daily"]) == 107
    assert s["daily"][0]["date"] == "2024-06-10"
    # a window (inclusive): only the claude calls
    w = summary(server, t, "?from=1718100000&to=2024-06-11T12:00:00Z")
    assert w["totals"]["calls"] == 7 and w["totals"]["cost_usd"] == pytest.approx(0.07)


def test_summary_group_by_day(server):
    """?group_by=day adds by_day: cost and calls per UTC day and model, the caller's records only,
    honouring from/to; any other group_by is a 400 with the JSON error."""
    t, other = tok(server, "usr_wl_byday"), tok(server, "usr_wl_byday_other")
    day0 = 1718064000  # 2024-06-11 00:00 UTC
    recs = [rec(ts=day0 + i, model="gpt-4o", cost_usd=1.0, status="error" if i == 0 else "success") for i in range(3)]
    recs += [rec(ts=day0 + 86400 * 2 + 5, model="gpt-4o", cost_usd=2.0),
             rec(ts=day0 + 7200, model="claude-sonnet-4", provider="anthropic", cost_usd=0.5)]
    assert post_body(server, t, json.dumps(recs), "application/json").json()["inserted"] == 5
    assert post_body(server, other, json.dumps([rec(ts=day0, model="secret-model", provider="x", cost_usd=9.0)]),
                     "application/json").json()["inserted"] == 1
    assert "by_day" not in summary(server, t)
    s = summary(server, t, "?group_by=day")
    rows = {(r["date"], r["model"]): r for r in s["by_day"]}
    assert set(rows) == {("2024-06-11", "gpt-4o"), ("2024-06-11", "claude-sonnet-4"), ("2024-06-13", "gpt-4o")}
    g = rows[("2024-06-11", "gpt-4o")]
    assert g["calls"] == 3 and g["errors"] == 1 and g["cost_usd"] == pytest.approx(3.0) and g["provider"] == "openai"
    assert rows[("2024-06-13", "gpt-4o")]["cost_usd"] == pytest.approx(2.0)
    assert s["by_day_truncated"] is False
    assert sum(r["cost_usd"] for r in s["by_day"]) == pytest.approx(s["totals"]["cost_usd"])
    assert not any(r["model"] == "secret-model" for r in s["by_day"])
    # the window (inclusive) applies to by_day too
    w = summary(server, t, "?group_by=day&from=2024-06-12&to=2024-06-14")
    assert [(r["date"], r["model"]) for r in w["by_day"]] == [("2024-06-13", "gpt-4o")]
    # the other user sees only their own row
    o = summary(server, other, "?group_by=day")
    assert [(r["date"], r["model"], r["cost_usd"]) for r in o["by_day"]] == [("2024-06-11", "secret-model", 9.0)]
    for bad in ("?group_by=week", "?group_by=", "?group_by=day%00", "?group_by=" + "d" * 5000):
        r = call(server, "GET", "/api/workloads/summary" + bad, token=t)
        assert r.status == 400, (bad, r)
        assert r.json()["error_code"] == "BAD_REQUEST" and "group_by" in r.json()["message"]
    assert call(server, "GET", "/api/workloads/summary?group_by=day").status == 401


# ---- synthetic data --------------------------------------------------------------------------------

def test_synthetic_same_seed_same_summary(server):
    a, b, c = tok(server, "usr_wl_syn_a"), tok(server, "usr_wl_syn_b"), tok(server, "usr_wl_syn_c")
    for t, seed in ((a, 1234), (b, 1234), (c, 99)):
        r = call(server, "POST", "/api/workloads/synthetic", token=t, body={"records": 5000, "seed": seed})
        assert r.status == 201, r
        assert r.json() == {"inserted": 5000, "seed": seed}
    sa, sb, sc = summary(server, a), summary(server, b), summary(server, c)
    assert sa == sb
    assert sa != sc
    assert sa["totals"]["calls"] == 5000
    assert len(sa["by_provider"]) == 3 and len(sa["by_model"]) >= 8 and len(sa["daily"]) == 30
    assert 0 < sa["totals"]["error_rate"] < 0.05
    r = call(server, "POST", "/api/workloads/synthetic", token=a, body={"records": 10})
    assert r.status == 201 and isinstance(r.json()["seed"], int)


# ---- prices ----------------------------------------------------------------------------------------

def test_prices(server):
    assert call(server, "GET", "/api/models/prices").status == 401
    r = call(server, "GET", "/api/models/prices", token=tok(server, "usr_wl_prices"))
    assert r.status == 200
    j = r.json()
    assert j["as_of"] and "openai.com" in j["source"]
    rows = {p["model"]: p for p in j["prices"]}
    for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "claude-opus-4", "claude-sonnet-4", "gemini-2.5-pro",
              "gemini-2.0-flash"):
        assert m in rows
        assert rows[m]["tier"] in ("premium", "standard", "budget")
    assert rows["gpt-4o"]["input_per_million"] == 2.5 and rows["gpt-4o"]["output_per_million"] == 10
    assert b"0.14999" not in r.body  # 15 significant digits: prices print as written


# ---- analyses through the tools API -----------------------------------------------------------------

def tool(srv, token, name, args=None):
    r = call(srv, "POST", "/api/tools/execute", token=token, body={"tool_name": name, "arguments": args or {}})
    if r.status == 404:
        pytest.skip("tool %s not registered in this build" % name)
    assert r.status == 200, r
    return r.json()["result"]


def test_caching_recommendation_with_40_percent_repeats(server):
    t = tok(server, "usr_wl_cachetool")
    recs, want = [], 0.0
    for p in range(30):                  # 30 prompts x 3 calls: 60 repeats
        for k in range(3):
            cost = 0.001 * (k + 1)
            recs.append(rec(ts=1718000000 + p * 60 + k, prompt_hash="h%d" % p, cost_usd=cost, feature="faq"))
            if k:
                want += cost
    for u in range(60):                  # 60 unique prompts
        recs.append(rec(ts=1718010000 + u, prompt_hash="u%d" % u, cost_usd=0.002, feature="search"))
    assert len(recs) == 150 and post_body(server, t, jsonl(recs), "application/x-ndjson").json()["inserted"] == 150
    res = tool(server, t, "cache_opportunities")
    assert res["repeated_calls"] == 60 and res["repeat_rate"] == pytest.approx(0.4)
    assert res["recommended"] is True
    assert res["window_saving_usd"] == pytest.approx(want)
    assert res["monthly_saving_usd"] == pytest.approx(want * 30)   # < 1 day of data: days = 1


def test_model_recommendation_for_premium_model_on_tiny_prompts(server):
    t = tok(server, "usr_wl_modeltool")
    recs = [rec(ts=1718000000 + i, model="claude-opus-4", provider="anthropic", pt=150, ct=20, feature="tagging")
            for i in range(50)]
    recs += [rec(ts=1718000000 + i, model="claude-opus-4", provider="anthropic", pt=8000, ct=900, feature="review")
             for i in range(5)]
    assert post_body(server, t, jsonl(recs), "application/x-ndjson").json()["inserted"] == 55
    res = tool(server, t, "model_recommendations")
    (r0,) = res["recommendations"]
    assert r0["model"] == "claude-opus-4" and r0["suggested_model"] == "claude-sonnet-4"
    assert r0["eligible_calls"] == 50 and r0["calls"] == 55
    saving = 50 * ((150 * 15 + 20 * 75) - (150 * 3 + 20 * 15)) / 1e6
    assert r0["window_saving_usd"] == pytest.approx(saving)
    assert res["monthly_saving_usd"] == pytest.approx(saving * 30)


# ---- a large streamed upload -------------------------------------------------------------------------

def stream_jsonl(srv, token, line, size):
    """POST size bytes of repeated `line` (JSONL) with Content-Length, in 1 MB writes."""
    with HttpConn(srv.addr, timeout=180) as c:
        c.send(("POST /api/workloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/x-ndjson\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (token, size)).encode())
        block = line * (1024 * 1024 // len(line))
        sent = 0
        while sent < size:
            k = min(len(block), size - sent)
            c.send(block[:k])
            sent += k
        return c.read_response()


def test_large_streamed_upload_does_not_grow_rss_by_its_size(server_factory):
    srv = server_factory("--rate-limit", "0", extra_asan="quarantine_size_mb=4:malloc_context_size=5")
    t = tok(srv, "usr_wl_big")
    line = (json.dumps(rec(feature="bulk", note="x" * 380)) + "\n").encode()   # ~500-byte records
    # warm up: worker threads, their SQLite connections and page caches, the allocator
    warm = (4 * 1024 * 1024 // len(line)) * len(line)
    assert stream_jsonl(srv, t, line, warm).status == 201
    n = 20 * 1024 * 1024 // len(line)
    size = n * len(line)
    rss0 = srv.rss_kb()
    r = stream_jsonl(srv, t, line, size)
    assert r.status == 201, r
    assert r.json()["inserted"] == n and r.json()["rejected_total"] == 0
    grown = (srv.rss_kb() - rss0) * 1024
    # the body is parsed 1 MiB at a time; what stays is the records' columns (~60 B each here)
    assert grown < 0.8 * size, "RSS grew by %.1f MB for a %.1f MB upload" % (grown / 2 ** 20, size / 2 ** 20)
    assert summary(srv, t)["totals"]["calls"] == n + warm // len(line)


def post_bytes(srv, token, body):
    """POST body (JSONL) with Content-Length in 1 MB writes, as a client streaming a file does."""
    with HttpConn(srv.addr, timeout=180) as c:
        c.send(("POST /api/workloads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/x-ndjson\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (token, len(body))).encode())
        for off in range(0, len(body), 1 << 20):
            c.send(body[off:off + (1 << 20)])
        return c.read_response()


def test_concurrent_multi_mib_uploads_bounded_threads_and_right_lines(server_factory):
    """Issue 13, defect 9: the JSONL parser's helpers are a fixed pool, not a thread per 1 MiB piece:
    several concurrent 5 MiB uploads never add a thread to the server once the pool exists, and each
    upload's rejected lines carry their physical line numbers across chunk boundaries."""
    import threading
    srv = server_factory("--rate-limit", "0")
    good = [(json.dumps(rec(ts=1718000000 + i, pt=i + 1, feature="f%d" % (i % 7), note="n" * 40)) + "\n").encode()
            for i in range(64)]
    bad_at = [1, 4097, 12000, 20000]

    def body_of():
        parts, i = [], 0
        size = 0
        while size < 5 * 1024 * 1024:
            i += 1
            line = b'{"timestamp":1718000000,"model":"gpt-4o"}\n' if i in bad_at else good[i % 64]
            parts.append(line)
            size += len(line)
        return b"".join(parts), i

    body, n_lines = body_of()
    assert n_lines > bad_at[-1]
    t = tok(srv, "usr_wl_conc")
    warm = post_bytes(srv, t, body[:2 * 1024 * 1024 - (2 * 1024 * 1024) % len(good[1])])
    assert warm.status == 201, warm  # the worker pool and the parser's helpers exist from now on
    task_dir = "/proc/%d/task" % srv.pid
    base = len(os.listdir(task_dir))
    results, most = [None] * 4, base

    def upload(k):
        results[k] = post_bytes(srv, tok(srv, "usr_wl_conc%d" % k), body)

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        most = max(most, len(os.listdir(task_dir)))
    for th in threads:
        th.join()
    for r in results:
        assert r.status == 201, r
        j = r.json()
        assert [x["line"] for x in j["rejected"]] == bad_at, j["rejected"]
        assert j["inserted"] == n_lines - len(bad_at)
    assert most <= base, "the server grew from %d to %d threads during 4 concurrent uploads" % (base, most)
