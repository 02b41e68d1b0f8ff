"""The gateway's routing as the roles deploy it, on loopback: the real Traefik run from the configuration
the traefik role renders (static `traefik.yml` and its dynamic files, see `playbook.py`), with certificates
from Pebble through the role's own ACME resolver, in front of whatever backends a test starts on the ports
the rendering names (`auth`, `mcp-<name>`). Every suite uses the same rendering, so a run renders once.

    files = gateway_files(cache)                     # one ansible-playbook per run, shared by all workers
    gateway = Gateway(workdir, files, {"auth": auth_port, "mcp-time": port, ...})
    ... start the backends, reading gateway.config_dir / "auth.env" etc. if wanted ...
    gateway.start(["auth", "time"])                  # Pebble, Traefik, certificates for these hosts
    httpx.get(gateway.url("time", "/mcp"), verify=gateway.ssl_context())
    gateway.stop()
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.names import resolve_names
from tests.harness.pebble import Pebble
from tests.harness.playbook import Blanks, RenderedFiles, example_group_vars, read_env_file, rendered
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until
from tests.harness.traefik import traefik_binary

DOMAIN = "example.test"


def resolve_test_names() -> AbstractContextManager[None]:
    """*.example.test resolves to 127.0.0.1 in this process (the names exist only in these tests)."""
    return resolve_names({DOMAIN: LOOPBACK})


def example_servers() -> list[dict[str, Any]]:
    """inventory.example's MCP servers, and `echo` (no package: its backend is a test's own server)."""
    servers = []
    for server in example_group_vars()["mcp_servers"]:
        if server["name"] == "memory":
            # Its state goes beside the rendered files (Ansible resolves the expression when rendering).
            state = {"MEMORY_FILE_PATH": "{{ gateway_config_dir }}/memory.jsonl"}
            server = {**server, "env": {**server.get("env", {}), **state}}
        servers.append(server)
    return [*servers, {"name": "echo", "pip": "none", "command": "none"}]


def gateway_files(cache: Path, blanks: Blanks | None = None, **extra: Any) -> RenderedFiles:
    """inventory.example, with `example_servers()`, rendered for a gateway on loopback: its ports, Pebble
    as the ACME CA, the GitHub stub, the API on for the tests (and `extra` variables, which may use stand-ins
    of `blanks`). Rendered once in `cache`, then reused."""
    blanks = blanks or Blanks()
    github = f"http://{LOOPBACK}:{blanks.port('github')}"
    return rendered(
        cache,
        blanks,
        gateway_domain=DOMAIN,
        gateway_http_port=blanks.port("http"),
        gateway_https_port=blanks.port("https"),
        gateway_auth_port=blanks.port("auth"),
        gateway_redis_port=blanks.port("redis"),
        render_redis_password=blanks.text("redis-password"),
        traefik_internal_address=f"{LOOPBACK}:{blanks.port('traefik')}",
        # The API shows the loaded routers; it is served on the internal loopback entry point only.
        traefik_dashboard=True,
        gateway_acme_ca_server=f"https://{LOOPBACK}:{blanks.port('acme')}/dir",
        gateway_acme_email="admin@example.test",
        auth_github_url=github,
        auth_github_api_url=f"{github}/api/v3",
        auth_github_client_id=blanks.text("github-client-id"),
        auth_github_client_secret=blanks.text("github-client-secret"),
        auth_workers=1,
        mcp_servers=[{**server, "port": blanks.port(f"mcp-{server['name']}")} for server in example_servers()],
        **extra,
    )


def certificate_served(host: str, port: int, ca_file: Path, address: str = LOOPBACK) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection((address, port), timeout=2) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


class Gateway:
    """Traefik with the roles' configuration, filled in for this gateway's ports, and its Pebble CA.

    `backends` gives the values the rendering left blank for the parts a test runs itself: `auth`, `redis`,
    `github` (ports), `redis-password`, `github-client-id`, `github-client-secret`, and `mcp-<name>` (the
    port of a server's backend; a server the test does not run gets a port nothing listens on). The files
    are written at construction, so a test can start its backends from them (`config_dir`) first.

    Several gateways (gateway hosts) may share one `pebble` that the test starts and stops; without it the
    gateway has a Pebble of its own, validating HTTP-01 and TLS-ALPN-01 on this gateway's ports.
    """

    def __init__(
        self, workdir: Path, files: RenderedFiles, backends: Mapping[str, int | str], pebble: Pebble | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.http_port, self.https_port, self.api_port = free_port(), free_port(), free_port()
        self._own_pebble = pebble is None
        self.pebble = pebble or Pebble(self.workdir / "pebble", http_port=self.http_port, tls_port=self.https_port)
        own = {"http": self.http_port, "https": self.https_port, "traefik": self.api_port}
        unused = {name: free_port() for name in files.blanks.names if name.startswith("mcp-")}
        values = {**unused, **backends, **own, "acme": self.pebble.acme_port}
        self.root = files.fill(self.workdir / "rendered", values)
        self.ca_file = self.workdir / "pebble-root.pem"
        static = yaml.safe_load((self.traefik_dir / "traefik.yml").read_text())
        # The address the public entry points listen on (traefik_listen_address; loopback by default).
        self.address = static["entryPoints"]["websecure"]["address"].rsplit(":", 1)[0] or LOOPBACK
        # As systemd starts it: the unit's EnvironmentFile (the DNS provider's settings) in its environment.
        env_file = self.traefik_dir / "traefik.env"
        provider_env = read_env_file(env_file) if env_file.exists() else {}
        self.traefik = ManagedProcess(
            "traefik",
            [traefik_binary(), f"--configfile={self.traefik_dir / 'traefik.yml'}"],
            log_dir=self.workdir,
            env={**os.environ, **provider_env, "LEGO_CA_CERTIFICATES": str(self.pebble.api_ca_path)},
        )

    @property
    def config_dir(self) -> Path:
        """The rendered gateway_config_dir: auth.env, servers/<name>.env."""
        return self.root / "etc" / "mcp-gateway"

    @property
    def traefik_dir(self) -> Path:
        return self.root / "etc" / "traefik"

    @property
    def hosts(self) -> list[str]:
        """auth and every MCP server the rendering routes (one dynamic file each)."""
        servers = sorted(p.stem.removeprefix("mcp-") for p in (self.traefik_dir / "dynamic").glob("mcp-*.yml"))
        return ["auth", *servers]

    def url(self, host: str, path: str = "") -> str:
        return f"https://{host}.{DOMAIN}:{self.https_port}{path}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the certificates Pebble issued to this gateway."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(verify=self.ssl_context(), timeout=20, **kwargs)

    def api(self, path: str) -> Any:
        """Traefik's own API (on the internal loopback entry point), e.g. `http/routers`."""
        return httpx.get(f"http://{LOOPBACK}:{self.api_port}/api/{path}", timeout=5).json()

    def serves_certificate(self, name: str) -> bool:
        """Traefik answers a handshake for `name` with a certificate for it that chains to Pebble's root."""
        return certificate_served(name, self.https_port, self.ca_file, self.address)

    def start(self, hosts: Sequence[str] | None = None, timeout: float = 120.0) -> Gateway:
        """Pebble, then Traefik; returns once each of `hosts` (default: all) is served with a certificate
        Pebble issued (Traefik asks for the others in the background)."""
        if self._own_pebble:
            self.pebble.start()
        try:
            self.pebble.write_root(self.ca_file)
            self.traefik.start().wait_for_http(f"http://{LOOPBACK}:{self.api_port}/ping", timeout=30)
            for host in self.hosts if hosts is None else hosts:
                name = f"{host}.{DOMAIN}"
                if not wait_until(lambda n=name: self.serves_certificate(n), timeout, 0.2):
                    raise AssertionError(f"no Pebble certificate for {name}; traefik log:\n{self.traefik.log_tail(40)}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.traefik.stop()
        if self._own_pebble:
            self.pebble.stop()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
