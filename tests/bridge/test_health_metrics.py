"""/health asks a running child without starting one; /metrics counts, in series a server cannot multiply;
one JSON log line per request."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.log_schema import assert_schema, parse_log
from tests.harness.procs import wait_until


def _counter(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_health_does_not_spawn_a_child_per_check(http: httpx.Client, no_spare_bridge: Bridge) -> None:
    bridge = no_spare_bridge  # no spare children: nothing but a check could start one meanwhile
    before = _counter(http.get(f"{bridge.base_url}/metrics").text, "mcp_proxy_children_started_total")
    for _ in range(10):
        health = http.get(f"{bridge.base_url}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
    after = _counter(http.get(f"{bridge.base_url}/metrics").text, "mcp_proxy_children_started_total")
    assert after == before


def test_metrics_count_requests_sessions_children_and_latency(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    http.post(plain_bridge.url, json=body, headers=headers)
    text = http.get(f"{plain_bridge.base_url}/metrics").text
    assert re.search(r'^mcp_proxy_http_requests_total\{era="2026-07-28",method="POST",status="200"\} \d+', text, re.M)
    for name in (
        "mcp_proxy_sessions_open",
        "mcp_proxy_children_running",
        "mcp_proxy_request_duration_seconds_count",
        "mcp_proxy_child_restarts_total",
    ):
        _counter(text, name)


def test_one_json_log_line_per_request(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "logged"}})
    headers["X-Auth-User"] = "log-checker"
    mark = plain_bridge.log_size()
    http.post(plain_bridge.url, json=body, headers=headers)
    mine: list[dict[str, object]] = []

    def logged() -> bool:
        lines = [json.loads(line) for line in plain_bridge.log_text(since=mark).splitlines() if line.startswith("{")]
        mine[:] = [e for e in lines if e.get("event") == "access" and e.get("user") == "log-checker"]
        return bool(mine)

    assert wait_until(logged, timeout=5), "no access line"  # written just after the answer is sent
    assert len(mine) == 1
    entry = mine[0]
    assert entry["status"] == 200 and entry["era"] == "2026-07-28" and entry["rpc_method"] == "tools/call"
    assert entry["duration_ms"] >= 0


def test_every_log_line_follows_the_one_schema(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    """LOGS.md: both services write one JSON object per line with the same keys and types; the bridge's
    access lines carry method, path (never the query), status, bytes, duration_ms and remote."""
    bridge = start_bridge(misbehaving_argv, pool_size=1)
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "schema"}})
    headers["X-Auth-User"] = "schema-checker"
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{bridge.url}?probe=secret-in-query", json=body, headers=headers).status_code == 200
        http.delete(bridge.url, headers={"Mcp-Session-Id": "no-such-session"})
        http.post(
            bridge.url,
            content=b"{not json",
            headers={**headers, "X-Auth-User": "bad-json", "Content-Type": "application/json"},
        )
    bridge.stop()  # the shutdown lines belong to the log too

    text = bridge.log_text()
    entries = parse_log(text)
    for entry in entries:
        assert_schema(entry)
    assert "secret-in-query" not in text
    access = [e for e in entries if e.get("event") == "access"]
    mine = next(e for e in access if e.get("user") == "schema-checker")
    assert mine["method"] == "POST" and mine["path"] == "/mcp" and mine["status"] == 200
    assert mine["bytes"] > 0 and mine["remote"] == "127.0.0.1"
    assert next(e for e in access if e.get("user") == "bad-json")["status"] == 400
    assert next(e for e in access if e["method"] == "DELETE")["status"] == 404
    assert any(e.get("event") == "child_started" for e in entries)


def _rpc_error_series(metrics: str) -> dict[tuple[str, str], float]:
    """mcp_proxy_rpc_errors_total by (era, code)."""
    series = re.findall(r'^mcp_proxy_rpc_errors_total\{era="([^"]*)",code="([^"]*)"\} (\S+)$', metrics, re.M)
    return {(era, code): float(n) for era, code, n in series}


def test_error_codes_a_server_makes_up_leave_metrics_bounded(http: httpx.Client, plain_bridge: Bridge) -> None:
    # The attack: a server (buggy, or fed by whoever controls its input) answers each call with a new JSON-RPC
    # error code. Were each code a label, /metrics (and the bridge's memory) would grow with every call.
    bridge = plain_bridge  # shared: other tests' errors count too, so only what this test adds is compared
    made_up = range(1000, 1100)
    known = -32602  # invalid params: a code the specification defines keeps its own label
    before = _rpc_error_series(http.get(f"{bridge.base_url}/metrics").text)
    session = initialize(http, bridge.url)
    for request_id, code in enumerate([*made_up, known], start=10):
        call = {"name": "fail", "arguments": {"code": code}}
        legacy = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": call}
        answer = rpc_messages(http.post(bridge.url, json=legacy, headers=legacy_headers(session)))[-1]
        assert answer["error"]["code"] == code, "the client still gets the server's own code"
        body, headers = modern_request("tools/call", call, request_id=request_id)
        assert rpc_messages(http.post(bridge.url, json=body, headers=headers))[-1]["error"]["code"] == code
    after = _rpc_error_series(http.get(f"{bridge.base_url}/metrics").text)
    added = {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}
    assert added == {
        ("legacy", "other"): len(made_up),
        ("legacy", str(known)): 1,
        ("2026-07-28", "other"): len(made_up),
        ("2026-07-28", str(known)): 1,
    }


def test_made_up_http_methods_do_not_grow_the_metrics(http: httpx.Client, plain_bridge: Bridge) -> None:
    # Before: every distinct method a client made up became a metrics series of its own, for ever. A name the
    # HTTP parser does not know is refused before the bridge sees it; the ones it knows (WebDAV's) are counted
    # as "other".
    for n in range(5):
        assert http.request(f"FROB{n}", plain_bridge.url).status_code == 400
    for method in ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "SEARCH"):
        assert http.request(method, plain_bridge.url).status_code < 500
    metrics = http.get(f"{plain_bridge.base_url}/metrics").text
    assert 'method="FROB' not in metrics and 'method="PROPFIND' not in metrics
    assert 'method="other"' in metrics
