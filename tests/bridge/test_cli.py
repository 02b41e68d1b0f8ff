"""The command line: loopback only, every option from the environment too, the command from MCP_PROXY_COMMAND."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.bridge.rawhttp import modern_request
from tests.harness.bridge import mcp_proxy_executable
from tests.harness.procs import ManagedProcess, free_port, wait_until

OPTIONS = [
    "--host",
    "--port",
    "--uds",
    "--uds-mode",
    "--allowed-origins",
    "--max-sessions",
    "--max-sessions-per-user",
    "--pool-size",
    "--session-idle-timeout",
    "--request-timeout",
    "--max-body-bytes",
    "--max-message-bytes",
    "--max-inflight",
    "--max-inflight-per-user",
    "--user-header",
    "--restart-backoff-reset",
]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [mcp_proxy_executable(), *args],
        capture_output=True,
        text=True,
        # Far beyond the two seconds it takes on an idle machine: on a loaded one the imports alone took 30.
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_explains_every_option_and_its_variable() -> None:
    result = _run(["--help"])
    assert result.returncode == 0
    for option in OPTIONS:
        assert option in result.stdout
        assert "MCP_PROXY_" + option[2:].upper().replace("-", "_") in result.stdout
    assert "MCP_PROXY_COMMAND" in result.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])  # noqa: S104 - refused, never bound
def test_a_public_address_is_refused(host: str, misbehaving_argv: list[str]) -> None:
    result = _run(["--host", host, "--port", "1", "--", *misbehaving_argv])
    assert result.returncode != 0
    assert "loopback" in result.stderr


def test_a_public_address_from_the_environment_is_refused(misbehaving_argv: list[str]) -> None:
    result = _run(["--", *misbehaving_argv], env={"MCP_PROXY_HOST": "0.0.0.0"})  # noqa: S104
    assert result.returncode != 0 and "loopback" in result.stderr


@pytest.mark.parametrize("prefix", ["gw 1.", "gw1\\.", "x" * 33, "gw\u00e9."])
def test_a_session_id_prefix_that_a_header_or_a_route_would_mangle_is_refused(
    prefix: str, misbehaving_argv: list[str]
) -> None:
    result = _run(["--session-id-prefix", prefix, "--port", "1", "--", *misbehaving_argv])
    assert result.returncode == 2 and "--session-id-prefix" in result.stderr and "at most 32" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        *(("max_sessions_per_user", value) for value in ("0", "-1", "two")),
        # Above --max-inflight (1024 by default) too: it would never be reached, so it is a mistake.
        *(("max_inflight_per_user", value) for value in ("0", "-1", "two", "1025")),
    ],
)
def test_a_bad_per_user_cap_is_a_clear_error(option: str, value: str, misbehaving_argv: list[str]) -> None:
    by_flag = _run(["--" + option.replace("_", "-"), value, "--", *misbehaving_argv])
    by_variable = _run(["--", *misbehaving_argv], env={"MCP_PROXY_" + option.upper(): value})
    for result in (by_flag, by_variable):
        assert result.returncode == 2, result.stderr
        assert option.upper() in result.stderr.upper().replace("-", "_")


def test_no_command_is_a_clear_error() -> None:
    result = _run(["--port", "1"], env={"MCP_PROXY_COMMAND": ""})
    assert result.returncode != 0 and "command" in result.stderr


def test_check_config_reads_the_file_as_systemd_does_and_starts_nothing(tmp_path: Path) -> None:
    env_file = tmp_path / "time.env"
    # The forms the roles write (double quotes, \\ escapes) and the others systemd reads.
    env_file.write_text(
        "# a comment\n; another\n"
        'MCP_PROXY_PORT="8931"\n'
        "MCP_PROXY_POOL_SIZE = 3  \n"
        "MCP_PROXY_ALLOWED_ORIGINS='https://a.example'\n"
        'MCP_PROXY_COMMAND="server --name \\"two words\\" \\$HOME \\`x\\`"\n'
    )
    result = _run(["--check-config", str(env_file)], env={"MCP_PROXY_PORT": "not read"})
    assert result.returncode == 0, result.stderr
    assert "server --name 'two words' '$HOME' '`x`'" in result.stdout


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('MCP_PROXY_PORT="80x"', "MCP_PROXY_PORT='80x' is not a valid int"),
        ("MCP_PROXY_HOST=0.0.0.0", "is not a loopback address"),
        ("MCP_PROXY_LOG_LEVEL=loud", "--log-level 'loud' is not one of debug, info, warning, error"),
        ("MCP_PROXY_PORTT=8931", "unknown variable MCP_PROXY_PORTT"),
        ('MCP_PROXY_ALLOWED_ORIGINS="https://a.example', "is never closed"),
        ("BAD NAME=1", "'BAD NAME' is not an environment variable name"),
    ],
)
def test_check_config_refuses_a_bad_file_saying_why(tmp_path: Path, line: str, message: str) -> None:
    env_file = tmp_path / "time.env"
    env_file.write_text(f"MCP_PROXY_COMMAND=server\n{line}\n")
    result = _run(["--check-config", str(env_file)])
    assert result.returncode == 2
    assert "mcp-proxy: error: " in result.stderr and message in result.stderr


def test_everything_from_the_environment(tmp_path: Path, misbehaving_argv: list[str]) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MCP_PROXY_PORT": str(port),
        "MCP_PROXY_POOL_SIZE": "1",
        "MCP_PROXY_USER_HEADER": "X-Remote-User",
        "MCP_PROXY_COMMAND": shlex.join(misbehaving_argv),
    }
    with ManagedProcess("env-bridge", [mcp_proxy_executable()], log_dir=tmp_path, env=env) as proc:
        proc.wait_for_http(f"http://127.0.0.1:{port}/health", ok=lambda r: r.status_code == 200, verify=False)
        body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "env"}})
        response = httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers, timeout=20)
        assert response.json()["result"]["content"][0]["text"] == "env"


def test_serving_on_a_unix_socket(tmp_path: Path, misbehaving_argv: list[str]) -> None:
    socket_path = tmp_path / "bridge.sock"
    argv = [mcp_proxy_executable(), "--uds", str(socket_path), "--pool-size", "1", "--", *misbehaving_argv]
    with ManagedProcess("uds-bridge", argv, log_dir=tmp_path) as proc:
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://bridge", timeout=5) as http:

            def healthy() -> bool:
                try:
                    return http.get("/health").status_code == 200
                except httpx.TransportError:
                    return False  # the socket is not there yet

            assert wait_until(lambda: healthy() or not proc.running(), timeout=30) and healthy(), proc.log_tail()
            assert stat.S_IMODE(socket_path.stat().st_mode) == 0o660, "not world-writable: only Traefik's group"
            body, headers = modern_request("tools/list")
            assert http.post("/mcp", json=body, headers=headers).status_code == 200


def test_served_by_gunicorns_uvicorn_worker(tmp_path: Path, misbehaving_argv: list[str]) -> None:
    gunicorn = Path(mcp_proxy_executable()).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed")
    port = free_port()
    env = {**os.environ, "MCP_PROXY_POOL_SIZE": "1", "MCP_PROXY_COMMAND": shlex.join(misbehaving_argv)}
    argv = [
        str(gunicorn),
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "mcp_gateway_proxy.app:from_environment()",
    ]
    with ManagedProcess("gunicorn-bridge", argv, log_dir=tmp_path, env=env) as proc:
        proc.wait_for_http(f"http://127.0.0.1:{port}/health", ok=lambda r: r.status_code == 200, verify=False)
        body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "gunicorn"}})
        response = httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers, timeout=20)
        assert response.json()["result"]["content"][0]["text"] == "gunicorn"
