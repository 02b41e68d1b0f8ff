"""Run the operator's `mcp-gateway` command against a test service, as an operator would on the host.

The service's settings are written to an env file in the systemd EnvironmentFile syntax the auth
role writes (values double-quoted, `\\ " ` $` escaped), and the real console script reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness.auth import AuthService

MCP_GATEWAY = Path(sys.executable).parent / "mcp-gateway"


def env_line(name: str, value: str) -> str:
    """One line as the role's template writes it."""
    escaped = "".join("\\" + char if char in '\\"`$' else char for char in value)
    return f'{name}="{escaped}"\n'


def write_env_file(path: Path, variables: dict[str, str]) -> Path:
    path.write_text(
        "# written by the tests as the auth role writes it\n" + "".join(env_line(*kv) for kv in variables.items())
    )
    path.chmod(0o600)
    return path


def service_env_file(service: AuthService) -> Path:
    return write_env_file(
        service.workdir / "admin.env", {k: v for k, v in service.env.items() if k.startswith("AUTH_")}
    )


def run(
    service: AuthService | None,
    *args: str,
    env_file: Path | None = None,
    user: str = "root",
    stdin: str | None = None,
    **env: str,
) -> subprocess.CompletedProcess:
    """`mcp-gateway ARGS` with the service's env file; the audit line goes to stderr unless `env`
    names a syslog socket (AUTH_AUDIT_SYSLOG_SOCKET)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "MCP_GATEWAY_")) and k != "SUDO_USER"}
    full_env["AUTH_AUDIT_SYSLOG_SOCKET"] = "/nonexistent/journal.sock"
    path = env_file or (service_env_file(service) if service is not None else Path("/nonexistent/auth.env"))
    full_env.update(MCP_GATEWAY_ENV_FILE=str(path), MCP_GATEWAY_USER=user)
    full_env.update(env)
    return subprocess.run(
        [str(MCP_GATEWAY), *args],
        env=full_env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(service: AuthService, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    result = run(service, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def as_json(service: AuthService, *args: str, **kwargs: Any) -> Any:
    return json.loads(ok(service, *args, "--json", **kwargs).stdout)
