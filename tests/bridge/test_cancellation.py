"""A request the client gives up on is cancelled at the child and its resources are freed: a 2026-07-28
client by closing its response, a handshake-era client with notifications/cancelled."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, metric, modern_request
from tests.harness.bridge import Bridge


def _wait_for(predicate: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_closing_a_2026_response_cancels_the_request_at_the_child(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=60, sse_keepalive=0.5)
    body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}})
    with httpx.Client(timeout=30) as http, http.stream("POST", bridge.url, json=body, headers=headers) as response:
        assert response.status_code == 200
        assert _wait_for(lambda: metric(bridge.base_url, "mcp_proxy_modern_requests_in_flight") == 1)
    # The client went away long before the 60 s timeout: the child hears of it, and nothing stays in flight.
    assert _wait_for(lambda: "cancelled request" in bridge.log_text())
    assert _wait_for(lambda: metric(bridge.base_url, "mcp_proxy_modern_requests_in_flight") == 0)


def test_a_legacy_cancellation_reaches_the_child_under_the_bridges_id(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=60)
    with httpx.Client(timeout=30) as http:
        session = initialize(http, bridge.url)
        call = {"jsonrpc": "2.0", "id": "mine", "method": "tools/call", "params": {"name": "hang", "arguments": {}}}
        with (
            httpx.Client(timeout=30) as other,
            other.stream("POST", bridge.url, json=call, headers=legacy_headers(session)) as pending,
        ):
            assert pending.status_code == 200
            time.sleep(0.5)
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "mine"}}
            assert http.post(bridge.url, json=cancel, headers=legacy_headers(session)).status_code == 202
            assert _wait_for(lambda: re.search(r"cancelled request \d+", bridge.log_text()) is not None)
