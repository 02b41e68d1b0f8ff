"""Measure /verify of the auth service: Redis round trips per valid token, latency, throughput.

Starts its own Redis and gunicorn (loopback, free ports), mints a grant and a token with the
service's own storage and key, then calls /verify as Traefik would. Prints the figures and writes
them to bench/results/auth_verify.json.

    .venv/bin/python bench/auth_verify.py [--requests 2000] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp_gateway_auth.keys import KeyRing  # noqa: E402
from mcp_gateway_auth.store import Store  # noqa: E402

from tests.harness.auth import AuthService  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

RESOURCE = "https://time.example.test/mcp"
HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "time.example.test", "X-Forwarded-Uri": "/mcp"}


def mint(service: AuthService, redis_url: str) -> str:
    store = Store(redis_url)
    gid = store.create_grant(user="octocat", client_id="bench", resource=RESOURCE, scope="mcp", ttl=3600)
    now = int(time.time())
    claims = {
        "iss": service.issuer,
        "sub": "octocat",
        "aud": RESOURCE,
        "client_id": "bench",
        "scope": "mcp",
        "iat": now,
        "nbf": now,
        "exp": now + 1800,
        "jti": uuid.uuid4().hex,
        "gid": gid,
    }
    return KeyRing(tuple(service.signing_keys)).sign(claims)


def commands(redis: RedisServer) -> int:
    client = redis.client()
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def run(service: AuthService, token: str, total: int, threads: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = total // threads
    errors = []

    def worker() -> None:
        local = []
        with httpx.Client(base_url=service.url, headers={**HEADERS, "Authorization": f"Bearer {token}"}) as http:
            for _ in range(per_thread):
                start = time.perf_counter()
                response = http.get("/verify")
                local.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(response.status_code)
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 3)

    return {
        "requests": len(latencies),
        "threads": threads,
        "errors": len(errors),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            for label, cache_ms in (("no_cache", "0"), ("cache_2s", "2000")):
                service = AuthService(
                    Path(tmp) / label,
                    issuer="https://auth.example.test",
                    redis_url=redis.url,
                    resources=[{"name": "time", "resource": RESOURCE}],
                    github_url="https://github.invalid",
                    github_api_url="https://api.github.invalid",
                    github_client_id="x",
                    github_client_secret="y",
                    allowed_users="octocat",
                    workers=args.workers,
                    env={"AUTH_VERIFY_CACHE_MS": cache_ms},
                )
                service.start()
                try:
                    token = mint(service, redis.url)
                    before = commands(redis)
                    sequential = run(service, token, 500, 1)
                    sequential["redis_commands_per_verify"] = round((commands(redis) - before) / 500, 3)
                    concurrent = run(service, token, args.requests, args.threads)
                    results[label] = {"sequential": sequential, "concurrent": concurrent}
                finally:
                    service.stop()
        finally:
            redis.stop()
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "auth_verify.json").write_text(json.dumps(results, indent=2))
    for label, figures in results.items():
        seq, con = figures["sequential"], figures["concurrent"]
        print(f"/verify [{label}] Redis commands per valid token: {seq['redis_commands_per_verify']}")
        print(
            f"  sequential: p50 {seq['p50_ms']} ms, p95 {seq['p95_ms']} ms, p99 {seq['p99_ms']} ms, "
            f"{seq['throughput_rps']} req/s"
        )
        print(
            f"  {con['threads']} threads: p50 {con['p50_ms']} ms, p95 {con['p95_ms']} ms, p99 {con['p99_ms']} ms, "
            f"{con['throughput_rps']} req/s, errors {con['errors']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
