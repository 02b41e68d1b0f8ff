"""A real Redis server (Debian's redis-server) on a free loopback port, with a password and AOF."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import redis as redis_py

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """Redis with the settings the gateway uses in production: password, AOF, noeviction.

    The data directory lives in `workdir`, so stop()/kill() followed by start()
    restarts the same server with its data, as a crash and restart would.
    """

    def __init__(self, workdir: Path, *, password: str | None = None, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "redis-data"
        self.password = password or secrets.token_urlsafe(24)
        self.port = port or free_port()
        self.host = LOOPBACK
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def _config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {self.host}",
                    f"port {self.port}",
                    "protected-mode yes",
                    f"requirepass {self.password}",
                    f"dir {self.data_dir}",
                    "appendonly yes",
                    "appendfsync always",
                    "maxmemory-policy noeviction",
                    'save ""',
                    "daemonize no",
                    "loglevel notice",
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        return conf

    def start(self, timeout: float = 20.0) -> RedisServer:
        conf = self._config()
        self._proc = ManagedProcess(f"redis-{self.port}", [REDIS_SERVER, conf], log_dir=self.workdir)
        self._proc.start().wait_for_port(self.port, timeout=timeout)
        # The port opens before the AOF is loaded; wait for a real answer.
        client = self.client()
        try:
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis_py.BusyLoadingError:
                    time.sleep(0.05)
        finally:
            client.close()
        return self

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, socket_timeout=5)

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        """SIGKILL: what survives this is what AOF wrote."""
        if self._proc is not None:
            self._proc.kill()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
