"""Bursts and slow readers on 2026-07-28 request streams: notifications may be thinned out, the answer never."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import modern_request, sse_messages
from tests.harness.bridge import Bridge


def test_the_answer_after_a_burst_of_progress_notifications_is_never_dropped(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Before: the answer shared a 256-slot buffer with the notifications and was dropped when a burst filled
    # it; the client then got keep-alive comments for ever and never its result.
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=20, sse_keepalive=1)
    params = {"name": "progress", "arguments": {"count": 400}, "_meta": {"progressToken": "burst"}}
    body, headers = modern_request("tools/call", params)
    text, deadline = "", time.monotonic() + 15
    with httpx.Client(timeout=30) as http, http.stream("POST", bridge.url, json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_text():
            text += chunk
            if time.monotonic() > deadline:
                break
    messages = sse_messages(text)
    assert messages[-1].get("id") == 1, f"no answer after {len(messages)} messages"
    assert messages[-1]["result"]["content"][0]["text"] == "progress done"
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert progress and all(m["params"]["progressToken"] == "burst" for m in progress)
    assert [m["params"]["progress"] for m in progress] == sorted(m["params"]["progress"] for m in progress)
