"""A small 2026-07-28 stdio server built on the SDK, whose `confirm` tool asks the client (multi-round
trip, `input_required`) before it answers, and whose `pid` tool names the process serving it."""

import os

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("modern-test")


@app.tool()
async def confirm(question: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    """Ask the client to confirm, then report the answer and the process that held the state."""
    answers = ctx.input_responses
    if not answers:
        request = types.ElicitRequest(
            params=types.ElicitRequestFormParams(
                message=question,
                requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
            )
        )
        return types.InputRequiredResult(input_requests={"confirm": request}, request_state=f"pid-{os.getpid()}")
    answer = answers["confirm"]
    text = f"answer={getattr(answer, 'action', answer)} state={ctx.request_state} served-by=pid-{os.getpid()}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


@app.tool()
async def pid() -> str:
    """The process id of this server."""
    return str(os.getpid())


if __name__ == "__main__":
    app.run()
