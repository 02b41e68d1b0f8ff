"""Raw HTTP helpers: speak the Streamable HTTP wire by hand (httpx), to check each transport rule."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

ACCEPT_BOTH = "application/json, text/event-stream"
MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
}
NAME_KEYS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an SSE body (data lines of each event; comments and priming skipped)."""
    messages = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


def rpc_messages(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return sse_messages(response.text)
    return [response.json()]


INITIALIZE_REQUEST: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


def initialize(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> str:
    """Open a handshake-era session by hand; returns its Mcp-Session-Id."""
    response = client.post(url, json=INITIALIZE_REQUEST, headers={"Accept": ACCEPT_BOTH, **(headers or {})})
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    assert "result" in rpc_messages(response)[-1]
    notified = client.post(
        url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=legacy_headers(session_id, headers),
    )
    assert notified.status_code == 202
    return session_id


def legacy_headers(session_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Accept": ACCEPT_BOTH,
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": "2025-11-25",
        **(extra or {}),
    }


def modern_request(
    method: str, params: dict[str, Any] | None = None, request_id: int = 1
) -> tuple[dict[str, Any], dict[str, str]]:
    """A well-formed 2026-07-28 request body and its headers."""
    params = {**(params or {}), "_meta": {**MODERN_META, **((params or {}).get("_meta") or {})}}
    headers = {"Accept": ACCEPT_BOTH, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if method in NAME_KEYS:
        headers["Mcp-Name"] = str(params[NAME_KEYS[method]])
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, headers


def metric(base_url: str, name: str) -> float:
    """The value of one unlabelled series on the bridge's /metrics (``base_url`` is ``Bridge.base_url``)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))
