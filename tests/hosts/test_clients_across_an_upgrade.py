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
    resume_client,
    save_client,
    target,  # noqa: F401 (the fixture)
)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

PHASE = os.environ.get("GATEWAY_UPGRADE_PHASE", "")
CLIENT_STATE = os.environ.get("GATEWAY_CLIENT_STATE", "")
SERVICE = "time"

if PHASE not in ("before", "restarted", "unchanged") or not CLIENT_STATE:
    pytest.skip("GATEWAY_UPGRADE_PHASE and GATEWAY_CLIENT_STATE say nothing", allow_module_level=True)

import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.bridge.rawhttp import initialize, legacy_headers, rpc_messages  # noqa: E402


def legacy_client(gateway: Target, token: str) -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {token}"}, verify=gateway.tls(), timeout=30)


def open_legacy_session(gateway: Target, token: str) -> str:
    """initialize, initialized and a tool call in a new legacy session; its id."""
    with legacy_client(gateway, token) as http:
        session = initialize(http, gateway.url(SERVICE, "/mcp"))
    assert call_in(gateway, token, session).status_code == 200
    return session


def call_in(gateway: Target, token: str, session: str) -> httpx.Response:
    """A tool call in a legacy session (the answer checked when there is one)."""
    tool, arguments = TOOL_CALLS[SERVICE]
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    with legacy_client(gateway, token) as http:
        response = http.post(gateway.url(SERVICE, "/mcp"), json=body, headers=legacy_headers(session))
    if response.status_code == 200:
        assert rpc_messages(response)[-1]["result"]["isError"] is False, response.text[:300]
    return response


def test_the_client_carries_on_across_the_upgrade(target: Target) -> None:  # noqa: F811 (the fixture)
    state = Path(CLIENT_STATE)
    session_file = state.with_suffix(".session")
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, SERVICE, storage, browser)
    if PHASE != "before":
        resume_client(state, storage, provider)
        # The legacy session lives in the bridge: gone when the upgrade restarted it, else still there.
        stale = call_in(target, storage.tokens.access_token, session_file.read_text())
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

    save_client(state, storage, provider)
    session_file.write_text(session)
