"""Whatever a child prints on stdout ends at that child: deeply nested JSON, well-formed JSON of the wrong
shape, a line that never ends. The bridge, its pool and its other sessions go on."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.bridge.rawhttp import initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until


def _modern_call(http: httpx.Client, bridge: Bridge, name: str, arguments: dict) -> dict:
    body, headers = modern_request("tools/call", {"name": name, "arguments": arguments})
    return rpc_messages(http.post(bridge.url, json=body, headers=headers))[-1]


def _legacy_call(http: httpx.Client, bridge: Bridge, session: str, name: str, arguments: dict) -> dict:
    call = {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    return rpc_messages(http.post(bridge.url, json=call, headers=legacy_headers(session)))[-1]


def _text(message: dict) -> str:
    return message["result"]["content"][0]["text"]


def _assert_still_serving(http: httpx.Client, bridge: Bridge) -> None:
    """Both eras answer afterwards, and a new session can still be opened."""
    assert wait_until(lambda: http.get(f"{bridge.base_url}/health").status_code == 200, timeout=20)
    assert _text(_modern_call(http, bridge, "echo", {"text": "still here"})) == "still here"
    session = initialize(http, bridge.url)
    assert _text(_legacy_call(http, bridge, session, "echo", {"text": "new session"})) == "new session"


@pytest.fixture
def limited_bridge(start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]) -> Bridge:
    return start_bridge(misbehaving_argv, pool_size=1, request_timeout=20, max_message_bytes=1024 * 1024)


def test_deeply_nested_json_from_a_child_does_not_take_the_bridge_down(
    http: httpx.Client, plain_bridge: Bridge
) -> None:
    # Before: json.loads raised RecursionError (not a ValueError), which escaped the child's reader and
    # ended the task group of the whole pool: every later 2026-07-28 request was a 503, for good.
    bridge, mark = plain_bridge, plain_bridge.log_size()
    assert _text(_modern_call(http, bridge, "deep", {"depth": 100000})) == "deep done"
    session = initialize(http, bridge.url)
    assert _text(_legacy_call(http, bridge, session, "deep", {"depth": 100000})) == "deep done"
    _assert_still_serving(http, bridge)
    assert '"child_stdout_not_json"' in bridge.log_text(since=mark)


def test_json_of_the_wrong_shape_from_a_child_is_skipped(http: httpx.Client, plain_bridge: Bridge) -> None:
    # Before: a progress notification whose params were a list raised AttributeError in the reader, with
    # the same result: the pool (and the server's task group, so new sessions too) was gone.
    assert _text(_modern_call(http, plain_bridge, "odd_message", {})) == "odd done"
    session = initialize(http, plain_bridge.url)
    assert _text(_legacy_call(http, plain_bridge, session, "odd_message", {})) == "odd done"
    _assert_still_serving(http, plain_bridge)


def test_a_line_over_the_message_limit_fails_its_request_at_once(limited_bridge: Bridge) -> None:
    bridge = limited_bridge
    # Before: no limit at all, so a child writing without newlines grew the bridge's memory until it died.
    with httpx.Client(timeout=30) as http:
        started = time.monotonic()
        answer = _modern_call(http, bridge, "long_line", {"mib": 4})
        assert answer["error"]["code"] == -32000 and "bytes" in answer["error"]["message"]
        session = initialize(http, bridge.url)
        legacy = _legacy_call(http, bridge, session, "long_line", {"mib": 4})
        assert legacy["error"]["code"] == -32000
        assert time.monotonic() - started < 15, "the error comes at once, not after the request timeout"
        assert _text(_legacy_call(http, bridge, session, "echo", {"text": "replaced"})) == "replaced"
        _assert_still_serving(http, bridge)
    assert '"child_message_too_large"' in bridge.log_text()


def test_a_line_under_the_message_limit_passes(limited_bridge: Bridge) -> None:
    with httpx.Client(timeout=30) as http:
        assert _text(_modern_call(http, limited_bridge, "big", {"mib": 0.5})) == "x" * (512 * 1024)


def test_an_answer_that_is_not_json_rpc_becomes_an_error_not_a_hang(http: httpx.Client, plain_bridge: Bridge) -> None:
    # Before: a legacy client waited for ever (the transport refused the answer and nothing took its place),
    # and a 2026-07-28 client got {"result": "not an object"}, which no client can parse. (The http fixture
    # gives up after 20 s, long before the bridge's request timeout.)
    modern = _modern_call(http, plain_bridge, "bad_answer", {})
    assert modern["id"] == 1 and modern["error"]["code"] == -32603
    session = initialize(http, plain_bridge.url)
    legacy = _legacy_call(http, plain_bridge, session, "bad_answer", {})
    assert legacy["id"] == 11 and legacy["error"]["code"] == -32603
    assert _text(_legacy_call(http, plain_bridge, session, "echo", {"text": "next"})) == "next"
