"""One user cannot take every handshake-era session, nor every slot for requests in flight: beyond
--max-sessions-per-user (or --max-inflight-per-user) that user gets the global cap's answer (503, JSON-RPC
-32000, Retry-After) while other users are still served, and a session that ends (DELETE, idle reaping) or a
request that ends (answered, timed out, or given up by its client) gives the user's slot back."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client

from tests.bridge.rawhttp import (
    ACCEPT_BOTH,
    INITIALIZE_REQUEST,
    initialize,
    legacy_headers,
    metric,
    modern_request,
    rpc_messages,
)
from tests.harness.bridge import Bridge
from tests.harness.mcp_servers import ServerNotInstalled, mcp_server_argv
from tests.harness.procs import wait_until

ALICE = {"X-Auth-User": "alice"}
BOB = {"X-Auth-User": "bob"}
TIME_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "get_current_time", "arguments": {"timezone": "Europe/Paris"}},
}


@pytest.fixture
def time_argv() -> list[str]:
    try:
        return mcp_server_argv("time")
    except ServerNotInstalled as exc:
        pytest.skip(str(exc))


def _refused_initialize(http: httpx.Client, url: str, user: dict[str, str]) -> httpx.Response:
    return http.post(url, json=INITIALIZE_REQUEST, headers={"Accept": ACCEPT_BOTH, **user})


def test_one_user_at_the_cap_is_refused_and_others_are_not(
    start_bridge: Callable[..., Bridge], time_argv: list[str]
) -> None:
    # Through the variable: the role sets bridges up with MCP_PROXY_* variables, not flags.
    bridge = start_bridge(time_argv, env={"MCP_PROXY_MAX_SESSIONS_PER_USER": "2"}, pool_size=1, max_sessions=10)
    with httpx.Client(timeout=60) as http:
        alices = [initialize(http, bridge.url, ALICE) for _ in range(2)]

        refused = _refused_initialize(http, bridge.url, ALICE)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert "mcp-session-id" not in refused.headers
        error = refused.json()["error"]
        assert error["code"] == -32000 and "for this user" in error["message"]
        assert metric(bridge.base_url, "mcp_proxy_sessions_open") == 2, "the refused initialize left no session behind"

        bob = initialize(http, bridge.url, BOB)
        answer = http.post(bridge.url, json=TIME_CALL, headers=legacy_headers(bob, BOB))
        assert answer.status_code == 200
        result = rpc_messages(answer)[-1]["result"]
        assert "Europe/Paris" in result["content"][0]["text"]

        assert http.delete(bridge.url, headers=legacy_headers(alices[0], ALICE)).status_code == 200
        again = initialize(http, bridge.url, ALICE)
        answer = http.post(bridge.url, json=TIME_CALL, headers=legacy_headers(again, ALICE))
        assert "Europe/Paris" in rpc_messages(answer)[-1]["result"]["content"][0]["text"]
        assert _refused_initialize(http, bridge.url, ALICE).status_code == 503, "at the cap again"

    assert metric(bridge.base_url, "mcp_proxy_sessions_refused_per_user_total") == 2
    assert metric(bridge.base_url, "mcp_proxy_sessions_refused_total") == 0, "the global cap was never reached"
    assert metric(bridge.base_url, "mcp_proxy_sessions_most_held_by_one_user") == 2
    events = [json.loads(line) for line in bridge.log_text().splitlines() if '"session_refused"' in line]
    assert [(e["reason"], e["user"], e["limit"]) for e in events] == [("per_user", "alice", 2)] * 2


def test_an_idle_session_gives_the_users_slot_back(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(
        misbehaving_argv, pool_size=1, spare_children=0, session_idle_timeout=1, max_sessions_per_user=1
    )
    with httpx.Client(timeout=20) as http:
        initialize(http, bridge.url, ALICE)
        assert _refused_initialize(http, bridge.url, ALICE).status_code == 503
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and metric(bridge.base_url, "mcp_proxy_sessions_open") > 0:
            time.sleep(0.2)
        initialize(http, bridge.url, ALICE)


def test_the_default_is_a_quarter_of_max_sessions(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_sessions=8)
    with httpx.Client(timeout=20) as http:
        for _ in range(2):
            initialize(http, bridge.url, ALICE)
        assert _refused_initialize(http, bridge.url, ALICE).status_code == 503
        initialize(http, bridge.url, BOB)


# ---- requests in flight per user (--max-inflight-per-user) -------------------------------------------------

ERAS = ["2026-07-28", "legacy"]
_ids = itertools.count(100)


class Caller:
    """tools/call on the misbehaving server in one era, as any of a few users (each with its own session in
    the handshake era), each call on its own connection so that calls can be held open side by side."""

    def __init__(self, bridge: Bridge, era: str, users: list[dict[str, str]]) -> None:
        self.bridge, self.era = bridge, era
        self.sessions: dict[str, str] = {}
        if era == "legacy":
            with httpx.Client(timeout=20) as http:
                self.sessions = {user["X-Auth-User"]: initialize(http, bridge.url, user) for user in users}

    def request(self, user: dict[str, str], tool: str, arguments: dict[str, Any]) -> tuple[dict, dict[str, str]]:
        if self.era == "legacy":
            params = {"name": tool, "arguments": arguments}
            body = {"jsonrpc": "2.0", "id": next(_ids), "method": "tools/call", "params": params}
            return body, legacy_headers(self.sessions[user["X-Auth-User"]], user)
        body, headers = modern_request("tools/call", {"name": tool, "arguments": arguments}, next(_ids))
        return body, {**headers, **user}

    def call(self, user: dict[str, str], tool: str, arguments: dict[str, Any] | None = None) -> httpx.Response:
        body, headers = self.request(user, tool, arguments or {})
        with httpx.Client(timeout=30) as own:
            return own.post(self.bridge.url, json=body, headers=headers)

    def echo(self, user: dict[str, str], text: str) -> str:
        answer = self.call(user, "echo", {"text": text})
        assert answer.status_code == 200, answer.text
        return rpc_messages(answer)[-1]["result"]["content"][0]["text"]

    @contextlib.contextmanager
    def hanging(self, user: dict[str, str], count: int) -> Iterator[None]:
        """``count`` calls of ``hang`` held open on raw sockets; leaving the block drops the connections, as a
        client that goes away mid-call does."""
        with contextlib.ExitStack() as stack:
            for _ in range(count):
                body, headers = self.request(user, "hang", {})
                stack.enter_context(_post_and_leave_open(self.bridge, body, headers))
            yield


@contextlib.contextmanager
def _post_and_leave_open(bridge: Bridge, body: dict, headers: dict[str, str]) -> Iterator[socket.socket]:
    data = json.dumps(body).encode()
    lines = ["POST /mcp HTTP/1.1", f"Host: {bridge.host}:{bridge.port}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(data)}", *(f"{key}: {value}" for key, value in headers.items())]
    with socket.create_connection((bridge.host, bridge.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        yield sock


def _most_held(bridge: Bridge) -> float:
    return metric(bridge.base_url, "mcp_proxy_requests_in_flight_most_held_by_one_user")


def _users_in_flight(bridge: Bridge) -> float:
    return metric(bridge.base_url, "mcp_proxy_users_with_requests_in_flight")


def _assert_refused_for_the_user(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["code"] == -32000
    assert error["message"] == f"Too many requests in flight for this user ({limit}); retry when one is answered"


@pytest.mark.parametrize("era", ERAS)
def test_one_user_at_the_in_flight_cap_is_refused_and_others_are_not(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], era: str
) -> None:
    # Through the variable, as the role sets it. The hanging calls end at the request timeout (-32001).
    env = {"MCP_PROXY_MAX_INFLIGHT_PER_USER": "2"}
    bridge = start_bridge(misbehaving_argv, env=env, pool_size=1, spare_children=0, request_timeout=8)
    caller = Caller(bridge, era, [ALICE, BOB])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hanging = [pool.submit(caller.call, ALICE, "hang") for _ in range(2)]
        assert wait_until(lambda: _most_held(bridge) == 2, timeout=6), "alice's two calls never were in flight"

        _assert_refused_for_the_user(caller.call(ALICE, "echo", {"text": "a third"}), limit=2)
        assert caller.echo(BOB, "bob meanwhile") == "bob meanwhile"

        for future in hanging:
            answer = future.result(timeout=30)
            assert rpc_messages(answer)[-1]["error"]["code"] == -32001, "answered at the request timeout"
    assert caller.echo(ALICE, "alice again") == "alice again"

    assert metric(bridge.base_url, "mcp_proxy_requests_refused_per_user_total") == 1
    assert _most_held(bridge) == 0 and _users_in_flight(bridge) == 0
    events = [json.loads(line) for line in bridge.log_text().splitlines() if '"request_refused"' in line]
    assert [(e["reason"], e["era"], e["user"], e["held"], e["limit"]) for e in events] == [
        ("per_user", era, "alice", 2, 2)
    ]


@pytest.mark.parametrize("era", ERAS)
def test_a_client_that_calls_one_after_another_is_never_refused(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], era: str
) -> None:
    # The slot is free by the time the answer has arrived: the next request, sent at once on the same
    # connection, does not find the previous one still counted.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_inflight_per_user=1)
    caller = Caller(bridge, era, [ALICE])
    with httpx.Client(timeout=30) as http:
        for n in range(40):
            body, headers = caller.request(ALICE, "echo", {"text": str(n)})
            answer = http.post(bridge.url, json=body, headers=headers)
            assert answer.status_code == 200, f"call {n}: {answer.text}"
    assert metric(bridge.base_url, "mcp_proxy_requests_refused_per_user_total") == 0


@pytest.mark.parametrize("era", ERAS)
def test_a_client_that_disconnects_mid_call_frees_its_slot(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str], era: str
) -> None:
    # A long request timeout: only the disconnect can free the slot within the test's waits.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, request_timeout=120, max_inflight_per_user=1)
    caller = Caller(bridge, era, [ALICE])
    with caller.hanging(ALICE, 1):
        assert wait_until(lambda: _most_held(bridge) == 1, timeout=10)
        _assert_refused_for_the_user(caller.call(ALICE, "echo", {"text": "refused"}), limit=1)
    assert wait_until(lambda: _users_in_flight(bridge) == 0, timeout=10), "the slot outlived its connection"
    assert caller.echo(ALICE, "after the disconnect") == "after the disconnect"


def test_requests_in_both_eras_count_against_one_allowance(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_inflight_per_user=2)
    modern, legacy = Caller(bridge, "2026-07-28", [ALICE]), Caller(bridge, "legacy", [ALICE])
    with modern.hanging(ALICE, 1), legacy.hanging(ALICE, 1):
        assert wait_until(lambda: _most_held(bridge) == 2, timeout=10)
        # Each era's global count is 1 of 1024; only the user's allowance, counted over both, is used up.
        _assert_refused_for_the_user(modern.call(ALICE, "echo", {"text": "x"}), limit=2)
        _assert_refused_for_the_user(legacy.call(ALICE, "echo", {"text": "x"}), limit=2)
    assert wait_until(lambda: _users_in_flight(bridge) == 0, timeout=10)
    assert modern.echo(ALICE, "modern") == "modern" and legacy.echo(ALICE, "legacy") == "legacy"


def test_the_in_flight_default_is_a_quarter_of_max_inflight(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_inflight=8)
    caller = Caller(bridge, "2026-07-28", [ALICE, BOB])
    with caller.hanging(ALICE, 2):
        assert wait_until(lambda: _most_held(bridge) == 2, timeout=10)
        _assert_refused_for_the_user(caller.call(ALICE, "echo", {"text": "x"}), limit=2)
        assert caller.echo(BOB, "bob") == "bob"


def test_no_per_user_entry_outlives_the_users_last_request(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Many distinct users, each gone after one request (answered, or an error): the bridge keeps nothing for
    # any of them, so its memory does not grow with the number of users it has seen.
    bridge = start_bridge(misbehaving_argv, pool_size=1, max_inflight_per_user=1)
    caller = Caller(bridge, "2026-07-28", [])
    users = [{"X-Auth-User": f"user-{n}"} for n in range(120)]

    def one(user: dict[str, str]) -> int:
        tool = "echo" if int(user["X-Auth-User"][5:]) % 3 else "no_such_tool"
        return caller.call(user, tool, {"text": "hi"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, users, timeout=60))
    assert statuses.count(200) == 80 and statuses.count(404) == 0, statuses
    assert _users_in_flight(bridge) == 0 and _most_held(bridge) == 0


@pytest.mark.anyio
async def test_a_user_at_the_cap_can_still_answer_the_servers_question(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # The call that asked holds the user's only slot; the client's answer is a POST too. Refusing it would
    # leave the call waiting for an answer that can never arrive.
    bridge = start_bridge(misbehaving_argv, pool_size=1, request_timeout=20, max_inflight_per_user=1)

    async def sample(_ctx: Any, _params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = types.TextContent(type="text", text="forty-two")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    with anyio.fail_after(30):
        async with Client(bridge.url, mode="legacy", sampling_callback=sample) as client:
            result = await client.call_tool("ask", {"question": "meaning?"})
    assert "client said: forty-two" in " ".join(getattr(part, "text", "") for part in result.content)
    assert metric(bridge.base_url, "mcp_proxy_requests_refused_per_user_total") == 0
