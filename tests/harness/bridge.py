"""Start the stdio-to-Streamable-HTTP bridge (`mcp-proxy`) in front of a stdio MCP server, for any suite.

    from tests.harness.bridge import Bridge
    with Bridge(mcp_server_argv("time"), log_dir=tmp_path, options={"pool_size": 1}) as bridge:
        bridge.url  # http://127.0.0.1:<port>/mcp

The bridge runs in its own process group on a free loopback port; `stop()` sends SIGTERM (the bridge
stops its children), then SIGKILL to the group, so nothing is left behind.

A bridge shared by several tests keeps one log: `log_size()` before an action and `log_text(since=...)`
after it give the lines that action wrote, not those of the tests before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port


def mcp_proxy_executable() -> str:
    """The `mcp-proxy` console script next to this interpreter (installed with `pip install -e`)."""
    script = Path(sys.executable).parent / "mcp-proxy"
    if script.exists():
        return str(script)
    raise RuntimeError("mcp-proxy is not installed: pip install -e services/mcp-proxy")


class Bridge:
    """One `mcp-proxy` process. `options` are command-line options without dashes, e.g. {"pool_size": 1}."""

    def __init__(
        self,
        server_argv: Sequence[str],
        *,
        log_dir: Path,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "mcp-proxy",
        startup_timeout: float = 60.0,
        host: str = LOOPBACK,
    ) -> None:
        """`host`: the loopback address to listen on (127.0.0.x), for several gateway hosts on one machine."""
        self.port = free_port(host)
        self.host = host
        self.startup_timeout = startup_timeout
        argv = [mcp_proxy_executable(), "--host", self.host, "--port", str(self.port)]
        for key, value in (options or {}).items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        argv += ["--", *server_argv]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.process = ManagedProcess(f"{name}-{self.port}", argv, log_dir=log_dir, env=full_env, stop_timeout=10.0)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"{self.base_url}/mcp"

    def start(self) -> Bridge:
        """Start and wait until /health answers 200 (a child answers), or raise with the log tail."""
        self.process.start()
        # Plain HTTP on loopback: without verify=False each poll would build a TLS context it never uses
        # (about 30 ms of CPU each, ten times a second, on a machine shared by the whole suite).
        self.process.wait_for_http(
            f"{self.base_url}/health", timeout=self.startup_timeout, ok=lambda r: r.status_code == 200, verify=False
        )
        return self

    def stop(self) -> None:
        self.process.stop()

    def log_size(self) -> int:
        """Where the log ends now, in bytes: `log_text(since=...)` then reads only what came after."""
        try:
            return self.process.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """The bridge's log (its JSON lines and its children's stderr), from byte `since` on."""
        try:
            with self.process.log_path.open("rb") as log:
                log.seek(since)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
