"""Measure what waiting for a replica costs a refresh on `/token` (issue 16's durable writes).

One Redis primary with two replicas and three Sentinels on loopback (tests/harness/sentinel.py), the
auth service as deployed (gunicorn, 2 workers x 4 threads) found through the Sentinels, three arms:

- `no_wait`: AUTH_REDIS_DURABLE_REPLICAS=0, the primary acknowledges alone;
- `wait_1`: AUTH_REDIS_DURABLE_REPLICAS=1, each rotation is followed by a barrier write and `WAIT 1`;
- `min_replicas`: no WAIT, the primary set to `min-replicas-to-write 1` (`min-replicas-max-lag 10`),
  the alternative the issue names: it refuses writes without a recent replica but does not wait for one.

Also, below the HTTP stack: the store's own durable write (`Store.save_client`) timed alone, without and
with the wait, which shows the wait's cost without gunicorn's and Flask's share.

Each arm refreshes one grant's token over and over (each answer's refresh token is the next request's),
first one client at a time, then `--concurrency` clients at once each with its own grant; the arms take
turns within each round so that machine load falls on all alike; medians over rounds.

    .venv/bin/python bench/token_durability.py [--rounds 3] [--requests 200] [--concurrency 8]

Prints the figures and writes them to bench/results/token_durability.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp_gateway_auth.config import load_settings  # noqa: E402
from mcp_gateway_auth.store import Store  # noqa: E402

from bench.report import write_results  # noqa: E402
from tests.harness.auth import AuthService  # noqa: E402
from tests.harness.github import GitHubStub  # noqa: E402
from tests.harness.oauthflow import ISSUER, TIME, Browser, api, refresh, register, tokens_for  # noqa: E402
from tests.harness.sentinel import SentinelCluster  # noqa: E402

ARMS = ("no_wait", "wait_1", "min_replicas")


def start_service(workdir: Path, cluster: SentinelCluster, github: GitHubStub, durable: int) -> AuthService:
    env = cluster.service_env(durable_replicas=durable)
    env.update({"AUTH_RATELIMIT_TOKEN": "1000000/minute", "AUTH_RATELIMIT_REGISTER": "1000000/minute"})
    service = AuthService(
        workdir,
        issuer=ISSUER,
        redis_url="",
        resources=[{"name": "time", "resource": TIME}],
        github_url=github.url,
        github_api_url=github.api_url,
        github_client_id=github.client_id,
        github_client_secret=github.client_secret,
        allowed_users="octocat",
        env=env,
        workers=2,
    )
    return service.start()


def grants(service: AuthService, github: GitHubStub, count: int) -> list[tuple[dict, str]]:
    """`count` clients, each with a grant and its refresh token."""
    result = []
    browser = Browser(service, github)
    try:
        for _ in range(count):
            client = register(service)
            result.append((client, tokens_for(browser, client)["refresh_token"]))
    finally:
        browser.close()
    return result


def refresh_chain(service: AuthService, grant: tuple[dict, str], requests: int) -> tuple[list[float], tuple]:
    """Refresh `requests` times in a row; the latency of each (seconds) and the grant as it ends."""
    client, token = grant
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        response = refresh(service, client, token)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"refresh answered {response.status_code}: {response.text}")
        token = response.json()["refresh_token"]
    return latencies, (client, token)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def set_min_replicas(cluster: SentinelCluster, replicas: int) -> None:
    primary = cluster.primary().client()
    try:
        primary.config_set("min-replicas-to-write", replicas)
        primary.config_set("min-replicas-max-lag", 10)
    finally:
        primary.close()


def store_writes(service: AuthService, count: int) -> list[float]:
    """`count` registrations written by the store with the service's settings (its wait included)."""
    store = Store.for_settings(load_settings(environ=service.env))
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        store.save_client({"client_id": f"bench-{index}-{time.time_ns()}"}, 60)
        latencies.append(time.perf_counter() - started)
    store.redis.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="refreshes per client per round")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results: dict = {"load_before": os.getloadavg()[0], "args": vars(args), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="bench-token-") as tmp:
        workdir = Path(tmp)
        github = GitHubStub(workdir / "github").start()
        cluster = SentinelCluster(workdir / "cluster").start()
        services = {}
        try:
            services = {
                "no_wait": start_service(workdir / "no_wait", cluster, github, 0),
                "wait_1": start_service(workdir / "wait_1", cluster, github, 1),
            }
            services["min_replicas"] = services["no_wait"]  # the same service; the primary's setting differs
            held = {arm: grants(services[arm], github, args.concurrency) for arm in ARMS}
            with api(services["no_wait"]) as http:  # warm up the pools
                http.get("/health")
            for _ in range(args.rounds):
                figures = {}
                for arm in ARMS:
                    set_min_replicas(cluster, 1 if arm == "min_replicas" else 0)
                    service = services[arm]
                    sequential, held[arm][0] = refresh_chain(service, held[arm][0], args.requests)
                    started = time.perf_counter()
                    with ThreadPoolExecutor(args.concurrency) as pool:
                        chains = [pool.submit(refresh_chain, service, grant, args.requests // 4) for grant in held[arm]]
                        answers = [chain.result() for chain in chains]
                    elapsed = time.perf_counter() - started
                    held[arm] = [grant for _, grant in answers]
                    concurrent = [latency for latencies, _ in answers for latency in latencies]
                    figures[arm] = {
                        "sequential_p50_ms": statistics.median(sequential) * 1000,
                        "sequential_p99_ms": percentile(sequential, 0.99) * 1000,
                        "concurrent_per_s": len(concurrent) / elapsed,
                        "concurrent_p50_ms": statistics.median(concurrent) * 1000,
                        "concurrent_p99_ms": percentile(concurrent, 0.99) * 1000,
                    }
                for arm in ("no_wait", "wait_1"):
                    writes = store_writes(services[arm], args.requests * 5)
                    figures[arm]["store_write_p50_ms"] = statistics.median(writes) * 1000
                    figures[arm]["store_write_p99_ms"] = percentile(writes, 0.99) * 1000
                results["rounds"].append(figures)
        finally:
            set_min_replicas(cluster, 0)
            for service in {id(s): s for s in services.values()}.values():
                service.stop()
            cluster.stop()
            github.stop()
    medians = {
        arm: {key: statistics.median(r[arm][key] for r in results["rounds"]) for key in results["rounds"][0][arm]}
        for arm in ARMS
    }
    results["medians"] = medians
    print(f"| Arm | one at a time: p50 | p99 | {args.concurrency} at once: refreshes/s | p50 | p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arm in ARMS:
        m = medians[arm]
        print(
            f"| {arm} | {m['sequential_p50_ms']:.1f} ms | {m['sequential_p99_ms']:.1f} ms | "
            f"{m['concurrent_per_s']:.0f} | {m['concurrent_p50_ms']:.1f} ms | {m['concurrent_p99_ms']:.1f} ms |"
        )
    for arm in ("no_wait", "wait_1"):
        m = medians[arm]
        print(f"store write, {arm}: p50 {m['store_write_p50_ms']:.2f} ms, p99 {m['store_write_p99_ms']:.2f} ms")
    write_results("token_durability", results)


if __name__ == "__main__":
    main()
