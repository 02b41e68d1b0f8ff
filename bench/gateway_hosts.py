"""One gateway host against two on one shared state (issue 16): `/verify` requests/s and 2026-07-28 tool-call
throughput, the clients split evenly over the hosts as DNS round-robin would split them.

    .venv/bin/python bench/gateway_hosts.py [--rounds 3] [--seconds 4] [--clients 16]

The real parts, on loopback. The state: a Redis primary with one replica and three Sentinels
(tests/harness/sentinel.py). Each "gateway host" on its own loopback address (127.0.0.2, 127.0.0.3):
Traefik (the pinned binary) with the `forwardAuth` middleware as roles/traefik sets it (whole_path.py's
route: identity headers stripped, the check, `Authorization` dropped), the auth service as the auth role
deploys it (gunicorn, 2 workers x 4 threads, the 2 s verify cache or `--verify-cache-ms`) and one bridge
(`mcp-proxy`, a pool of 4) in front of `mcp-server-time`. Both auth services have what the roles give every
host of a `redis` group: the same signing key and session secret, the Sentinels to find the primary,
`AUTH_REDIS_DURABLE_REPLICAS=1`.

Both hosts run throughout; an arm decides where the clients go:

- `one_host`: every client to host 1 (host 2 idle, as a standby would be);
- `two_hosts`: half the clients to each host.

Per arm and round:

- `/verify`: `wrk` (auth_verify.py's) straight at the auth services (not through Traefik: the figure is the
  service's, what Traefik's ForwardAuth asks once per request), `--clients` keep-alive connections in all,
  one `wrk` per host at the same time; requests/s summed over the hosts, p50 and p99 the worse host's;
- tool calls: `--clients` 2026-07-28 clients (bridge_roundtrip.py's closed loop, each client its own
  keep-alive connection) through Traefik, ForwardAuth and the bridge; calls/s;
- for both: CPU per request of each kind of process, summed over the hosts (Traefik, the auth service,
  the bridge with its children, the Redis primary) and their total (the bench's own client left out),
  and Redis commands per request at the primary: what the shared state costs; and `cores_busy`, the CPU
  those processes got per second of the loop (on a shared machine, twice the processes get a larger share).

The arms alternate within each round (their order swapped every other round); medians over the rounds.
Every loop is bounded by `--seconds`. Prints the figures and writes them to bench/results/gateway_hosts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from auth_verify import FORWARDED, RESOURCE, commands, mint_ours, wrk  # noqa: E402
from bridge_roundtrip import MODERN, Arm, bridge_processes, cpu_seconds, throughput  # noqa: E402
from whole_path import IDENTITY, GatewayClient  # noqa: E402

from bench.report import write_results  # noqa: E402
from tests.harness.auth import AuthService, write_rsa_key  # noqa: E402
from tests.harness.bridge import Bridge  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402
from tests.harness.procs import ManagedProcess, free_port  # noqa: E402
from tests.harness.sentinel import SentinelCluster  # noqa: E402
from tests.harness.traefik import traefik_binary  # noqa: E402

ADDRESSES = ("127.0.0.2", "127.0.0.3")
ARMS = {"one_host": 1, "two_hosts": 2}


class Host:
    """One gateway host on its own loopback address: Traefik, the auth service, one bridge."""

    def __init__(
        self, workdir: Path, address: str, cluster: SentinelCluster, key: Path, secret: str, cache_ms: str
    ) -> None:
        self.address = address
        self.workdir = workdir
        self.auth = AuthService(
            workdir / "auth",
            host=address,
            issuer="https://auth.example.test",
            redis_url="",
            resources=[{"name": "time", "resource": RESOURCE}],
            github_url="https://github.invalid",
            github_api_url="https://api.github.invalid",
            github_client_id="x",
            github_client_secret="y",
            allowed_users="octocat",
            signing_keys=[key],
            # As the auth role deploys it on every host of a `redis` group: 2 workers (4 threads each by
            # gunicorn.conf.py), the Sentinels, one replica's acknowledgement, the one session secret.
            workers=2,
            env={
                **cluster.service_env(durable_replicas=1),
                "AUTH_SECRET_KEY": secret,
                "AUTH_VERIFY_CACHE_MS": cache_ms,
            },
        )
        self.bridge = Bridge(
            mcp_server_argv("time"),
            log_dir=workdir,
            host=address,
            # As whole_path.py runs it (a pool sized for two cores); no sessions here, so one spare.
            options={"pool_size": 4, "spare_children": 1, "log_level": "warning"},
            startup_timeout=120,
        )
        self.port = free_port(address)
        self.traefik = ManagedProcess(
            f"traefik-{address}", [traefik_binary(), f"--configfile={self._configuration()}"], log_dir=workdir
        )

    def _configuration(self) -> Path:
        """whole_path.py's guarded route, on this host's address, to this host's auth service and bridge."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        strip = ", ".join(f'{h}: ""' for h in IDENTITY)
        (self.workdir / "dynamic.yml").write_text(f"""
http:
  routers:
    mcp: {{rule: "PathPrefix(`/mcp`)", entryPoints: [web], service: bridge, middlewares: [strip, check, noauth]}}
  services:
    bridge: {{loadBalancer: {{servers: [{{url: "{self.bridge.base_url}"}}]}}}}
  middlewares:
    strip: {{headers: {{customRequestHeaders: {{{strip}}}}}}}
    noauth: {{headers: {{customRequestHeaders: {{Authorization: ""}}}}}}
    check:
      forwardAuth:
        address: "{self.auth.url}/verify"
        trustForwardHeader: true
        authResponseHeaders: [{", ".join(IDENTITY)}]
        maxResponseBodySize: 65536
""")
        static = self.workdir / "traefik.yml"
        # Plain HTTP: the client's X-Forwarded-Proto (https) is trusted from loopback, as TLS termination sets it.
        static.write_text(f"""
entryPoints:
  web: {{address: "{self.address}:{self.port}", forwardedHeaders: {{trustedIPs: ["127.0.0.0/8"]}}}}
providers: {{file: {{filename: "{self.workdir / "dynamic.yml"}"}}}}
log: {{level: ERROR}}
""")
        return static

    def start(self) -> Host:
        self.auth.start()
        self.bridge.start()
        self.traefik.start().wait_for_port(self.port, host=self.address)
        return self

    def stop(self) -> None:
        for part in (self.traefik, self.bridge, self.auth):
            part.stop()

    def pids(self) -> dict[str, list[int]]:
        """This host's processes by kind, each with its descendants (gunicorn's workers, the bridge's children)."""
        return {
            "traefik": bridge_processes(self.traefik.pid, ""),
            "auth": bridge_processes(self.auth.pid, ""),
            "bridge": bridge_processes(self.bridge.process.pid, ""),
        }


class Meter:
    """CPU seconds of each kind of process, summed over the hosts, and commands at the Redis primary."""

    def __init__(self, hosts: list[Host], cluster: SentinelCluster) -> None:
        self.primary = cluster.servers[0]
        self.kinds: dict[str, list[int]] = {"redis_primary": [self.primary.pid]}
        for host in hosts:
            for kind, pids in host.pids().items():
                self.kinds.setdefault(kind, []).extend(pids)

    def sample(self) -> dict[str, float]:
        return {**{kind: cpu_seconds(pids) for kind, pids in self.kinds.items()}, "commands": commands(self.primary)}

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], requests: float) -> dict[str, float]:
        figures = {
            f"{kind}_cpu_ms": round((after[kind] - before[kind]) * 1000 / requests, 4)
            for kind in before
            if kind != "commands"
        }
        figures["total_cpu_ms"] = round(sum(figures.values()), 4)
        figures["redis_commands"] = round((after["commands"] - before["commands"]) / requests, 3)
        return figures


def split(total: int, hosts: int) -> list[int]:
    """`total` clients over `hosts` hosts, as evenly as DNS round-robin would."""
    return [total // hosts + (1 if index < total % hosts else 0) for index in range(hosts)]


def verify(hosts: list[Host], token: str, options: argparse.Namespace, meter: Meter, used: int) -> dict[str, Any]:
    headers = {**FORWARDED, "Authorization": f"Bearer {token}"}
    shares = split(options.clients, used)
    before = meter.sample()
    with ThreadPoolExecutor(used) as pool:
        runs = list(
            pool.map(
                lambda pair: wrk(pair[0].auth.url, headers, pair[1], int(options.seconds)),
                zip(hosts, shares, strict=False),
            )
        )
    after = meter.sample()
    requests = sum(run["rps"] for run in runs) * options.seconds
    figures = {
        "rps": round(sum(run["rps"] for run in runs), 1),
        "p50_ms": max(run["p50_ms"] for run in runs),
        "p99_ms": max(run["p99_ms"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
    }
    spent = Meter.per_request(before, after, requests)
    # How much of the machine the gateway's processes got: against other work, more processes get more of it.
    spent["cores_busy"] = round(spent["total_cpu_ms"] * figures["rps"] / 1000, 3)
    return {**figures, **spent}


async def tool_calls(hosts: list[Host], token: str, options: argparse.Namespace, meter: Meter, used: int) -> dict:
    # Each new client goes to the next host in turn: `clients` clients split evenly over the `used` hosts.
    turn = itertools.cycle(hosts[:used])

    def make() -> GatewayClient:
        host = next(turn)
        return GatewayClient(host.port, MODERN, token, host.address)

    arm = Arm(f"tool_calls_{used}", make, None, False)
    before = meter.sample()
    figures = await throughput(arm, options.clients, options.seconds, "mcp-server-time")
    after = meter.sample()
    # The opening and warm-up calls fall inside the sample too: one call per client, a few percent.
    calls = figures["calls_per_s"] * options.seconds + options.clients
    spent = Meter.per_request(before, after, calls)
    spent["cores_busy"] = round(spent["total_cpu_ms"] * figures["calls_per_s"] / 1000, 3)
    return {**figures, **spent}


async def measure(hosts: list[Host], token: str, options: argparse.Namespace, meter: Meter) -> list[dict]:
    rounds = []
    for number in range(options.rounds):
        order = list(ARMS.items()) if number % 2 == 0 else list(reversed(ARMS.items()))
        run: dict[str, Any] = {"verify": {}, "tool_calls": {}}
        for name, used in order:
            run["verify"][name] = verify(hosts, token, options, meter, used)
        for name, used in order:
            run["tool_calls"][name] = await tool_calls(hosts, token, options, meter, used)
        for kind in ("verify", "tool_calls"):
            key = "rps" if kind == "verify" else "calls_per_s"
            run[kind]["two_over_one"] = round(run[kind]["two_hosts"][key] / run[kind]["one_host"][key], 3)
        run["load"] = os.getloadavg()[0]
        print(f"round {number + 1}: {run}", flush=True)
        rounds.append(run)
    return rounds


def medians(rounds: list[dict]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in ("verify", "tool_calls"):
        result[kind] = {"two_over_one": round(statistics.median(r[kind]["two_over_one"] for r in rounds), 3)}
        for arm in ARMS:
            keys = rounds[0][kind][arm]
            result[kind][arm] = {k: round(statistics.median(r[kind][arm][k] for r in rounds), 4) for k in keys}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--verify-cache-ms", default="2000", help="AUTH_VERIFY_CACHE_MS (0: one Redis MGET per /verify, no cache)"
    )
    options = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()[0], "options": vars(options)}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-hosts-") as tmp:
        work = Path(tmp)
        cluster = SentinelCluster(work / "state", replicas=1).start()
        key, secret = write_rsa_key(work / "signing.pem"), secrets.token_urlsafe(48)
        hosts: list[Host] = []
        try:
            for index, address in enumerate(ADDRESSES, start=1):
                hosts.append(Host(work / f"gw{index}", address, cluster, key, secret, options.verify_cache_ms))
                hosts[-1].start()
            # A grant written on the primary, a token signed with the shared key: every host accepts it.
            token = mint_ours(hosts[0].auth, cluster.servers[0])
            probe = {**FORWARDED, "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
            deadline = time.monotonic() + 20
            # A GET without a session is the bridge's 405: the route and the check are in place on each host.
            while any(httpx.get(f"http://{h.address}:{h.port}/mcp", headers=probe).status_code != 405 for h in hosts):
                if time.monotonic() > deadline:
                    raise SystemExit("Traefik did not route on every host: " + hosts[0].traefik.log_tail())
                time.sleep(0.2)
            meter = Meter(hosts, cluster)
            for host in hosts:  # warm every host's workers before anything is measured
                wrk(host.auth.url, {**FORWARDED, "Authorization": f"Bearer {token}"}, 8, 1)
            rounds = asyncio.run(measure(hosts, token, options, meter))
        finally:
            for host in hosts:
                host.stop()
            cluster.stop()
    results["rounds"] = rounds
    results["median"] = medians(rounds)
    cache = "" if options.verify_cache_ms == "2000" else f"-cache-{options.verify_cache_ms}"
    write_results(f"gateway_hosts{cache}", results)
    for kind, figures in results["median"].items():
        for arm, value in figures.items():
            print(f"{kind:10} {arm:12} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
