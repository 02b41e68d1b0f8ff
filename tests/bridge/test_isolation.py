"""What the child never gets (the gateway's token, the request's headers, the bridge's settings), that no
child outlives the bridge, even when the bridge is killed outright, and how children are scheduled."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import httpx

from tests.bridge.rawhttp import initialize, legacy_headers, modern_request, rpc_messages
from tests.harness.bridge import Bridge
from tests.harness.procs import wait_until

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-gateway-token.signature"


def _raw_call(http: httpx.Client, bridge: Bridge, modern: bool) -> dict:
    extra = {"Authorization": f"Bearer {TOKEN}", "X-Auth-User": "alice", "X-Auth-Scope": "mcp"}
    if modern:
        body, headers = modern_request("tools/call", {"name": "raw", "arguments": {}})
        response = http.post(bridge.url, json=body, headers={**headers, **extra})
    else:
        session = initialize(http, bridge.url, headers=extra)
        call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "raw", "arguments": {}}}
        response = http.post(bridge.url, json=call, headers=legacy_headers(session, extra))
    return json.loads(rpc_messages(response)[-1]["result"]["content"][0]["text"])


def test_the_gateway_token_never_reaches_the_child_token_passthrough(http: httpx.Client, plain_bridge: Bridge) -> None:
    # plain_bridge takes MCP_PROXY_ALLOWED_ORIGINS from its environment: its children must not inherit it.
    for modern in (True, False):
        seen = _raw_call(http, plain_bridge, modern)
        everything = json.dumps(seen)
        assert TOKEN not in everything
        assert "Bearer" not in everything and "alice" not in everything
        assert not [k for k in seen["environ"] if k.startswith("MCP_PROXY_")]


def _pid_of(http: httpx.Client, bridge: Bridge, modern: bool) -> int:
    if modern:
        body, headers = modern_request("tools/call", {"name": "pid", "arguments": {}})
        response = http.post(bridge.url, json=body, headers=headers)
    else:
        session = initialize(http, bridge.url)
        call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "pid", "arguments": {}}}
        response = http.post(bridge.url, json=call, headers=legacy_headers(session))
    return int(rpc_messages(response)[-1]["result"]["content"][0]["text"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_run_under_batch_scheduling_so_a_woken_child_does_not_preempt_the_bridge(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1)
    with httpx.Client(timeout=20) as http:
        pids = [_pid_of(http, bridge, modern=True), _pid_of(http, bridge, modern=False)]
    assert [os.sched_getscheduler(pid) for pid in pids] == [os.SCHED_BATCH, os.SCHED_BATCH]
    assert os.sched_getscheduler(bridge.process.pid) == os.SCHED_OTHER  # the bridge itself keeps the default


def test_children_die_with_a_killed_bridge(start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1)
    with httpx.Client(timeout=20) as http:
        pids = [_pid_of(http, bridge, modern=True), _pid_of(http, bridge, modern=False)]
    assert all(_alive(pid) for pid in pids)
    bridge.process.kill()  # SIGKILL: no chance to clean up
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10), "children exit when stdin closes"


def test_children_are_stopped_with_the_bridge(start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1)
    with httpx.Client(timeout=20) as http:
        pids = [_pid_of(http, bridge, modern=True), _pid_of(http, bridge, modern=False)]
    bridge.stop()
    assert not any(_alive(pid) for pid in pids)
