"""One user cannot take every handshake-era session: beyond --max-sessions-per-user that user gets the
global cap's answer (503, JSON-RPC -32000, Retry-After) while other users still get sessions, and a
session that ends (DELETE, idle reaping) gives the user's slot back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.bridge.rawhttp import ACCEPT_BOTH, INITIALIZE_REQUEST, initialize, legacy_headers, metric, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.mcp_servers import ServerNotInstalled, mcp_server_argv

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
