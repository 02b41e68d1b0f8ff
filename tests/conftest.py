"""Fixtures shared by every suite: real servers on free loopback ports, always torn down.

Suites add their own fixtures in their folder's conftest.py (tests/auth/, tests/bridge/, ...).
At the end of the run the suite fails if any process it started is still alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.github import GitHubStub
from tests.harness.mcp_servers import mcp_server_argv as _mcp_server_argv
from tests.harness.pebble import Pebble
from tests.harness.procs import leftover_groups, stray_descendants
from tests.harness.redis import RedisServer
from tests.harness.tls import TestCA
from tests.harness.traefik import Traefik


@pytest.fixture(scope="session")
def harness_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder for the session's servers (logs, configs, data)."""
    return tmp_path_factory.mktemp("harness")


@pytest.fixture(scope="session")
def redis_server(harness_dir: Path) -> Iterator[RedisServer]:
    """One Redis for the session (password, AOF). Tests that restart Redis make their own RedisServer."""
    server = RedisServer(harness_dir / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers (for kill/restart tests); all stopped after the test."""
    started: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", **kwargs).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def github_stub(harness_dir: Path) -> Iterator[GitHubStub]:
    """The GitHub-compatible test server; auto-approves `octocat` unless told otherwise."""
    stub = GitHubStub(harness_dir / "github").start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture(scope="session")
def test_ca(harness_dir: Path) -> TestCA:
    """A throwaway CA for TLS between test parts (not ACME: see `acme_traefik`)."""
    return TestCA(harness_dir / "ca")


@pytest.fixture
def traefik_factory(tmp_path: Path) -> Iterator[Callable[..., Traefik]]:
    """Start real Traefik instances with a given dynamic configuration; all stopped after the test."""
    started: list[Traefik] = []

    def start(dynamic_config: dict[str, Any] | str | None = None, **kwargs: Any) -> Traefik:
        proxy = Traefik(tmp_path / f"traefik-{len(started)}", dynamic_config, **kwargs)
        started.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def acme_traefik(tmp_path: Path) -> Iterator[Callable[..., tuple[Traefik, Pebble]]]:
    """Traefik whose certificate resolver `acme` is a real Pebble CA; returns (traefik, pebble).

    Pebble resolves every name to 127.0.0.1 and validates against this Traefik's entry points,
    so routers with `tls: {certResolver: acme}` get certificates through the real ACME flow.
    """
    started: list[Any] = []

    def start(dynamic_config: dict[str, Any] | str | None = None, *, challenge: str = "tls") -> tuple[Traefik, Pebble]:
        proxy = Traefik(tmp_path / "traefik-acme", dynamic_config)
        pebble = Pebble(tmp_path / "pebble", http_port=proxy.http_port, tls_port=proxy.https_port)
        started.append(pebble)
        pebble.start()
        acme: dict[str, Any] = {"caServer": pebble.directory_url, "email": "admin@example.test"}
        if challenge == "tls":
            acme["tlsChallenge"] = {}
        else:
            acme["httpChallenge"] = {"entryPoint": "web"}
        proxy.acme = acme
        proxy.env = {"LEGO_CA_CERTIFICATES": str(pebble.api_ca_path)}
        started.append(proxy)
        proxy.start()
        return proxy, pebble

    try:
        yield start
    finally:
        for part in reversed(started):
            part.stop()


@pytest.fixture(scope="session")
def mcp_server_argv() -> Callable[[str], list[str]]:
    """`mcp_server_argv("time"|"fetch"|"memory"|"everything")`: argv of a real stdio MCP server."""
    return _mcp_server_argv


# Modules whose tests share an expensive session-wide server (one per xdist worker) run on one worker.
SCENARIOS = "tests/hosts/test_molecule_scenarios.py"
SHARED_WORKER = {
    module: group
    for group, modules in {
        "auth-gateway": (
            "tests/auth/test_cors.py",
            "tests/auth/test_proxy_trust.py",
            "tests/auth/test_sdk_end_to_end.py",
            "tests/auth/test_consent_in_chromium.py",
        ),
    }.items()
    for module in modules
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The throwaway-host scenario is by far the longest test, so it goes first; modules with slow tests
    follow, then the rest (`scripts/test` keeps this order: --no-loadscope-reorder)."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("hosts"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist `--dist loadscope`: each module's tests run together on one worker (a module-scoped
    server starts once, not once per worker), and the modules of SHARED_WORKER share one. Each molecule
    scenario (they share nothing; GATEWAY_TEST_OPERATOR=1 adds a second one) gets a worker of its own."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module == SCENARIOS:
                return nodeid
            return SHARED_WORKER.get(module, module)

    return ModuleScheduling(config, log)


def _leftovers() -> list[str]:
    """What this process started that is still alive."""
    lines = [f"process group {pgid} is still alive" for pgid in leftover_groups()]
    lines += [f"pid {pid} is still alive: {cmd}" for pid, cmd in stray_descendants()]
    return lines


_worker_leftovers: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, on the controller: collect what a worker reported left running."""
    output = getattr(node, "workeroutput", None) or {}
    _worker_leftovers.extend(f"[{output.get('workerid', '?')}] {line}" for line in output.get("leftovers", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything the tests started outlived them (under pytest-xdist each worker checks
    its own processes and the controller reports them all)."""
    lines = _leftovers()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["leftovers"] = lines
        return
    lines += _worker_leftovers
    if lines:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "processes left running after the suite:\n  " + "\n  ".join(lines)
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
