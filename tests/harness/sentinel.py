"""Redis replication failed over by Redis Sentinel, as on the state hosts: a primary, two replicas and
three Sentinels (`redis-server --sentinel`, what Debian's redis-sentinel runs), each on a free loopback
port, with a password on Redis and another on Sentinel.

The Sentinel timeouts are short (down after 1 s) so that a failover takes a few seconds, not the
production defaults' half a minute; the mechanism is the same.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import redis as redis_py

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until
from tests.harness.redis import REDIS_SERVER, RedisServer

MASTER_NAME = "mcp-gateway"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelServer:
    """One Sentinel. Its configuration file is its own to rewrite (Sentinel records what it learns)."""

    def __init__(self, workdir: Path, *, password: str, master: RedisServer) -> None:
        self.workdir = Path(workdir)
        self.password = password
        self.master = master
        self.port = free_port()
        self._proc: ManagedProcess | None = None

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "sentinel.conf"
        if conf.exists():
            return conf  # a restart keeps what this Sentinel learnt, as the packaged one does
        name = MASTER_NAME
        conf.write_text(
            "\n".join(
                [
                    f"bind {LOOPBACK}",
                    f"port {self.port}",
                    "daemonize no",
                    f"dir {self.workdir}",
                    f"requirepass {self.password}",
                    # The Sentinels find each other through the primary and talk with this password.
                    f"sentinel sentinel-pass {self.password}",
                    f"sentinel monitor {name} {self.master.host} {self.master.port} {QUORUM}",
                    f"sentinel auth-pass {name} {self.master.password}",
                    f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {name} 1",
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        return conf

    def start(self, timeout: float = 20.0) -> SentinelServer:
        conf = self._config()
        self._proc = ManagedProcess(f"sentinel-{self.port}", [REDIS_SERVER, conf, "--sentinel"], log_dir=self.workdir)
        self._proc.start().wait_for_port(self.port, timeout=timeout)
        return self

    def client(self) -> redis_py.Redis:
        return redis_py.Redis(LOOPBACK, self.port, password=self.password, socket_timeout=2, decode_responses=True)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


class SentinelCluster:
    """servers[0] starts as the primary, servers[1:] as its replicas; three Sentinels watch them."""

    def __init__(self, workdir: Path, *, replicas: int = 2, sentinels: int = 3) -> None:
        self.workdir = Path(workdir)
        self.password = secrets.token_urlsafe(24)
        self.sentinel_password = secrets.token_urlsafe(24)
        primary = RedisServer(self.workdir / "redis-0", password=self.password)
        self.servers = [primary] + [
            RedisServer(
                self.workdir / f"redis-{i + 1}", password=self.password, replica_of=(primary.host, primary.port)
            )
            for i in range(replicas)
        ]
        self.sentinels = [
            SentinelServer(self.workdir / f"sentinel-{i}", password=self.sentinel_password, master=primary)
            for i in range(sentinels)
        ]

    # -- what the auth service is given ---------------------------------------------------------
    @property
    def sentinel_addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    def service_env(self, durable_replicas: int = 1, durable_timeout_ms: int = 1000) -> dict[str, str]:
        """The auth service's Redis settings, as roles/auth's env template writes them with a `redis` group."""
        return {
            "AUTH_REDIS_URL": "",
            "AUTH_REDIS_SENTINELS": self.sentinel_addresses,
            "AUTH_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "AUTH_REDIS_PASSWORD": self.password,
            "AUTH_REDIS_SENTINEL_PASSWORD": self.sentinel_password,
            "AUTH_REDIS_DURABLE_REPLICAS": str(durable_replicas),
            "AUTH_REDIS_DURABLE_TIMEOUT_MS": str(durable_timeout_ms),
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> SentinelCluster:
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        if not wait_until(self._settled, timeout, interval=0.2):
            raise RuntimeError("the Sentinels did not all see the primary, its replicas and each other in time")
        return self

    def _settled(self) -> bool:
        """Every replica is in sync, and every Sentinel knows the replicas and the other Sentinels."""
        try:
            info = self.servers[0].client().info("replication")
            synced = sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")
            if synced < len(self.servers) - 1:
                return False
            for sentinel in self.sentinels:
                client = sentinel.client()
                try:
                    master = client.sentinel_master(MASTER_NAME)
                finally:
                    client.close()
                if master["num-slaves"] < len(self.servers) - 1:
                    return False
                if master["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
            return True
        except redis_py.RedisError:
            return False

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests look at -------------------------------------------------------------------
    def primary_address(self) -> tuple[str, int] | None:
        """The primary as the Sentinels' majority names it now."""
        votes: dict[tuple[str, int], int] = {}
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis_py.RedisError, TypeError):
                continue
            finally:
                client.close()
            votes[(host, int(port))] = votes.get((host, int(port)), 0) + 1
        for address, count in votes.items():
            if count >= QUORUM:
                return address
        return None

    def server_at(self, address: tuple[str, int]) -> RedisServer:
        return next(s for s in self.servers if (s.host, s.port) == address)

    def primary(self) -> RedisServer:
        address = self.primary_address()
        if address is None:
            raise RuntimeError("the Sentinels agree on no primary")
        return self.server_at(address)

    def role(self, server: RedisServer) -> str:
        """'master' or 'slave', as the server itself says (ROLE)."""
        client = server.client()
        try:
            return client.role()[0].decode()
        finally:
            client.close()
