"""Origin validation (DNS rebinding, cross-site browsers) and the request body limit, in both eras."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.bridge.rawhttp import ACCEPT_BOTH, PLAIN_BODY_LIMIT, initialize, legacy_headers, modern_request
from tests.harness.bridge import Bridge

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "o", "version": "1"}},
}


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example:3000", "null"])
def test_a_foreign_origin_is_403_dns_rebinding(http: httpx.Client, plain_bridge: Bridge, origin: str) -> None:
    legacy = http.post(plain_bridge.url, json=INIT, headers={"Accept": ACCEPT_BOTH, "Origin": origin})
    assert legacy.status_code == 403
    body, headers = modern_request("tools/list")
    modern = http.post(plain_bridge.url, json=body, headers={**headers, "Origin": origin})
    assert modern.status_code == 403


def test_a_foreign_origin_cannot_use_an_open_session(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    response = http.post(
        plain_bridge.url, json=call, headers=legacy_headers(session, {"Origin": "https://evil.example"})
    )
    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["https://inspector.example", "http://localhost:6274", "http://127.0.0.1:8080"])
def test_configured_and_loopback_origins_are_allowed(http: httpx.Client, plain_bridge: Bridge, origin: str) -> None:
    body, headers = modern_request("tools/list")
    assert http.post(plain_bridge.url, json=body, headers={**headers, "Origin": origin}).status_code == 200


OVER = "x" * (PLAIN_BODY_LIMIT + 1)  # with the JSON around it, a body just over the limit
UNDER = "x" * (PLAIN_BODY_LIMIT - 4096)  # room for the JSON around it


def test_a_body_over_the_limit_is_413(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": OVER}})
    assert http.post(plain_bridge.url, json=body, headers=headers).status_code == 413
    session = initialize(http, plain_bridge.url)
    legacy = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": OVER}},
    }
    assert http.post(plain_bridge.url, json=legacy, headers=legacy_headers(session)).status_code == 413


def test_a_body_under_the_limit_passes(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": UNDER}})
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == UNDER


def test_an_allowed_browser_origin_gets_cors_headers(http: httpx.Client, plain_bridge: Bridge) -> None:
    origin = "http://localhost:6274"
    preflight = http.options(
        plain_bridge.url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "mcp-protocol-version, mcp-session-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in (
        "authorization",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    ):
        assert header in allowed
    response = http.post(plain_bridge.url, json=INIT, headers={"Accept": ACCEPT_BOTH, "Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin
    assert "mcp-session-id" in response.headers["access-control-expose-headers"].lower()


def test_a_foreign_origin_gets_no_cors_headers(http: httpx.Client, plain_bridge: Bridge) -> None:
    preflight = http.options(plain_bridge.url, headers={"Origin": "https://evil.example"})
    assert preflight.status_code in (403, 405)
    assert "access-control-allow-origin" not in preflight.headers


def test_a_chunked_body_over_the_limit_is_413(http: httpx.Client, plain_bridge: Bridge) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        for _ in range(PLAIN_BODY_LIMIT // 8192 + 1):
            yield b"x" * 8192  # no Content-Length: the limit must hold while reading
        yield b'"}}}'

    _, headers = modern_request("tools/call", {"name": "echo", "arguments": {}})
    response = http.post(plain_bridge.url, content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_browser_preflight_may_send_mcp_param_headers(http: httpx.Client, plain_bridge: Bridge) -> None:
    # Before: the fixed list left out Mcp-Param-* headers, so a 2026-07-28 browser client (the Inspector)
    # could not call a tool that routes an argument in one.
    preflight = http.options(
        plain_bridge.url,
        headers={
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "mcp-protocol-version, mcp-param-region, x-evil",
        },
    )
    assert preflight.status_code == 204
    allowed = [h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")]
    assert "mcp-param-region" in allowed and "mcp-protocol-version" in allowed
    assert "x-evil" not in allowed
