"""A child that stops reading its stdin: the bridge notices within the request timeout, replaces the child,
and the session goes on; clients never wait without end."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, rpc_messages
from tests.harness.bridge import Bridge


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
        padding = "p" * (256 * 1024)  # more than a pipe holds
        note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed", "params": {"_meta": {"pad": padding}}}
        assert http.post(bridge.url, json=note, headers=legacy_headers(session)).status_code == 202
        started = time.monotonic()
        answer = rpc_messages(http.post(bridge.url, json=_call("pid", 4), headers=legacy_headers(session)))[-1]
        assert time.monotonic() - started < 25
        assert answer["id"] == 4
        assert answer["result"]["content"][0]["text"] != before["result"]["content"][0]["text"], "a new child"
    assert '"child_not_reading"' in bridge.log_text()
