"""Sessions end: idle ones are reaped with their child, and a new session starts without waiting for one."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, metric
from tests.harness.bridge import Bridge

CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pid", "arguments": {}}}


def test_an_idle_session_is_reaped_with_its_child(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, session_idle_timeout=1)
    with httpx.Client(timeout=10) as http:
        session = initialize(http, bridge.url)
        assert http.post(bridge.url, json=CALL, headers=legacy_headers(session)).status_code == 200
        assert metric(bridge.base_url, "mcp_proxy_sessions_open") == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and metric(bridge.base_url, "mcp_proxy_sessions_open") > 0:
            time.sleep(0.2)
        assert metric(bridge.base_url, "mcp_proxy_sessions_open") == 0
        assert metric(bridge.base_url, "mcp_proxy_children_running") == 1, "only the pool child is left"
        assert http.post(bridge.url, json=CALL, headers=legacy_headers(session)).status_code == 404


def test_a_spare_child_is_ready_for_the_next_session(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and metric(bridge.base_url, "mcp_proxy_spare_children") < 1:
        time.sleep(0.1)
    assert metric(bridge.base_url, "mcp_proxy_spare_children") == 1
    with httpx.Client(timeout=10) as http:
        initialize(http, bridge.url)
        initialize(http, bridge.url)
    started = metric(bridge.base_url, "mcp_proxy_children_started_total")
    assert started >= 3, "the pool child, the spare taken by a session, and its replacement"
