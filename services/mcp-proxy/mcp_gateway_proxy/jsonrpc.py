"""JSON-RPC answers and errors the bridge writes itself, and the codes it uses: one place for every module
(the 2026-07-28 handler, the sessions, the in-flight caps, the child relay)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

JSON = dict[str, Any]

# JSON-RPC codes the bridge itself answers with.
INTERNAL_ERROR = -32603
CHILD_EXITED = -32000
REQUEST_TIMEOUT = -32001
REQUEST_CANCELLED = -32003


def rpc_error(request_id: Any, code: int, message: str) -> JSON:
    """A JSON-RPC error message."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole HTTP response with a Content-Length."""
    headers = list(headers or [])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_rpc(send: Send, status: int, message: JSON, retry_after: int | None = None) -> None:
    """A JSON-RPC message as an ``application/json`` HTTP response (with ``Retry-After`` when given)."""
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    await respond(send, status, body, headers)
