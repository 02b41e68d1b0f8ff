"""The auth suite's gateway: the product's own routing (Traefik from the traefik role's rendered files,
certificates from Pebble, see tests/harness/gateway.py) in front of the auth service and a small MCP
endpoint served as `time.example.test` (the example inventory's other servers are routed to nothing)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.auth import AuthService
from tests.harness.gateway import DOMAIN, gateway_files, resolve_test_names
from tests.harness.gateway import Gateway as Routing
from tests.harness.github import GitHubStub
from tests.harness.playbook import render_cache
from tests.harness.procs import ManagedProcess, free_port
from tests.harness.redis import RedisServer
from tests.harness.tls import TestCA

__all__ = ["DOMAIN", "Gateway", "resolve_test_names", "running_gateway"]
ECHO_APP = Path(__file__).with_name("mcp_echo_app.py")


def start_echo(workdir: Path, port: int) -> ManagedProcess:
    proc = ManagedProcess("mcp-echo", [sys.executable, ECHO_APP, "--port", str(port)], log_dir=workdir)
    proc.start().wait_for_port(port)
    return proc


@dataclass
class Gateway:
    """`routing` is Traefik and Pebble; `ca_file` trusts the gateway's certificates; `test_ca` is the
    suite's own CA (for servers the auth service fetches from, such as client metadata documents)."""

    routing: Routing
    auth: AuthService
    echo: ManagedProcess
    test_ca: TestCA

    @property
    def ca_file(self) -> Path:
        return self.routing.ca_file

    def url(self, name: str, path: str = "") -> str:
        return self.routing.url(name, path)


@contextmanager
def running_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    redis: RedisServer,
    github: GitHubStub,
    ca: TestCA,
    env: Mapping[str, str] | None = None,
    time_policy: Mapping[str, Any] | None = None,
) -> Iterator[Gateway]:
    """Traefik + auth service (test settings, `env` on top) + MCP endpoint for `time.example.test`
    (`time_policy` added to its resource entry, e.g. its own `allowed_users`), stopped on exit. The
    routing files are rendered once per run, for every worker."""
    workdir = tmp_path_factory.mktemp("gateway")
    files = gateway_files(render_cache(tmp_path_factory.getbasetemp()))
    auth_port, echo_port = free_port(), free_port()
    proxy = Routing(
        workdir / "routing",
        files,
        {
            "auth": auth_port,
            "mcp-time": echo_port,
            "redis": redis.port,
            "redis-password": redis.password,
            "github": github.port,
            "github-client-id": github.client_id,
            "github-client-secret": github.client_secret,
        },
    )
    auth = AuthService(
        workdir / "auth",
        issuer=proxy.url("auth"),
        redis_url=redis.url,
        resources=[{"name": "time", "resource": proxy.url("time", "/mcp"), **(time_policy or {})}],
        github_url=github.url,
        github_api_url=github.api_url,
        github_client_id=github.client_id,
        github_client_secret=github.client_secret,
        allowed_users="octocat",
        test_mode=True,
        port=auth_port,
        env={
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(ca.cert_path),
            "AUTH_RATELIMIT_REGISTER": "1000/minute",
            "AUTH_RATELIMIT_AUTHORIZE": "1000/minute",
            "AUTH_VERIFY_CACHE_MS": "0",
            **(env or {}),
        },
    )
    parts: list[Any] = []
    try:
        parts.append(auth.start())
        echo = start_echo(workdir, echo_port)
        parts.append(echo)
        parts.append(proxy.start(["auth", "time"]))
        github.set_user("octocat")
        yield Gateway(routing=proxy, auth=auth, echo=echo, test_ca=ca)
    finally:
        for part in reversed(parts):
            part.stop()
