"""Measure `/verify` (Traefik's ForwardAuth question) of the auth service against the original's.

Arms, each on its own loopback port, all answering a valid token for the same resource:

- `original`: the original system's auth service, `mcp-oauth-dynamicclient` 0.2.0 from PyPI, installed
  by this script into its own environment under `.bench/original` (never into the product) and run as
  its own command runs it (one uvicorn process); its `/verify` checks the RS256 signature and does one
  Redis GET.
- `ours`: this repository's service as deployed (gunicorn, 2 workers x 4 threads, as the auth role sets
  them), with the 2 s per-process verify cache (`AUTH_VERIFY_CACHE_MS` default).
- `ours_no_cache`: the same with `AUTH_VERIFY_CACHE_MS=0` (signature, claims and one Redis MGET per call).
- `base`, `base_no_cache` (with `--base-auth DIR`): the same two for the auth service of another tree, a
  directory holding `services/auth` (`git archive main services/auth | tar -x -C DIR`): before and after.

The load comes from `wrk` (Debian package `wrk`, installed by scripts/bootstrap): keep-alive connections,
16 and 64 at a time, the arms interleaved within each round so machine load falls on all alike; the
figures are medians over the rounds. It also counts Redis commands per valid `/verify` of our arms.

    .venv/bin/python bench/auth_verify.py [--rounds 3] [--seconds 5] [--connections 16 64]

Prints the figures and writes them to bench/results/auth_verify.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp_gateway_auth.keys import KeyRing  # noqa: E402
from mcp_gateway_auth.store import Store  # noqa: E402

from bench.report import write_results  # noqa: E402
from tests.harness.auth import AuthService, write_rsa_key  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

BENCH_DIR = REPO / ".bench"
ORIGINAL_ENV = BENCH_DIR / "original"
ORIGINAL_PACKAGE = "mcp-oauth-dynamicclient==0.2.0"
WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")

DOMAIN = "example.test"
RESOURCE = f"https://time.{DOMAIN}/mcp"
# What Traefik's ForwardAuth sends along with the client's Authorization header.
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": f"time.{DOMAIN}", "X-Forwarded-Uri": "/mcp"}


def ensure_original() -> Path:
    """The original service's interpreter, installed once into .bench/original (gitignored)."""
    python = ORIGINAL_ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ORIGINAL_ENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import mcp_oauth_dynamicclient"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", ORIGINAL_PACKAGE], check=True)
    return python


class OriginalService:
    """The original auth service: its own command, one uvicorn process, settings from the environment."""

    def __init__(self, workdir: Path, redis: RedisServer, key_path: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.key_path = key_path
        self.env = {
            "GITHUB_CLIENT_ID": "x",
            "GITHUB_CLIENT_SECRET": "y",
            "JWT_SECRET": uuid.uuid4().hex,
            "JWT_ALGORITHM": "RS256",
            "JWT_PRIVATE_KEY_B64": base64.b64encode(key_path.read_bytes()).decode(),
            "BASE_DOMAIN": DOMAIN,
            "REDIS_URL": redis.url,
            "REDIS_PASSWORD": redis.password,
            "ACCESS_TOKEN_LIFETIME": "1800",
            "REFRESH_TOKEN_LIFETIME": "2592000",
            "SESSION_TIMEOUT": "3600",
            "CLIENT_LIFETIME": "7776000",
            "ALLOWED_GITHUB_USERS": "octocat",
            "MCP_PROTOCOL_VERSION": "2025-06-18",
        }
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, python: Path) -> OriginalService:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "REDIS_", "JWT_", "GITHUB_"))}
        env.update(self.env)
        argv = [str(python), "-m", "mcp_oauth_dynamicclient", "--host", LOOPBACK, "--port", str(self.port)]
        # cwd: its settings also read a .env file from the working directory; this one has none.
        self._proc = ManagedProcess("original-auth", argv, log_dir=self.workdir, env=env, cwd=self.workdir)
        self._proc.start().wait_for_port(self.port, timeout=60)
        return self

    def mint(self, redis: RedisServer) -> str:
        """A token the original accepts: RS256 with its issuer, and its Redis record (`oauth:token:<jti>`)."""
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims = {
            "iss": f"https://auth.{DOMAIN}",
            "sub": "1",
            "username": "octocat",
            "aud": RESOURCE,
            "client_id": "bench",
            "scope": "mcp",
            "iat": now,
            "exp": now + 1800,
            "jti": jti,
        }
        client = redis.client()
        try:
            client.set(f"oauth:token:{jti}", json.dumps(claims), ex=1800)
        finally:
            client.close()
        return jwt.encode(claims, self.key_path.read_bytes(), algorithm="RS256")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


class BaseAuthService(AuthService):
    """The auth service of another tree (`--base-auth`, e.g. `git archive main services/auth | tar -x -C
    DIR`), run by this checkout's gunicorn with that tree's package first on the import path: before and
    after in one run."""

    def __init__(self, source: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.env["PYTHONPATH"] = str(source / "services" / "auth" / "src")

    def argv(self) -> list[str]:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        conf = self.source / "services" / "auth" / "gunicorn.conf.py"
        return [str(gunicorn), "-c", str(conf), "mcp_gateway_auth:create_app()"]


def ours(workdir: Path, redis: RedisServer, key_path: Path, cache_ms: str, source: Path | None = None) -> AuthService:
    """Our service as the auth role deploys it; with `source`, that tree's service instead of this one's."""
    kwargs: dict[str, Any] = {
        "issuer": f"https://auth.{DOMAIN}",
        "redis_url": redis.url,
        "resources": [{"name": "time", "resource": RESOURCE}],
        "github_url": "https://github.invalid",
        "github_api_url": "https://api.github.invalid",
        "github_client_id": "x",
        "github_client_secret": "y",
        "allowed_users": "octocat",
        "signing_keys": [key_path],
        # As the auth role deploys it: 2 workers (AUTH_THREADS stays at gunicorn.conf.py's 4).
        "workers": 2,
        "env": {"AUTH_VERIFY_CACHE_MS": cache_ms},
    }
    if source is not None:
        return BaseAuthService(source, workdir, **kwargs)
    return AuthService(workdir, **kwargs)


def mint_ours(service: AuthService, redis: RedisServer) -> str:
    store = Store(redis.url)
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


def redis_commands_per_verify(url: str, headers: dict[str, str], redis: RedisServer, count: int = 200) -> float:
    with httpx.Client(base_url=url, headers=headers) as http:
        http.get("/verify").raise_for_status()
        before = commands(redis)
        for _ in range(count):
            http.get("/verify").raise_for_status()
        return round((commands(redis) - before) / count, 3)


def wrk(url: str, headers: dict[str, str], connections: int, seconds: int, path: str = "/verify") -> dict:
    env = {**os.environ, "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(WRK_SCRIPT)]
    argv.append(url + path)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("{"))
    return json.loads(line)


def median_of(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p90_ms", "p99_ms")
    figures = {key: round(statistics.median(run[key] for run in runs), 3) for key in keys}
    figures["non_2xx"] = sum(run["non_2xx"] for run in runs)
    figures["socket_errors"] = sum(run["socket_errors"] for run in runs)
    figures["runs"] = runs
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--arms", nargs="+", default=["original", "ours", "ours_no_cache"])
    parser.add_argument("--base-auth", type=Path, help="a tree holding services/auth: the `base` arms")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/auth_verify.py needs wrk: apt-get install wrk (scripts/bootstrap installs it)", file=sys.stderr)
        return 2
    python = ensure_original() if "original" in args.arms else None
    results: dict = {"load_before": os.getloadavg()[0], "arms": {}}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        work = Path(tmp)
        key_path = write_rsa_key(work / "signing.pem")
        redis = RedisServer(work / "redis").start()
        started: list = []
        try:
            targets: dict[str, tuple[str, dict[str, str]]] = {}
            for arm in args.arms:
                if arm == "original":
                    original = OriginalService(work / arm, redis, key_path).start(python)
                    started.append(original)
                    token = original.mint(redis)
                    targets[arm] = (original.url, {**FORWARDED, "Authorization": f"Bearer {token}"})
                else:
                    cache = "0" if arm.endswith("_no_cache") else "2000"
                    source = args.base_auth.resolve() if arm.startswith("base") else None
                    service = ours(work / arm, redis, key_path, cache, source).start()
                    started.append(service)
                    token = mint_ours(service, redis)
                    targets[arm] = (service.url, {**FORWARDED, "Authorization": f"Bearer {token}"})
            for arm, (url, headers) in targets.items():
                # Warm every arm (imports, connection pools) before anything is measured.
                wrk(url, headers, 16, 1)
                per_verify = None if arm == "original" else redis_commands_per_verify(url, headers, redis)
                results["arms"][arm] = {"redis_commands_per_verify": per_verify}
            runs: dict[tuple[str, int], list[dict]] = {}
            for _ in range(args.rounds):
                for connections in args.connections:
                    for arm, (url, headers) in targets.items():
                        runs.setdefault((arm, connections), []).append(wrk(url, headers, connections, args.seconds))
            for (arm, connections), arm_runs in runs.items():
                results["arms"][arm][f"c{connections}"] = median_of(arm_runs)
        finally:
            for service in started:
                service.stop()
            redis.stop()
    write_results("auth_verify", results)
    for arm, figures in results["arms"].items():
        for connections in args.connections:
            f = figures[f"c{connections}"]
            print(
                f"{arm:14} c{connections:<3} {f['rps']:8.1f} req/s  p50 {f['p50_ms']:6.2f} ms  "
                f"p90 {f['p90_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  non-2xx {f['non_2xx']}  "
                f"socket errors {f['socket_errors']}"
            )
        if figures["redis_commands_per_verify"] is not None:
            print(f"{arm:14} Redis commands per valid /verify: {figures['redis_commands_per_verify']}")
    if "original" in results["arms"]:
        base = results["arms"]["original"]
        for arm in (a for a in results["arms"] if a != "original"):
            for connections in args.connections:
                mine, theirs = results["arms"][arm][f"c{connections}"], base[f"c{connections}"]
                print(
                    f"{arm} / original at c{connections}: throughput x{mine['rps'] / theirs['rps']:.2f}, "
                    f"p99 x{mine['p99_ms'] / theirs['p99_ms']:.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
