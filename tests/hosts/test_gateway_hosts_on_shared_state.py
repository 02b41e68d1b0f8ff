"""Two gateway hosts on one shared state, provisioned by site.yml onto five guests (molecule/multi).

Run by molecule's verify (molecule/multi/verify.yml), or by hand against a converged scenario:

    GATEWAY_GUEST=mh-gw1 GATEWAY_GUESTS=mh-gw1,mh-gw2 GATEWAY_STATE_GUESTS=mh-st1,mh-st2,mh-st3 \\
    GATEWAY_REDIS_PASSWORD=... GATEWAY_SENTINEL_PASSWORD=... PEBBLE_API_CA=.../pebble-api/ca.pem \\
        .venv/bin/pytest -m hosts tests/hosts/test_gateway_hosts_on_shared_state.py

What clients observe when a part of a two-host gateway fails (docs/scale-out.md, "What happens to whom"):
- Real clients register, log in, refresh and call tools through both gateway hosts in a bounded loop (the
  official Python SDK as a client of each protocol revision for the calls). The Redis primary is killed
  (SIGKILL) in the middle: clients see a short burst of 503 with Retry-After, then carry on; every
  registration, grant and refresh token the gateway acknowledged is still there afterwards (counted); the
  killed server comes back as a replica of the one the Sentinels promoted, not as a second primary.
- One gateway host is stopped: 2026-07-28 clients carry on through the other with the same tokens; a
  legacy session held by the stopped host's bridge is answered 404 through the other, and the client's
  new session there needs no new login.

Names of the test domain resolve, in this process only, to the gateway host a step goes through. Each
gateway guest runs its own Pebble; TLS is verified against both roots.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

GATEWAYS = [name for name in os.environ.get("GATEWAY_GUESTS", "").split(",") if name]
STATE = [name for name in os.environ.get("GATEWAY_STATE_GUESTS", "").split(",") if name]
REDIS_PASSWORD = os.environ.get("GATEWAY_REDIS_PASSWORD", "")
SENTINEL_PASSWORD = os.environ.get("GATEWAY_SENTINEL_PASSWORD", "")
SENTINEL_MASTER = os.environ.get("GATEWAY_SENTINEL_MASTER", "mcp-gateway")

if len(GATEWAYS) < 2 or len(STATE) < 3 or not os.environ.get("GATEWAY_GUEST"):
    pytest.skip("GATEWAY_GUESTS/GATEWAY_STATE_GUESTS name no converged multi-host scenario", allow_module_level=True)

# imported after the skip: the SDK is only needed when a gateway is there to talk to
import anyio  # noqa: E402
import httpx  # noqa: E402
import httpx2  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tests.harness.names import resolve_names  # noqa: E402
from tests.harness.oauthflow import pkce  # noqa: E402
from tests.harness.procs import wait_until  # noqa: E402
from tests.hosts.test_converged_gateway import (  # noqa: E402
    CALLBACK,
    DOMAIN,
    GUEST,
    PEBBLE_MANAGEMENT_PORT,
    REVISIONS,
    TOOL_CALLS,
    Browser,
    MemoryStorage,
    Target,
    call_twice,
    offering,
    provider_for,
)

SERVICE = "time"
RESOURCE = f"https://{SERVICE}.{DOMAIN}/mcp"
KILL_AFTER = 4.0  # seconds of traffic before the primary is killed
SETTLED_ROUNDS = 12  # successes after the last failure that end the loop
LOOP_BUDGET = 120.0
# Sentinel's down-after (the role's default, 5 s) and an election; the test's clients back off briefly.
BURST_BUDGET = 30.0
# How long the killed primary stays down: longer than the failover, so the Sentinels promote a replica
# (systemd would restart a crashed Redis in 0.1 s, from its append-only file, and no failover would happen).
RESTART_AFTER = 40


def guest(name: str, *command: str, check: bool = True) -> str:
    # one argument: ssh hands the command to the guest's shell, which would split it again
    done = subprocess.run([str(GUEST), "ssh", name, shlex.join(command)], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"{name}: {' '.join(command)}: {done.stderr.strip()}"
    return done.stdout


def described(name: str) -> dict:
    done = subprocess.run([str(GUEST), "status", name, "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[0]


def redis_cli(name: str, *command: str, sentinel: bool = False, check: bool = True) -> list[str]:
    port = ["-p", "26379"] if sentinel else []
    password = SENTINEL_PASSWORD if sentinel else REDIS_PASSWORD
    return guest(name, "redis-cli", *port, "--no-auth-warning", "-a", password, *command, check=check).split()


def primary_address() -> str:
    """The primary's private address, as a majority of the Sentinels that answer name it."""
    named = []
    for name in STATE:
        answer = redis_cli(name, "sentinel", "get-master-addr-by-name", SENTINEL_MASTER, sentinel=True)
        if answer:
            named.append(answer[0])
    assert named, "no Sentinel answered"
    return max(set(named), key=named.count)


@dataclass
class Gateways:
    """The gateway hosts (by guest name) and the state hosts' private addresses."""

    targets: dict[str, Target]
    state_addresses: dict[str, str]  # private address -> guest name

    @contextmanager
    def on(self, name: str) -> Iterator[Target]:
        """Resolve the test domain to gateway host `name` (nested: the innermost wins)."""
        with resolve_names({DOMAIN: self.targets[name].address}):
            yield self.targets[name]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Gateways:
    api_ca = os.environ.get("PEBBLE_API_CA")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=api_ca) if api_ca else False
    roots = tmp_path_factory.mktemp("pebble") / "roots.pem"
    bundle = ""
    descriptions = {name: described(name) for name in GATEWAYS}
    for description in descriptions.values():
        # Pebble's API certificate names 127.0.0.1 and localhost; reach each guest's by name
        with resolve_names({"localhost": description["address"]}):
            root = httpx.get(f"https://localhost:{PEBBLE_MANAGEMENT_PORT}/roots/0", verify=verify, timeout=10)
        root.raise_for_status()
        bundle += root.text.strip() + "\n"
    roots.write_text(bundle)
    targets = {name: Target(d["address"], roots, d["kind"], api_ca) for name, d in descriptions.items()}
    return Gateways(targets, {described(name)["lan_address"]: name for name in STATE})


# --- what a client does, step by step, through whichever host the names resolve to -------------------


@dataclass
class Ledger:
    """What the clients were told is stored, and what they saw while a part failed."""

    clients: list[dict] = field(default_factory=list)  # registrations answered 201
    # One refresh token per acknowledged grant: the newest the client was given (kept on a failure).
    grants: list[tuple[dict, str]] = field(default_factory=list)
    refreshes: int = 0
    calls: int = 0  # SDK tool calls that succeeded
    unavailable: list[float] = field(default_factory=list)  # when each failure was seen
    failures: list[str] = field(default_factory=list)  # what each was
    after_recovery: int = 0  # successes after the last failure

    def ok(self) -> None:
        self.after_recovery += 1

    def failed(self, what: str) -> None:
        self.unavailable.append(time.monotonic())
        self.failures.append(what)
        self.after_recovery = 0


def unavailable(response: httpx.Response) -> str:
    """A refusal the client is told to retry: 503 with Retry-After, in the service's error shape."""
    assert response.status_code == 503, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    assert int(response.headers["retry-after"]) > 0, response.headers
    return f"503 {response.request.url.path}"


def api(target: Target) -> httpx.Client:
    return httpx.Client(base_url=target.url("auth"), verify=target.tls(), timeout=30)


def register(target: Target, ledger: Ledger) -> None:
    with api(target) as http:
        response = http.post(
            "/register",
            json={
                "client_name": "multi-host test client",
                "redirect_uris": [CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            },
        )
    if response.status_code == 201:
        ledger.clients.append(response.json())
        ledger.ok()
    else:
        ledger.failed(unavailable(response))


def authorize(target: Target, client: dict, challenge: str) -> httpx.Response | dict[str, str]:
    """A person's way through the authorization: the code and state it ends with, or the 503 on the way."""
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": CALLBACK,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(16),
        "resource": RESOURCE,
        "scope": "mcp",
    }
    url, method, data = target.url("auth", "/authorize?" + urlencode(query)), "GET", None
    with httpx.Client(timeout=30, verify=target.tls(), follow_redirects=False) as http:
        for _ in range(12):
            response = http.request(method, url, data=data)
            method, data = "GET", None
            if response.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers["location"])
                if url.startswith(CALLBACK):
                    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                continue
            if response.status_code != 200:
                return response
            # the consent page: approve it (Browser does the same for the SDK clients)
            csrf = response.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            pending = response.text.split('name="pending" value="', 1)[1].split('"', 1)[0]
            url, method = target.url("auth", "/consent"), "POST"
            data = {"csrf": csrf, "pending": pending, "decision": "approve"}
    raise AssertionError(f"too many redirects from {url}")


def login(target: Target, ledger: Ledger, client: dict) -> None:
    verifier, challenge = pkce()
    outcome = authorize(target, client, challenge)
    if isinstance(outcome, httpx.Response):
        ledger.failed(unavailable(outcome))
        return
    assert "code" in outcome, outcome
    with api(target) as http:
        response = http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": outcome["code"],
                "redirect_uri": CALLBACK,
                "client_id": client["client_id"],
                "code_verifier": verifier,
                "resource": RESOURCE,
            },
        )
    # a code whose exchange failed is dropped, as a client does: it starts a new login
    if response.status_code == 200:
        ledger.grants.append((client, response.json()["refresh_token"]))
        ledger.ok()
    else:
        ledger.failed(unavailable(response))


def refresh_response(target: Target, client: dict, token: str) -> httpx.Response:
    with api(target) as http:
        return http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client["client_id"]},
        )


def refresh(target: Target, ledger: Ledger, index: int) -> None:
    client, token = ledger.grants[index]
    response = refresh_response(target, client, token)
    if response.status_code == 200:
        ledger.grants[index] = (client, response.json()["refresh_token"])
        ledger.refreshes += 1
        ledger.ok()
    else:
        # the client keeps the token it sent and tries it again later
        ledger.failed(unavailable(response))


@dataclass
class SdkClient:
    """The official SDK's client of one protocol revision, logged in once; its browser counts logins."""

    revision: str
    storage: MemoryStorage
    browser: Browser
    provider: OAuthClientProvider

    @property
    def logins(self) -> int:
        return len(self.browser.history)


def sdk_client(target: Target, revision: str) -> SdkClient:
    storage = MemoryStorage()
    browser = Browser(target)
    client = SdkClient(revision, storage, browser, provider_for(target, SERVICE, storage, browser))
    with offering(revision) as mode:
        out = anyio.run(call_twice, target, SERVICE, client.provider, mode)
    assert out["first_error"] is False and out["refreshed"] is True and out["protocol"] == revision, out
    return client


async def call_once(target: Target, provider: OAuthClientProvider, mode: str) -> bool:
    tool, arguments = TOOL_CALLS[SERVICE]
    async with httpx2.AsyncClient(auth=provider, verify=target.tls(), timeout=30) as http:
        async with Client(streamable_http_client(target.url(SERVICE, "/mcp"), http_client=http), mode=mode) as client:
            return not (await client.call_tool(tool, arguments)).is_error


def sdk_call(target: Target, ledger: Ledger, client: SdkClient) -> None:
    logins = client.logins
    try:
        with offering(client.revision) as mode:
            failure = "" if anyio.run(call_once, target, client.provider, mode) else "the tool answered an error"
    except Exception as exc:  # noqa: BLE001  (a failed call while the state fails over: counted, shown)
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # the SDK's task groups wrap it
            exc = exc.exceptions[0]
        failure = f"{type(exc).__name__}: {str(exc)[:160]}"
    # a failure must not cost the login: a 401 would have sent the client's browser to sign in again
    assert client.logins == logins, f"the {client.revision} client was sent to log in again ({failure})"
    if failure:
        ledger.failed(f"{client.revision} call: {failure}")
    else:
        ledger.calls += 1
        ledger.ok()


# --- the tests ---------------------------------------------------------------------------------------------


def test_the_state_hosts_are_one_primary_two_replicas_and_three_sentinels_that_want_passwords(
    gateways: Gateways,
) -> None:
    primary = gateways.state_addresses[primary_address()]
    roles = {name: redis_cli(name, "role") for name in STATE}
    assert [name for name, role in roles.items() if role[0] == "master"] == [primary], roles
    primary_address_ = next(address for address, name in gateways.state_addresses.items() if name == primary)
    for name, role in roles.items():
        if name != primary:
            assert role[:2] == ["slave", primary_address_] and "connected" in role, (name, role)
    for name in STATE:
        known = redis_cli(name, "sentinel", "sentinels", SENTINEL_MASTER, sentinel=True)
        assert known.count("name") == len(STATE) - 1, f"{name} knows {known.count('name')} other Sentinels"
    # Attack: from a gateway host on the private network, talk to Redis and to a Sentinel without the password.
    for port in ("6379", "26379"):
        probe = (
            f"import socket; s = socket.create_connection(({primary_address_!r}, {port}), 5); "
            "s.sendall(b'PING\\r\\n'); print(s.recv(200))"
        )
        answer = guest(GATEWAYS[0], "python3", "-c", probe)
        assert "NOAUTH" in answer, (port, answer)
    # Every gateway host answers its health URL: its auth service reaches the primary through the Sentinels.
    for name in GATEWAYS:
        with gateways.on(name) as target:
            health = httpx.get(target.url("auth", "/health"), verify=target.tls(), timeout=10)
        assert health.status_code == 200, (name, health.status_code, health.text[:200])


def test_clients_on_both_hosts_ride_out_the_redis_primary_killed_and_nothing_acknowledged_is_lost(
    gateways: Gateways,
) -> None:
    first, second = GATEWAYS[:2]
    with gateways.on(first) as target:
        clients = [sdk_client(target, revision) for revision in REVISIONS]
    ledger = Ledger()
    with gateways.on(second) as target:
        register(target, ledger)
    assert ledger.clients, "the gateway did not take a first registration"

    old_primary = gateways.state_addresses[primary_address()]
    # keep the killed server down past the failover (a runtime drop-in: gone at the guest's next boot)
    guest(
        old_primary,
        "sh",
        "-c",
        "mkdir -p /run/systemd/system/redis-server.service.d && printf '[Service]\\nRestartSec=%s\\n' "
        f"{RESTART_AFTER} > /run/systemd/system/redis-server.service.d/zz-test-restart-later.conf "
        "&& systemctl daemon-reload",
    )
    started = time.monotonic()
    killed_at: float | None = None
    turn = 0
    while time.monotonic() - started < LOOP_BUDGET:
        if killed_at is None and time.monotonic() - started > KILL_AFTER:
            guest(old_primary, "systemctl", "kill", "--kill-who=main", "-s", "KILL", "redis-server")
            killed_at = time.monotonic()
            ledger.after_recovery = 0
        if killed_at is not None and ledger.unavailable and ledger.after_recovery >= SETTLED_ROUNDS:
            break
        host = GATEWAYS[turn % 2]
        kind = turn % 4
        turn += 1
        failures = len(ledger.unavailable)
        with gateways.on(host) as target:
            if kind == 0:
                register(target, ledger)
            elif kind == 1:
                login(target, ledger, secrets.choice(ledger.clients))
            elif kind == 2 and ledger.grants:
                refresh(target, ledger, turn % len(ledger.grants))
            else:
                sdk_call(target, ledger, clients[(turn // 4) % len(clients)])
        if len(ledger.unavailable) > failures:
            time.sleep(0.2)  # a client backs off (less than Retry-After says, to keep the test short)

    burst = (ledger.unavailable[-1] - killed_at) if killed_at and ledger.unavailable else 0.0
    print(
        f"failures for {burst:.1f}s after the kill; acknowledged: {len(ledger.clients)} registrations, "
        f"{len(ledger.grants)} grants, {ledger.refreshes} refreshes, {ledger.calls} SDK tool calls; "
        f"{len(ledger.unavailable)} failures: {ledger.failures}"
    )
    assert killed_at is not None
    assert ledger.unavailable, "the kill went unnoticed: the loop is not exercising the failover"
    assert ledger.after_recovery >= SETTLED_ROUNDS, f"clients did not carry on within {LOOP_BUDGET}s"
    assert burst < BURST_BUDGET, f"failures went on for {burst:.1f}s after the kill: {ledger.failures}"
    new_primary = gateways.state_addresses[primary_address()]
    assert new_primary != old_primary, "the Sentinels promoted no replica"

    # Every acknowledged registration, grant and refresh is there, through either host.
    lost_clients, lost_grants = [], []
    for index, client in enumerate(ledger.clients):
        with gateways.on(GATEWAYS[index % 2]) as target, api(target) as http:
            headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
            if http.get(f"/register/{client['client_id']}", headers=headers).status_code != 200:
                lost_clients.append(client["client_id"])
    for index, (client, token) in enumerate(ledger.grants):
        with gateways.on(GATEWAYS[index % 2]) as target:
            response = refresh_response(target, client, token)
        if response.status_code != 200:
            lost_grants.append((response.status_code, response.text[:200]))
    assert not lost_clients, f"{len(lost_clients)} of {len(ledger.clients)} acknowledged registrations lost"
    assert not lost_grants, f"{len(lost_grants)} of {len(ledger.grants)} acknowledged grants lost: {lost_grants[:3]}"
    assert len(ledger.grants) >= 3 and ledger.refreshes >= 3 and ledger.calls >= 3, "too little traffic"

    # The SDK clients carry on through both hosts, refreshing, with no new login: nobody was logged out.
    for client in clients:
        for host in GATEWAYS:
            logins = client.logins
            with gateways.on(host) as target, offering(client.revision) as mode:
                out = anyio.run(call_twice, target, SERVICE, client.provider, mode)
            assert out["first_error"] is False and out["refreshed"] is True, (client.revision, host, out)
            assert client.logins == logins, f"the {client.revision} client had to log in again through {host}"

    # The killed server, restarted by systemd, is made a replica of the new primary, not a second primary.
    new_address = next(address for address, name in gateways.state_addresses.items() if name == new_primary)

    def replica_of_new_primary() -> bool:
        role = redis_cli(old_primary, "role", check=False)  # refused until systemd restarts it
        return role[:2] == ["slave", new_address] and "connected" in role

    assert wait_until(replica_of_new_primary, timeout=RESTART_AFTER + 60, interval=2), redis_cli(
        old_primary, "role", check=False
    )
    assert gateways.state_addresses[primary_address()] == new_primary
    guest(old_primary, "sh", "-c", "rm -rf /run/systemd/system/redis-server.service.d && systemctl daemon-reload")


def initialize(target: Target, token: str, session: str | None = None) -> httpx.Response:
    """A legacy client's request: `initialize`, or with `session` a `tools/list` in that session."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if session:
        headers["Mcp-Session-Id"] = session
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    else:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "multi-host legacy client", "version": "1"},
            },
        }
    return httpx.post(target.url(SERVICE, "/mcp"), json=body, headers=headers, verify=target.tls(), timeout=30)


def test_with_one_gateway_host_stopped_clients_carry_on_through_the_other(gateways: Gateways) -> None:
    """Last in this file: it powers the second gateway host off."""
    first, second = GATEWAYS[:2]
    # Both clients logged in through the host that will be lost: their grants live in the shared state.
    with gateways.on(second) as target:
        modern = sdk_client(target, "2026-07-28")
        legacy = sdk_client(target, "2025-11-25")
        opened = initialize(target, legacy.storage.tokens.access_token)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert session.startswith("gw2."), f"a session of the second host's bridge should say so: {session}"
    # While both are up, the first host hands the session to the host that holds it.
    with gateways.on(first) as target:
        assert initialize(target, legacy.storage.tokens.access_token, session).status_code == 200

    guest(second, "systemctl", "poweroff", check=False)
    assert wait_until(lambda: _unreachable(gateways, second), timeout=60, interval=2), f"{second} still answers"

    with gateways.on(first) as target:
        # 2026-07-28: the next request goes to the other host and carries on, refreshing, with the same login
        logins = modern.logins
        with offering(modern.revision) as mode:
            out = anyio.run(call_twice, target, SERVICE, modern.provider, mode)
        assert out["first_error"] is False and out["refreshed"] is True, out
        assert modern.logins == logins, "the 2026-07-28 client had to log in again"

        # legacy: the lost session is unknown (404, as the protocol says), once the first host has seen its
        # peer go (its health check); the client starts a new session with the token it has
        token = legacy.storage.tokens.access_token
        statuses: list[int] = []

        def session_gone() -> bool:
            statuses.append(initialize(target, token, session).status_code)
            return statuses[-1] == 404

        assert wait_until(session_gone, timeout=60, interval=2), statuses
        logins = legacy.logins
        with offering(legacy.revision) as mode:
            out = anyio.run(call_twice, target, SERVICE, legacy.provider, mode)
        assert out["first_error"] is False and out["refreshed"] is True, out
        assert legacy.logins == logins, "the legacy client had to log in again"


def _unreachable(gateways: Gateways, name: str) -> bool:
    """The host's health URL (what a load balancer checks) no longer answers."""
    with gateways.on(name) as target:
        try:
            httpx.get(target.url("auth", "/health"), verify=target.tls(), timeout=3)
        except httpx.TransportError:
            return True
    return False
