"""Legacy sessions with several gateway hosts: a session lives in one host's bridge, and Traefik on every host
routes it there by the host's prefix of its Mcp-Session-Id; when that host is gone, the others answer 404 so
the client starts a new session (as the protocol says).

Two gateway hosts on loopback, each rendered by the roles as the n-th host of a two-host gateway group
(`_gateway_session_prefix` and `_gateway_peers` as roles/gateway derives them from the inventory, given as
extra variables since both renderings run on this one machine): gw1 at 127.0.0.2 and gw2 at 127.0.0.3 (their
gateway_private_address and public listen address), the same HTTPS port (one name in front, one token
audience), each with its real Traefik and its own real `time` bridge, one auth service and Redis behind both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tests.ansible.test_gateway_through_traefik import start_bridge
from tests.bridge.rawhttp import ACCEPT_BOTH, INITIALIZE_REQUEST, legacy_headers, rpc_messages
from tests.harness.auth import AuthService
from tests.harness.gateway import DOMAIN, gateway_files
from tests.harness.github import GitHubStub
from tests.harness.names import resolve_names
from tests.harness.oauthflow import Browser, register, tokens_for
from tests.harness.playbook import read_env_file, render_cache
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until
from tests.harness.redis import RedisServer
from tests.harness.traefik import traefik_binary

pytestmark = pytest.mark.slow

ADDRESSES = {"gw1": "127.0.0.2", "gw2": "127.0.0.3"}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


@dataclass
class Hosts:
    https_port: int
    token: str
    traefik: dict[str, ManagedProcess]
    bridge: dict[str, ManagedProcess]

    def post(self, host: str, body: dict, headers: dict[str, str]) -> httpx.Response:
        """A request to the gateway's one name, which resolves to `host` (as DNS or a load balancer may send it)."""
        with resolve_names({DOMAIN: ADDRESSES[host]}), httpx.Client(verify=False, timeout=20) as client:  # noqa: S501 - Traefik's own certificate: no ACME CA here
            return client.post(
                f"https://time.{DOMAIN}:{self.https_port}/mcp",
                json=body,
                headers={"Authorization": f"Bearer {self.token}", **headers},
            )

    def initialize(self, host: str) -> str:
        response = self.post(host, INITIALIZE_REQUEST, {"Accept": ACCEPT_BOTH})
        assert response.status_code == 200, response.text
        session = response.headers["mcp-session-id"]
        notified = self.post(host, {"jsonrpc": "2.0", "method": "notifications/initialized"}, legacy_headers(session))
        assert notified.status_code == 202, notified.text
        return session


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, github_stub: GitHubStub
) -> Iterator[Hosts]:
    cache = render_cache(tmp_path_factory.getbasetemp())
    peer_port, https_port, http_port, auth_port = free_port(), free_port(), free_port(), free_port()
    files = {}
    for index, (name, address) in enumerate(ADDRESSES.items(), start=1):
        others = [(i, n, a) for i, (n, a) in enumerate(ADDRESSES.items(), start=1) if n != name]
        files[name] = gateway_files(
            cache,
            traefik_listen_address=address,
            gateway_private_address=address,
            traefik_peer_port=peer_port,
            # On one machine every host reaches the others from 127.0.0.1.
            traefik_peer_source_range=["127.0.0.0/8"],
            _gateway_session_prefix=f"gw{index}.",
            _gateway_peers=[{"name": f"gw{i}", "prefix": f"gw{i}.", "address": a} for i, _, a in others],
        )
    common = {
        "http": http_port,
        "https": https_port,
        "auth": auth_port,
        "redis": redis_server.port,
        "redis-password": redis_server.password,
        "github": github_stub.port,
        "github-client-id": github_stub.client_id,
        "github-client-secret": github_stub.client_secret,
        "acme": free_port(),  # no ACME CA: Traefik serves its own certificate
    }
    with ExitStack() as stack:
        roots, traefik, bridge = {}, {}, {}
        for name, rendered in files.items():
            ports = {n: free_port() for n in rendered.blanks.names if n.startswith("mcp-")}
            values = {**ports, **common, "traefik": free_port()}
            workdir = tmp_path_factory.mktemp(name)
            roots[name] = root = rendered.fill(workdir / "rendered", values)
            env = read_env_file(root / "etc/mcp-gateway/servers/time.env")
            assert env["MCP_PROXY_SESSION_ID_PREFIX"] == f"gw{list(ADDRESSES).index(name) + 1}."
            bridge[name] = start_bridge(name, root / "etc/mcp-gateway/servers/time.env", workdir, {})
            stack.callback(bridge[name].stop)
            traefik[name] = ManagedProcess(
                f"traefik-{name}",
                [traefik_binary(), f"--configfile={root / 'etc/traefik/traefik.yml'}"],
                log_dir=workdir,
                env=dict(os.environ),
            )
            traefik[name].start().wait_for_http(f"http://{LOOPBACK}:{values['traefik']}/ping", timeout=30)
            stack.callback(traefik[name].stop)
        auth_env = read_env_file(roots["gw1"] / "etc/mcp-gateway/auth.env")
        auth = AuthService.from_rendered_env(roots["gw1"] / "auth", auth_env, port=auth_port)
        auth.start()
        stack.callback(auth.stop)
        github_stub.set_user("octocat")
        resource = next(r["resource"] for r in json.loads(auth_env["AUTH_RESOURCES"]) if r["name"] == "time")
        browser = Browser(service=auth, github=github_stub)
        try:
            token = tokens_for(browser, register(auth), resource=resource)["access_token"]
        finally:
            browser.close()
        yield Hosts(https_port, token, traefik, bridge)


def _tools(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text)
    return [tool["name"] for tool in rpc_messages(response)[-1]["result"]["tools"]]


def test_a_legacy_session_is_served_through_either_gateway_host_by_the_host_that_holds_it(hosts: Hosts) -> None:
    on_first = hosts.initialize("gw1")
    on_second = hosts.initialize("gw2")
    assert on_first.startswith("gw1.") and on_second.startswith("gw2.")
    for session in (on_first, on_second):
        for host in ADDRESSES:
            assert "get_current_time" in _tools(hosts.post(host, CALL, legacy_headers(session)))
    # A session id no host made is unknown wherever it lands.
    assert hosts.post("gw2", CALL, legacy_headers("gw1.not-a-session")).status_code == 404


def test_a_session_of_a_gateway_host_that_is_gone_gets_404_then_a_new_session_works(hosts: Hosts) -> None:
    session = hosts.initialize("gw1")
    assert "get_current_time" in _tools(hosts.post("gw2", CALL, legacy_headers(session)))
    hosts.traefik["gw1"].stop()  # the host is gone: nothing answers on its addresses
    hosts.bridge["gw1"].stop()
    gone = hosts.post("gw2", CALL, legacy_headers(session))
    assert gone.status_code == 404, (gone.status_code, gone.text)
    # The client starts again, through the host that is left, and carries on.
    again = hosts.initialize("gw2")
    assert again.startswith("gw2.")
    assert "get_current_time" in _tools(hosts.post("gw2", CALL, legacy_headers(again)))
    # Later requests of the lost session keep getting 404, once the health check has marked the host down too.
    assert wait_until(lambda: hosts.post("gw2", CALL, legacy_headers(session)).status_code == 404, timeout=10)
