# ruff: noqa: F811  (the client tests' `target` fixture is imported, then named by the tests that use it)
"""Clients other than the Python SDK use a gateway that site.yml provisioned onto a throwaway guest.

Run by molecule's verify (molecule/shared/verify-client.yml) beside test_converged_gateway.py, or by
hand with the same variables:

    GATEWAY_GUEST=cl-demo PEBBLE_API_CA=.guests/demo/pebble-api/ca.pem \\
        .venv/bin/pytest -m hosts tests/hosts/test_every_client_kind.py

Skipped when GATEWAY_GUEST is not set. Each client is the real program from npm (pinned in
package.json), started as its users start it; the person's browser is the login robot of
test_converged_gateway.py (consent page, then the login in the guest: the GitHub-compatible server, or
the OpenID Connect provider of a guest configured for it, GATEWAY_LOGIN_URL):

- the TypeScript SDK with its own OAuthClientProvider (tests/hosts/ts_sdk_client.mjs): dynamic
  registration, the authorization URL printed, the code back on its loopback server, tools listed and
  one called on each service; its token for one service is refused by the other, and its login for
  the test inventory's `restricted` server, which admits another user only, ends in access_denied;
- mcp-remote as a stdio-only client (Claude Desktop's way) starts it: this test speaks MCP over its
  stdin and stdout while the robot opens the URL it prints and is sent to its loopback callback; it is
  refused on `restricted` too;
- the MCP Inspector's CLI (`--cli`), given a token the Python SDK client obtained (`--header`), and
  logging in itself (the URL it prints, its loopback callback), its stored token serving a second
  run; refused on `restricted`.

Node children find the guest through tests/hosts/resolve_names.mjs (preloaded with NODE_OPTIONS)
and trust Pebble's roots through NODE_EXTRA_CA_CERTS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.hosts.test_converged_gateway import (
    DOMAIN,
    GUEST_NAME,
    RESTRICTED,
    TOOL_CALLS,
    Browser,
    MemoryStorage,
    Target,
    bearer_status,
    call_twice,
    provider_for,
    target,  # noqa: F401  (the fixture, named by the tests below)
)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

if not GUEST_NAME:
    pytest.skip("GATEWAY_GUEST names no converged guest", allow_module_level=True)

import anyio  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NPX = shutil.which("npx") or "npx"


def node_env(target: Target, home: Path) -> dict[str, str]:
    """What a Node client needs to reach the guest: its names, Pebble's roots, and a home of its own
    (clients keep tokens there: ~/.mcp-auth, ~/.mcp-inspector)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "NODE_OPTIONS": f"--import={HERE / 'resolve_names.mjs'}",
        "GATEWAY_RESOLVE": f"{DOMAIN}={target.address}",
        "NODE_EXTRA_CA_CERTS": str(target.root_ca),
        # never a real browser: mcp-remote's opener (xdg-open) runs $BROWSER, here a no-op
        "BROWSER": "true",
        "npm_config_update_notifier": "false",
    }


def robot_for(target: Target, authorization_url: str) -> Browser:
    """The login robot, sent back to wherever the client registered (its loopback server)."""
    redirect_uri = parse_qs(urlsplit(authorization_url).query)["redirect_uri"][0]
    return Browser(target, callback=redirect_uri, deliver=True)


def test_typescript_sdk_logs_in_and_calls_a_tool_on_two_services(target: Target, tmp_path: Path) -> None:
    plan = {
        "use": [
            {"url": target.url(name, "/mcp"), "tool": tool, "arguments": arguments}
            for name, (tool, arguments) in sorted(TOOL_CALLS.items())
        ],
        "refused": [target.url(RESTRICTED, "/mcp")],
    }
    script = subprocess.Popen(
        ["node", str(HERE / "ts_sdk_client.mjs"), json.dumps(plan)],
        cwd=REPO,
        env=node_env(target, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    robots: list[Browser] = []
    results: list[dict] = []
    try:
        assert script.stdout is not None
        for line in script.stdout:
            message = json.loads(line)
            if "authorize" in message:
                robots.append(robot_for(target, message["authorize"]))
                robots[-1].authorize(message["authorize"])
            else:
                results.append(message)
        status = script.wait(timeout=60)
    finally:
        script.kill()
    assert status == 0, script.stderr.read() if script.stderr else status
    by_server = {result["server"]: result for result in results}
    assert set(by_server) == {target.url(name, "/mcp") for name in [*TOOL_CALLS, RESTRICTED]}
    assert len(robots) == len(TOOL_CALLS) + 1, "one login per service (each its own audience)"
    # the person logs in and approves, and the gateway sends the client away with no code
    refused = by_server[target.url(RESTRICTED, "/mcp")]
    assert refused["refused"] == "access_denied", refused
    assert "may not use this service" in refused["description"], refused
    assert "code" not in robots[-1].returned and robots[-1].returned["state"], robots[-1].returned
    for robot in robots:
        assert any(url.startswith(target.login) for url in robot.history), f"login not at {target.login}"
    for robot in robots[: len(TOOL_CALLS)]:
        assert "code" in robot.returned and "state" in robot.returned
    for name, (tool, _) in TOOL_CALLS.items():
        result = by_server[target.url(name, "/mcp")]
        assert tool in result["tools"]
        assert result["call"]["isError"] is False, result
        assert result["client_id"], "dynamically registered"
    # the token the TypeScript client holds for time is no credential for memory
    token = by_server[target.url("time", "/mcp")]["access_token"]
    assert bearer_status(target, "time", token) not in (401, 403)
    assert bearer_status(target, "memory", token) == 401


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


MCP_REMOTE_PRINTS = r"Please authorize this client by visiting:\s+(\S+)"
INSPECTOR_PRINTS = r"Please navigate to:\s+(\S+)"


def follow_printed_url(
    target: Target, log: Path, robots: list[Browser], errors: list[BaseException], printed_as: str = MCP_REMOTE_PRINTS
) -> None:
    """Wait for the authorization URL a CLI client prints on stderr, then log in as the person would."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        printed = re.search(printed_as, log.read_text(errors="replace"))
        if printed:
            try:
                robots.append(robot_for(target, printed.group(1)))
                robots[-1].authorize(printed.group(1))
            except BaseException as exc:  # noqa: BLE001  (shown by the test, not lost in the thread)
                errors.append(exc)
            return
        time.sleep(0.2)
    errors.append(TimeoutError("mcp-remote printed no authorization URL"))


async def through_mcp_remote(params: StdioServerParameters, errlog: Path, tool: str, arguments: dict) -> dict:
    with errlog.open("w") as stderr, anyio.fail_after(90):
        async with Client(stdio_client(params, errlog=stderr), mode="legacy") as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, arguments)
    return {"tools": [t.name for t in tools.tools], "is_error": result.is_error, "content": result.content}


@dataclass
class McpRemote:
    """mcp-remote as Claude Desktop's configuration starts it (`npx mcp-remote URL PORT`), its home and
    token folder in the test's tmp_path, and the login robot watching its stderr for the URL it prints."""

    params: StdioServerParameters
    errlog: Path
    config: Path
    robots: list[Browser] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @classmethod
    def start(cls, target: Target, service: str, tmp_path: Path, *options: str) -> McpRemote:
        home = tmp_path / "home"
        home.mkdir()
        config = home / ".mcp-auth"
        params = StdioServerParameters(
            command=NPX,
            args=["--no-install", "mcp-remote", target.url(service, "/mcp"), str(free_port()), *options],
            env=node_env(target, home) | {"MCP_REMOTE_CONFIG_DIR": str(config)},
            cwd=REPO,
        )
        run = cls(params, tmp_path / "mcp-remote.log", config)
        run.errlog.touch()
        args = (target, run.errlog, run.robots, run.errors)
        threading.Thread(target=follow_printed_url, args=args, daemon=True).start()
        return run

    def said(self) -> str:
        return self.errlog.read_text(errors="replace")


# mcp-remote's default (and Claude Desktop's configuration) is the handshake era, whose sessions it never
# ends (no DELETE when its stdin closes): each run keeps two of octocat's sessions on time (3 by default)
# until the bridge's idle timeout (30 min) or restart. Run after test_converged_gateway.py (as verify
# does), which restarts that bridge; alone, a second run within the half hour gets 503 "Too many open
# sessions". The second service goes through mcp-remote's `--protocol auto` (no session).
@pytest.mark.parametrize(("service", "protocol"), [("time", []), ("memory", ["--protocol", "auto"])])
def test_mcp_remote_as_a_stdio_client_logs_in_and_calls_a_tool(
    target: Target, service: str, protocol: list[str], tmp_path: Path
) -> None:
    tool, arguments = TOOL_CALLS[service]
    run = McpRemote.start(target, service, tmp_path, *protocol)
    try:
        out = anyio.run(through_mcp_remote, run.params, run.errlog, tool, arguments)
    except BaseException as exc:
        raise AssertionError(f"{exc!r}; mcp-remote said:\n{run.said()[-3000:]}") from exc
    assert run.errors == []
    assert tool in out["tools"]
    assert out["is_error"] is False, out
    assert len(run.robots) == 1 and any(url.startswith(target.login) for url in run.robots[0].history)
    assert "code" in run.robots[0].returned
    # mcp-remote keeps its client and tokens where it was told to (not in the real home)
    kept = [path.name for path in run.config.rglob("*") if path.is_file()]
    assert any(name.endswith("_tokens.json") for name in kept), kept


def test_mcp_remote_is_refused_on_a_server_its_user_may_not_use(target: Target, tmp_path: Path) -> None:
    run = McpRemote.start(target, RESTRICTED, tmp_path)
    # mcp-remote gives up and exits: whatever the SDK client makes of that, it gets no connection
    with pytest.raises(Exception) as refused:
        anyio.run(through_mcp_remote, run.params, run.errlog, *TOOL_CALLS["memory"])
    assert run.errors == [] and len(run.robots) == 1, (run.errors, refused.value)
    assert "code" not in run.robots[0].returned, run.robots[0].returned
    assert f"Authorization failed: access_denied - {target.refusal}" in run.said(), run.said()[-3000:]
    kept = [path.name for path in run.config.rglob("*") if path.is_file()]
    assert not any(name.endswith("_tokens.json") for name in kept), kept


def run_inspector(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One run of the Inspector's CLI to its end, its output kept for the assertions."""
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def python_sdk_token(target: Target) -> Iterator[str]:
    storage = MemoryStorage()
    anyio.run(call_twice, target, "time", provider_for(target, "time", storage, Browser(target)), "auto")
    assert storage.tokens
    yield storage.tokens.access_token


def test_inspector_cli_calls_a_tool_with_a_bearer_token(target: Target, python_sdk_token: str, tmp_path: Path) -> None:
    tool, arguments = TOOL_CALLS["time"]
    # the 2026-07-28 era holds no session: the CLI never ends one (no DELETE), and each run would keep
    # one of the user's few sessions on the server until it idles out
    inspector = [NPX, "--no-install", "mcp-inspector", "--cli", target.url("time", "/mcp"), "--transport", "http"]
    inspector += ["--protocol-era", "modern"]
    common = ["--format", "json", "--header", f"Authorization: Bearer {python_sdk_token}"]
    env = node_env(target, tmp_path)
    listed = run_inspector([*inspector, "--method", "tools/list", *common], env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert tool in [t["name"] for t in json.loads(listed.stdout)["result"]["tools"]]
    args = [f"--tool-arg={key}={value}" for key, value in arguments.items()]
    called = run_inspector([*inspector, "--method", "tools/call", "--tool-name", tool, *args, *common], env)
    assert called.returncode == 0, called.stderr[-2000:]
    result = json.loads(called.stdout)["result"]
    assert result.get("isError") in (None, False), called.stdout
    assert result["structuredContent"]["timezone"] == "UTC", called.stdout
    # without the token the same command is refused: the header is what let it in
    refused = run_inspector([*inspector, "--method", "tools/list", "--format", "json", "--stored-auth-only"], env)
    assert refused.returncode != 0
    assert json.loads(refused.stdout or refused.stderr)["error"]["code"] == "auth_required", refused


def test_inspector_cli_logs_in_itself_lists_tools_then_calls_one_with_the_stored_token(
    target: Target, tmp_path: Path
) -> None:
    tool, arguments = TOOL_CALLS["time"]
    inspector = [NPX, "--no-install", "mcp-inspector", "--cli", target.url("time", "/mcp"), "--transport", "http"]
    inspector += ["--protocol-era", "modern", "--format", "json"]
    inspector += ["--callback-url", f"http://127.0.0.1:{free_port()}/oauth/callback"]
    # without a terminal the CLI logs in only when told it may open a browser (here $BROWSER, a no-op);
    # its secrets (client and tokens) go to a file in its home, the test's tmp_path
    env = node_env(target, tmp_path) | {"MCP_AUTO_OPEN_ENABLED": "true", "MCP_INSPECTOR_SECRET_STORE": "file"}
    errlog = tmp_path / "inspector.log"
    robots: list[Browser] = []
    errors: list[BaseException] = []
    with errlog.open("w") as stderr:
        first = subprocess.Popen(
            [*inspector, "--method", "tools/list"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        follow_printed_url(target, errlog, robots, errors, INSPECTOR_PRINTS)
        listed, _ = first.communicate(timeout=60)
    assert errors == [] and first.returncode == 0, (errors, errlog.read_text()[-2000:])
    assert tool in [t["name"] for t in json.loads(listed)["result"]["tools"]]
    assert len(robots) == 1 and any(url.startswith(target.login) for url in robots[0].history)
    # a second run uses what the first stored, and must not start a login
    args = [f"--tool-arg={key}={value}" for key, value in arguments.items()]
    stored_only = [*inspector, "--method", "tools/call", "--tool-name", tool, *args, "--stored-auth-only"]
    called = run_inspector(stored_only, env)
    assert called.returncode == 0, called.stderr[-2000:]
    result = json.loads(called.stdout)["result"]
    assert result.get("isError") in (None, False) and result["structuredContent"]["timezone"] == "UTC", result


def test_inspector_cli_is_refused_on_a_server_its_user_may_not_use(target: Target, tmp_path: Path) -> None:
    inspector = [NPX, "--no-install", "mcp-inspector", "--cli", target.url(RESTRICTED, "/mcp"), "--transport", "http"]
    inspector += ["--protocol-era", "modern", "--format", "json", "--method", "tools/list"]
    inspector += ["--callback-url", f"http://127.0.0.1:{free_port()}/oauth/callback"]
    env = node_env(target, tmp_path) | {"MCP_AUTO_OPEN_ENABLED": "true", "MCP_INSPECTOR_SECRET_STORE": "file"}
    errlog = tmp_path / "inspector.log"
    robots: list[Browser] = []
    errors: list[BaseException] = []
    with errlog.open("w") as stderr:
        run = subprocess.Popen(inspector, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        follow_printed_url(target, errlog, robots, errors, INSPECTOR_PRINTS)
        out, _ = run.communicate(timeout=60)
    said = errlog.read_text()
    assert errors == [] and len(robots) == 1, errors
    assert "code" not in robots[0].returned, robots[0].returned
    assert run.returncode != 0, out
    # the CLI shows the gateway's error_description of the access_denied redirect
    assert target.refusal in said, said[-2000:]
