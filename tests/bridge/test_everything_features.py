"""Protocol features beyond tools, with server-everything behind the bridge: progress, logging, resources,
prompts, and the server's own requests (sampling, elicitation, roots) on handshake-era sessions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from tests.harness.bridge import Bridge

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


@pytest.fixture
def everything(real_bridge: Callable[[str], Bridge]) -> Bridge:
    """The shared bridge in front of server-everything. Started on first use, here rather than inside a test's
    time budget: on a loaded machine its start-up alone took most of the 30 s a test gives itself."""
    return real_bridge("everything")


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in getattr(result, "content", []))


@pytest.mark.parametrize("mode", MODES)
async def test_progress_notifications_reach_the_caller(everything: Bridge, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(30):
        async with Client(everything.url, mode=mode) as client:
            result = await client.call_tool(
                "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
            )
    assert not result.is_error
    assert len(seen) >= 3 and seen == sorted(seen)


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
async def test_log_messages_reach_a_legacy_session(everything: Bridge) -> None:
    received: list[types.LoggingMessageNotificationParams] = []
    got_one = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)
        got_one.set()

    with anyio.fail_after(40):
        async with Client(everything.url, mode="legacy", logging_callback=on_log) as client:
            await client.set_logging_level("debug")
            await client.call_tool("toggle-simulated-logging", {})
            try:
                await got_one.wait()
            finally:
                await client.call_tool("toggle-simulated-logging", {})
    assert received and received[0].level


@pytest.mark.parametrize("mode", MODES)
async def test_resources_are_listed_and_read(everything: Bridge, mode: str) -> None:
    with anyio.fail_after(30):
        async with Client(everything.url, mode=mode) as client:
            listed = await client.list_resources()
            assert listed.resources
            uri = str(listed.resources[0].uri)
            read = await client.read_resource(uri)
            assert read.contents and str(read.contents[0].uri) == uri
            if mode != "legacy":
                assert read.cache_scope in ("private", "public") and read.ttl_ms >= 0


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_are_listed_and_filled_in(everything: Bridge, mode: str) -> None:
    with anyio.fail_after(30):
        async with Client(everything.url, mode=mode) as client:
            names = {prompt.name for prompt in (await client.list_prompts()).prompts}
            assert {"simple-prompt", "args-prompt"} <= names
            prompt = await client.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhone"})
            assert "Lyon" in str(prompt.messages)


@pytest.mark.parametrize("mode", MODES)
async def test_a_sampling_request_is_answered_by_the_client(everything: Bridge, mode: str) -> None:
    # On a handshake-era session the server's request reaches the client on the session's streams; a
    # 2026-07-28 client gets it as an input request (a multi-round trip) and retries with the answer.
    asked: list[types.CreateMessageRequestParams] = []

    async def sample(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled by the test"), model="test-model"
        )

    with anyio.fail_after(30):
        async with Client(everything.url, mode=mode, sampling_callback=sample) as client:
            result = await client.call_tool("trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 20})
    assert asked, "the server's sampling request never reached the client"
    assert "sampled by the test" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_an_elicitation_request_is_answered_by_the_client(everything: Bridge, mode: str) -> None:
    # As above: on the session in the handshake era, as an input request in 2026-07-28.
    asked: list[Any] = []

    async def elicit(_ctx: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="decline")

    with anyio.fail_after(30):
        async with Client(everything.url, mode=mode, elicitation_callback=elicit) as client:
            result = await client.call_tool("trigger-elicitation-request", {})
    assert asked, "the server's elicitation request never reached the client"
    assert "decline" in _text(result).lower()


async def test_roots_request_is_answered_by_a_legacy_client(everything: Bridge) -> None:
    async def roots(_ctx: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/bridge-test", name="bridge-test")])

    with anyio.fail_after(30):
        async with Client(everything.url, mode="legacy", list_roots_callback=roots) as client:
            result = await client.call_tool("get-roots-list", {})
    assert "bridge-test" in _text(result)


async def test_a_2026_client_without_sampling_gets_an_error_not_a_hang(everything: Bridge) -> None:
    with anyio.fail_after(30):
        async with Client(everything.url, mode="2026-07-28") as client:
            try:
                result = await client.call_tool("trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 20})
            except Exception as exc:  # noqa: BLE001 - either an error result or an MCPError is a clear answer
                assert "sampling" in str(exc).lower() or "not available" in str(exc).lower()
            else:
                assert result.is_error
