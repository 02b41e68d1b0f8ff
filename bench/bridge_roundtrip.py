"""Bridge cost: tools/call round-trip on mcp-server-time through mcp-proxy vs directly over stdio, and
the memory an idle handshake-era session holds.

    .venv/bin/python bench/bridge_roundtrip.py [--calls 200] [--sessions 10]

Prints the figures and writes them to bench/results/bridge_roundtrip.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.bridge import Bridge  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402

ARGS = {"timezone": "Europe/Paris"}


async def _round_trips(client: Client, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await client.call_tool("get_current_time", ARGS)
        samples.append((time.perf_counter() - started) * 1000)
        assert not result.is_error
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 3),
        "min_ms": round(ordered[0], 3),
    }


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _tree_rss(pid: int) -> tuple[int, int]:
    """(bridge process RSS, RSS of all its descendants) in KiB."""
    return _rss_kib(pid), sum(_rss_kib(p) for p in _descendants(pid))


async def main(calls: int, sessions: int) -> dict[str, Any]:
    argv = mcp_server_argv("time")
    results: dict[str, Any] = {"server": "mcp-server-time", "calls": calls}
    with tempfile.TemporaryDirectory() as logs, Bridge(argv, log_dir=Path(logs), options={"pool_size": 2}) as bridge:
        direct = StdioServerParameters(command=argv[0], args=argv[1:])
        # All four clients are open at once and take turns, ten calls each, so that the other load on the
        # machine falls on every arm alike and the ratio stays meaningful.
        arms = {
            "direct_stdio_legacy": Client(direct, mode="legacy"),
            "direct_stdio_2026": Client(direct, mode="2026-07-28"),
            "bridge_legacy": Client(bridge.url, mode="legacy"),
            "bridge_2026": Client(bridge.url, mode="2026-07-28"),
        }
        samples: dict[str, list[float]] = {name: [] for name in arms}
        async with AsyncExitStack() as stack:
            for client in arms.values():
                await stack.enter_async_context(client)
                await client.call_tool("get_current_time", ARGS)  # warm-up
            for _ in range(max(1, calls // 10)):
                for name, client in arms.items():
                    samples[name] += await _round_trips(client, 10)
        for name, values in samples.items():
            results[name] = _summary(values)
        for era in ("legacy", "2026"):
            results[f"ratio_{era}"] = round(
                results[f"bridge_{era}"]["median_ms"] / results[f"direct_stdio_{era}"]["median_ms"], 2
            )

        # Idle sessions: open them, make one call each, then hold them open without traffic.
        pid = bridge.process.pid
        await anyio.sleep(1)
        bridge_before, children_before = _tree_rss(pid)
        async with anyio.create_task_group() as tg:
            opened = anyio.Event()
            count = 0
            release = anyio.Event()

            async def hold() -> None:
                nonlocal count
                async with Client(bridge.url, mode="legacy") as client:
                    await client.call_tool("get_current_time", ARGS)
                    count += 1
                    if count == sessions:
                        opened.set()
                    await release.wait()

            for _ in range(sessions):
                tg.start_soon(hold)
            with anyio.fail_after(120):
                await opened.wait()
            await anyio.sleep(2)
            bridge_after, children_after = _tree_rss(pid)
            release.set()
        results["idle_session"] = {
            "sessions": sessions,
            "bridge_kib_per_session": round((bridge_after - bridge_before) / sessions, 1),
            "child_kib_per_session": round((children_after - children_before) / sessions, 1),
            "total_kib_per_session": round(
                (bridge_after + children_after - bridge_before - children_before) / sessions, 1
            ),
        }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    options = parser.parse_args()
    figures = anyio.run(main, options.calls, options.sessions)
    out = REPO / "bench" / "results" / "bridge_roundtrip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(
        f"tools/call median: direct stdio {figures['direct_stdio_legacy']['median_ms']} ms (legacy) / "
        f"{figures['direct_stdio_2026']['median_ms']} ms (2026); through the bridge "
        f"{figures['bridge_legacy']['median_ms']} ms (legacy, x{figures['ratio_legacy']}) / "
        f"{figures['bridge_2026']['median_ms']} ms (2026, x{figures['ratio_2026']})"
    )
    idle = figures["idle_session"]
    print(
        f"idle session: {idle['total_kib_per_session']} KiB each "
        f"(bridge {idle['bridge_kib_per_session']} KiB + child {idle['child_kib_per_session']} KiB)"
    )
