"""The gateway as the roles configure it, on loopback: the Traefik configuration, auth environment and
bridge environment files rendered by Ansible for inventory.example, run by the real Traefik binary (with
certificates from Pebble), the real auth service and real bridges in front of the example's MCP servers.

Seen from a client: /mcp without a token gets the 401 challenge, with a token gets through, the metadata
paths answer without authentication, /verify is not reachable, pre-flights are answered, forged identity
headers and the token never reach the backend, and SSE streams without buffering.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness.auth import AuthService
from tests.harness.gateway import DOMAIN, Gateway, example_servers, gateway_files, resolve_test_names
from tests.harness.github import GitHubStub
from tests.harness.oauthflow import Browser, register, tokens_for
from tests.harness.playbook import REPO, VENV_BIN, read_env_file, render_cache
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until
from tests.harness.redis import RedisServer

# One gateway for the module: under pytest-xdist (--dist loadgroup) its tests stay on one worker.
pytestmark = pytest.mark.slow

NODE_BIN = REPO / "node_modules" / ".bin"
IDENTITY = ("X-Auth-User", "X-Auth-Client-Id", "X-Auth-Scope")


class EchoHandler(BaseHTTPRequestHandler):
    """Backend of the extra `echo` server: shows what Traefik forwards, or streams two SSE events."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "text/event-stream" in self.headers.get("Accept", ""):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            time.sleep(2.0)
            self.wfile.write(b"data: second\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        self.do_POST()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        received: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            received.setdefault(name.lower(), []).append(value)
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class DeployedGateway:
    """The roles' routing (`routing`: Traefik and Pebble) in front of the auth service and bridges started
    from the files the roles rendered."""

    routing: Gateway
    auth: AuthService
    github: GitHubStub
    resources: dict[str, str]

    @property
    def root(self) -> Path:
        return self.routing.root

    @property
    def https_port(self) -> int:
        return self.routing.https_port

    def url(self, host: str, path: str = "") -> str:
        return self.routing.url(host, path)

    def client(self, **kwargs: Any) -> httpx.Client:
        return self.routing.client(**kwargs)

    def token(self, name: str) -> str:
        browser = Browser(service=self.auth, github=self.github)
        try:
            client = register(self.auth)
            return tokens_for(browser, client, resource=self.resources[name])["access_token"]
        finally:
            browser.close()


def start_bridge(name: str, env_file: Path, workdir: Path, extra_env: dict[str, str]) -> ManagedProcess:
    rendered = read_env_file(env_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_")}
    env.update(rendered)
    # The rendered PATH names the package's directory on a host; here the packages live in the venv
    # and node_modules, appended so the same command names resolve.
    env["PATH"] = os.pathsep.join([rendered["PATH"], str(VENV_BIN), str(NODE_BIN)])
    env.update(extra_env)
    proc = ManagedProcess(f"bridge-{name}", [str(VENV_BIN / "mcp-proxy")], log_dir=workdir, env=env)
    proc.start().wait_for_http(
        f"http://{LOOPBACK}:{rendered['MCP_PROXY_PORT']}/health", timeout=90, ok=lambda r: r.status_code == 200
    )
    return proc


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, github_stub: GitHubStub
) -> Iterator[DeployedGateway]:
    files = gateway_files(render_cache(tmp_path_factory.getbasetemp()))
    ports = {f"mcp-{server['name']}": free_port() for server in example_servers()}
    routing = Gateway(
        tmp_path_factory.mktemp("gateway"),
        files,
        {
            "auth": free_port(),
            "redis": redis_server.port,
            "redis-password": redis_server.password,
            "github": github_stub.port,
            "github-client-id": github_stub.client_id,
            "github-client-secret": github_stub.client_secret,
            **ports,
        },
    )
    auth_env = read_env_file(routing.config_dir / "auth.env")
    started: list[Any] = []
    echo = ThreadingHTTPServer((LOOPBACK, ports["mcp-echo"]), EchoHandler)
    echo.daemon_threads = True
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        auth = AuthService.from_rendered_env(
            routing.workdir / "auth", auth_env, port=int(auth_env["AUTH_BIND"].rsplit(":", 1)[1])
        )
        started.append(auth.start())
        for name in ("time", "memory"):
            started.append(start_bridge(name, routing.config_dir / "servers" / f"{name}.env", routing.workdir, {}))
        started.append(routing.start())
        github_stub.set_user("octocat")
        resources = {r["name"]: r["resource"] for r in json.loads(auth_env["AUTH_RESOURCES"])}
        with resolve_test_names():
            yield DeployedGateway(routing, auth, github_stub, resources)
    finally:
        for part in reversed(started):
            part.stop()
        echo.shutdown()
        echo.server_close()


def test_traefik_loads_every_router_and_middleware_without_errors(gateway: DeployedGateway) -> None:
    routers = {r["name"]: r for r in gateway.routing.api("http/routers")}
    middlewares = {m["name"]: m for m in gateway.routing.api("http/middlewares")}
    expected = {"auth@file"} | {f"mcp-{n}{s}@file" for n in ("time", "memory", "echo") for s in ("", "-metadata")}
    assert expected <= set(routers)
    for name in expected:
        assert routers[name]["status"] == "enabled", routers[name]
    assert all(m["status"] == "enabled" for m in middlewares.values()), middlewares
    log = re.sub(r"\x1b\[[0-9;]*m", "", gateway.routing.traefik.log_path.read_text())
    assert " ERR " not in log and " WRN " not in log, log[-3000:]


def test_plain_http_is_redirected_to_https(gateway: DeployedGateway) -> None:
    static = yaml.safe_load((gateway.root / "etc/traefik/traefik.yml").read_text())
    http_port = static["entryPoints"]["web"]["address"].rsplit(":", 1)[1]
    response = httpx.get(f"http://time.{DOMAIN}:{http_port}/mcp", timeout=10)
    assert response.status_code in (301, 308)
    assert response.headers["location"].startswith(f"https://time.{DOMAIN}:{gateway.https_port}/mcp")


def test_mcp_without_a_token_gets_the_oauth_challenge(gateway: DeployedGateway) -> None:
    with gateway.client() as http:
        response = http.post(
            gateway.url("time", "/mcp"),
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Origin": "https://x"},
        )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    prm = gateway.url("time", "/.well-known/oauth-protected-resource/mcp")
    assert f'resource_metadata="{prm}"' in challenge
    # A browser client can read the challenge: CORS exposes it on the 401 too.
    assert "WWW-Authenticate" in response.headers["access-control-expose-headers"]


def test_metadata_paths_answer_without_authentication(gateway: DeployedGateway) -> None:
    with gateway.client() as http:
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            response = http.get(gateway.url("time", path))
            assert response.status_code == 200, (path, response.text)
            assert response.json()["resource"] == gateway.resources["time"]
            assert response.json()["authorization_servers"] == [gateway.auth.issuer]
        metadata = http.get(
            gateway.url("time", "/.well-known/oauth-authorization-server"), headers={"Origin": "https://x"}
        )
        assert metadata.status_code == 200
        # One CORS answer, whoever adds it (Traefik's middleware replaces the service's own).
        assert len(metadata.headers.get_list("access-control-allow-origin")) == 1
        assert metadata.json()["issuer"] == gateway.auth.issuer
        assert http.get(gateway.url("auth", "/.well-known/oauth-authorization-server")).json() == metadata.json()


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("auth", "/verify"),
        ("auth", "/verify/"),
        ("auth", "//verify"),
        ("auth", "/./verify"),
        ("auth", "/x/../verify"),
        ("auth", "/%76erify"),
        ("auth", "/verify%2F"),
        ("time", "/verify"),
        ("time", "/.well-known/oauth-protected-resource/../../verify"),
        ("time", "/.well-known/oauth-protected-resource/..%2F..%2Fverify"),
    ],
)
def test_forward_auth_endpoint_is_not_reachable_from_outside(gateway: DeployedGateway, host: str, path: str) -> None:
    # Attack: call /verify directly (with forged forwarding headers) to learn about tokens or bypass checks.
    headers = {"X-Forwarded-Host": f"time.{DOMAIN}", "X-Forwarded-Uri": "/mcp", "X-Forwarded-Proto": "https"}
    with gateway.client() as http:
        response = http.get(gateway.url(host, path), headers=headers)
    assert response.status_code in (400, 404), (path, response.status_code, response.text[:300])
    assert not any(h.lower() in response.headers for h in IDENTITY)


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("auth", "/metrics"),
        ("auth", "/metrics/"),
        ("auth", "//metrics"),
        ("auth", "/./metrics"),
        ("auth", "/x/../metrics"),
        ("auth", "/%6Detrics"),
        ("time", "/metrics"),
        ("memory", "/metrics"),
        ("time", "/.well-known/oauth-protected-resource/../../metrics"),
    ],
)
def test_the_services_metrics_are_not_reachable_from_outside(gateway: DeployedGateway, host: str, path: str) -> None:
    # Attack: read the auth service's or a bridge's counters (clients, users, refusals) from the internet.
    with gateway.client() as http:
        response = http.get(gateway.url(host, path))
    assert response.status_code in (400, 404), (path, response.status_code, response.text[:300])
    assert "mcpgw_" not in response.text and "mcp_proxy_" not in response.text


def test_traefik_serves_its_metrics_on_the_internal_entry_point_only(gateway: DeployedGateway) -> None:
    with gateway.client() as http:
        # Traffic through a router and a service, so that their series exist.
        assert http.get(gateway.url("time", "/.well-known/oauth-protected-resource/mcp")).status_code == 200
    internal = httpx.get(f"http://{LOOPBACK}:{gateway.routing.api_port}/metrics", timeout=10)
    assert internal.status_code == 200
    for series in ("traefik_entrypoint_requests_total", "traefik_router_requests_total", "traefik_tls_certs_not_after"):
        assert series in internal.text, series
    static = yaml.safe_load((gateway.root / "etc/traefik/traefik.yml").read_text())
    http_port = static["entryPoints"]["web"]["address"].rsplit(":", 1)[1]
    # Attack: read Traefik's metrics on a public entry point, under any name it serves or none.
    with gateway.client() as http:
        for host in ("auth", "time", "memory"):
            response = http.get(gateway.url(host, "/metrics"))
            assert response.status_code == 404, (host, response.status_code)
            assert "traefik_" not in response.text
        for host in ("auth", "time", "unrouted"):
            plain = http.get(f"http://{host}.{DOMAIN}:{http_port}/metrics")
            assert plain.status_code in (301, 308) and "traefik_" not in plain.text


def test_cors_preflight_is_answered_without_authentication(gateway: DeployedGateway) -> None:
    headers = {
        "Origin": "https://inspector.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version, mcp-session-id",
    }
    with gateway.client() as http:
        response = http.options(gateway.url("time", "/mcp"), headers=headers)
    assert response.status_code in (200, 204)
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"} <= allowed
    assert {"mcp-method", "mcp-name"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def _rpc(http: httpx.Client, url: str, token: str, message: dict, session: str | None = None) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    if session:
        headers["Mcp-Session-Id"] = session
    return http.post(url, json=message, headers=headers)


def _result(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


@pytest.mark.parametrize(("name", "tool"), [("time", "get_current_time"), ("memory", "create_entities")])
def test_a_token_gets_through_to_the_mcp_server(gateway: DeployedGateway, name: str, tool: str) -> None:
    token = gateway.token(name)
    url = gateway.url(name, "/mcp")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    with gateway.client() as http:
        response = _rpc(http, url, token, initialize)
        assert response.status_code == 200, response.text
        session = response.headers["mcp-session-id"]
        assert _result(response)["result"]["serverInfo"]
        notified = _rpc(http, url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert notified.status_code == 202
        tools = _rpc(http, url, token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
        assert tools.status_code == 200
        assert tool in [t["name"] for t in _result(tools)["result"]["tools"]]
        # Security headers from the gateway ride on every answer.
        assert "max-age=" in tools.headers["strict-transport-security"]
        assert tools.headers["x-content-type-options"] == "nosniff"


def test_a_token_for_one_server_is_refused_by_another(gateway: DeployedGateway) -> None:
    # Attack: replay a token issued for time.<domain> against memory.<domain> (no audience binding).
    token = gateway.token("time")
    with gateway.client() as http:
        response = _rpc(http, gateway.url("memory", "/mcp"), token, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code in (401, 403)


def test_forged_identity_headers_and_the_token_never_reach_the_backend(gateway: DeployedGateway) -> None:
    # Attack: claim another identity in the headers ForwardAuth sets, under their names and their aliases.
    token = gateway.token("echo")
    forged = {
        "X-Auth-User": "mallory",
        "X_Auth_User": "mallory",
        "X.Auth.User": "mallory",
        "X-Auth-Scope": "admin",
        "Authorization": f"Bearer {token}",
    }
    with gateway.client() as http:
        response = http.post(gateway.url("echo", "/mcp"), json={}, headers=forged)
    assert response.status_code == 200, response.text
    received = response.json()
    assert received["x-auth-user"] == ["octocat"]
    assert "mallory" not in json.dumps(received) and "admin" not in received.get("x-auth-scope", [""])[0].split()
    assert "authorization" not in received
    assert not {"x_auth_user", "x.auth.user"} & set(received)


def test_forged_identity_without_a_token_is_refused(gateway: DeployedGateway) -> None:
    with gateway.client() as http:
        response = http.post(gateway.url("echo", "/mcp"), json={}, headers={"X-Auth-User": "octocat"})
    assert response.status_code == 401


def test_sse_streams_through_without_buffering(gateway: DeployedGateway) -> None:
    token = gateway.token("echo")
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    with gateway.client() as http, http.stream("GET", gateway.url("echo", "/mcp"), headers=headers) as response:
        assert response.status_code == 200
        started = time.monotonic()
        events = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append((line[5:].strip(), time.monotonic() - started))
            if len(events) == 2:
                break
    assert [e[0] for e in events] == ["first", "second"]
    # The first event arrives while the backend still holds the stream open (it sleeps 2 s before the second).
    assert events[0][1] < 1.0, events
    assert events[1][1] >= 1.5, events


def test_the_access_log_keeps_no_query_string(gateway: DeployedGateway) -> None:
    # Attack: read the access log (the journal, on a host) for what travels in URLs: the upstream
    # authorization code and state of a login, and a bearer token a client put in the query string.
    code, state = "upstream-code-0f1e2d3c4b5a", "upstream-state-a5b4c3d2e1f0"
    token = gateway.token("time")
    with gateway.client() as http:
        http.get(gateway.url("auth", f"/callback?code={code}&state={state}"))
        refused = http.post(gateway.url("time", f"/mcp?access_token={token}"), json={"jsonrpc": "2.0", "id": 1})
    assert refused.status_code == 401  # a token in the query string is no credential
    traefik = gateway.routing.traefik
    assert wait_until(lambda: '"POST /mcp' in traefik.log_path.read_text(), 10, interval=0.2), traefik.log_tail(20)
    log = traefik.log_path.read_text()
    assert '"GET /callback ' in log  # the request is still logged, without its query string
    for secret in (code, state, token, token.split(".")[2]):
        assert secret not in log, traefik.log_tail(20)


def test_the_health_url_a_load_balancer_checks_is_served_on_the_public_entry_point(gateway: DeployedGateway) -> None:
    # docs/scale-out.md: an external load balancer checks https://auth.<domain>/health on each gateway host;
    # it passes through Traefik and the auth service to Redis, and is never cached on the way.
    with gateway.client() as client:
        response = client.get(gateway.url("auth", "/health"))
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
