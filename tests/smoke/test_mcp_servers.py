"""The real stdio MCP servers from PyPI and npm start, answer the official SDK client, and stop."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client, StdioServerParameters


async def _tool_names(argv: list[str], env: dict[str, str] | None) -> set[str]:
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as client:
            tools = await client.list_tools()
    return {tool.name for tool in tools.tools}


@pytest.mark.parametrize(
    ("server", "expected_tool"),
    [("time", "get_current_time"), ("memory", "create_entities"), ("everything", "echo"), ("fetch", "fetch")],
)
def test_stdio_server_lists_its_tools(mcp_server_argv, tmp_path, server, expected_tool):
    env = {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    names = anyio.run(_tool_names, mcp_server_argv(server), env)
    assert expected_tool in names
