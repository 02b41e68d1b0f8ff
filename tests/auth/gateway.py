"""A whole gateway on loopback for end-to-end tests: Traefik (TLS from the test CA) in front of the
auth service and a small MCP endpoint, with ForwardAuth to /verify."""

from __future__ import annotations

import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.auth import AuthService
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port
from tests.harness.tls import TestCA
from tests.harness.traefik import Traefik

DOMAIN = "example.test"
ECHO_APP = Path(__file__).with_name("mcp_echo_app.py")


@contextmanager
def resolve_test_names():
    """*.example.test resolves to 127.0.0.1 in this process (the names exist only in these tests)."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and (name == DOMAIN or name.endswith("." + DOMAIN)):
            host = LOOPBACK
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


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
