"""The official SDK client, in each of its connect modes, lists and calls tools on real servers through the bridge."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from mcp import Client

from tests.harness.bridge import Bridge

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto", "2026-07-28"]
EXPECTED_ERA = {"legacy": "2025-11-25", "auto": "2026-07-28", "2026-07-28": "2026-07-28"}


def _text(result: object) -> str:
    return " ".join(getattr(part, "text", "") for part in getattr(result, "content", []))


@pytest.mark.parametrize("mode", MODES)
async def test_time_server_tells_the_time(real_bridge: Callable[[str], Bridge], mode: str) -> None:
    bridge = real_bridge("time")
    with anyio.fail_after(30):
        async with Client(bridge.url, mode=mode) as client:
            assert client.protocol_version == EXPECTED_ERA[mode]
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"get_current_time", "convert_time"} <= names
            result = await client.call_tool("get_current_time", {"timezone": "Europe/Paris"})
            assert not result.is_error
            assert "Europe/Paris" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_fetch_server_fetches_a_loopback_page(
    real_bridge: Callable[[str], Bridge], loopback_site: str, mode: str
) -> None:
    bridge = real_bridge("fetch")
    with anyio.fail_after(60):
        async with Client(bridge.url, mode=mode) as client:
            assert "fetch" in {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("fetch", {"url": loopback_site})
            assert not result.is_error, _text(result)
            assert "Hello from loopback" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_memory_server_keeps_entities(real_bridge: Callable[[str], Bridge], mode: str) -> None:
    bridge = real_bridge("memory")
    entity = f"bridge-{mode}"
    with anyio.fail_after(30):
        async with Client(bridge.url, mode=mode) as client:
            assert client.protocol_version == EXPECTED_ERA[mode]
            assert "create_entities" in {tool.name for tool in (await client.list_tools()).tools}
            created = await client.call_tool(
                "create_entities",
                {"entities": [{"name": entity, "entityType": "test", "observations": ["seen through the bridge"]}]},
            )
            assert not created.is_error, _text(created)
            found = await client.call_tool("search_nodes", {"query": entity})
            assert entity in _text(found)


@pytest.mark.parametrize("mode", MODES)
async def test_everything_server_echoes_and_adds(real_bridge: Callable[[str], Bridge], mode: str) -> None:
    bridge = real_bridge("everything")
    with anyio.fail_after(30):
        async with Client(bridge.url, mode=mode) as client:
            assert client.protocol_version == EXPECTED_ERA[mode]
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo", "get-sum"} <= names
            assert "Echo: through" in _text(await client.call_tool("echo", {"message": "through"}))
            assert "5" in _text(await client.call_tool("get-sum", {"a": 2, "b": 3}))
