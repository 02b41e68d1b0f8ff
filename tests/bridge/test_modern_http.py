"""2026-07-28 (stateless) Streamable HTTP rules, checked on the wire with httpx."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp import Client

from tests.bridge.rawhttp import ACCEPT_BOTH, MODERN, modern_request, rpc_messages
from tests.harness.bridge import Bridge


def test_discover_is_answered_from_a_handshake_only_server(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("server/discover")
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert MODERN in result["supportedVersions"]
    assert "tools" in result["capabilities"]
    assert result["resultType"] == "complete"
    assert result["cacheScope"] in ("private", "public") and result["ttlMs"] >= 0
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "misbehaving"


def test_tools_list_carries_cache_hints_and_result_type(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    result = http.post(plain_bridge.url, json=body, headers=headers).json()["result"]
    assert {"echo", "crash"} <= {tool["name"] for tool in result["tools"]}
    assert result["resultType"] == "complete"
    assert "ttlMs" in result and "cacheScope" in result


def test_tools_call_is_answered_without_a_session(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "stateless"}})
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    message = rpc_messages(response)[-1]
    assert message["id"] == 1 and message["result"]["content"][0]["text"] == "stateless"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(http: httpx.Client, plain_bridge: Bridge, method: str) -> None:
    headers = {"Accept": ACCEPT_BOTH, "MCP-Protocol-Version": MODERN}
    response = http.request(method, plain_bridge.url, headers=headers)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


def test_method_header_mismatch_is_32020(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    headers["Mcp-Method"] = "prompts/list"
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020


def test_name_header_mismatch_is_32020(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "x"}})
    headers["Mcp-Name"] = "crash"
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020


def test_version_header_and_body_disagreeing_is_32020(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2027-01-01"
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020


def test_unsupported_version_is_32022_naming_the_supported_ones(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2027-01-01"
    headers["MCP-Protocol-Version"] = "2027-01-01"
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert MODERN in error["data"]["supported"]


def test_missing_envelope_is_an_invalid_params_error(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    del body["params"]["_meta"]
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


def test_a_notification_gets_202(http: httpx.Client, plain_bridge: Bridge) -> None:
    headers = {"Accept": ACCEPT_BOTH, "MCP-Protocol-Version": MODERN, "Mcp-Method": "notifications/cancelled"}
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    assert http.post(plain_bridge.url, json=note, headers=headers).status_code == 202


def test_a_batch_is_refused(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    response = http.post(plain_bridge.url, json=[body, body], headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600


def test_unknown_method_is_404_method_not_found(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("no/such/method")
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601


def test_a_client_that_accepts_only_sse_is_refused(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/list")
    headers["Accept"] = "text/event-stream"
    assert http.post(plain_bridge.url, json=body, headers=headers).status_code == 406


def test_log_messages_reach_a_request_that_opted_in_over_sse(http: httpx.Client, plain_bridge: Bridge) -> None:
    params = {"name": "chatty", "arguments": {"kib": 1}, "_meta": {"io.modelcontextprotocol/logLevel": "info"}}
    body, headers = modern_request("tools/call", params)
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    messages = rpc_messages(response)
    assert messages[0]["method"] == "notifications/message"
    assert messages[-1]["id"] == 1 and messages[-1]["result"]["resultType"] == "complete"


def test_log_messages_are_not_sent_to_a_request_that_did_not_opt_in(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "chatty", "arguments": {"kib": 1}})
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["content"][0]["text"] == "c" * 1024


def test_a_matching_mcp_param_header_passes(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "routed", "arguments": {"region": "eu-west"}})
    response = http.post(plain_bridge.url, json=body, headers={**headers, "Mcp-Param-Region": "eu-west"})
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "region eu-west"


def test_an_mcp_param_header_that_disagrees_with_the_body_is_32020(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "routed", "arguments": {"region": "eu-west"}})
    response = http.post(plain_bridge.url, json=body, headers={**headers, "Mcp-Param-Region": "us-east"})
    assert response.status_code == 400 and response.json()["error"]["code"] == -32020


def test_a_missing_mcp_param_header_is_32020(http: httpx.Client, plain_bridge: Bridge) -> None:
    body, headers = modern_request("tools/call", {"name": "routed", "arguments": {"region": "eu-west"}})
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32020


@pytest.mark.anyio
async def test_the_sdk_client_mirrors_mcp_param_headers_that_pass(plain_bridge: Bridge) -> None:
    with anyio.fail_after(30):
        async with Client(plain_bridge.url, mode="2026-07-28") as client:
            await client.list_tools()
            result = await client.call_tool("routed", {"region": "ap-south"})
    assert result.content[0].text == "region ap-south"


@pytest.mark.parametrize("method", ["subscriptions/listen", "initialize", "logging/setLevel", "resources/subscribe"])
def test_methods_the_2026_bridge_does_not_offer_are_32601(
    http: httpx.Client, plain_bridge: Bridge, method: str
) -> None:
    body, headers = modern_request(method)
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == -32601
    assert "mcp-session-id" not in response.headers
