"""The requestState of a 2026-07-28 multi-round trip is bound to the user it was handed to, whichever era the
child speaks, and one retry continues an exchange once."""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.bridge.rawhttp import modern_request
from tests.harness.bridge import Bridge

MODERN_SERVER = Path(__file__).with_name("modern_server.py")
ANSWER = {"role": "assistant", "content": {"type": "text", "text": "forty-two"}, "model": "test"}
ELICITED = {"action": "accept", "content": {"ok": True}}


def _call(bridge: Bridge, user: str, params: dict, request_id: int, capabilities: dict) -> httpx.Response:
    body, headers = modern_request("tools/call", params, request_id=request_id)
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities
    with httpx.Client(timeout=30) as http:
        return http.post(bridge.url, json=body, headers={**headers, "X-Auth-User": user})


def test_a_2026_childs_request_state_cannot_be_replayed_by_another_user_state_theft(
    start_bridge: Callable[..., Bridge],
) -> None:
    # Before: the SDK binds requestState to the authenticated principal, which a stdio child never has, and
    # the bridge passed the state through: mallory could finish alice's request with alice's state.
    bridge = start_bridge([sys.executable, str(MODERN_SERVER)], pool_size=1, spare_children=0)
    question = {"name": "confirm", "arguments": {"question": "transfer?"}}
    first = _call(bridge, "alice", question, 1, {"elicitation": {}}).json()["result"]
    assert first["resultType"] == "input_required"
    (key,) = first["inputRequests"]
    retry = {**question, "inputResponses": {key: ELICITED}, "requestState": first["requestState"]}
    stolen = _call(bridge, "mallory", retry, 2, {"elicitation": {}})
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == -32602
    forged = {**retry, "requestState": first["requestState"].split(".", 2)[-1]}  # the child's own state, bare
    assert _call(bridge, "alice", forged, 3, {"elicitation": {}}).json()["error"]["code"] == -32602
    owner = _call(bridge, "alice", retry, 4, {"elicitation": {}}).json()
    assert owner["result"]["content"][0]["text"].startswith("answer=accept")


def test_the_same_request_state_retried_twice_at_once_answers_both(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Before: both retries attached to the one exchange; one got the result, the other waited for ever.
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=20, sse_keepalive=100)
    question = {"name": "ask", "arguments": {"question": "meaning?", "delay": 2}}
    first = _call(bridge, "alice", question, 1, {"sampling": {}}).json()["result"]
    (key,) = first["inputRequests"]
    retry = {**question, "inputResponses": {key: ANSWER}, "requestState": first["requestState"]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_call, bridge, "alice", retry, n, {"sampling": {}}) for n in (2, 3)]
        answers = [future.result(timeout=40).json() for future in futures]
    results = [a for a in answers if "result" in a]
    assert len(results) == 1 and results[0]["result"]["content"][0]["text"] == "client said: forty-two"
    assert [a["error"]["code"] for a in answers if "error" in a] == [-32602]
