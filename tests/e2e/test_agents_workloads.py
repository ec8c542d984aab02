"""The workload tools and the analysis agents end to end (SPEC §4, §5, §7, §8;
docs/agents.md "Agents").

Hand-made datasets with known answers are uploaded as JSONL through
POST /api/workloads; the agents run through POST /api/agents/execute (and the
single-agent routes), and every run keeps the SPEC §5 event order:
  - 40% repeated prompts          → optimization recommends caching, $4.00/month
  - a premium model, tiny prompts → model_switch gpt-4o → gpt-4o-mini, $4.70/month
  - no data                       → triage routes to data_helper; the answer says what to upload
  - "summarise my usage"          → the data agent's numbers == GET /api/workloads/summary
"""
import json

import pytest

from agentd import agentd_server
from auth_helpers import call

server = agentd_server("--rate-limit", "0", name="agents_wl")

DAY = 86400.0
T0 = 1767225600.0  # 2026-01-01 00:00 UTC
WORKLOAD_TOOLS = ["workload_summary", "cost_breakdown", "latency_analysis", "cache_opportunities",
                  "model_recommendations", "batch_opportunities", "anomalies", "price_lookup"]


# ---- datasets ----------------------------------------------------------------

def ts_of(i, n, days=30):
    """n records spread over exactly `days` days: the first at T0, the last at T0 + days."""
    return T0 + days * DAY * i / (n - 1)


def cache_dataset():
    """1000 gpt-4o-mini calls of $0.01 over 30 days: 200 prompts asked 3 times and 400 asked
    once, so 400 calls (40%) repeat a prompt and a cache saves 400 x $0.01 = $4.00 a month."""
    hashes = ["rep%03d" % h for h in range(200) for _ in range(3)] + ["uniq%03d" % u for u in range(400)]
    return [{"timestamp": ts_of(i, 1000), "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 500,
             "completion_tokens": 100, "latency_ms": 800, "cost_usd": 0.01, "status": "success",
             "feature": "support", "prompt_hash": h} for i, h in enumerate(hashes)]


def model_dataset():
    """2000 gpt-4o calls with small prompts (400 in, 150 out), no cost_usd (priced by the server
    at $2.50/$10 per million), all distinct, over 30 days.  At gpt-4o-mini's $0.15/$0.60 each
    call costs $0.00235 less: 2000 x $0.00235 = $4.70 a month."""
    return [{"timestamp": ts_of(i, 2000), "model": "gpt-4o", "provider": "openai", "prompt_tokens": 400,
             "completion_tokens": 150, "latency_ms": 1200, "feature": "classify", "prompt_hash": "m%04d" % i}
            for i in range(2000)]


def upload(srv, token, records):
    body = "\n".join(json.dumps(r) for r in records) + "\n"
    r = call(srv, "POST", "/api/workloads", raw_body=body, token=token, content_type="application/x-ndjson")
    assert r.status == 201, r
    j = r.json()
    assert j["inserted"] == len(records) and j["rejected"] == [], j
    return j


# ---- helpers -----------------------------------------------------------------

def execute(srv, token, message, agent=None, path="/api/agents/execute"):
    body = {"message": message}
    if agent:
        body["agent"] = agent
    r = call(srv, "POST", path, body, token=token)
    assert r.status == 200, r
    j = r.json()
    assert j["run"]["status"] == "completed", j["run"]
    return j


def check_order(events, top="supervisor"):
    """SPEC §5 order of one completed run: agent_started(top) first; every sub-agent
    started → ≥1 agent_thinking → agent_completed, properly nested; tool_executing /
    tool_completed paired (same call_id) inside the agent that called; partial_result
    deltas joined == the one agent_response, which comes right before agent_completed(top)."""
    assert events[0]["type"] == "agent_started" and events[0]["agent_name"] == top, events[0]
    assert events[-1]["type"] == "agent_completed" and events[-1]["agent_name"] == top, events[-1]
    assert events[-2]["type"] == "agent_response", [e["type"] for e in events[-3:]]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    stack, thinking, open_call, deltas = [], [], None, []
    for e in events:
        t, a, d = e["type"], e["agent_name"], e["data"]
        assert e["run_id"] == events[0]["run_id"]
        if t == "agent_started":
            assert open_call is None
            assert d["agent_name"] == a and d["status"] == "started"
            stack.append(a)
            thinking.append(0)
        elif t == "agent_completed":
            assert stack and stack[-1] == a, (a, stack)
            assert thinking[-1] >= 1, "%s did not think" % a
            assert isinstance(d["result"], dict) and d["status"] == "completed", d
            stack.pop()
            thinking.pop()
        elif t == "agent_thinking":
            assert stack[-1] == a
            thinking[-1] += 1
            assert d["step_number"] == thinking[-1] and d["status"] == "thinking", d
        elif t == "tool_executing":
            assert open_call is None and stack[-1] == a
            assert d["status"] == "executing" and isinstance(d["parameters"], dict)
            open_call = d["call_id"]
        elif t == "tool_completed":
            assert open_call == d["call_id"] and stack[-1] == a, d
            assert d["status"] in ("completed", "error") and isinstance(d["execution_time_ms"], (int, float))
            open_call = None
        elif t == "partial_result":
            deltas.append(d["content"])
        elif t == "agent_response":
            assert "".join(deltas) == d["content"]
        else:
            raise AssertionError("unexpected event %r" % e)
    assert stack == [] and open_call is None
    assert sum(1 for e in events if e["type"] == "agent_response") == 1
    return events[-2]["data"]["content"]


def started(events):
    return [e["agent_name"] for e in events if e["type"] == "agent_started"]


def result_of(events, agent):
    for e in events:
        if e["type"] == "agent_completed" and e["agent_name"] == agent:
            return e["data"]["result"]
    return None


def tools_called(events, agent):
    return [e["data"]["tool_name"] for e in events if e["type"] == "tool_executing" and e["agent_name"] == agent]


def same(a, b):
    """Equal JSON values, numbers to 12 significant digits (routes may print reals with
    different precision: 9.999999999999831 vs 9.99999999999983)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == pytest.approx(b, rel=1e-12, abs=1e-12)
    return a == b


def rec(opt, kind):
    found = [r for r in opt["recommendations"] if r["kind"] == kind]
    assert found, "no %s recommendation in %r" % (kind, opt["recommendations"])
    return found[0]


# ---- tools -------------------------------------------------------------------

def test_workload_tools_listed_and_callable(server):
    token = server.token(sub="usr_awl_tools")
    r = call(server, "GET", "/api/tools", token=token)
    assert r.status == 200, r
    tools = {t["name"]: t for t in r.json()["tools"]}
    for name in WORKLOAD_TOOLS:
        assert name in tools, name
        assert tools[name]["source"] == "builtin"
        assert tools[name]["input_schema"]["type"] == "object"
    upload(server, token, cache_dataset())
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "workload_summary", "arguments": {}}, token=token)
    assert r.status == 200, r
    j = r.json()
    assert j["status"] == "success" and j["tool_name"] == "workload_summary"
    summary = call(server, "GET", "/api/workloads/summary", token=token).json()
    assert same(j["result"], summary)
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "cache_opportunities", "arguments": {}}, token=token)
    assert r.status == 200, r
    c = r.json()["result"]
    assert c["repeated_calls"] == 400 and c["repeat_rate"] == pytest.approx(0.4)
    assert c["monthly_saving_usd"] == pytest.approx(4.0)
    # a window: only the first 15 days (inclusive)
    r = call(server, "POST", "/api/tools/execute",
             {"tool_name": "workload_summary", "arguments": {"from": T0, "to": T0 + 15 * DAY}}, token=token)
    assert r.status == 200 and 0 < r.json()["result"]["totals"]["calls"] < 1000, r
    r = call(server, "POST", "/api/tools/execute",
             {"tool_name": "price_lookup", "arguments": {"model": "gpt-4o"}}, token=token)
    assert r.status == 200, r
    p = r.json()["result"]
    assert p["input_per_million"] == 2.5 and p["output_per_million"] == 10 and p["tier"] == "premium", p
    # schema violations are 422; another user sees none of these records
    for args in ({"from": True}, {"bogus": 1}, {"top": 0}):
        r = call(server, "POST", "/api/tools/execute", {"tool_name": "cost_breakdown", "arguments": args},
                 token=token)
        assert r.status == 422, (args, r)
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "price_lookup", "arguments": {}}, token=token)
    assert r.status == 422, r
    other = server.token(sub="usr_awl_other")
    r = call(server, "POST", "/api/tools/execute", {"tool_name": "workload_summary", "arguments": {}}, token=other)
    assert r.status == 200 and r.json()["result"]["totals"]["calls"] == 0, r


# ---- no data: data_helper ------------------------------------------------------

def test_no_data_routes_to_data_helper(server):
    token = server.token(sub="usr_awl_empty")
    j = execute(server, token, "How can I cut my LLM costs?")
    evs = j["events"]
    answer = check_order(evs)
    assert answer == j["response"]
    assert started(evs) == ["supervisor", "triage", "data_helper", "reporting"]
    tr = result_of(evs, "triage")
    assert tr["intent"] == "cost" and tr["records"] == 0 and tr["data_sufficient"] is False, tr
    assert tr["next_agents"] == ["data_helper"]
    h = result_of(evs, "data_helper")
    assert h["has_data"] is False and h["records"] == 0 and h["needed"] == 50, h
    assert h["endpoint"] == "POST /api/workloads"
    assert [f["content_type"] for f in h["formats"]] == ["application/x-ndjson", "application/json", "text/csv"]
    # the example is what the upload route accepts
    r = call(server, "POST", "/api/workloads", raw_body=h["example_jsonl"], token=server.token(sub="usr_awl_ex"),
             content_type="application/x-ndjson")
    assert r.status == 201 and r.json()["inserted"] == 3 and r.json()["rejected"] == [], r
    for s in ("What data to upload", "POST /api/workloads", "prompt_tokens", "application/x-ndjson",
              "no LLM call records"):
        assert s in answer, (s, answer)
    assert j["result"]["agents_run"] == ["triage", "data_helper", "reporting"]


def test_too_little_data(server):
    token = server.token(sub="usr_awl_few")
    upload(server, token, cache_dataset()[:20])
    j = execute(server, token, "How can I cut my LLM costs?")
    evs = j["events"]
    answer = check_order(evs)
    assert started(evs) == ["supervisor", "triage", "data", "data_helper", "reporting"]
    tr = result_of(evs, "triage")
    assert tr["records"] == 20 and tr["data_sufficient"] is False
    assert result_of(evs, "data_helper")["needed"] == 30
    assert "Upload 30 more" in answer, answer


# ---- savings with known answers ------------------------------------------------

def test_caching_recommendation(server):
    token = server.token(sub="usr_awl_cache")
    upload(server, token, cache_dataset())
    j = execute(server, token, "How can I cut my LLM costs?")
    evs = j["events"]
    answer = check_order(evs)
    assert started(evs) == ["supervisor", "triage", "data", "optimization", "actions", "reporting"]
    tr = result_of(evs, "triage")
    assert tr["records"] == 1000 and tr["data_sufficient"] is True and tr["focus"] == "cost"
    assert set(tools_called(evs, "data")) == {"workload_summary", "anomalies"}
    assert {"cache_opportunities", "model_recommendations", "batch_opportunities"} <= set(
        tools_called(evs, "optimization"))
    opt = result_of(evs, "optimization")
    c = rec(opt, "caching")
    assert c["monthly_saving_usd"] == 4.0, c
    assert c["evidence"]["repeated_calls"] == 400 and c["evidence"]["repeat_rate"] == pytest.approx(0.4)
    assert c["title"] and c["rank"] == 1
    assert opt["total_monthly_saving_usd"] == 4.0
    assert not [r for r in opt["recommendations"] if r["kind"] == "model_switch"]  # gpt-4o-mini is already budget
    plan = result_of(evs, "actions")["plan"]
    assert [s["step"] for s in plan] == [1, 2]
    assert plan[0]["kind"] == "caching" and plan[0]["monthly_saving_usd"] == 4.0
    assert plan[0]["action"] and plan[0]["expected_effect"]
    assert result_of(evs, "actions")["total_monthly_saving_usd"] == 4.0
    for s in ("$4.00 per month", "Cache responses to repeated prompts", "400 of 1000 calls", "Top cost drivers",
              "p95", "### Plan"):
        assert s in answer, (s, answer)


def test_model_switch_recommendation(server):
    token = server.token(sub="usr_awl_model")
    upload(server, token, model_dataset())
    j = execute(server, token, "Which model should I use for classification?")
    evs = j["events"]
    answer = check_order(evs)
    assert started(evs) == ["supervisor", "triage", "data", "optimization", "reporting"]
    opt = result_of(evs, "optimization")
    assert opt["focus"] == "model"
    m = rec(opt, "model_switch")
    assert m["monthly_saving_usd"] == 4.7, m
    ev = m["evidence"]
    assert ev["model"] == "gpt-4o" and ev["suggested_model"] == "gpt-4o-mini" and ev["eligible_calls"] == 2000, ev
    assert ev["price_from"]["input_per_million"] == 2.5 and ev["price_to"]["input_per_million"] == 0.15, ev
    assert "price_lookup" in tools_called(evs, "optimization")
    assert "Move short gpt-4o calls to gpt-4o-mini" in answer and "$4.70" in answer, answer
    # the single-agent route: optimization on its own classifies the request itself
    j = execute(server, token, "how can I cut my LLM costs?", path="/api/agents/optimization")
    evs = j["events"]
    check_order(evs, top="optimization")
    assert j["run"]["agent"] == "optimization"
    assert rec(j["result"], "model_switch")["monthly_saving_usd"] == 4.7


def test_latency_focus(server):
    token = server.token(sub="usr_awl_latency")
    upload(server, token, model_dataset())
    upload(server, token, cache_dataset())
    j = execute(server, token, "Why is latency high?")
    evs = j["events"]
    answer = check_order(evs)
    assert started(evs) == ["supervisor", "triage", "data", "optimization", "reporting"]
    opt = result_of(evs, "optimization")
    assert opt["focus"] == "latency" and "latency_analysis" in tools_called(evs, "optimization")
    lat = rec(opt, "latency")
    assert "gpt-4o" in lat["title"]
    kinds = [r["kind"] for r in opt["recommendations"]]
    assert kinds == ["model_switch", "caching", "latency"], kinds  # ranked by saving
    assert opt["total_monthly_saving_usd"] == pytest.approx(8.7)
    data = result_of(evs, "data")
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}
    assert "p50" in answer and "p99" in answer and "Cut the latency of gpt-4o calls" in answer, answer


# ---- summarise my usage: the data agent's numbers are the summary's ------------

def test_usage_report_equals_summary(server):
    token = server.token(sub="usr_awl_usage")
    upload(server, token, cache_dataset())
    upload(server, token, model_dataset()[:500])
    j = execute(server, token, "Summarise my usage")
    evs = j["events"]
    answer = check_order(evs)
    assert started(evs) == ["supervisor", "triage", "data", "reporting"]
    d = result_of(evs, "data")
    summary = call(server, "GET", "/api/workloads/summary", token=token).json()
    tot = summary["totals"]
    assert same(d["totals"], tot)
    assert d["has_data"] is True and d["calls"] == tot["calls"] == 1500
    assert same(d["cost_usd"], tot["cost_usd"])
    assert d["tokens"] == tot["total_tokens"]
    assert d["prompt_tokens"] == tot["prompt_tokens"] and d["completion_tokens"] == tot["completion_tokens"]
    assert same(d["latency_ms"], {"p50": tot["latency_p50_ms"], "p95": tot["latency_p95_ms"],
                                  "p99": tot["latency_p99_ms"]})
    assert same(d["error_rate"], tot["error_rate"])
    by_cost = sorted(summary["by_model"], key=lambda m: -m["cost_usd"])
    assert [m["model"] for m in d["top_models"]] == [m["model"] for m in by_cost][:5]
    assert same(d["top_models"][0]["cost_usd"], by_cost[0]["cost_usd"])
    assert isinstance(d["anomalies"], list)
    assert "1500 calls" in answer and ("$%.2f" % tot["cost_usd"]) in answer, answer
    # the data agent on its own route gives the same numbers
    j = execute(server, token, "summarise my usage", path="/api/agents/data")
    check_order(j["events"], top="data")
    assert same(j["result"]["totals"], tot)


def test_agents_listed(server):
    token = server.token(sub="usr_awl_list")
    r = call(server, "GET", "/api/agents", token=token)
    assert r.status == 200, r
    names = [a["name"] for a in r.json()["agents"]]
    for n in ("supervisor", "triage", "data", "optimization", "actions", "reporting", "data_helper"):
        assert n in names, names
