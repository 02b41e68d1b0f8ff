"""Handshake-era (2025-06-18 / 2025-11-25) Streamable HTTP rules, checked on the wire with httpx: sessions
(their ids, their owner on every path), SSE streams and their resumption within a memory bound."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.bridge.rawhttp import ACCEPT_BOTH, initialize, legacy_headers, rpc_messages, sse_messages
from tests.harness.bridge import Bridge

ECHO = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
CALL = {**ECHO, "id": 7}


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


@pytest.mark.parametrize("value", ["a b", "\u00e9t\u00e9"])
def test_odd_session_ids_are_404_not_500(http: httpx.Client, plain_bridge: Bridge, value: str) -> None:
    headers = {"Accept": ACCEPT_BOTH, "Mcp-Session-Id": value.encode("utf-8")}
    assert http.post(plain_bridge.url, json={**ECHO, "id": 3}, headers=headers).status_code == 404


def test_a_session_id_with_a_control_character_is_400_not_500(http: httpx.Client, plain_bridge: Bridge) -> None:
    # A control character (DEL) is not allowed in a field value (RFC 9110, 5.5): the HTTP parser refuses the
    # request before any session is looked up, as Traefik's would in front of the bridge.
    headers = {"Accept": ACCEPT_BOTH, "Mcp-Session-Id": b"abc\x7f"}
    assert http.post(plain_bridge.url, json={**ECHO, "id": 3}, headers=headers).status_code == 400


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


def test_a_2025_11_25_stream_starts_with_a_priming_event_and_retry(http: httpx.Client, plain_bridge: Bridge) -> None:
    session = initialize(http, plain_bridge.url)
    call = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "chatty", "arguments": {"kib": 1}}}
    response = http.post(plain_bridge.url, json=call, headers=legacy_headers(session))
    assert response.headers["content-type"].startswith("text/event-stream")
    first = response.text.replace("\r\n", "\n").split("\n\n")[0]
    assert re.search(r"^id: *\S+", first, re.M) and re.search(r"^retry: *\d+", first, re.M)
    assert not re.search(r"^data: *\S", first, re.M), "the priming event carries no message"


def _stream_ids(http: httpx.Client, bridge: Bridge, session: str, request_id: int) -> list[str]:
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "chatty", "arguments": {"kib": 3072}},
    }
    response = http.post(bridge.url, json=call, headers=legacy_headers(session), timeout=30)
    assert response.headers["content-type"].startswith("text/event-stream")  # a notification, then the answer
    return re.findall(r"^id: *(\S+)", response.text, flags=re.MULTILINE)


def _replayed(http: httpx.Client, bridge: Bridge, session: str, last_event_id: str) -> list[dict]:
    headers = {**legacy_headers(session), "Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    text, deadline = "", time.monotonic() + 5
    with http.stream("GET", bridge.url, headers=headers) as replay:
        assert replay.status_code == 200
        for chunk in replay.iter_text():
            text += chunk
            if ('"result"' in text and text.endswith("\n\n")) or time.monotonic() > deadline:
                break
    return sse_messages(text)


def test_old_large_events_are_let_go_and_the_latest_stays_resumable(
    http: httpx.Client, short_timeout_bridge: Bridge
) -> None:
    # Before: up to 1000 events of any size per session: four 3 MiB answers all stayed in memory (and a
    # session making a thousand such calls would have held 3 GiB). The bridge's keep-alive comments let the
    # replays end at their deadline when no more comes.
    bridge = short_timeout_bridge
    session = initialize(http, bridge.url)
    streams = [_stream_ids(http, bridge, session, n) for n in range(2, 6)]
    assert all(streams)
    latest = _replayed(http, bridge, session, streams[-1][0])
    assert any(m.get("id") == 5 and "result" in m for m in latest), "the latest answer is replayed"
    oldest = _replayed(http, bridge, session, streams[0][0])
    assert not any(m.get("id") == 2 for m in oldest), "12 MiB later, the first 3 MiB answer is gone"
