"""/health asks a running child without starting one; /metrics counts; one JSON log line per request."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import modern_request
from tests.harness.bridge import Bridge
from tests.harness.log_schema import assert_schema, parse_log


def _counter(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_health_does_not_spawn_a_child_per_check(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0)
    before = _counter(httpx.get(f"{bridge.base_url}/metrics").text, "mcp_proxy_children_started_total")
    for _ in range(10):
        health = httpx.get(f"{bridge.base_url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
    after = _counter(httpx.get(f"{bridge.base_url}/metrics").text, "mcp_proxy_children_started_total")
    assert after == before == 1


def test_metrics_count_requests_sessions_children_and_latency(plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    httpx.post(plain_bridge.url, json=body, headers=headers, timeout=10)
    text = httpx.get(f"{plain_bridge.base_url}/metrics").text
    assert re.search(r'^mcp_proxy_http_requests_total\{era="2026-07-28",method="POST",status="200"\} \d+', text, re.M)
    for name in (
        "mcp_proxy_sessions_open",
        "mcp_proxy_children_running",
        "mcp_proxy_request_duration_seconds_count",
        "mcp_proxy_child_restarts_total",
    ):
        _counter(text, name)


def test_one_json_log_line_per_request(plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "logged"}})
    headers["X-Auth-User"] = "log-checker"
    httpx.post(plain_bridge.url, json=body, headers=headers, timeout=10)
    mine: list[dict[str, object]] = []
    deadline = time.monotonic() + 5  # the line is written just after the answer is sent
    while not mine and time.monotonic() < deadline:
        lines = [json.loads(line) for line in plain_bridge.log_text().splitlines() if line.startswith("{")]
        mine = [e for e in lines if e.get("event") == "access" and e.get("user") == "log-checker"]
        time.sleep(0.05)
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
