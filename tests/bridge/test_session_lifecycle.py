"""Sessions end: idle ones are reaped with their child, and a new session starts without waiting for one.
A session's child hears the client's handshake exactly once, and so does a child that replaces it."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.bridge.rawhttp import initialize, legacy_headers, metric, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until

CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pid", "arguments": {}}}


def test_an_idle_session_is_reaped_with_its_child(
    http: httpx.Client, start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, session_idle_timeout=1)
    session = initialize(http, bridge.url)
    assert http.post(bridge.url, json=CALL, headers=legacy_headers(session)).status_code == 200
    assert metric(bridge.base_url, "mcp_proxy_sessions_open") == 1
    assert wait_until(lambda: metric(bridge.base_url, "mcp_proxy_sessions_open") == 0, timeout=10)
    assert metric(bridge.base_url, "mcp_proxy_children_running") == 1, "only the pool child is left"
    assert http.post(bridge.url, json=CALL, headers=legacy_headers(session)).status_code == 404


def _spares(bridge: Bridge) -> float:
    return metric(bridge.base_url, "mcp_proxy_spare_children")


def test_a_spare_child_is_ready_for_the_next_session(http: httpx.Client, plain_bridge: Bridge) -> None:
    bridge = plain_bridge  # one spare child (the default); shared, so children are counted from here on
    assert wait_until(lambda: _spares(bridge) == 1, timeout=10), "no spare child before any session"
    started = metric(bridge.base_url, "mcp_proxy_children_started_total")
    initialize(http, bridge.url)
    initialize(http, bridge.url)
    assert wait_until(lambda: _spares(bridge) == 1, timeout=10), "the spare a session took is replaced"
    assert metric(bridge.base_url, "mcp_proxy_children_started_total") - started >= 2, "one per session taken"


# What the child of a session has received, from its own record: one handshake, then this call.
HANDSHAKE_THEN_CALL = ["initialize", "notifications/initialized", "tools/call"]


def _received(http: httpx.Client, bridge: Bridge, session: str) -> list[str | None]:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "received", "arguments": {}}}
    response = http.post(bridge.url, json=call, headers=legacy_headers(session))
    return json.loads(rpc_messages(response)[-1]["result"]["content"][0]["text"])


@pytest.mark.parametrize("spares", [0, 1])
def test_a_session_child_receives_the_clients_initialize_once(
    http: httpx.Client, no_spare_bridge: Bridge, plain_bridge: Bridge, spares: int
) -> None:
    # Without a spare the child is started while the client's initialize waits for it; it must get that
    # initialize alone, not also the replay meant for a child that replaces a crashed one.
    bridge = plain_bridge if spares else no_spare_bridge  # the plain bridge keeps one spare
    assert wait_until(lambda: _spares(bridge) == spares, timeout=10)
    session = initialize(http, bridge.url)
    received = _received(http, bridge, session)
    # A spare is warmed up with a ping, which the specification allows before initialize.
    assert received == (["ping"] if spares else []) + HANDSHAKE_THEN_CALL


@pytest.mark.parametrize("spares", [0, 1])
def test_a_child_that_replaces_a_crashed_one_receives_the_handshake_once(
    http: httpx.Client, start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], spares: int
) -> None:
    # A private bridge: the test crashes a child on purpose.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=spares)
    assert wait_until(lambda: _spares(bridge) == spares, timeout=10)
    crash = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "crash", "arguments": {}}}
    session = initialize(http, bridge.url)
    crashed = http.post(bridge.url, json=crash, headers=legacy_headers(session))
    assert rpc_messages(crashed)[-1]["error"]["code"] == -32000
    assert _received(http, bridge, session) == HANDSHAKE_THEN_CALL


def test_session_ids_begin_with_the_hosts_prefix_and_another_hosts_session_is_unknown(
    http: httpx.Client, start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Several gateway hosts: Traefik routes a session by the prefix of its id to the host whose bridge holds it.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, session_id_prefix="gw2.")
    session = initialize(http, bridge.url)
    assert session.startswith("gw2.") and len(session) > len("gw2.") + 40
    assert http.post(bridge.url, json=CALL, headers=legacy_headers(session)).status_code == 200
    # Another host's session (its prefix, or none) is unknown here: 404, so the client starts a new one.
    other = "gw1." + session.removeprefix("gw2.")
    assert http.post(bridge.url, json=CALL, headers=legacy_headers(other)).status_code == 404
