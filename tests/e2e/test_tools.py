"""POST /api/tools/execute against the tools' JSON Schemas (SPEC §7: 422 when the arguments fail the schema).

The 422 `details` names the failing value by its path below `arguments` (tools/schema.c); the built-in tools'
arguments are flat, so the deepest path here is one level down ("arguments.from"); nested paths such as
"arguments.items[2].name" are covered by tests/unit/test_schema.c and test_tools.c.  Type unions
(`"type": ["number", "string"]`) are checked by the schema itself, and an integral 5.0 is an integer.
"""
import pytest

from agentd import agentd_server, check_envelope
from auth_helpers import call

server = agentd_server("--rate-limit", "0", name="tools")


def execute(srv, token, name, args):
    return call(srv, "POST", "/api/tools/execute", {"tool_name": name, "arguments": args}, token=token)


@pytest.mark.parametrize("tool,args,field,message", [
    # a type union: neither a number nor a string (refused by the schema, not by the tool's own code)
    ("cost_breakdown", {"from": True}, "arguments.from", "must be a number or a string"),
    ("cost_breakdown", {"to": [1]}, "arguments.to", "must be a number or a string"),
    # maxLength of a string branch of the union
    ("workload_summary", {"from": "2" * 65}, "arguments.from", "must be at most 64 characters"),
    ("cost_breakdown", {"top": 0}, "arguments.top", "must be >= 1"),
    ("cost_breakdown", {"top": 2.5}, "arguments.top", "must be an integer"),
    ("cost_breakdown", {"bogus": 1}, "arguments.bogus", "is not a known argument"),
    ("price_lookup", {}, "arguments.model", "is required"),
    ("calculator", {"expression": ""}, "arguments.expression", "must not be empty"),
    ("thread_context", {"thread_id": "thr_x", "limit": 51}, "arguments.limit", "must be <= 50"),
])
def test_execute_422_names_the_field(server, tool, args, field, message):
    r = execute(server, server.token(sub="usr_tools_422"), tool, args)
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert {"field": field, "message": message} in j.get("details", []), j


def test_execute_422_arguments_not_an_object(server):
    r = execute(server, server.token(sub="usr_tools_422b"), "calculator", [1, 2])
    j = check_envelope(r, "VALIDATION_ERROR", 422)
    assert {"field": "arguments", "message": "must be an object"} in j.get("details", []), j


def test_execute_integral_number_is_an_integer(server):
    # JSON Schema: 5.0 is an integer; the tool then uses it as 5
    token = server.token(sub="usr_tools_int")
    r = execute(server, token, "cost_breakdown", {"top": 5.0})
    assert r.status == 200, r
    assert r.json()["status"] == "success", r
    r = execute(server, token, "calculator", {"expression": "2*21"})
    assert r.status == 200 and r.json()["result"]["result"] == 42, r


def test_tools_listing_is_consistent(server):
    r = call(server, "GET", "/api/tools", token=server.token(sub="usr_tools_list"))
    assert r.status == 200, r
    j = r.json()
    names = [t["name"] for t in j["tools"]]
    assert j["total"] == len(names) and len(set(names)) == len(names), j
    for t in j["tools"]:
        assert t["source"] == "builtin" and t["input_schema"]["type"] == "object", t
