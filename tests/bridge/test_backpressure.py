"""Back-pressure: a child that stops reading its stdin is noticed within the request timeout and replaced, a
full in-flight cap answers 503 at once in either era, and a burst of calls asks the child for its tools once.
Clients never wait without end, and the child is not flooded."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import httpx
import pytest

from tests.bridge.rawhttp import (
    IN_FLIGHT,
    MODERN,
    Caller,
    initialize,
    legacy_headers,
    metric,
    modern_request,
    rpc_messages,
)
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until


def _call(name: str, request_id: int, arguments: dict | None = None) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}},
    }


def test_notifications_to_a_child_that_stopped_reading_do_not_wedge_the_session(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Before: the session's reader of client messages blocked for ever writing a notification into the full
    # pipe of a child that no longer read; every later request of the session hung (no timeout applied yet).
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=3, sse_keepalive=60)
    with httpx.Client(timeout=30) as http:
        session = initialize(http, bridge.url)
        before = rpc_messages(http.post(bridge.url, json=_call("pid", 2), headers=legacy_headers(session)))[-1]
        deaf = http.post(bridge.url, json=_call("deaf", 3), headers=legacy_headers(session))
        assert rpc_messages(deaf)[-1]["result"]["content"][0]["text"] == "not listening any more"
        # More than the child's stdin holds: a pipe takes 64 KiB, the socket pair uvloop gives a child about 200.
        padding = "p" * (4 * 1024 * 1024)
        note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed", "params": {"_meta": {"pad": padding}}}
        assert http.post(bridge.url, json=note, headers=legacy_headers(session)).status_code == 202
        started = time.monotonic()
        answer = rpc_messages(http.post(bridge.url, json=_call("pid", 4), headers=legacy_headers(session)))[-1]
        assert time.monotonic() - started < 25
        assert answer["id"] == 4
        assert answer["result"]["content"][0]["text"] != before["result"]["content"][0]["text"], "a new child"
    assert '"child_not_reading"' in bridge.log_text()


@pytest.mark.parametrize("era", [MODERN, "legacy"])
def test_the_in_flight_cap_answers_503_with_retry_after(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], era: str
) -> None:
    # Before: --max-inflight counted 2026-07-28 requests only; POSTs to a session were unbounded, each holding
    # its body and a relay task for up to the request timeout.
    # Three users, each under the per-user cap (by default a quarter of 2, so 1): only the global cap can refuse.
    alice, bob, carol = ({"X-Auth-User": name} for name in ("alice", "bob", "carol"))
    # The hanging calls end at the request timeout; the probe must come well before it, even under load.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_inflight=2, request_timeout=10)
    with Caller(bridge, era, [alice, bob, carol]) as caller, concurrent.futures.ThreadPoolExecutor(2) as pool:
        hanging = [pool.submit(caller.call, user, "hang") for user in (alice, bob)]
        # Probe only once both hang: a probe sent earlier would take a slot, and refuse a hang instead.
        assert wait_until(lambda: metric(bridge.base_url, IN_FLIGHT[era]) == 2, timeout=8), "never both in flight"
        refused = caller.call(carol, "echo", {"text": "x"})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["message"] == "Too many requests in flight", "the global cap, not carol's"
        for future in hanging:
            assert rpc_messages(future.result())[-1]["error"]["code"] == -32001, "answered at the request timeout"
        assert caller.echo(carol, "after") == "after"


def test_a_burst_of_tool_calls_asks_the_child_for_its_tools_once(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Before: each tools/call on a cold (or stale) schema cache sent its own tools/list to the child, before
    # the in-flight cap counted it: 20 calls, 20 tools/list.
    bridge = start_bridge(misbehaving_argv, pool_size=1, env={"MISBEHAVING_TOOLS_LIST_DELAY": "1"})
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "burst"}})

    def call() -> httpx.Response:
        with httpx.Client(timeout=30) as own:
            return own.post(bridge.url, json=body, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = [future.result() for future in [pool.submit(call) for _ in range(20)]]
    assert all(rpc_messages(a)[-1]["result"]["content"][0]["text"] == "burst" for a in answers)
    # stderr lines reach the log a moment later
    assert wait_until(lambda: "tools/list served" in bridge.log_text(), timeout=5)
    assert bridge.log_text().count("tools/list served") == 1
