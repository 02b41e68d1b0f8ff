"""A child that keeps crashing is restarted ever more slowly (0.2 s doubling up to 5 s); one that ran well for
--restart-backoff-reset seconds is restarted at once again, whatever happened before it. One rule serves the
pool, the sessions and the spares: checked here on its own, and through a real bridge for a session's child."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
from mcp_gateway_proxy.supervision import FIRST_DELAY, LONGEST_DELAY, RestartBackoff

from tests.bridge.rawhttp import initialize, legacy_headers, rpc_messages
from tests.harness.bridge import Bridge


def test_the_wait_doubles_with_each_quick_crash_up_to_five_seconds() -> None:
    backoff = RestartBackoff(reset_after=60)
    assert [backoff.after_exit(ran_for=1) for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_child_that_ran_well_is_restarted_at_once_after_earlier_crashes() -> None:
    backoff = RestartBackoff(reset_after=60)
    for _ in range(10):
        backoff.after_exit(ran_for=0.5)  # a crash loop at start-up: the wait is at its longest
    assert backoff.after_exit(ran_for=3600) == FIRST_DELAY, "then an hour of good service"
    assert backoff.after_exit(ran_for=0.5) == 2 * FIRST_DELAY, "a quick crash right after grows the wait again"


def test_a_run_just_short_of_the_reset_period_still_counts_as_a_quick_crash() -> None:
    backoff = RestartBackoff(reset_after=60)
    waits = [backoff.after_exit(ran_for=59.9) for _ in range(6)]
    assert waits[-1] == LONGEST_DELAY
    assert backoff.after_exit(ran_for=60) == FIRST_DELAY


def _call(http: httpx.Client, bridge: Bridge, session: str, tool: str) -> tuple[dict[str, object], float]:
    """The answer to one tools/call in the session, and how long it took."""
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "up"}}}
    started = time.monotonic()
    response = http.post(bridge.url, json=body, headers=legacy_headers(session))
    return rpc_messages(response)[-1], time.monotonic() - started


def test_a_session_child_that_ran_well_is_restarted_at_once_after_earlier_quick_crashes(
    start_bridge: Callable[..., Bridge], misbehaving_argv: list[str]
) -> None:
    bridge = start_bridge(misbehaving_argv, pool_size=1, spare_children=0, restart_backoff_reset=2)
    with httpx.Client(timeout=30) as http:
        session = initialize(http, bridge.url)
        # Four crashes in a row, each child crashing as soon as it is up: the waits are 0.2, 0.4, 0.8, 1.6 s.
        for _ in range(4):
            answer, _ = _call(http, bridge, session, "crash")
            assert answer["error"]["code"] == -32000  # type: ignore[index]
        answer, waited = _call(http, bridge, session, "echo")
        assert answer["result"]["content"][0]["text"] == "up"  # type: ignore[index]
        assert waited >= 1.6, "the fourth quick crash in a row waits 1.6 s before the next child"
        time.sleep(2.5)  # this child runs well for longer than --restart-backoff-reset
        answer, _ = _call(http, bridge, session, "crash")
        assert answer["error"]["code"] == -32000  # type: ignore[index]
        answer, waited = _call(http, bridge, session, "echo")
        assert answer["result"]["content"][0]["text"] == "up"  # type: ignore[index]
        # Without the reset the wait would have doubled again, to 3.2 s.
        assert waited < 3.0, f"the child that ran well is replaced after the first wait, not {waited:.1f} s"
    label = f"session-{session[:8]}"
    lines = [json.loads(line) for line in bridge.log_text().splitlines() if line.startswith("{")]
    delays = [e["delay_s"] for e in lines if e.get("event") == "child_restart_delayed" and e.get("child") == label]
    assert delays == [0.2, 0.4, 0.8, 1.6, 0.2], "the log shows each wait and the reset"
