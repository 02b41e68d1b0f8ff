"""A child that crashes, hangs, freezes, floods stderr or prints garbage: the client gets a prompt error,
and the next request works. Big messages pass both ways; a server that cannot start is reported at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.bridge.rawhttp import INITIALIZE_REQUEST, MIB, initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in getattr(result, "content", []))


@pytest.mark.parametrize("mode", MODES)
async def test_a_crash_mid_request_is_an_error_and_the_next_request_works(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], mode: str
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=30)
    with anyio.fail_after(60):
        async with Client(bridge.url, mode=mode) as client:
            before = _text(await client.call_tool("pid", {}))
            started = time.monotonic()
            with pytest.raises(MCPError, match="exited"):
                await client.call_tool("crash", {})
            assert time.monotonic() - started < 10, "the error comes at once, not after the 30 s timeout"
            assert _text(await client.call_tool("echo", {"text": "still here"})) == "still here"
            assert _text(await client.call_tool("pid", {})) != before, "a new child took over"


@pytest.mark.parametrize("mode", MODES)
async def test_a_hanging_request_times_out_and_others_still_work(short_timeout_bridge: Bridge, mode: str) -> None:
    with anyio.fail_after(30):
        async with Client(short_timeout_bridge.url, mode=mode) as client:
            with pytest.raises(MCPError, match="did not answer"):
                await client.call_tool("hang", {})
            assert _text(await client.call_tool("echo", {"text": "next"})) == "next"


@pytest.mark.parametrize("mode", MODES)
async def test_a_frozen_child_is_replaced(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], mode: str
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=2)
    with anyio.fail_after(40):
        async with Client(bridge.url, mode=mode) as client:
            before = _text(await client.call_tool("pid", {}))
            with pytest.raises(MCPError):
                await client.call_tool("freeze", {})
            assert _text(await client.call_tool("echo", {"text": "thawed"})) == "thawed"
            assert _text(await client.call_tool("pid", {})) != before


async def test_a_stderr_flood_is_drained_and_logged(plain_bridge: Bridge) -> None:
    mark = plain_bridge.log_size()
    with anyio.fail_after(30):
        async with Client(plain_bridge.url, mode="legacy") as client:
            assert _text(await client.call_tool("flood_stderr", {"lines": 50000})) == "flooded"
            assert _text(await client.call_tool("echo", {"text": "after flood"})) == "after flood"
    log = plain_bridge.log_text(since=mark)
    assert '"child_stderr"' in log and "flood line 0 " in log
    assert '"child_stderr_rate_limited"' in log, "a flood is rate-limited in the log, not written line by line"


@pytest.mark.parametrize("mode", MODES)
async def test_non_json_on_stdout_is_skipped(plain_bridge: Bridge, mode: str) -> None:
    mark = plain_bridge.log_size()
    with anyio.fail_after(30):
        async with Client(plain_bridge.url, mode=mode) as client:
            assert _text(await client.call_tool("garbage", {})) == "after garbage"
            assert _text(await client.call_tool("echo", {"text": "fine"})) == "fine"
    assert '"child_stdout_not_json"' in plain_bridge.log_text(since=mark)


def test_the_session_cap_answers_503_with_retry_after(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, max_sessions=2)
    # Two users, one session each: the per-user cap (by default 1 here) is not what refuses the third.
    alice, bob, carol = ({"X-Auth-User": name} for name in ("alice", "bob", "carol"))
    with httpx.Client(timeout=20) as http:
        first = initialize(http, bridge.url, alice)
        initialize(http, bridge.url, bob)
        init = INITIALIZE_REQUEST
        refused = http.post(bridge.url, json=init, headers={"Accept": "application/json, text/event-stream", **carol})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["message"] == "Too many open sessions (2); retry later"
        assert http.delete(bridge.url, headers=legacy_headers(first, alice)).status_code == 200
        initialize(http, bridge.url, carol)


def test_multi_mib_results_pass_in_both_eras(http: httpx.Client, plain_bridge: Bridge) -> None:
    mib = 5
    body, headers = modern_request("tools/call", {"name": "big", "arguments": {"mib": mib}})
    modern = http.post(plain_bridge.url, json=body, headers=headers, timeout=60)
    assert len(rpc_messages(modern)[-1]["result"]["content"][0]["text"]) == mib * MIB
    session = initialize(http, plain_bridge.url)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "big", "arguments": {"mib": mib}}}
    legacy = http.post(plain_bridge.url, json=call, headers=legacy_headers(session), timeout=60)
    assert len(rpc_messages(legacy)[-1]["result"]["content"][0]["text"]) == mib * MIB


def test_a_multi_mib_request_reaches_the_child(http: httpx.Client, plain_bridge: Bridge) -> None:
    text = "z" * (3 * MIB)
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": text}})
    response = http.post(plain_bridge.url, json=body, headers=headers, timeout=60)
    assert rpc_messages(response)[-1]["result"]["content"][0]["text"] == text


def test_a_server_that_cannot_start_is_reported_unhealthy(http: httpx.Client, tmp_path: Path) -> None:
    bridge = Bridge(["/nonexistent/mcp-server"], log_dir=tmp_path, options={"pool_size": 1})
    bridge.process.start()
    try:
        statuses: list[int] = []

        def health_answers() -> bool:
            try:
                statuses.append(http.get(f"{bridge.base_url}/health", timeout=2).status_code)
            except httpx.TransportError:
                return False  # not listening yet
            return True

        assert wait_until(health_answers, timeout=15), "the bridge never answered /health"
        assert statuses[-1] == 503
        body, headers = modern_request("tools/list")
        started = time.monotonic()
        modern = http.post(bridge.url, json=body, headers=headers, timeout=30)
        assert modern.status_code == 503 and "retry-after" in modern.headers
        init = INITIALIZE_REQUEST
        legacy = http.post(bridge.url, json=init, headers={"Accept": "application/json, text/event-stream"}, timeout=30)
        assert "error" in rpc_messages(legacy)[-1]
        assert time.monotonic() - started < 10, "a server that cannot start is reported at once, not after timeouts"
    finally:
        bridge.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_a_multi_mib_result_reaches_the_sdk_client(plain_bridge: Bridge, mode: str) -> None:
    # A plain answer goes out as JSON, so the SDK client's 1 MiB cap on SSE events does not apply.
    with anyio.fail_after(60):
        async with Client(plain_bridge.url, mode=mode) as client:
            result = await client.call_tool("big", {"mib": 5})
    assert len(_text(result)) == 5 * MIB


async def test_a_multi_mib_sse_event_reaches_a_client_that_accepts_it(plain_bridge: Bridge) -> None:
    transport = streamable_http_client(plain_bridge.url, max_sse_event_size=None)
    with anyio.fail_after(60):
        async with Client(transport, mode="legacy") as client:
            result = await client.call_tool("chatty", {"kib": 5 * 1024})
    assert len(_text(result)) == 5 * MIB
