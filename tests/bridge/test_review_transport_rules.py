"""Transport rules no other test pinned down: a session is its owner's on every path (GET stream, resume,
DELETE), a chunked body over the limit is refused, ids of every JSON-RPC type come back as sent, and
header values cannot smuggle anything."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.bridge.rawhttp import ACCEPT_BOTH, initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge

ECHO = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


@pytest.mark.parametrize("intruder", [{"X-Auth-User": "mallory"}, {}, {"X-Auth-User": "ALICE"}])
def test_another_users_get_stream_resume_and_delete_are_404_session_hijack(
    http: httpx.Client, plain_bridge: Bridge, intruder: dict[str, str]
) -> None:
    alice = {"X-Auth-User": "alice"}
    session = initialize(http, plain_bridge.url, headers=alice)
    headers = {**legacy_headers(session), "Accept": "text/event-stream", **intruder}
    assert http.get(plain_bridge.url, headers=headers).status_code == 404
    assert http.get(plain_bridge.url, headers={**headers, "Last-Event-ID": "1"}).status_code == 404
    assert http.delete(plain_bridge.url, headers={**legacy_headers(session), **intruder}).status_code == 404
    owner = http.post(plain_bridge.url, json={**ECHO, "id": 2}, headers=legacy_headers(session, alice))
    assert owner.status_code == 200, "the intruder's DELETE did not end alice's session"


def test_a_chunked_body_over_the_limit_is_413(http: httpx.Client, plain_bridge: Bridge) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        for _ in range(20):
            yield b"x" * 8192  # no Content-Length: the limit must hold while reading
        yield b'"}}}'

    _, headers = modern_request("tools/call", {"name": "echo", "arguments": {}})
    response = http.post(plain_bridge.url, content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413


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


@pytest.mark.parametrize("value", ["abc\x7f", "a b", "\u00e9t\u00e9"])
def test_odd_session_ids_are_404_not_500(http: httpx.Client, plain_bridge: Bridge, value: str) -> None:
    headers = {"Accept": ACCEPT_BOTH, "Mcp-Session-Id": value.encode("utf-8")}
    assert http.post(plain_bridge.url, json={**ECHO, "id": 3}, headers=headers).status_code == 404


def test_session_ids_are_never_reflected_header_injection(http: httpx.Client, plain_bridge: Bridge) -> None:
    response = http.post(
        plain_bridge.url, json={**ECHO, "id": 3}, headers={"Accept": ACCEPT_BOTH, "Mcp-Session-Id": "evil-id"}
    )
    assert response.status_code == 404
    assert "evil-id" not in response.text and "evil-id" not in str(response.headers)


def test_a_session_has_one_get_stream_at_a_time(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    headers = {**legacy_headers(session), "Accept": "text/event-stream"}
    with http.stream("GET", plain_bridge.url, headers=headers) as first:
        assert first.status_code == 200
        with httpx.Client(timeout=20) as other:
            assert other.get(plain_bridge.url, headers=headers).status_code == 409


def test_a_get_without_a_session_is_405_not_400(http: httpx.Client, plain_bridge: Bridge) -> None:
    # The specification: a GET is answered with an event stream or 405. Before: 400, which clients probing
    # for a stream before initialize (the TypeScript SDK) take as a failure rather than "no stream here".
    response = http.get(plain_bridge.url, headers={"Accept": "text/event-stream"})
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


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


def test_made_up_http_methods_do_not_grow_the_metrics(http: httpx.Client, plain_bridge: Bridge) -> None:
    # Before: every distinct method a client made up became a metrics series of its own, for ever.
    for n in range(5):
        http.request(f"FROB{n}", plain_bridge.url)
    metrics = http.get(f"{plain_bridge.base_url}/metrics").text
    assert 'method="FROB' not in metrics
    assert 'method="other"' in metrics


def test_a_2025_11_25_stream_starts_with_a_priming_event_and_retry(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    call = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "chatty", "arguments": {"kib": 1}}}
    response = http.post(plain_bridge.url, json=call, headers=legacy_headers(session))
    assert response.headers["content-type"].startswith("text/event-stream")
    first = response.text.replace("\r\n", "\n").split("\n\n")[0]
    assert re.search(r"^id: *\S+", first, re.M) and re.search(r"^retry: *\d+", first, re.M)
    assert not re.search(r"^data: *\S", first, re.M), "the priming event carries no message"


@pytest.mark.parametrize("method", ["subscriptions/listen", "initialize", "logging/setLevel", "resources/subscribe"])
def test_methods_the_2026_bridge_does_not_offer_are_32601(
    http: httpx.Client, plain_bridge: Bridge, method: str
) -> None:
    body, headers = modern_request(method)
    response = http.post(plain_bridge.url, json=body, headers=headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == -32601
    assert "mcp-session-id" not in response.headers
