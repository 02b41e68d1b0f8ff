"""2026-07-28 multi-round-trip: a handshake-era server's question becomes an input_required result, and
the retry carrying the answer continues the same request; the state cannot be used by another user."""

from __future__ import annotations

import httpx
import pytest

from tests.bridge.rawhttp import modern_request
from tests.harness.bridge import Bridge

ANSWER = {"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "test"}


@pytest.fixture
def http() -> httpx.Client:
    with httpx.Client(timeout=20) as client:
        yield client


def _ask(http: httpx.Client, bridge: Bridge, user: str, capabilities: dict) -> dict:
    body, headers = modern_request("tools/call", {"name": "ask", "arguments": {"question": "meaning?"}})
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities
    response = http.post(bridge.url, json=body, headers={**headers, "X-Auth-User": user})
    assert response.status_code == 200
    return response.json()["result"]


def _retry(http: httpx.Client, bridge: Bridge, user: str, state: str, responses: dict) -> httpx.Response:
    params = {"name": "ask", "arguments": {"question": "meaning?"}, "inputResponses": responses, "requestState": state}
    body, headers = modern_request("tools/call", params, request_id=2)
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"sampling": {}}
    return http.post(bridge.url, json=body, headers={**headers, "X-Auth-User": user})


def test_a_question_round_trips_through_input_required(http: httpx.Client, plain_bridge: Bridge) -> None:
    first = _ask(http, plain_bridge, "alice", {"sampling": {}})
    assert first["resultType"] == "input_required"
    ((key, request),) = first["inputRequests"].items()
    assert request["method"] == "sampling/createMessage"
    assert request["params"]["messages"][0]["content"]["text"] == "meaning?"
    retry = _retry(http, plain_bridge, "alice", first["requestState"], {key: ANSWER})
    result = retry.json()["result"]
    assert retry.json()["id"] == 2
    assert result["resultType"] == "complete"
    assert result["content"][0]["text"] == "client said: forty-two"


def test_another_user_cannot_continue_the_exchange_state_theft(http: httpx.Client, plain_bridge: Bridge) -> None:
    first = _ask(http, plain_bridge, "alice", {"sampling": {}})
    (key,) = first["inputRequests"]
    stolen = _retry(http, plain_bridge, "mallory", first["requestState"], {key: ANSWER})
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == -32602
    owner = _retry(http, plain_bridge, "alice", first["requestState"], {key: ANSWER})
    assert owner.json()["result"]["content"][0]["text"] == "client said: forty-two"


def test_an_unknown_request_state_is_refused(http: httpx.Client, plain_bridge: Bridge) -> None:
    response = _retry(http, plain_bridge, "alice", "made-up-state", {})
    assert response.status_code == 400 and response.json()["error"]["code"] == -32602


def test_a_client_without_the_capability_gets_no_question(http: httpx.Client, plain_bridge: Bridge) -> None:
    result = _ask(http, plain_bridge, "bob", {})
    assert result["resultType"] == "complete"
    assert result["content"][0]["text"].startswith("client refused")
