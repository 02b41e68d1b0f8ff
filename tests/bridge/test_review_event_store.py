"""The events a handshake-era session keeps for resumption (Last-Event-ID) are capped in bytes, not only in
number: large answers do not pile up in the bridge's memory, and the latest stream stays resumable."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, sse_messages
from tests.harness.bridge import Bridge


def _stream_ids(http: httpx.Client, bridge: Bridge, session: str, request_id: int) -> list[str]:
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "chatty", "arguments": {"kib": 3072}},
    }
    response = http.post(bridge.url, json=call, headers=legacy_headers(session))
    assert response.headers["content-type"].startswith("text/event-stream")  # a notification, then the answer
    return re.findall(r"^id: *(\S+)", response.text, flags=re.MULTILINE)


def _replayed(http: httpx.Client, bridge: Bridge, session: str, last_event_id: str) -> list[dict]:
    headers = {**legacy_headers(session), "Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    text, deadline = "", time.monotonic() + 5
    with http.stream("GET", bridge.url, headers=headers) as replay:
        assert replay.status_code == 200
        for chunk in replay.iter_text():
            text += chunk
            if ('"result"' in text and text.endswith("\n\n")) or time.monotonic() > deadline:
                break
    return sse_messages(text)


def test_old_large_events_are_let_go_and_the_latest_stays_resumable(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Before: up to 1000 events of any size per session: four 3 MiB answers all stayed in memory (and a
    # session making a thousand such calls would have held 3 GiB).
    bridge = start_bridge(misbehaving_argv, pool_size=1, sse_keepalive=1)
    with httpx.Client(timeout=30) as http:
        session = initialize(http, bridge.url)
        streams = [_stream_ids(http, bridge, session, n) for n in range(2, 6)]
        assert all(streams)
        latest = _replayed(http, bridge, session, streams[-1][0])
        assert any(m.get("id") == 5 and "result" in m for m in latest), "the latest answer is replayed"
        oldest = _replayed(http, bridge, session, streams[0][0])
        assert not any(m.get("id") == 2 for m in oldest), "12 MiB later, the first 3 MiB answer is gone"
