"""A real Redis server (Debian's redis-server) on a free loopback port, with a password and AOF."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import redis as redis_py

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """Redis with the settings the gateway uses in production: password, AOF, noeviction.

    The data directory lives in `workdir`, so stop()/kill() followed by start()
    restarts the same server with its data, as a crash and restart would.

    A test that must see an empty store needs no server of its own: `claim_database()` hands it one
    of the server's logical databases (`url_for(db)`), empty, that nothing else in this process uses.
    """

    DATABASES = 16  # Redis's default number of logical databases; 0 is the one `url` names

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        port: int | None = None,
        replica_of: tuple[str, int] | None = None,
    ) -> None:
        """`replica_of`: start as a replica of that server (same password, as on the state hosts)."""
        self.workdir = Path(workdir)
        self.replica_of = replica_of
        self.data_dir = self.workdir / "redis-data"
        self.password = password or secrets.token_urlsafe(24)
        self.port = port or free_port()
        self.host = LOOPBACK
        self._proc: ManagedProcess | None = None
        self._claimed: set[int] = {0}

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    def claim_database(self) -> int:
        """A logical database nobody in this process has claimed, emptied (a server outlives the tests
        that wrote to it, and AOF keeps what they wrote across a restart)."""
        free = [db for db in range(self.DATABASES) if db not in self._claimed]
        if not free:
            raise RuntimeError(f"all {self.DATABASES} databases of redis-{self.port} are claimed")
        self._claimed.add(free[0])
        client = self.client(free[0])
        try:
            client.flushdb()
        finally:
            client.close()
        return free[0]

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
                    # Replicas authenticate to the primary with the shared password; every server has
                    # it, since Sentinel may make any of them the primary.
                    f"masterauth {self.password}",
                    *([f"replicaof {self.replica_of[0]} {self.replica_of[1]}"] if self.replica_of else []),
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

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis_py.BusyLoadingError:
                return False

        try:
            if not wait_until(answers, timeout):
                raise RuntimeError(f"redis-{self.port} was still loading its data after {timeout}s")
        finally:
            client.close()
        return self

    def client(self, db: int = 0) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url_for(db), socket_timeout=5)

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
