"""SSE as a reverse proxy needs it: keep-alive comments while a request runs, no buffering, one event per
message; and on a burst of notifications the answer still comes (notifications may be thinned out)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.bridge.rawhttp import MODERN, initialize, legacy_headers, modern_request, sse_messages
from tests.harness.bridge import Bridge

# What each era's keep-alive looks like on the wire: the bridge's own comment in 2026-07-28, the SDK
# transport's ping on a handshake-era session.
KEEPALIVE = {MODERN: ": keep-alive", "legacy": ": ping"}


def _read_all(response: httpx.Response, limit_seconds: float = 15) -> str:
    text, deadline = "", time.monotonic() + limit_seconds
    for chunk in response.iter_text():
        text += chunk
        if time.monotonic() > deadline:
            break
    return text


@pytest.mark.parametrize("era", [MODERN, "legacy"])
def test_a_request_stream_sends_keepalives_then_the_error(
    http: httpx.Client, short_timeout_bridge: Bridge, era: str
) -> None:
    bridge = short_timeout_bridge  # a keep-alive every 0.3 s, a timeout after 3 s
    if era == MODERN:
        body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}})
    else:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "hang", "arguments": {}}}
        headers = legacy_headers(initialize(http, bridge.url))
    with http.stream("POST", bridge.url, json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        text = _read_all(response)
    assert text.count(KEEPALIVE[era]) >= 2
    messages = sse_messages(text)
    assert messages[-1]["id"] == 1 and messages[-1]["error"]["code"] == -32001


def test_every_sse_event_is_one_complete_json_rpc_message(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    arguments = {"kib": 512}
    call = {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "chatty", "arguments": arguments}}
    response = http.post(plain_bridge.url, json=call, headers=legacy_headers(session))
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = sse_messages(response.text)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[-1]["id"] == 6
    assert len(messages[-1]["result"]["content"][0]["text"]) == 512 * 1024


def test_the_answer_after_a_burst_of_progress_notifications_is_never_dropped(
    http: httpx.Client, plain_bridge: Bridge
) -> None:
    # Before: the answer shared a 256-slot buffer with the notifications and was dropped when a burst filled
    # it; the client then got keep-alive comments for ever and never its result.
    params = {"name": "progress", "arguments": {"count": 400}, "_meta": {"progressToken": "burst"}}
    body, headers = modern_request("tools/call", params)
    with http.stream("POST", plain_bridge.url, json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = _read_all(response)
    messages = sse_messages(text)
    assert messages[-1].get("id") == 1, f"no answer after {len(messages)} messages"
    assert messages[-1]["result"]["content"][0]["text"] == "progress done"
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert progress and all(m["params"]["progressToken"] == "burst" for m in progress)
    assert [m["params"]["progress"] for m in progress] == sorted(m["params"]["progress"] for m in progress)
