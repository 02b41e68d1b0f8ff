"""Clients that were using an MCP server before `playbooks/upgrade.yml` replaced it carry on after it.

Run by molecule's verify (`molecule/shared/verify-upgrade.yml`, with GATEWAY_TEST_UPGRADE=1) around the
upgrades, one phase at a time (GATEWAY_UPGRADE_PHASE), one saved client carried from phase to phase in
GATEWAY_CLIENT_STATE:

- `before`: the official SDK client logs in, calls the time server in the 2026-07-28 mode, and opens a
  legacy session (2025-11-25, `Mcp-Session-Id`) that calls too; its tokens and the session id are saved;
- `restarted`: the same client, with no new login, calls again in the 2026-07-28 mode with the access token
  it had (stateless requests need nothing else), and refreshes; its old legacy session is gone with the
  bridge that held it (404, as the protocol says for a session the server no longer knows), and a new
  `initialize` starts a session that calls;
- `unchanged`: the same, but nothing was restarted (an upgrade that failed before switching anything), so
  the old legacy session still calls.

`restarted` runs after the good upgrade and after the one that failed and was rolled back (the previous
version must be serving again), `unchanged` after the one that failed to install.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.hosts.test_converged_gateway import (
    TOOL_CALLS,
    Browser,
    MemoryStorage,
    Target,
    call_twice,
    provider_for,
)
from tests.hosts.test_converged_gateway import target as _target  # noqa: F401 (the fixture `target`)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

PHASE = os.environ.get("GATEWAY_UPGRADE_PHASE", "")
CLIENT_STATE = os.environ.get("GATEWAY_CLIENT_STATE", "")
SERVICE = "time"
LEGACY = "2025-11-25"

if PHASE not in ("before", "restarted", "unchanged") or not CLIENT_STATE:
    pytest.skip("GATEWAY_UPGRADE_PHASE and GATEWAY_CLIENT_STATE say nothing", allow_module_level=True)

import anyio  # noqa: E402
import httpx  # noqa: E402
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata, OAuthToken  # noqa: E402


def legacy_post(target: Target, token: str, body: dict, session: str | None = None) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": LEGACY,
    }
    if session:
        headers["Mcp-Session-Id"] = session
    return httpx.post(target.url(SERVICE, "/mcp"), json=body, headers=headers, verify=target.tls(), timeout=30)


def rpc_result(response: httpx.Response) -> dict:
    """The JSON-RPC answer of a POST, whether the bridge answered with JSON or one SSE event."""
    assert response.status_code == 200, f"{response.status_code} {response.text[:300]}"
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def open_legacy_session(target: Target, token: str) -> str:
    """initialize, initialized, tools/call in a legacy session; its id."""
    init = legacy_post(
        target,
        token,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "upgrade", "version": "1"},
            },
        },
    )
    assert rpc_result(init)["result"]["protocolVersion"] == LEGACY
    session = init.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert legacy_post(target, token, initialized, session).status_code == 202
    call_in(target, token, session)
    return session


def call_in(target: Target, token: str, session: str) -> httpx.Response:
    tool, arguments = TOOL_CALLS[SERVICE]
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    response = legacy_post(target, token, body, session)
    if response.status_code == 200:
        assert rpc_result(response)["result"]["isError"] is False
    return response


def test_the_client_carries_on_across_the_upgrade(target: Target) -> None:
    state = Path(CLIENT_STATE)
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, SERVICE, storage, browser)
    if PHASE != "before":
        assert state.exists(), f"no client was saved in {state} before the upgrade"
        saved = json.loads(state.read_text())
        storage.client_info = OAuthClientInformationFull.model_validate(saved["client_info"])
        storage.tokens = OAuthToken.model_validate(saved["tokens"])
        provider.context.oauth_metadata = OAuthMetadata.model_validate(saved["oauth_metadata"])
        # The legacy session lives in the bridge: gone when the upgrade restarted it, else still there.
        stale = call_in(target, storage.tokens.access_token, saved["legacy_session"])
        expected = 404 if PHASE == "restarted" else 200
        assert stale.status_code == expected, f"the old session answered {stale.status_code}: {stale.text[:300]}"

    out = anyio.run(call_twice, target, SERVICE, provider, "auto")
    assert out["first_error"] is False and out["second_error"] is False, out
    assert out["protocol"] == "2026-07-28", out
    assert out["refreshed"] is True, out
    if PHASE != "before":
        assert browser.history == [], f"the client had to log in again: {browser.history}"
    # A new legacy session (after the upgrade: the re-initialization the protocol asks for) calls.
    session = open_legacy_session(target, storage.tokens.access_token)

    state.touch(mode=0o600)  # it holds a refresh token
    state.write_text(
        json.dumps(
            {
                "client_info": storage.client_info.model_dump(mode="json"),
                "tokens": storage.tokens.model_dump(mode="json"),
                "oauth_metadata": provider.context.oauth_metadata.model_dump(mode="json"),
                "legacy_session": session,
            }
        )
    )
