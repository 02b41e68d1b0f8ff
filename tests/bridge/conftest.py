"""Fixtures for the bridge suite: mcp-proxy in front of real and purpose-built stdio MCP servers.

Starting a bridge costs a second or two of CPU (the bridge's imports, then its children), so tests share
one where they leave it as they found it: `plain_bridge`, `short_timeout_bridge`, `no_spare_bridge` and
`modern_bridge` here, `real_bridge` per real server. Those tests read the log from a mark
(`Bridge.log_size()`), compare counters before and after rather than absolute values, act as users of their
own where a per-user count matters, and end the sessions they open (the `http` fixture does it for them).
A test that needs options of its own, kills children, fills a global cap or stops the bridge starts a
private one with `start_bridge`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bridge.rawhttp import PLAIN_BODY_LIMIT
from tests.harness.bridge import Bridge
from tests.harness.mcp_servers import ServerNotInstalled, mcp_server_argv

MISBEHAVING = Path(__file__).with_name("misbehaving_server.py")
MODERN_SERVER = Path(__file__).with_name("modern_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def misbehaving_argv() -> list[str]:
    """argv of the purpose-built misbehaving stdio server (handshake era only)."""
    return [sys.executable, str(MISBEHAVING)]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client for one test. The handshake-era sessions it opened are ended (DELETE, as their owner)
    afterwards: on a shared bridge each session left open would keep a child running until the idle timeout."""
    opened: dict[str, tuple[httpx.URL, dict[str, str]]] = {}

    def remember(response: httpx.Response) -> None:
        session = response.headers.get("mcp-session-id")
        if session and response.status_code == 200 and response.request.method == "POST":
            user = response.request.headers.get("x-auth-user")
            opened.setdefault(session, (response.request.url, {"X-Auth-User": user} if user else {}))

    with httpx.Client(timeout=20, event_hooks={"response": [remember]}) as client:
        yield client
        for session, (url, owner) in opened.items():
            with contextlib.suppress(httpx.TransportError):  # a test that stopped its bridge ended them all
                client.delete(url, headers={"Mcp-Session-Id": session, **owner})


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
    """A bridge in front of the small handshake-era test server, shared by most tests of the suite: the raw
    HTTP rules, and whatever a child does that leaves it running (junk on stdout, a stderr flood, big answers).
    One pool child, one spare, the default request timeout (120 s) and SSE keep-alive (15 s)."""
    bridge = Bridge(
        misbehaving_argv,
        log_dir=tmp_path_factory.mktemp("plain"),
        # Shared by many tests that each stand for another client, mostly without a user header (all
        # 'anonymous', fifty sessions at once in one test): no per-user cap below the global one. The body
        # limit lets a multi-MiB request through, and is low enough for the tests of the limit to cross it.
        options={"pool_size": 1, "max_body_bytes": PLAIN_BODY_LIMIT, "max_sessions_per_user": 100},
        # One option from the environment, as the role sets them all: the child must not inherit it.
        env={"MCP_PROXY_ALLOWED_ORIGINS": "https://inspector.example"},
        name="bridge-plain",
    ).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="session")
def short_timeout_bridge(tmp_path_factory: pytest.TempPathFactory, misbehaving_argv: list[str]) -> Iterator[Bridge]:
    """A bridge whose requests time out after 3 s and whose SSE streams carry a keep-alive every 0.3 s: for
    the tests that wait for a timeout, and for those that read a stream until nothing more comes. (Not for
    answers that must come as JSON: any answer slower than 0.3 s comes over SSE here.)"""
    bridge = Bridge(
        misbehaving_argv,
        log_dir=tmp_path_factory.mktemp("short-timeout"),
        options={"pool_size": 1, "request_timeout": 3, "sse_keepalive": 0.3},
        name="bridge-short-timeout",
    ).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="session")
def no_spare_bridge(tmp_path_factory: pytest.TempPathFactory, misbehaving_argv: list[str]) -> Iterator[Bridge]:
    """A bridge that starts no child ahead of time (a session's child is started for it), with one request in
    flight per user and a request timeout (120 s) far beyond the tests' waits, so that only an answer or a
    disconnect frees a user's slot. Its users act as users of their own and leave nothing in flight."""
    bridge = Bridge(
        misbehaving_argv,
        log_dir=tmp_path_factory.mktemp("no-spare"),
        options={"pool_size": 1, "spare_children": 0, "request_timeout": 120, "max_inflight_per_user": 1},
        name="bridge-no-spare",
    ).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="session")
def modern_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    """A bridge in front of three children of the small 2026-07-28 server (`modern_server.py`), no spares."""
    bridge = Bridge(
        [sys.executable, str(MODERN_SERVER)],
        log_dir=tmp_path_factory.mktemp("modern"),
        options={"pool_size": 3, "spare_children": 0},
        name="bridge-modern",
    ).start()
    try:
        yield bridge
    finally:
        bridge.stop()
