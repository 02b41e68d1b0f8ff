"""One user cannot take every handshake-era session, nor every slot for requests in flight: beyond
--max-sessions-per-user (or --max-inflight-per-user) that user gets the global cap's answer (503, JSON-RPC
-32000, Retry-After) while other users are still served, and a session that ends (DELETE, idle reaping) or a
request that ends (answered, timed out, or given up by its client) gives the user's slot back."""

from __future__ import annotations

import concurrent.futures
import json
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
    MODERN,
    Caller,
    initialize,
    legacy_headers,
    metric,
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
    # Through the variable: the role sets bridges up with MCP_PROXY_* variables, not flags. No spare: each
    # session's child (a real server, slow to start) is started when it is needed, and no more.
    env = {"MCP_PROXY_MAX_SESSIONS_PER_USER": "2"}
    bridge = start_bridge(time_argv, env=env, pool_size=1, spare_children=0, max_sessions=10)
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
        assert wait_until(lambda: metric(bridge.base_url, "mcp_proxy_sessions_open") == 0, timeout=15)
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

ERAS = [MODERN, "legacy"]
REFUSED = "mcp_proxy_requests_refused_per_user_total"


def _user(name: str) -> dict[str, str]:
    return {"X-Auth-User": name}


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


# The tests that share a bridge (`no_spare_bridge`: one request in flight per user; `two_slot_bridge`) each act
# as users of their own, compare the refusal counter before and after, and leave no request in flight (the
# gauges they read are back at 0 when they end).


@pytest.fixture(scope="module")
def two_slot_bridge(tmp_path_factory: pytest.TempPathFactory, misbehaving_argv: list[str]) -> Iterator[Bridge]:
    """Two requests in flight per user, set through the variable as the role sets it; hanging calls end at
    the request timeout (10 s) with -32001."""
    env = {"MCP_PROXY_MAX_INFLIGHT_PER_USER": "2"}
    options = {"pool_size": 1, "spare_children": 0, "request_timeout": 10}
    bridge = Bridge(misbehaving_argv, log_dir=tmp_path_factory.mktemp("two-slot"), options=options, env=env).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.mark.parametrize("era", ERAS)
def test_one_user_at_the_in_flight_cap_is_refused_and_others_are_not(two_slot_bridge: Bridge, era: str) -> None:
    bridge = two_slot_bridge
    alice, bob = _user(f"alice-{era}"), _user(f"bob-{era}")
    refused_before, mark = metric(bridge.base_url, REFUSED), bridge.log_size()
    with Caller(bridge, era, [alice, bob]) as caller:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            hanging = [pool.submit(caller.call, alice, "hang") for _ in range(2)]
            assert wait_until(lambda: _most_held(bridge) == 2, timeout=8), "alice's two calls never were in flight"

            _assert_refused_for_the_user(caller.call(alice, "echo", {"text": "a third"}), limit=2)
            assert caller.echo(bob, "bob meanwhile") == "bob meanwhile"

            for future in hanging:
                answer = future.result(timeout=30)
                assert rpc_messages(answer)[-1]["error"]["code"] == -32001, "answered at the request timeout"
        assert caller.echo(alice, "alice again") == "alice again"

    assert metric(bridge.base_url, REFUSED) - refused_before == 1
    assert _most_held(bridge) == 0 and _users_in_flight(bridge) == 0
    events = [json.loads(line) for line in bridge.log_text(since=mark).splitlines() if '"request_refused"' in line]
    assert [(e["reason"], e["era"], e["user"], e["held"], e["limit"]) for e in events] == [
        ("per_user", era, f"alice-{era}", 2, 2)
    ]


@pytest.mark.parametrize("era", ERAS)
def test_a_client_that_calls_one_after_another_is_never_refused(no_spare_bridge: Bridge, era: str) -> None:
    # The slot is free by the time the answer has arrived: the next request, sent at once on the same
    # (kept-alive) connection, does not find the previous one still counted.
    bridge = no_spare_bridge
    steady = _user(f"steady-{era}")
    refused_before = metric(bridge.base_url, REFUSED)
    with Caller(bridge, era, [steady]) as caller:
        for n in range(40):
            answer = caller.call(steady, "echo", {"text": str(n)})
            assert answer.status_code == 200, f"call {n}: {answer.text}"
    assert metric(bridge.base_url, REFUSED) == refused_before


@pytest.mark.parametrize("era", ERAS)
def test_a_client_that_disconnects_mid_call_frees_its_slot(no_spare_bridge: Bridge, era: str) -> None:
    # The bridge's long request timeout: only the disconnect can free the slot within the test's waits.
    bridge = no_spare_bridge
    leaver = _user(f"leaver-{era}")
    with Caller(bridge, era, [leaver]) as caller:
        with caller.hanging(leaver, 1):
            assert wait_until(lambda: _most_held(bridge) == 1, timeout=10)
            _assert_refused_for_the_user(caller.call(leaver, "echo", {"text": "refused"}), limit=1)
        assert wait_until(lambda: _users_in_flight(bridge) == 0, timeout=10), "the slot outlived its connection"
        assert caller.echo(leaver, "after the disconnect") == "after the disconnect"


def test_requests_in_both_eras_count_against_one_allowance(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    # Two per user, and the default request timeout: only the disconnects free the slots.
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, max_inflight_per_user=2)
    with Caller(bridge, MODERN, [ALICE]) as modern, Caller(bridge, "legacy", [ALICE]) as legacy:
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
    with Caller(bridge, MODERN, [ALICE, BOB]) as caller, caller.hanging(ALICE, 2):
        assert wait_until(lambda: _most_held(bridge) == 2, timeout=10)
        _assert_refused_for_the_user(caller.call(ALICE, "echo", {"text": "x"}), limit=2)
        assert caller.echo(BOB, "bob") == "bob"


def test_no_per_user_entry_outlives_the_users_last_request(no_spare_bridge: Bridge) -> None:
    # Many distinct users, each gone after one request (answered, or an error): the bridge keeps nothing for
    # any of them, so its memory does not grow with the number of users it has seen.
    bridge = no_spare_bridge
    users = [_user(f"passer-{n}") for n in range(120)]

    with Caller(bridge, MODERN, []) as caller:

        def one(n: int) -> int:
            tool = "echo" if n % 3 else "no_such_tool"
            return caller.call(users[n], tool, {"text": "hi"}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(len(users)), timeout=60))
    assert statuses.count(200) == 80 and statuses.count(404) == 0, statuses
    assert _users_in_flight(bridge) == 0 and _most_held(bridge) == 0


@pytest.mark.anyio
async def test_a_user_at_the_cap_can_still_answer_the_servers_question(no_spare_bridge: Bridge) -> None:
    # The call that asked holds the user's only slot (this SDK client is the one 'anonymous' user of the
    # bridge); the client's answer is a POST too. Refusing it would leave the call waiting for an answer that
    # can never arrive.
    bridge = no_spare_bridge
    refused_before = metric(bridge.base_url, REFUSED)

    async def sample(_ctx: Any, _params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = types.TextContent(type="text", text="forty-two")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    with anyio.fail_after(30):
        async with Client(bridge.url, mode="legacy", sampling_callback=sample) as client:
            result = await client.call_tool("ask", {"question": "meaning?"})
    assert "client said: forty-two" in " ".join(getattr(part, "text", "") for part in result.content)
    assert metric(bridge.base_url, REFUSED) == refused_before
