"""The whole path of a tool call: Traefik, ForwardAuth to the auth service, the bridge, its child; against
the same path without ForwardAuth, for both protocol eras (issue 14: at least 0.85 with 16 clients).

    .venv/bin/python bench/whole_path.py [--rounds 3] [--seconds 4] [--clients 16]

The real parts, on loopback: Traefik (the pinned binary) with two entry points routing `/mcp` to one bridge
(`mcp-proxy` in front of `mcp-server-time`, a pool of 4 and 16 warm spares, as bench/bridge_roundtrip.py
runs it); on one entry point the route has the `forwardAuth` middleware as roles/traefik sets it (the auth
service's `/verify`, `authResponseHeaders`, a 64 KiB body cap), on the other it has none. Both routes strip
the identity headers and drop `Authorization` before the bridge, as the role's chain does. The auth service
runs as the auth role deploys it (gunicorn, 2 workers x 4 threads, the 2 s verify cache) on its own Redis.
Plain HTTP: the client's `X-Forwarded-Proto: https` is trusted from loopback and passed to `/verify`, as
TLS termination would set it.

Per era and path: calls/s of `--clients` clients in a closed loop (each its own keep-alive connection and,
in the handshake era, its own session), and sequential p50/p99 of one client; the arms alternate within
each round, and the ratio with/without ForwardAuth is taken within a round, then the median over rounds.
Also the TCP connections Traefik closed towards the auth service per check (Go's default transport keeps
2 idle connections per host: BENCHMARKS.md, "Traefik").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from auth_verify import FORWARDED, mint_ours, ours  # noqa: E402
from bridge_roundtrip import HANDSHAKE, MODERN, Arm, HttpClient, _spares_ready, throughput  # noqa: E402
from bridge_roundtrip import sequential as sequential_calls  # noqa: E402
from forward_auth_connections import closed_since  # noqa: E402

from bench.report import write_results  # noqa: E402
from tests.harness.auth import write_rsa_key  # noqa: E402
from tests.harness.bridge import Bridge  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.traefik import traefik_binary  # noqa: E402

IDENTITY = ("X-Auth-User", "X-Auth-Client-Id", "X-Auth-Scope")


def configuration(workdir: Path, plain: int, guarded: int, auth_url: str, bridge_url: str) -> Path:
    trusted = f'forwardedHeaders: {{trustedIPs: ["{LOOPBACK}/32"]}}'
    strip = ", ".join(f'{h}: ""' for h in IDENTITY)
    (workdir / "dynamic.yml").write_text(f"""
http:
  routers:
    plain: {{rule: "PathPrefix(`/mcp`)", entryPoints: [plain], service: bridge, middlewares: [strip, noauth]}}
    guarded:
      rule: "PathPrefix(`/mcp`)"
      entryPoints: [guarded]
      service: bridge
      middlewares: [strip, check, noauth]
  services:
    bridge: {{loadBalancer: {{servers: [{{url: "{bridge_url}"}}]}}}}
  middlewares:
    strip: {{headers: {{customRequestHeaders: {{{strip}}}}}}}
    noauth: {{headers: {{customRequestHeaders: {{Authorization: ""}}}}}}
    check:
      forwardAuth:
        address: "{auth_url}/verify"
        trustForwardHeader: true
        authResponseHeaders: [{", ".join(IDENTITY)}]
        maxResponseBodySize: 65536
""")
    static = workdir / "traefik.yml"
    static.write_text(f"""
entryPoints:
  plain: {{address: "{LOOPBACK}:{plain}", {trusted}}}
  guarded: {{address: "{LOOPBACK}:{guarded}", {trusted}}}
providers: {{file: {{filename: "{workdir / "dynamic.yml"}"}}}}
log: {{level: ERROR}}
""")
    return static


class GatewayClient(HttpClient):
    """An MCP client as it reaches the gateway: the public host, the forwarded scheme, a bearer token."""

    def __init__(self, port: int, era: str, token: str, host: str = LOOPBACK) -> None:
        super().__init__(port, "/mcp", era, host)
        self.extra = {**FORWARDED, "Authorization": f"Bearer {token}"}

    def _headers(self, method: str) -> dict[str, str]:
        return {**super()._headers(method), **self.extra}


async def sequential(arm: Arm, calls: int) -> dict[str, float]:
    """One client's sequential calls: p50 and p99 in ms (bridge_roundtrip's measure, for one arm)."""
    return (await sequential_calls({"arm": arm}, calls))["arm"]


async def measure(options: argparse.Namespace, bridge: Bridge, ports: dict[str, int], token: str, auth_port: int):
    rounds: list[dict[str, Any]] = []
    for number in range(options.rounds):
        run: dict[str, Any] = {}
        for era, version in (("sessions", HANDSHAKE), ("2026", MODERN)):
            for path, port in ports.items():
                arm = Arm(
                    f"{era}_{path}",
                    lambda port=port, version=version: GatewayClient(port, version, token),
                    None,
                    era == "sessions",
                    bridge.base_url,
                )
                await _spares_ready(arm, options.clients)
                started = time.monotonic()
                figures = await throughput(arm, options.clients, options.seconds, "mcp-server-time")
                if path == "forward_auth":
                    closed = closed_since(auth_port, time.monotonic() - started)
                    figures["closed_to_auth_per_check"] = round(closed / (figures["calls_per_s"] * options.seconds), 3)
                await _spares_ready(arm, options.clients)
                figures.update(await sequential(arm, options.calls))
                run[arm.name] = figures
            run[f"{era}_fraction"] = round(
                run[f"{era}_forward_auth"]["calls_per_s"] / run[f"{era}_no_forward_auth"]["calls_per_s"], 3
            )
        run["load"] = os.getloadavg()[0]
        print(f"round {number + 1}: {run}", flush=True)
        rounds.append(run)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=100, help="sequential calls per arm and round")
    options = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()[0], "clients": options.clients}
    with tempfile.TemporaryDirectory(prefix="bench-whole-path-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis").start()
        service = ours(work / "auth", redis, write_rsa_key(work / "signing.pem"), "2000").start()
        bridge = Bridge(
            mcp_server_argv("time"),
            log_dir=work,
            options={"pool_size": 4, "spare_children": options.clients, "log_level": "warning"},
            startup_timeout=120,
        ).start()
        ports = {"no_forward_auth": free_port(), "forward_auth": free_port()}
        static = configuration(work, ports["no_forward_auth"], ports["forward_auth"], service.url, bridge.base_url)
        traefik = ManagedProcess("traefik", [traefik_binary(), f"--configfile={static}"], log_dir=work)
        try:
            traefik.start()
            for port in ports.values():
                traefik.wait_for_port(port)
            token = mint_ours(service, redis)
            probe = {**FORWARDED, "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
            deadline = time.monotonic() + 20
            # A GET without a session is the bridge's 405: the route (and the check) are in place.
            while any(
                httpx.get(f"http://{LOOPBACK}:{port}/mcp", headers=probe).status_code != 405 for port in ports.values()
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("Traefik did not route both entry points: " + traefik.log_tail())
                time.sleep(0.2)
            rounds = asyncio.run(measure(options, bridge, ports, token, service.port))
        finally:
            traefik.stop()
            bridge.stop()
            service.stop()
            redis.stop()
    results["rounds"] = rounds
    results["median"] = {
        key: (
            round(statistics.median(r[key] for r in rounds), 3)
            if key.endswith("_fraction")
            else {k: round(statistics.median(r[key][k] for r in rounds), 3) for k in rounds[0][key]}
        )
        for key in rounds[0]
        if key != "load"
    }
    write_results("whole_path", results)
    for key, value in results["median"].items():
        print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
