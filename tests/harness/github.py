"""Start and steer the GitHub-compatible test server (tests/harness/github_stub.py) as its own process."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port

STUB_SCRIPT = Path(__file__).with_name("github_stub.py")


class GitHubStub:
    """The stand-in for github.com: point the gateway's GitHub URL at `.url` and API URL at `.api_url`."""

    def __init__(self, workdir: Path, *, users: tuple[str, ...] = ("octocat",), auto_user: str | None = "octocat"):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.client_id = "Iv1." + secrets.token_hex(8)
        self.client_secret = secrets.token_hex(20)
        self.users = users
        self.auto_user = auto_user
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    def start(self, timeout: float = 20.0) -> GitHubStub:
        argv = [
            sys.executable,
            STUB_SCRIPT,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--client-id",
            self.client_id,
            "--client-secret",
            self.client_secret,
            "--users",
            ",".join(self.users),
            "--auto-user",
            self.auto_user or "",
        ]
        self._proc = ManagedProcess("github-stub", argv, log_dir=self.workdir)
        self._proc.start().wait_for_http(f"{self.url}/_stub/health", timeout=timeout)
        return self

    def _control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        if payload is None:
            response = httpx.get(f"{self.url}/_stub/{path}", timeout=5)
        else:
            response = httpx.post(f"{self.url}/_stub/{path}", json=payload, timeout=5)
        response.raise_for_status()
        return response.json()

    def set_user(self, login: str | None) -> None:
        """The login approved automatically at /login/oauth/authorize; None shows the login page."""
        self._control("config", {"auto_user": login or ""})

    def add_users(self, *logins: str) -> None:
        self._control("config", {"users": list(logins)})

    def set_orgs(self, login: str, orgs: list[str]) -> None:
        self._control("config", {"orgs": {login: orgs}})

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """What the stub was asked (method, path, query, headers, form), oldest first."""
        log = self._control("requests")
        return [entry for entry in log if path is None or entry["path"] == path]

    def reset_log(self) -> None:
        self._control("reset", {})

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def __enter__(self) -> GitHubStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
