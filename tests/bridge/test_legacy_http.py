"""Handshake-era (2025-06-18 / 2025-11-25) Streamable HTTP rules, checked on the wire with httpx."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.bridge.rawhttp import ACCEPT_BOTH, initialize, legacy_headers, rpc_messages, sse_messages
from tests.harness.bridge import Bridge

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}


@pytest.fixture
def http() -> httpx.Client:
    with httpx.Client(timeout=20) as client:
        yield client


def test_initialize_opens_a_session_with_an_unguessable_id(http: httpx.Client, plain_bridge: Bridge) -> None:
    first = initialize(http, plain_bridge.url)
    second = initialize(http, plain_bridge.url)
    assert first != second
    assert re.fullmatch(r"[\x21-\x7e]{32,}", first), "visible ASCII, at least 32 characters"


CHATTY = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "chatty", "arguments": {"kib": 1}}}


def test_a_plain_answer_comes_as_json(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    response = http.post(plain_bridge.url, json=CALL, headers=legacy_headers(session))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["id"] == 7 and answer["result"]["content"][0]["text"] == "hi"


def test_notifications_and_the_answer_come_over_sse(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    response = http.post(plain_bridge.url, json=CHATTY, headers=legacy_headers(session))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers.get("x-accel-buffering") == "no"
    messages = rpc_messages(response)
    assert messages[0]["method"] == "notifications/message"
    assert messages[-1]["id"] == 9 and messages[-1]["result"]["content"][0]["text"] == "c" * 1024


def test_missing_session_id_is_400(http: httpx.Client, plain_bridge: Bridge) -> None:
    response = http.post(plain_bridge.url, json=CALL, headers={"Accept": ACCEPT_BOTH})
    assert response.status_code == 400


def test_unknown_session_id_is_404(http: httpx.Client, plain_bridge: Bridge) -> None:
    response = http.post(plain_bridge.url, json=CALL, headers=legacy_headers("no-such-session-0123456789abcdef"))
    assert response.status_code == 404


def test_another_users_session_is_404_session_hijack(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url, headers={"X-Auth-User": "alice"})
    stolen = http.post(plain_bridge.url, json=CALL, headers=legacy_headers(session, {"X-Auth-User": "mallory"}))
    assert stolen.status_code == 404
    anonymous = http.post(plain_bridge.url, json=CALL, headers=legacy_headers(session))
    assert anonymous.status_code == 404
    owner = http.post(plain_bridge.url, json=CALL, headers=legacy_headers(session, {"X-Auth-User": "alice"}))
    assert owner.status_code == 200


def test_notifications_and_responses_get_202(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    assert http.post(plain_bridge.url, json=note, headers=legacy_headers(session)).status_code == 202
    answer = {"jsonrpc": "2.0", "id": 99, "result": {}}
    assert http.post(plain_bridge.url, json=answer, headers=legacy_headers(session)).status_code == 202


def test_delete_ends_the_session(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    assert http.delete(plain_bridge.url, headers=legacy_headers(session)).status_code == 200
    after = http.post(plain_bridge.url, json=CALL, headers=legacy_headers(session))
    assert after.status_code == 404


def test_get_opens_the_server_to_client_stream(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    headers = {**legacy_headers(session), "Accept": "text/event-stream"}
    with http.stream("GET", plain_bridge.url, headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers.get("x-accel-buffering") == "no"


def test_invalid_protocol_version_header_is_400(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    headers = {**legacy_headers(session), "MCP-Protocol-Version": "1999-01-01"}
    assert http.post(plain_bridge.url, json=CALL, headers=headers).status_code == 400


def test_absent_protocol_version_header_means_2025_03_26(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    headers = {"Accept": ACCEPT_BOTH, "Mcp-Session-Id": session}
    assert http.post(plain_bridge.url, json=CALL, headers=headers).status_code == 200


def test_a_batch_is_refused_clearly(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    batch = [CALL, {**CALL, "id": 8}]
    response = http.post(plain_bridge.url, json=batch, headers=legacy_headers(session))
    assert response.status_code == 400
    assert "error" in response.json()


def test_an_sse_stream_can_be_resumed_with_last_event_id(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    response = http.post(plain_bridge.url, json=CHATTY, headers=legacy_headers(session))
    ids = re.findall(r"^id: *(\S+)", response.text, flags=re.MULTILINE)
    assert ids, "events carry ids"
    headers = {**legacy_headers(session), "Accept": "text/event-stream", "Last-Event-ID": ids[0]}
    with http.stream("GET", plain_bridge.url, headers=headers) as replay:
        assert replay.status_code == 200
        text, deadline = "", time.monotonic() + 10
        for chunk in replay.iter_text():
            text += chunk
            if '"id":9' in text.replace(" ", "") or time.monotonic() > deadline:
                break
    assert any(m.get("id") == 9 for m in sse_messages(text))
