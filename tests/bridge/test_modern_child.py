"""A child that speaks 2026-07-28 itself: requests pass through, and the retry of its own multi-round
trip goes back to the very child that holds (and sealed) the request state."""

from __future__ import annotations

import re
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from tests.bridge.rawhttp import metric
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until

pytestmark = pytest.mark.anyio


async def test_input_required_retries_return_to_the_child_that_asked(modern_bridge: Bridge) -> None:
    bridge = modern_bridge  # three children, no spare
    # /health is 200 once one child is ready; a Python server takes a while to start on a loaded machine,
    # and the spread checked below needs all three.
    ready = "mcp_proxy_pool_children_ready"
    assert wait_until(lambda: metric(bridge.base_url, ready) == 3, timeout=30), "the pool never had three children"

    exchanges = 9
    asked: list[Any] = []
    all_asked = anyio.Event()

    async def elicit(_ctx: Any, params: Any) -> types.ElicitResult:
        # Answer only once every exchange has asked: all nine are open at once, spread over the pool, and each
        # retry must find the child that holds its state.
        asked.append(params)
        if len(asked) == exchanges:
            all_asked.set()
        await all_asked.wait()
        return types.ElicitResult(action="accept", content={"ok": True})

    texts: list[str] = []

    async def confirm(client: Client) -> None:
        result = await client.call_tool("confirm", {"question": "sure?"})
        texts.append(" ".join(getattr(part, "text", "") for part in result.content))

    with anyio.fail_after(60):
        async with Client(bridge.url, mode="2026-07-28", elicitation_callback=elicit) as client:
            assert client.protocol_version == "2026-07-28"
            async with anyio.create_task_group() as tg:
                for _ in range(exchanges):
                    tg.start_soon(confirm, client)
    assert len(texts) == exchanges
    served = set()
    for text in texts:
        match = re.fullmatch(r"answer=accept state=(pid-\d+) served-by=(pid-\d+)", text)
        assert match, text
        assert match.group(1) == match.group(2), "the retry reached another child than the one that asked"
        served.add(match.group(2))
    assert len(served) > 1, "the exchanges were spread over the pool"
