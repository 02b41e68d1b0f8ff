"""Fixtures for the bridge suite: mcp-proxy in front of real and purpose-built stdio MCP servers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.harness.bridge import Bridge
from tests.harness.mcp_servers import ServerNotInstalled, mcp_server_argv

MISBEHAVING = Path(__file__).with_name("misbehaving_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def misbehaving_argv() -> list[str]:
    """argv of the purpose-built misbehaving stdio server (handshake era only)."""
    return [sys.executable, str(MISBEHAVING)]


@pytest.fixture
def start_bridge(tmp_path: Path) -> Iterator[Callable[..., Bridge]]:
    """Start bridges for one test: start_bridge(argv, pool_size=1, ...); all stopped afterwards."""
    started: list[Bridge] = []

    def start(argv: list[str], env: dict[str, str] | None = None, **options: Any) -> Bridge:
        bridge = Bridge(argv, log_dir=tmp_path, options=options, env=env)
        started.append(bridge)
        return bridge.start()

    try:
        yield start
    finally:
        for bridge in started:
            bridge.stop()


@pytest.fixture(scope="session")
def real_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Bridge]]:
    """real_bridge("time"|"fetch"|"memory"|"everything"): one shared bridge per real server for the session."""
    log_dir = tmp_path_factory.mktemp("bridges")
    bridges: dict[str, Bridge] = {}

    def get(name: str) -> Bridge:
        if name not in bridges:
            try:
                argv = mcp_server_argv(name)
            except ServerNotInstalled as exc:
                pytest.skip(str(exc))
            if name == "fetch":
                argv += ["--allow-private-ips"]  # the only page it is pointed at is our loopback one
            bridges[name] = Bridge(argv, log_dir=log_dir, options={"pool_size": 2}, name=f"bridge-{name}").start()
        return bridges[name]

    try:
        yield get
    finally:
        for bridge in bridges.values():
            bridge.stop()


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body, kind = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            body = b"<html><head><title>Bridge test</title></head><body><h1>Hello from loopback</h1></body></html>"
            kind = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def loopback_site() -> Iterator[str]:
    """A tiny web page on loopback for mcp-server-fetch to fetch (the only URL it is pointed at)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/page.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def plain_bridge(tmp_path_factory: pytest.TempPathFactory, misbehaving_argv: list[str]) -> Iterator[Bridge]:
    """A bridge in front of the small handshake-era test server, shared by the raw HTTP tests."""
    bridge = Bridge(
        misbehaving_argv,
        log_dir=tmp_path_factory.mktemp("plain"),
        # Shared by many tests that each stand for another client, mostly without a user header (all
        # 'anonymous'), and not all of them end their sessions: no per-user cap below the global one.
        options={
            "pool_size": 1,
            "max_body_bytes": 65536,
            "allowed_origins": "https://inspector.example",
            "max_sessions_per_user": 100,
        },
        name="bridge-plain",
    ).start()
    try:
        yield bridge
    finally:
        bridge.stop()
