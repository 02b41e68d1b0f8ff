"""A child that speaks 2026-07-28 itself: requests pass through, and the retry of its own multi-round
trip goes back to the very child that holds (and sealed) the request state."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client

from tests.harness.bridge import Bridge

pytestmark = pytest.mark.anyio

MODERN_SERVER = Path(__file__).with_name("modern_server.py")


async def test_input_required_retries_return_to_the_child_that_asked(start_bridge: Callable[..., Bridge]) -> None:
    bridge = start_bridge([sys.executable, str(MODERN_SERVER)], pool_size=3, spare_children=0)
    # /health is 200 once one child is ready; a Python server takes a while to start on a loaded machine,
    # and the spread checked below needs all three.
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and "mcp_proxy_pool_children_ready 3" not in httpx.get(f"{bridge.base_url}/metrics", timeout=10).text
    ):
        time.sleep(0.1)

    async def elicit(_ctx: Any, _params: Any) -> types.ElicitResult:
        await anyio.sleep(0.2)  # keep several exchanges open at once, spread over the pool
        return types.ElicitResult(action="accept", content={"ok": True})

    texts: list[str] = []

    async def confirm(client: Client) -> None:
        result = await client.call_tool("confirm", {"question": "sure?"})
        texts.append(" ".join(getattr(part, "text", "") for part in result.content))

    with anyio.fail_after(60):
        async with Client(bridge.url, mode="2026-07-28", elicitation_callback=elicit) as client:
            assert client.protocol_version == "2026-07-28"
            async with anyio.create_task_group() as tg:
                for _ in range(9):
                    tg.start_soon(confirm, client)
    assert len(texts) == 9
    served = set()
    for text in texts:
        match = re.fullmatch(r"answer=accept state=(pid-\d+) served-by=(pid-\d+)", text)
        assert match, text
        assert match.group(1) == match.group(2), "the retry reached another child than the one that asked"
        served.add(match.group(2))
    assert len(served) > 1, "the exchanges were spread over the pool"
