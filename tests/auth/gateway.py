"""A whole gateway on loopback for end-to-end tests: Traefik (TLS from the test CA) in front of the
auth service and a small MCP endpoint, with ForwardAuth to /verify."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.auth import AuthService
from tests.harness.names import resolve_names
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port
from tests.harness.tls import TestCA
from tests.harness.traefik import Traefik

DOMAIN = "example.test"
ECHO_APP = Path(__file__).with_name("mcp_echo_app.py")


def resolve_test_names():
    """*.example.test resolves to 127.0.0.1 in this process (the names exist only in these tests)."""
    return resolve_names({DOMAIN: LOOPBACK})


def start_echo(workdir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess("mcp-echo", [sys.executable, ECHO_APP, "--port", str(port)], log_dir=workdir)
    proc.start().wait_for_port(port)
    return proc, port


def dynamic_config(auth_port: int, echo_port: int, https_port: int, cert: Any, services: list[str]) -> dict:
    routers: dict[str, Any] = {
        "auth": {
            "rule": f"Host(`auth.{DOMAIN}`) && !Path(`/verify`)",
            "entryPoints": ["websecure"],
            "service": "auth",
            "tls": {},
        }
    }
    for name in services:
        routers[f"{name}-wellknown"] = {
            "rule": f"Host(`{name}.{DOMAIN}`) && PathPrefix(`/.well-known/`)",
            "entryPoints": ["websecure"],
            "service": "auth",
            "tls": {},
        }
        routers[f"{name}-mcp"] = {
            "rule": f"Host(`{name}.{DOMAIN}`) && PathPrefix(`/mcp`)",
            "entryPoints": ["websecure"],
            "middlewares": ["verify", "strip-token"],
            "service": "echo",
            "tls": {},
        }
    return {
        "http": {
            "routers": routers,
            "middlewares": {
                "verify": {
                    "forwardAuth": {
                        "address": f"http://{LOOPBACK}:{auth_port}/verify",
                        "authResponseHeaders": ["X-Auth-User", "X-Auth-Client-Id", "X-Auth-Scope"],
                    }
                },
                "strip-token": {"headers": {"customRequestHeaders": {"Authorization": ""}}},
            },
            "services": {
                "auth": {"loadBalancer": {"servers": [{"url": f"http://{LOOPBACK}:{auth_port}"}]}},
                "echo": {"loadBalancer": {"servers": [{"url": f"http://{LOOPBACK}:{echo_port}"}]}},
            },
        },
        "tls": {"certificates": [{"certFile": str(cert.cert_path), "keyFile": str(cert.key_path)}]},
    }


@dataclass
class Gateway:
    traefik: Traefik
    auth: AuthService
    echo: ManagedProcess
    ca: TestCA

    def url(self, name: str, path: str = "") -> str:
        return f"https://{name}.{DOMAIN}:{self.traefik.https_port}{path}"

    def stop(self) -> None:
        for part in (self.traefik, self.auth, self.echo):
            part.stop()


@contextmanager
def running_gateway(workdir: Path, redis_url: str, github: Any, ca: TestCA, env: dict[str, str] | None = None):
    """Traefik + auth service + MCP endpoint for `time.example.test`, stopped on exit."""
    traefik = Traefik(workdir / "traefik", {})
    port = traefik.https_port
    cert = ca.issue(f"*.{DOMAIN}", DOMAIN, "localhost", stem=f"gateway-{port}")
    auth = AuthService(
        workdir / "auth",
        issuer=f"https://auth.{DOMAIN}:{port}",
        redis_url=redis_url,
        resources=[{"name": "time", "resource": f"https://time.{DOMAIN}:{port}/mcp"}],
        github_url=github.url,
        github_api_url=github.api_url,
        github_client_id=github.client_id,
        github_client_secret=github.client_secret,
        allowed_users="octocat",
        test_mode=True,
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
        auth.start()
        parts.append(auth)
        echo, echo_port = start_echo(workdir)
        parts.append(echo)
        traefik.start()
        parts.append(traefik)
        traefik.update(dynamic_config(auth.port, echo_port, port, cert, ["time"]))
        github.set_user("octocat")
        yield Gateway(traefik=traefik, auth=auth, echo=echo, ca=ca)
    finally:
        for part in reversed(parts):
            part.stop()
