"""Many clients at once: 50 handshake-era sessions, 200 stateless 2026-07-28 requests, all answered correctly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.harness.bridge import Bridge

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in getattr(result, "content", []))


async def test_fifty_concurrent_legacy_sessions(plain_bridge: Bridge) -> None:
    # All fifty are the same (anonymous) user here: the shared bridge's per-user cap is its global one (100),
    # and the SDK client ends each session (DELETE) when it is done.
    bridge = plain_bridge
    answers: dict[int, str] = {}
    pids: set[str] = set()

    async def one_session(n: int) -> None:
        async with Client(bridge.url, mode="legacy") as client:
            await client.list_tools()
            answers[n] = _text(await client.call_tool("echo", {"text": f"session {n}"}))
            pids.add(_text(await client.call_tool("pid", {})))

    started = time.monotonic()
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(one_session, n)
    assert answers == {n: f"session {n}" for n in range(50)}
    assert len(pids) == 50, "each session had a child of its own"
    print(f"50 legacy sessions in {time.monotonic() - started:.1f}s")


async def test_two_hundred_concurrent_modern_requests_to_a_2026_child(real_bridge: Callable[[str], Bridge]) -> None:
    bridge = real_bridge("time")
    zones = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "Africa/Cairo"]
    answers: dict[int, str] = {}

    async def one_request(client: Client, n: int) -> None:
        answers[n] = _text(await client.call_tool("get_current_time", {"timezone": zones[n % len(zones)]}))

    started = time.monotonic()
    with anyio.fail_after(120):
        async with Client(bridge.url, mode="2026-07-28") as client, anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(one_request, client, n)
    assert len(answers) == 200
    for n, text in answers.items():
        assert zones[n % len(zones)] in text
    print(f"200 modern requests (2026 child) in {time.monotonic() - started:.1f}s")


async def test_two_hundred_concurrent_modern_requests_to_a_handshake_child(
    real_bridge: Callable[[str], Bridge],
) -> None:
    bridge = real_bridge("everything")
    answers: dict[int, str] = {}

    async def one_request(client: Client, n: int) -> None:
        answers[n] = _text(await client.call_tool("echo", {"message": f"request {n}"}))

    started = time.monotonic()
    with anyio.fail_after(120):
        async with Client(bridge.url, mode="2026-07-28") as client, anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(one_request, client, n)
    assert answers == {n: f"Echo: request {n}" for n in range(200)}
    print(f"200 modern requests (handshake child) in {time.monotonic() - started:.1f}s")
