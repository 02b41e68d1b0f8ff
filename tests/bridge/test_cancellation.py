"""A request the client gives up on is cancelled at the child and its resources are freed: a 2026-07-28
client by closing its connection, a handshake-era client with notifications/cancelled."""

from __future__ import annotations

import re

import httpx

from tests.bridge.rawhttp import (
    IN_FLIGHT,
    MODERN,
    initialize,
    legacy_headers,
    metric,
    modern_request,
    post_and_leave_open,
)
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until


def test_closing_a_2026_connection_cancels_the_request_at_the_child(plain_bridge: Bridge) -> None:
    bridge = plain_bridge  # its request timeout (120 s) is far beyond the waits below
    mark = bridge.log_size()
    body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}})
    with post_and_leave_open(bridge, body, headers):
        assert wait_until(lambda: metric(bridge.base_url, IN_FLIGHT[MODERN]) == 1, timeout=10)
    # The client went away long before the timeout: the child hears of it, and nothing stays in flight.
    assert wait_until(lambda: "cancelled request" in bridge.log_text(since=mark), timeout=10)
    assert wait_until(lambda: metric(bridge.base_url, IN_FLIGHT[MODERN]) == 0, timeout=10)


def test_a_legacy_cancellation_reaches_the_child_under_the_bridges_id(http: httpx.Client, plain_bridge: Bridge) -> None:
    bridge = plain_bridge
    mark = bridge.log_size()
    session = initialize(http, bridge.url)
    call = {"jsonrpc": "2.0", "id": "mine", "method": "tools/call", "params": {"name": "hang", "arguments": {}}}
    with post_and_leave_open(bridge, call, legacy_headers(session)):
        # Cancel only once the call has reached the child: a cancellation of an unknown request is dropped.
        assert wait_until(lambda: metric(bridge.base_url, IN_FLIGHT["legacy"]) == 1, timeout=10)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "mine"}}
        assert http.post(bridge.url, json=cancel, headers=legacy_headers(session)).status_code == 202
        # The child knows the call by the bridge's own (numeric) id, not the client's "mine".
        assert wait_until(lambda: re.search(r"cancelled request \d+", bridge.log_text(since=mark)) is not None, 10)
