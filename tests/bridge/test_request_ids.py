"""JSON-RPC ids of every type the specification allows come back exactly as sent, in both eras; the others are
refused, never taken for a request."""

from __future__ import annotations

import httpx
import pytest

from tests.bridge.rawhttp import initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge

ECHO = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}


@pytest.mark.parametrize("request_id", [0, -1, 2**70, "", "x" * 1000, "ünïcode"])
def test_ids_of_every_type_come_back_as_sent_in_both_eras(
    http: httpx.Client, plain_bridge: Bridge, request_id: object
) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "id"}})
    body["id"] = request_id
    assert rpc_messages(http.post(plain_bridge.url, json=body, headers=headers))[-1]["id"] == request_id
    session = initialize(http, plain_bridge.url)
    legacy = http.post(plain_bridge.url, json={**ECHO, "id": request_id}, headers=legacy_headers(session))
    assert rpc_messages(legacy)[-1]["id"] == request_id


@pytest.mark.parametrize("request_id", [None, 1.5, True, [1], {"a": 1}])
def test_ids_that_json_rpc_does_not_allow_are_refused(
    http: httpx.Client, plain_bridge: Bridge, request_id: object
) -> None:
    body, headers = modern_request("tools/list")
    body["id"] = request_id
    assert http.post(plain_bridge.url, json=body, headers=headers).status_code == 400
    session = initialize(http, plain_bridge.url)
    legacy = http.post(plain_bridge.url, json={**ECHO, "id": request_id}, headers=legacy_headers(session))
    assert legacy.status_code in (202, 400)  # a null id reads as a notification at most; never a request
    if legacy.status_code == 400:
        assert "error" in legacy.json()
