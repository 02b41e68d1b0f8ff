"""Where a tool call's CPU goes: the bench client, the bridge, the MCP server processes; for raw stdio and
this bridge's two eras, and optionally a second bridge (another checkout's `mcp-proxy`) side by side, so a
change can be measured before and after in one run.

    .venv/bin/python bench/bridge_cpu_split.py [--rounds 2] [--seconds 3] [--base /other/checkout/.venv/bin/mcp-proxy]

Each arm: 16 clients in a closed loop for `--seconds` (calls/s, and CPU per call from /proc: utime+stime
of the bridge's process tree less the server processes, of the server processes, and of this process,
the client), then one client's sequential p50/p99. Bridges as bench/bridge_roundtrip.py runs them (a pool
of 4, 16 warm spares). The arms alternate within each round; compare within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bridge_roundtrip import (  # noqa: E402
    HANDSHAKE,
    MODERN,
    Arm,
    HttpClient,
    StdioClient,
    _spares_ready,
    bridge_processes,
    closed_loop,
    cpu_seconds,
    process_tree,
)
from bridge_roundtrip import sequential as sequential_calls  # noqa: E402

import tests.harness.bridge as harness  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402

CLIENTS = 16


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def loop(arm: Arm, seconds: float, server: str) -> dict[str, float]:
    clients = [arm.make() for _ in range(CLIENTS)]
    for client in clients:
        await client.open()
    await asyncio.gather(*(c.call() for c in clients))
    if arm.pid:
        bridge = bridge_processes(arm.pid, server)
        children = [p for p in process_tree(arm.pid) if p not in bridge]
    else:
        bridge, children = [], [c.process.pid for c in clients]
    before = own_cpu(), cpu_seconds(bridge), cpu_seconds(children)
    count, elapsed = await closed_loop(clients, seconds)
    after = own_cpu(), cpu_seconds(bridge), cpu_seconds(children)
    for client in clients:
        await client.close()
    return {
        "calls_per_s": round(count / elapsed, 1),
        "client_cpu_ms": round((after[0] - before[0]) * 1000 / count, 3),
        "bridge_cpu_ms": round((after[1] - before[1]) * 1000 / count, 3),
        "children_cpu_ms": round((after[2] - before[2]) * 1000 / count, 3),
    }


async def sequential(arm: Arm, calls: int = 200) -> dict[str, float]:
    """One client's sequential calls: p50 and p99 in ms (bridge_roundtrip's measure, for one arm)."""
    return (await sequential_calls({"arm": arm}, calls))["arm"]


async def measure(options: argparse.Namespace, bridges: dict[str, harness.Bridge], server: list[str]) -> None:
    arms = {"raw": Arm("raw", lambda: StdioClient(server), None, False)}
    for tag, bridge in bridges.items():
        for era, version in (("sessions", HANDSHAKE), ("2026", MODERN)):
            arms[f"{tag}_{era}"] = Arm(
                f"{tag}_{era}",
                lambda bridge=bridge, version=version: HttpClient(bridge.port, "/mcp", version),
                bridge.process.pid,
                era == "sessions",
                bridge.base_url,
            )
    for number in range(options.rounds):
        for name, arm in arms.items():
            if arm.url:
                await _spares_ready(arm, CLIENTS)
            figures = await loop(arm, options.seconds, server[0])
            figures.update(await sequential(arm))
            print(f"round {number + 1} {name}: {json.dumps(figures)} load {os.getloadavg()[0]:.1f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--base", default="", help="another checkout's mcp-proxy executable, measured as `base`")
    options = parser.parse_args()
    server = mcp_server_argv("time")
    executables = {"ours": harness.mcp_proxy_executable()}
    if options.base:
        executables = {"base": options.base, **executables}
    bridges: dict[str, harness.Bridge] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-split-") as logs:
        try:
            for tag, executable in executables.items():
                harness.mcp_proxy_executable = lambda executable=executable: executable  # type: ignore[misc]
                options_ = {"pool_size": 4, "spare_children": CLIENTS, "log_level": "warning"}
                bridge = harness.Bridge(server, log_dir=Path(logs), options=options_, startup_timeout=120)
                bridges[tag] = bridge.start()
            asyncio.run(measure(options, bridges, server))
        finally:
            for bridge in bridges.values():
                bridge.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
