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
in the handshake era, its own session), and sequential p50/p99 of one client. Every arm's clients are open
at once and the arms take turns in `--slices` slices of the `--seconds`, so that a change in the machine's
load falls on all of them; the ratio with/without ForwardAuth is taken within a round, then the median over
rounds. `--base-auth` adds the auth service of another tree as a third arm (before and after in one run),
`--auth-variant` one of this tree with other settings.
Also the TCP connections Traefik closed towards the auth service per check (Go's default transport keeps
2 idle connections per host: BENCHMARKS.md, "Traefik"), and where the CPU of the 16-client loop went, per
call: utime+stime from /proc of Traefik, the auth service (gunicorn's master and workers), its Redis, the
bridge, the bridge's children (the MCP servers) and this process (the clients).

    .venv/bin/python bench/whole_path.py --profile [--seconds 8]

instead records a sampling profile (py-spy from .bench/tools, `bench/bridge_roundtrip.py` installs it) of
each gunicorn worker and of the bridge while the 16 clients call through ForwardAuth, per era, and prints
the largest own-time entries and the share under each package (bench/results/profile-whole-*.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
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
from bridge_cpu_split import own_cpu  # noqa: E402
from bridge_roundtrip import (  # noqa: E402
    BENCH,
    HANDSHAKE,
    MODERN,
    PINS,
    Arm,
    HttpClient,
    _spares_ready,
    bridge_processes,
    closed_loop,
    cpu_seconds,
    opened,
    process_tree,
)
from bridge_roundtrip import sequential as sequential_calls  # noqa: E402
from forward_auth_connections import closed_since  # noqa: E402
from profile_summary import summary  # noqa: E402

from bench.report import RESULTS, write_results  # noqa: E402
from tests.harness.auth import write_rsa_key  # noqa: E402
from tests.harness.bridge import Bridge  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.traefik import traefik_binary  # noqa: E402

IDENTITY = ("X-Auth-User", "X-Auth-Client-Id", "X-Auth-Scope")


def configuration(workdir: Path, ports: dict[str, int], auth_urls: dict[str, str], bridge_url: str) -> Path:
    """Traefik's files: an entry point per path (`no_forward_auth`, and one per auth service in `auth_urls`)."""
    trusted = f'forwardedHeaders: {{trustedIPs: ["{LOOPBACK}/32"]}}'
    strip = ", ".join(f'{h}: ""' for h in IDENTITY)
    routers = ["    no_forward_auth:", '      rule: "PathPrefix(`/mcp`)"', "      entryPoints: [no_forward_auth]"]
    routers += ["      service: bridge", "      middlewares: [strip, noauth]"]
    checks = []
    for path, url in auth_urls.items():
        routers += [f"    {path}:", '      rule: "PathPrefix(`/mcp`)"', f"      entryPoints: [{path}]"]
        routers += ["      service: bridge", f"      middlewares: [strip, check_{path}, noauth]"]
        checks += [f"    check_{path}:", "      forwardAuth:", f'        address: "{url}/verify"']
        checks += ["        trustForwardHeader: true", f"        authResponseHeaders: [{', '.join(IDENTITY)}]"]
        checks += ["        maxResponseBodySize: 65536"]
    (workdir / "dynamic.yml").write_text(
        "http:\n  routers:\n"
        + "\n".join(routers)
        + f'\n  services:\n    bridge: {{loadBalancer: {{servers: [{{url: "{bridge_url}"}}]}}}}\n'
        + f"  middlewares:\n    strip: {{headers: {{customRequestHeaders: {{{strip}}}}}}}\n"
        + '    noauth: {headers: {customRequestHeaders: {Authorization: ""}}}\n'
        + "\n".join(checks)
        + "\n"
    )
    static = workdir / "traefik.yml"
    entry_points = "".join(f'\n  {path}: {{address: "{LOOPBACK}:{port}", {trusted}}}' for path, port in ports.items())
    static.write_text(f"""
entryPoints:{entry_points}
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


class Parts:
    """The processes of the path, by part, for the CPU split. Found again before each loop: a session's
    child is a spare that did not exist when the previous loop began."""

    def __init__(self, traefik: int, auth: int, redis: int, bridge: int, server: str) -> None:
        self.traefik, self.auth, self.redis, self.bridge, self.server = traefik, auth, redis, bridge, server

    def find(self) -> dict[str, list[int]]:
        pids = {"traefik": [self.traefik], "auth": process_tree(self.auth), "redis": [self.redis]}
        pids["bridge"] = bridge_processes(self.bridge, self.server)
        pids["children"] = [pid for pid in process_tree(self.bridge) if pid not in pids["bridge"]]
        return pids

    @staticmethod
    def cpu(pids: dict[str, list[int]]) -> dict[str, float]:
        return {"client": own_cpu(), **{part: cpu_seconds(found) for part, found in pids.items()}}


async def loaded(arm: Arm, clients: int, seconds: float, parts: Parts) -> dict[str, Any]:
    """``clients`` clients in a closed loop for ``seconds``: calls/s and each part's CPU per call (ms)."""
    made = await opened(arm, clients)
    pids = parts.find()
    before = parts.cpu(pids)
    count, elapsed = await closed_loop(made, seconds)
    after = parts.cpu(pids)
    await asyncio.gather(*(c.close() for c in made))
    return {
        "calls_per_s": round(count / elapsed, 1),
        "cpu_ms_per_call": {part: round((after[part] - before[part]) * 1000 / count, 3) for part in before},
    }


async def interleaved(
    arms: dict[str, Arm], options: argparse.Namespace, parts: dict[str, Parts], auth_ports: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Every arm's clients open at once, then each arm loaded in turn for a slice of ``--seconds``, the
    order rotating at each slice: a change in the machine's load within the round falls on every arm
    alike. Calls/s and CPU per call over all of an arm's slices."""
    clients = {}
    for path, arm in arms.items():
        await _spares_ready(arm, options.clients)
        clients[path] = await opened(arm, options.clients)
    totals = {path: {"count": 0, "elapsed": 0.0, "closed": 0, "cpu": {}} for path in arms}
    order = list(arms)
    for number in range(options.slices):
        for path in order[number % len(order) :] + order[: number % len(order)]:
            part = parts.get(path, parts["forward_auth"])
            pids = part.find()
            before = part.cpu(pids)
            started = time.monotonic()
            count, elapsed = await closed_loop(clients[path], options.seconds / options.slices)
            after = part.cpu(pids)
            total = totals[path]
            if path in auth_ports:
                total["closed"] += closed_since(auth_ports[path], time.monotonic() - started)
            total["count"] += count
            total["elapsed"] += elapsed
            for key in before:
                total["cpu"][key] = total["cpu"].get(key, 0.0) + after[key] - before[key]
    for group in clients.values():
        await asyncio.gather(*(c.close() for c in group))
    figures = {}
    for path, total in totals.items():
        figures[path] = {
            "calls_per_s": round(total["count"] / total["elapsed"], 1),
            "cpu_ms_per_call": {k: round(v * 1000 / total["count"], 3) for k, v in total["cpu"].items()},
        }
        if path in auth_ports:
            figures[path]["closed_to_auth_per_check"] = round(total["closed"] / total["count"], 3)
    return figures


async def measure(
    options: argparse.Namespace,
    bridge: Bridge,
    ports: dict[str, int],
    token: str,
    auth_ports: dict[str, int],
    parts: dict[str, Parts],
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    for number in range(options.rounds):
        run: dict[str, Any] = {}
        for era, version in (("sessions", HANDSHAKE), ("2026", MODERN)):
            arms = {
                path: Arm(
                    f"{era}_{path}",
                    lambda port=port, version=version: GatewayClient(port, version, token),
                    None,
                    era == "sessions",
                    bridge.base_url,
                )
                for path, port in ports.items()
            }
            loads = await interleaved(arms, options, parts, auth_ports)
            for path, arm in arms.items():
                await _spares_ready(arm, options.clients)
                run[arm.name] = {**loads[path], **(await sequential(arm, options.calls))}
            for path in auth_ports:
                suffix = "" if path == "forward_auth" else path.removeprefix("forward_auth")
                run[f"{era}_fraction{suffix}"] = round(
                    run[f"{era}_{path}"]["calls_per_s"] / run[f"{era}_no_forward_auth"]["calls_per_s"], 3
                )
        run["load"] = os.getloadavg()[0]
        print(f"round {number + 1}: {json.dumps(run)}", flush=True)
        rounds.append(run)
    return rounds


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every figure over the rounds, nested dicts included."""

    def median(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {key: median([v[key] for v in values]) for key in values[0]}
        return round(statistics.median(values), 3)

    return {key: median([r[key] for r in rounds]) for key in rounds[0] if key != "load"}


def ensure_py_spy() -> Path:
    """py-spy, pinned, in `.bench/tools` (as bench/bridge_roundtrip.py installs it), never in the product."""
    venv = BENCH / "tools"
    marker = venv / f".installed-{PINS['tools']}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PINS["tools"]], check=True)
        marker.touch()
    return venv / "bin" / "py-spy"


async def profile(
    options: argparse.Namespace, bridge: Bridge, ports: dict[str, int], token: str, parts: Parts
) -> dict[str, Any]:
    """py-spy on each gunicorn worker and on the bridge while the clients call through ForwardAuth."""
    py_spy = ensure_py_spy()
    workers = [pid for pid in process_tree(parts.auth) if pid != parts.auth]
    found: dict[str, Any] = {}
    for era, version in (("sessions", HANDSHAKE), ("2026", MODERN)):
        port = ports["forward_auth"]
        arm = Arm(
            f"{era}_forward_auth",
            lambda port=port, version=version: GatewayClient(port, version, token),
            None,
            era == "sessions",
            bridge.base_url,
        )
        await _spares_ready(arm, options.clients)
        targets = {"auth": workers, "bridge": [bridge.process.pid]}
        outputs: dict[str, list[Path]] = {part: [] for part in targets}
        spies = []
        for part, pids in targets.items():
            for pid in pids:
                out = RESULTS / f"profile-whole-{era}-{part}-{pid}.txt"
                outputs[part].append(out)
                argv = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(options.seconds))]
                argv += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
                if options.native:
                    argv.append("--native")
                if options.gil:
                    argv.append("--gil")
                spies.append(
                    await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
        figures = await loaded(arm, options.clients, options.seconds + 1, parts)
        for spy in spies:
            await spy.wait()
        found[era] = {"load": figures, **{part: summary(files) for part, files in outputs.items()}}
        print(f"{era}: {figures}", flush=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--slices", type=int, default=4, help="each arm's --seconds run as this many slices, the arms taking turns"
    )
    parser.add_argument("--calls", type=int, default=100, help="sequential calls per arm and round")
    parser.add_argument("--profile", action="store_true", help="instead: py-spy the auth workers and the bridge")
    parser.add_argument("--native", action="store_true", help="with --profile: native frames too")
    parser.add_argument(
        "--gil", action="store_true", help="with --profile: only samples of the thread holding the GIL (the CPU)"
    )
    parser.add_argument(
        "--base-auth",
        type=Path,
        help="a tree holding services/auth (another commit's): measured as a third arm, `forward_auth_base`",
    )
    parser.add_argument(
        "--auth-variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="another auth service of this tree with these environment variables (AUTH_THREADS=2, say): "
        "measured as an arm `forward_auth_NAME`",
    )
    options = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()[0], "clients": options.clients}
    with tempfile.TemporaryDirectory(prefix="bench-whole-path-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis").start()
        key = write_rsa_key(work / "signing.pem")
        service = ours(work / "auth", redis, key, "2000").start()
        services = {"forward_auth": service}
        if options.base_auth:
            source = options.base_auth.resolve()
            services["forward_auth_base"] = ours(work / "auth-base", redis, key, "2000", source).start()
        for variant in options.auth_variant:
            name, _, assignments = variant.partition(":")
            extra = ours(work / f"auth-{name}", redis, key, "2000")
            extra.env.update(dict(item.split("=", 1) for item in assignments.split(",")))
            services[f"forward_auth_{name}"] = extra.start()
        bridge = Bridge(
            mcp_server_argv("time"),
            log_dir=work,
            # Every arm's sessions are open at once, all of them one user's (the bench token's).
            options={
                "pool_size": 4,
                "spare_children": options.clients,
                "max_sessions": 200,
                "max_sessions_per_user": 200,
                "log_level": "warning",
            },
            startup_timeout=120,
        ).start()
        ports = {"no_forward_auth": free_port(), **{path: free_port() for path in services}}
        static = configuration(work, ports, {path: s.url for path, s in services.items()}, bridge.base_url)
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
            parts = {
                path: Parts(traefik.pid, s.pid, redis.pid, bridge.process.pid, "mcp-server-time")
                for path, s in services.items()
            }
            if options.profile:
                results["profile"] = asyncio.run(profile(options, bridge, ports, token, parts["forward_auth"]))
            else:
                auth_ports = {path: s.port for path, s in services.items()}
                results["rounds"] = asyncio.run(measure(options, bridge, ports, token, auth_ports, parts))
        finally:
            traefik.stop()
            bridge.stop()
            for s in services.values():
                s.stop()
            redis.stop()
    if options.profile:
        write_results("whole_path_profile", results)
        for era, found in results["profile"].items():
            print(era, json.dumps(found, indent=1))
        return 0
    results["median"] = median_of(results["rounds"])
    write_results("whole_path", results)
    for key, value in results["median"].items():
        print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
