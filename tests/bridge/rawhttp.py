"""Raw HTTP helpers: speak the Streamable HTTP wire by hand (httpx), to check each transport rule."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx

from tests.harness.bridge import Bridge

ACCEPT_BOTH = "application/json, text/event-stream"
MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
}
NAME_KEYS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
MIB = 1024 * 1024
PLAIN_BODY_LIMIT = 4 * MIB  # the --max-body-bytes of the shared `plain_bridge` (conftest.py)


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


# One client for every read of /metrics, which tests poll: httpx.get would build a TLS context per call
# (about 30 ms of CPU each) for a plain HTTP request on loopback.
_metrics_client = httpx.Client(timeout=10)


def metric(base_url: str, name: str) -> float:
    """The value of one unlabelled series on the bridge's /metrics (``base_url`` is ``Bridge.base_url``)."""
    text = _metrics_client.get(f"{base_url}/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


# The gauge of requests being answered, per era (``Caller.era`` values).
IN_FLIGHT = {MODERN: "mcp_proxy_modern_requests_in_flight", "legacy": "mcp_proxy_legacy_requests_in_flight"}
_ids = itertools.count(100)


@contextlib.contextmanager
def post_and_leave_open(bridge: Bridge, body: dict[str, Any], headers: dict[str, str]) -> Iterator[socket.socket]:
    """POST ``body`` on a raw socket and read nothing: leaving the block drops the connection, as a client that
    goes away mid-call does (httpx would wait for the response headers first)."""
    data = json.dumps(body).encode()
    lines = ["POST /mcp HTTP/1.1", f"Host: {bridge.host}:{bridge.port}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(data)}", *(f"{key}: {value}" for key, value in headers.items())]
    with socket.create_connection((bridge.host, bridge.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        yield sock


class Caller:
    """tools/call on the misbehaving server in one era (``MODERN`` or ``"legacy"``), as any of a few users (each
    with its own session in the handshake era). Calls made at once go out on connections of their own, so they
    can be held open side by side. Use as a context manager: leaving it ends the sessions it opened."""

    def __init__(self, bridge: Bridge, era: str, users: list[dict[str, str]]) -> None:
        self.bridge, self.era = bridge, era
        # One client for every call: its pool opens another connection while one is busy, and it builds its
        # TLS context once rather than per call.
        self.http = httpx.Client(timeout=30)
        self.sessions: dict[str, tuple[str, dict[str, str]]] = {}
        if era == "legacy":
            for user in users:
                self.sessions[user["X-Auth-User"]] = (initialize(self.http, bridge.url, user), user)

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            # A test that stopped its bridge already has nothing left to end.
            with contextlib.suppress(httpx.TransportError):
                for session, user in self.sessions.values():
                    self.http.delete(self.bridge.url, headers=legacy_headers(session, user))
        finally:
            self.http.close()

    def request(
        self, user: dict[str, str], tool: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        if self.era == "legacy":
            params = {"name": tool, "arguments": arguments}
            body = {"jsonrpc": "2.0", "id": next(_ids), "method": "tools/call", "params": params}
            return body, legacy_headers(self.sessions[user["X-Auth-User"]][0], user)
        body, headers = modern_request("tools/call", {"name": tool, "arguments": arguments}, next(_ids))
        return body, {**headers, **user}

    def call(self, user: dict[str, str], tool: str, arguments: dict[str, Any] | None = None) -> httpx.Response:
        body, headers = self.request(user, tool, arguments or {})
        return self.http.post(self.bridge.url, json=body, headers=headers)

    def echo(self, user: dict[str, str], text: str) -> str:
        answer = self.call(user, "echo", {"text": text})
        assert answer.status_code == 200, answer.text
        return rpc_messages(answer)[-1]["result"]["content"][0]["text"]

    @contextlib.contextmanager
    def hanging(self, user: dict[str, str], count: int) -> Iterator[None]:
        """``count`` calls of ``hang`` held open on raw sockets; leaving the block drops the connections, as a
        client that goes away mid-call does."""
        with contextlib.ExitStack() as stack:
            for _ in range(count):
                body, headers = self.request(user, "hang", {})
                stack.enter_context(post_and_leave_open(self.bridge, body, headers))
            yield
