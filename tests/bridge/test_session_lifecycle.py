"""Sessions end: idle ones are reaped with their child, and a new session starts without waiting for one.
A session's child hears the client's handshake exactly once, and so does a child that replaces it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.bridge.rawhttp import initialize, legacy_headers, metric, rpc_messages
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


# What the child of a session has received, from its own record: one handshake, then this call.
HANDSHAKE_THEN_CALL = ["initialize", "notifications/initialized", "tools/call"]


def _received(http: httpx.Client, bridge: Bridge, session: str) -> list[str | None]:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "received", "arguments": {}}}
    response = http.post(bridge.url, json=call, headers=legacy_headers(session))
    return json.loads(rpc_messages(response)[-1]["result"]["content"][0]["text"])


def _wait_for_spares(bridge: Bridge, spares: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and metric(bridge.base_url, "mcp_proxy_spare_children") < spares:
        time.sleep(0.1)
    assert metric(bridge.base_url, "mcp_proxy_spare_children") == spares


@pytest.mark.parametrize("spares", [0, 1])
def test_a_session_child_receives_the_clients_initialize_once(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], spares: int
) -> None:
    # Without a spare the child is started while the client's initialize waits for it; it must get that
    # initialize alone, not also the replay meant for a child that replaces a crashed one.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=spares)
    _wait_for_spares(bridge, spares)
    with httpx.Client(timeout=20) as http:
        session = initialize(http, bridge.url)
        assert _received(http, bridge, session) == HANDSHAKE_THEN_CALL


@pytest.mark.parametrize("spares", [0, 1])
def test_a_child_that_replaces_a_crashed_one_receives_the_handshake_once(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], spares: int
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=spares)
    _wait_for_spares(bridge, spares)
    crash = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "crash", "arguments": {}}}
    with httpx.Client(timeout=20) as http:
        session = initialize(http, bridge.url)
        crashed = http.post(bridge.url, json=crash, headers=legacy_headers(session))
        assert rpc_messages(crashed)[-1]["error"]["code"] == -32000
        assert _received(http, bridge, session) == HANDSHAKE_THEN_CALL
