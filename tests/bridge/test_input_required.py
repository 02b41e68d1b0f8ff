"""2026-07-28 multi-round-trip: a handshake-era server's question becomes an input_required result, and
the retry carrying the answer continues the same request. The requestState is bound to the user it was handed
to, whichever era the child speaks, and one retry continues an exchange once."""

from __future__ import annotations

import concurrent.futures

import httpx

from tests.bridge.rawhttp import modern_request
from tests.harness.bridge import Bridge

ANSWER = {"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "test"}
ELICITED = {"action": "accept", "content": {"ok": True}}


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


def _call_as(bridge: Bridge, user: str, params: dict, request_id: int, capabilities: dict) -> httpx.Response:
    body, headers = modern_request("tools/call", params, request_id=request_id)
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities
    with httpx.Client(timeout=30) as http:
        return http.post(bridge.url, json=body, headers={**headers, "X-Auth-User": user})


def test_a_2026_childs_request_state_cannot_be_replayed_by_another_user_state_theft(modern_bridge: Bridge) -> None:
    # Before: the SDK binds requestState to the authenticated principal, which a stdio child never has, and
    # the bridge passed the state through: mallory could finish alice's request with alice's state.
    bridge = modern_bridge
    question = {"name": "confirm", "arguments": {"question": "transfer?"}}
    first = _call_as(bridge, "alice", question, 1, {"elicitation": {}}).json()["result"]
    assert first["resultType"] == "input_required"
    (key,) = first["inputRequests"]
    retry = {**question, "inputResponses": {key: ELICITED}, "requestState": first["requestState"]}
    stolen = _call_as(bridge, "mallory", retry, 2, {"elicitation": {}})
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == -32602
    forged = {**retry, "requestState": first["requestState"].split(".", 2)[-1]}  # the child's own state, bare
    assert _call_as(bridge, "alice", forged, 3, {"elicitation": {}}).json()["error"]["code"] == -32602
    owner = _call_as(bridge, "alice", retry, 4, {"elicitation": {}}).json()
    assert owner["result"]["content"][0]["text"].startswith("answer=accept")


def test_the_same_request_state_retried_twice_at_once_answers_both(plain_bridge: Bridge) -> None:
    # Before: both retries attached to the one exchange; one got the result, the other waited for ever (here:
    # until the client's own 30 s timeout, long before the bridge's).
    bridge = plain_bridge
    question = {"name": "ask", "arguments": {"question": "meaning?", "delay": 2}}
    first = _call_as(bridge, "alice", question, 1, {"sampling": {}}).json()["result"]
    (key,) = first["inputRequests"]
    retry = {**question, "inputResponses": {key: ANSWER}, "requestState": first["requestState"]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_call_as, bridge, "alice", retry, n, {"sampling": {}}) for n in (2, 3)]
        answers = [future.result(timeout=40).json() for future in futures]
    results = [a for a in answers if "result" in a]
    assert len(results) == 1 and results[0]["result"]["content"][0]["text"] == "client said: forty-two"
    assert [a["error"]["code"] for a in answers if "error" in a] == [-32602]
