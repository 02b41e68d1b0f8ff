"""Start the auth service (services/auth) under real gunicorn on a free loopback port.

    service = AuthService(tmp_path, issuer="https://auth.example.test", redis_url=redis.url,
                          github_url=stub.url, github_api_url=stub.api_url,
                          github_client_id=stub.client_id, github_client_secret=stub.client_secret,
                          resources=[{"name": "time", "resource": "https://time.example.test/mcp"}],
                          allowed_users="octocat").start()
    ...
    service.stop()

`start()` waits for /health; `stop()` ends the whole process group (master and workers) and
`kill()` does so with SIGKILL, as a crash would. A signing key is generated in the work folder
unless `signing_keys` names PEM files. `env` adds or overrides AUTH_* variables (and others).
`metrics_dir` is where the workers keep their counters (PROMETHEUS_MULTIPROC_DIR), as the unit's
RuntimeDirectory does.

The service refuses every test-only AUTH_TEST_* setting (such as AUTH_TEST_CIMD_ALLOWED_HOSTS)
unless it runs in test mode: pass `test_mode=True`, which sets AUTH_TEST_MODE=1 and makes the
service log a warning at start. Production never sets it (the auth role refuses AUTH_TEST_* names).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "services" / "auth" / "gunicorn.conf.py"


def write_rsa_key(path: Path, bits: int = 2048) -> Path:
    """An unencrypted RSA private key in PEM, mode 0600."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


class AuthService:
    """The auth service as its own gunicorn process group; `.url` is its loopback base URL."""

    def __init__(
        self,
        workdir: Path,
        *,
        issuer: str,
        redis_url: str,
        resources: Sequence[Mapping[str, Any]],
        github_url: str,
        github_api_url: str,
        github_client_id: str,
        github_client_secret: str,
        allowed_users: str | Sequence[str] = "*",
        signing_keys: Sequence[Path] | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        workers: int = 1,
        test_mode: bool = False,
        host: str = LOOPBACK,
    ) -> None:
        """`host`: the loopback address to bind (127.0.0.x), for several gateway hosts on one machine."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.signing_keys = list(signing_keys or [write_rsa_key(self.workdir / "signing-1.pem")])
        users = allowed_users if isinstance(allowed_users, str) else ",".join(allowed_users)
        self.env: dict[str, str] = {
            "AUTH_BIND": f"{host}:{self.port}",
            "AUTH_WORKERS": str(workers),
            "AUTH_ISSUER": issuer,
            "AUTH_REDIS_URL": redis_url,
            "AUTH_GITHUB_URL": github_url,
            "AUTH_GITHUB_API_URL": github_api_url,
            "AUTH_GITHUB_CLIENT_ID": github_client_id,
            "AUTH_GITHUB_CLIENT_SECRET": github_client_secret,
            "AUTH_ALLOWED_GITHUB_USERS": users,
            "AUTH_SIGNING_KEYS": ",".join(str(p) for p in self.signing_keys),
            "AUTH_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTH_RESOURCES": json.dumps(list(resources)),
            # The workers' shared counters, in a directory of the service's own as the unit provides.
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics"),
        }
        if test_mode:
            self.env["AUTH_TEST_MODE"] = "1"
        self.env.update(env or {})
        self._proc: ManagedProcess | None = None

    @classmethod
    def from_rendered_env(cls, workdir: Path, auth_env: Mapping[str, str], *, port: int) -> AuthService:
        """The service as the auth role's rendered env file (`auth_env`) describes it, on `port`; the
        signing key is written where the file points, as the role seeds the key directory."""
        keys = Path(auth_env["AUTH_SIGNING_KEYS"])
        write_rsa_key(keys / "signing-key.pem")
        return cls(
            workdir,
            issuer=auth_env["AUTH_ISSUER"],
            redis_url=auth_env["AUTH_REDIS_URL"],
            resources=json.loads(auth_env["AUTH_RESOURCES"]),
            github_url=auth_env["AUTH_GITHUB_URL"],
            github_api_url=auth_env["AUTH_GITHUB_API_URL"],
            github_client_id=auth_env["AUTH_GITHUB_CLIENT_ID"],
            github_client_secret=auth_env["AUTH_GITHUB_CLIENT_SECRET"],
            signing_keys=[keys],
            env=auth_env,
            port=port,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.env["AUTH_ISSUER"]

    @property
    def metrics_dir(self) -> Path:
        return Path(self.env["PROMETHEUS_MULTIPROC_DIR"])

    @property
    def log_path(self) -> Path:
        return self.workdir / "auth.log"

    def argv(self) -> list[str]:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        return [str(gunicorn), "-c", str(GUNICORN_CONF), "mcp_gateway_auth:create_app()"]

    def start(self, timeout: float = 30.0) -> AuthService:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
        env.update(self.env)
        self._proc = ManagedProcess("auth", self.argv(), log_dir=self.workdir, env=env, cwd=REPO)
        self._proc.start().wait_for_http(f"{self.url}/health", timeout=timeout, ok=lambda r: r.status_code == 200)
        return self

    @property
    def pid(self) -> int:
        """The gunicorn master's process id."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def log_tail(self, lines: int = 60) -> str:
        return self._proc.log_tail(lines) if self._proc else "(not started)"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def restart(self, timeout: float = 30.0) -> AuthService:
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> AuthService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
