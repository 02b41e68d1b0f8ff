"""A real MCP client on the host uses a gateway that site.yml provisioned onto a throwaway guest.

Run by molecule's verify (molecule/shared/verify-client.yml) against the converged guest, or by hand:

    GATEWAY_GUEST=mcpgw-debian12 PEBBLE_API_CA=.ansible/tmp/molecule.*.default/pebble-api/ca.pem \
        .venv/bin/pytest -m hosts tests/hosts/test_converged_gateway.py

Skipped when GATEWAY_GUEST is not set. The official `mcp` SDK client with its OAuth provider as a client
of each protocol revision (2025-06-18, 2025-11-25, 2026-07-28), against two MCP services of the test
inventory: discovery, dynamic registration (one per client, kept for both services), consent, login where
the guest signs people in (GATEWAY_LOGIN_URL: the GitHub-compatible server, or the OpenID Connect provider
of a guest configured for it), token, tools listed, a tool called, refresh; refused (access_denied) on the
`restricted` server; a token for one service is refused by the other; and no code, state or token of a
login (nor a token a client put in a URL) reaches the guest's journal. Names of the test domain resolve to
the guest's 127.0.2.N in this process only; TLS is verified against the root Pebble (in the guest) issued
from, and the CA of Pebble's API (PEBBLE_API_CA), which also issued the OpenID Connect provider's certificate.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

GUEST_NAME = os.environ.get("GATEWAY_GUEST", "")
DOMAIN = os.environ.get("GATEWAY_DOMAIN", "mcpgw.test")
GITHUB_PORT = int(os.environ.get("GATEWAY_GITHUB_PORT", "8900"))
# Where the person signs in (the GitHub-compatible server when unset); the refusal page names the provider.
LOGIN_URL = os.environ.get("GATEWAY_LOGIN_URL", "").strip()
PEBBLE_MANAGEMENT_PORT = int(os.environ.get("GATEWAY_PEBBLE_PORT", "15000"))
CALLBACK = "http://127.0.0.1:47999/callback"  # never served: the browser stops at the redirect
GUEST = Path(__file__).resolve().parent / "guest"
# A file that carries one client's registration, tokens and discovered metadata from one run to the
# next (molecule's verify before and after a reboot); GATEWAY_CLIENT_RESUME=1 says it must be there.
CLIENT_STATE = os.environ.get("GATEWAY_CLIENT_STATE", "")
CLIENT_RESUME = os.environ.get("GATEWAY_CLIENT_RESUME") == "1"

if not GUEST_NAME:
    pytest.skip("GATEWAY_GUEST names no converged guest", allow_module_level=True)

# imported after the skip: the SDK is only needed when a gateway is there to talk to
import anyio  # noqa: E402
import httpx  # noqa: E402
import httpx2  # noqa: E402
import mcp.client.session  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.auth import (  # noqa: E402
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS  # noqa: E402

from tests.harness.names import resolve_names  # noqa: E402
from tests.harness.procs import wait_until  # noqa: E402

TOOL_CALLS = {
    "time": ("get_current_time", {"timezone": "UTC"}),
    "memory": ("read_graph", {}),
}
# The test inventory's server that admits another user than the one the login robot signs in as.
RESTRICTED = "restricted"
# The protocol revisions a Python SDK client is tested as.
REVISIONS = ["2025-06-18", "2025-11-25", "2026-07-28"]
# The revision whose client names itself with a client ID metadata document (which 2025-11-25 brought)
# instead of registering: the document prepare-gateway.yml serves in the guest, over HTTPS.
CIMD_REVISION = "2025-11-25"
CIMD_URL = os.environ.get("GATEWAY_CIMD_URL", f"https://cimd.{DOMAIN}:8444/python-sdk.json")


@dataclass
class Target:
    address: str
    root_ca: Path
    kind: str
    api_ca: str | None = None

    def url(self, name: str, path: str = "") -> str:
        return f"https://{name}.{DOMAIN}{path}"

    @property
    def github(self) -> str:
        return f"http://{self.address}:{GITHUB_PORT}"

    @property
    def login(self) -> str:
        """Where the person signs in: the GitHub-compatible server, or the guest's OpenID Connect provider."""
        return LOGIN_URL or self.github

    @property
    def refusal(self) -> str:
        """What the gateway tells a person it refuses on a service."""
        provider = "GitHub" if self.login == self.github else "identity provider"
        return f"This {provider} account may not use this service"

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.root_ca))
        if self.api_ca:
            context.load_verify_locations(cafile=self.api_ca)
        return context


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    done = subprocess.run([str(GUEST), "status", GUEST_NAME, "--json"], capture_output=True, text=True, check=True)
    address, kind = (json.loads(done.stdout)[0][key] for key in ("address", "kind"))
    api_ca = os.environ.get("PEBBLE_API_CA")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=api_ca) if api_ca else False
    # Pebble's API certificate names 127.0.0.1 and localhost; reach it on the guest's address by name
    with resolve_names({"localhost": address}):
        root = httpx.get(f"https://localhost:{PEBBLE_MANAGEMENT_PORT}/roots/0", verify=verify, timeout=10)
    root.raise_for_status()
    # Pebble makes a new root whenever it restarts (a reboot), while the gateway rightly keeps serving
    # the still-valid certificates the earlier root issued: PEBBLE_ROOTS collects every root seen.
    bundle = os.environ.get("PEBBLE_ROOTS")
    path = Path(bundle) if bundle else tmp_path_factory.mktemp("pebble") / "root.pem"
    seen = path.read_text() if path.exists() else ""
    if root.text.strip() not in seen:
        path.write_text(seen + root.text.strip() + "\n")
    with resolve_names({DOMAIN: address}):
        yield Target(address, path, kind, api_ca)


@dataclass
class Browser:
    """A scripted user agent: follows redirects between the auth service and where the person signs in
    (the GitHub-compatible server or the OpenID Connect provider, keeping its cookies), approves the
    consent page, and stops where it is sent back to the client (`callback`),
    or with `deliver` also opens that address, as a browser does for a client's loopback server."""

    target: Target
    history: list[str] = field(default_factory=list)
    # the query of the redirect back to the client (its code and state)
    returned: dict[str, str] = field(default_factory=dict)
    callback: str = CALLBACK
    deliver: bool = False

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=30, verify=self.target.tls(), follow_redirects=False)

    def authorize(self, url: str) -> dict[str, str]:
        method, data = "GET", None
        for _ in range(12):
            self.history.append(url)
            response = self.http.request(method, url, data=data)
            method, data = "GET", None
            if response.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers["location"])
                if url.startswith(self.callback):
                    self.returned = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                    if self.deliver:
                        self.history.append(url)
                        self.http.get(url)  # whatever the client's page says, it has the code now
                    return self.returned
                continue
            csrf = re.search(r'name="csrf" value="([^"]+)"', response.text)
            pending = re.search(r'name="pending" value="([^"]+)"', response.text)
            assert response.status_code == 200 and csrf and pending, (
                f"{url}: {response.status_code} {response.text[:300]}"
            )
            url, method = self.target.url("auth", "/consent"), "POST"
            data = {"csrf": csrf.group(1), "pending": pending.group(1), "decision": "approve"}
        raise AssertionError(f"too many redirects: {self.history}")


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Refused(Exception):
    """The authorization ended in an error redirect (access_denied)."""


def provider_for(
    target: Target, service: str, storage: MemoryStorage, browser: Browser, client_metadata_url: str | None = None
) -> OAuthClientProvider:
    redirected: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        redirected.update(await anyio.to_thread.run_sync(browser.authorize, url))

    async def callback_handler() -> AuthorizationCodeResult:
        if "error" in redirected:  # the gateway refused: the client gets no code
            raise Refused(redirected["error"], redirected.get("error_description", ""))
        return AuthorizationCodeResult(
            code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
        )

    metadata = OAuthClientMetadata(
        client_name="host test client",
        redirect_uris=[CALLBACK],
        grant_types=["authorization_code", "refresh_token"],
    )
    return OAuthClientProvider(
        server_url=target.url(service, "/mcp"),
        client_metadata=metadata,
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=client_metadata_url,
    )


async def call_twice(target: Target, service: str, provider: OAuthClientProvider, mode: str) -> dict[str, object]:
    """A tool call, an expired access token on the client's clock, a second call (so a refresh)."""
    tool, arguments = TOOL_CALLS[service if service in TOOL_CALLS else "memory"]  # restricted runs memory's
    storage = provider.context.storage
    out: dict[str, object] = {}
    async with httpx2.AsyncClient(auth=provider, verify=target.tls(), timeout=60) as http:
        async with Client(streamable_http_client(target.url(service, "/mcp"), http_client=http), mode=mode) as client:
            out["tools"] = [t.name for t in (await client.list_tools()).tools]
            first = await client.call_tool(tool, arguments)
            out["first_error"] = first.is_error
            refresh_before = storage.tokens.refresh_token
            provider.context.token_expiry_time = time.time() - 1
            second = await client.call_tool(tool, arguments)
            out["second_error"] = second.is_error
            out["refreshed"] = storage.tokens.refresh_token != refresh_before
            out["protocol"] = client.protocol_version
    return out


def bearer_status(target: Target, service: str, token: str) -> int:
    response = httpx.post(
        target.url(service, "/mcp"),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}',
        verify=target.tls(),
        timeout=30,
    )
    return response.status_code


@contextmanager
def offering(revision: str) -> Iterator[str]:
    """The connect mode of a client of `revision`. The SDK's handshake (`legacy`) always offers its newest
    handshake revision and has no setting for another: a client of an older one offers that (and then
    sends it in every MCP-Protocol-Version header, which the SDK's OAuth provider also reads)."""
    if revision in MODERN_PROTOCOL_VERSIONS:
        yield revision
        return
    newest = mcp.client.session.LATEST_HANDSHAKE_VERSION
    mcp.client.session.LATEST_HANDSHAKE_VERSION = revision
    try:
        yield "legacy"
    finally:
        mcp.client.session.LATEST_HANDSHAKE_VERSION = newest


@pytest.mark.parametrize("revision", REVISIONS)
def test_sdk_client_of_each_revision_uses_two_services_and_is_refused_on_a_third(target: Target, revision: str) -> None:
    """One client (one registration, kept as a client keeps it, or its metadata document) logs in to each
    service (a token per audience), lists tools, calls one, refreshes; on `restricted` the person signs
    in and is refused."""
    registration: OAuthClientInformationFull | None = None
    document = CIMD_URL if revision == CIMD_REVISION else None
    for service in sorted(TOOL_CALLS):
        storage = MemoryStorage()
        storage.client_info = registration
        browser = Browser(target)
        provider = provider_for(target, service, storage, browser, document)
        with offering(revision) as mode:
            out = anyio.run(call_twice, target, service, provider, mode)
        assert out["protocol"] == revision, out
        assert TOOL_CALLS[service][0] in out["tools"], out
        assert out["first_error"] is False and out["second_error"] is False, out
        assert out["refreshed"] is True, "the second call should have refreshed (and rotated) the token"
        assert any(url.startswith(target.login) for url in browser.history), f"login not at {target.login}"
        assert storage.client_info and storage.client_info.client_id
        # the metadata document's URL is the client's id; otherwise dynamically registered, once
        assert (storage.client_info.client_id == document) if document else "://" not in storage.client_info.client_id
        assert registration is None or storage.client_info.client_id == registration.client_id
        registration = storage.client_info
        assert bearer_status(target, service, storage.tokens.access_token) not in (401, 403)
    storage = MemoryStorage()
    storage.client_info = registration
    browser = Browser(target)
    provider = provider_for(target, RESTRICTED, storage, browser, document)
    with offering(revision) as mode, pytest.raises(Exception) as refused:
        anyio.run(call_twice, target, RESTRICTED, provider, mode)
    assert browser.returned.get("error") == "access_denied", (browser.returned, refused.value)
    assert browser.returned.get("error_description") == target.refusal, browser.returned
    assert "code" not in browser.returned and storage.tokens is None


def test_a_token_for_one_service_is_refused_by_the_other(target: Target) -> None:
    storage = MemoryStorage()
    provider = provider_for(target, "time", storage, Browser(target))
    anyio.run(call_twice, target, "time", provider, "auto")
    token = storage.tokens.access_token
    assert bearer_status(target, "time", token) not in (401, 403)
    assert bearer_status(target, "memory", token) == 401  # audience-bound: not a token for memory


def guest_ssh(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GUEST), "ssh", GUEST_NAME, *command], capture_output=True, text=True, timeout=120)


def guest_journal(since: str) -> list[tuple[str, str]]:
    """(unit, message) of every journal entry in the guest since `since` (seconds since the epoch)."""
    done = guest_ssh(
        "journalctl", f"--since=@{since}", "--no-pager", "--output=json", "--output-fields=MESSAGE,_SYSTEMD_UNIT"
    )
    assert done.returncode == 0, done.stderr
    entries = []
    for line in done.stdout.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE") or ""
        if isinstance(message, list):  # journald's form for a message that is not UTF-8
            message = bytes(message).decode(errors="replace")
        entries.append((entry.get("_SYSTEMD_UNIT", ""), message))
    return entries


def test_no_code_state_or_token_reaches_the_guest_journal(target: Target) -> None:
    # Attack: read the host's journal (an operator, a log shipper) for what travels in URLs: the upstream
    # code and state of a login, the gateway's code, and a bearer token a client put in a query string.
    since = guest_ssh("date", "+%s").stdout.strip()
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, "time", storage, browser)
    out = anyio.run(call_twice, target, "time", provider, "auto")
    assert out["first_error"] is False and out["refreshed"] is True, out
    upstream = [
        {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        for url in browser.history
        if urlsplit(url).netloc.startswith("auth.") and urlsplit(url).path == "/callback"
    ]
    assert upstream and "code" in upstream[0] and "state" in upstream[0], browser.history
    token = storage.tokens.access_token
    secrets = {
        "upstream code": upstream[0]["code"],
        "upstream state": upstream[0]["state"],
        "gateway code": browser.returned["code"],
        "client state": browser.returned["state"],
        "access token": token,
        "access token signature": token.rsplit(".", 1)[-1],
        "refresh token": storage.tokens.refresh_token,
    }
    refused = httpx.post(
        target.url("time", f"/mcp?access_token={token}"),
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
        verify=target.tls(),
        timeout=30,
    )
    assert refused.status_code == 401  # a token in the query string is no credential
    # journald takes lines asynchronously: wait for Traefik's line of the refused request
    entries: list[tuple[str, str]] = []

    def traefik_logged_it() -> bool:
        entries[:] = guest_journal(since)
        return any(unit == "traefik.service" and '"POST /mcp' in message for unit, message in entries)

    assert wait_until(traefik_logged_it, timeout=30, interval=1), "Traefik logged no line for the refused request"
    # the test-only servers in the guest (GitHub stand-in, Pebble, DNS) are no part of the product
    leaked = [
        f"{what} in {unit}: {message[:300]}"
        for unit, message in entries
        if not unit.startswith("gateway-test-")
        for what, secret in secrets.items()
        if secret in message
    ]
    assert leaked == []


@pytest.mark.parametrize("unit", ["redis-server", "mcp-gateway-auth", "mcp-proxy@time"])
def test_the_client_carries_on_after_a_service_is_killed(target: Target, unit: str) -> None:
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, "time", storage, browser)
    anyio.run(call_twice, target, "time", provider, "auto")
    logins = len(browser.history)

    before = guest_ssh("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    # nspawn guests on this host's cgroup v1 cannot list a unit's processes (EIO): kill the main one
    who = ["--kill-who=main"] if target.kind == "nspawn" else []
    killed = guest_ssh("systemctl", "kill", *who, "-s", "KILL", unit)
    assert killed.returncode == 0, killed.stderr

    def restarted() -> bool:
        state = guest_ssh("systemctl", "is-active", unit).stdout.strip()
        pid = guest_ssh("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
        return state == "active" and pid not in ("0", before)

    assert wait_until(restarted, timeout=60, interval=1), f"{unit} did not come back"

    # the same client (its registration and tokens) refreshes and calls again, with no new login
    # (while the restarted service warms up a call may fail; the last error is kept to be shown)
    out: dict = {}
    errors: list[BaseException] = []

    def calls_again() -> bool:
        try:
            out.update(anyio.run(call_twice, target, "time", provider, "auto"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            return False
        return True

    assert wait_until(calls_again, timeout=60, interval=2), f"no call succeeded after the restart: {errors[-1:]!r}"
    assert out["first_error"] is False and out["refreshed"] is True, out
    assert len(browser.history) == logins, "the client had to log in again: state was lost"


def resume_client(state: Path, storage: MemoryStorage, provider: OAuthClientProvider) -> dict:
    """Give the client what a client that persists its state keeps (save_client wrote it); the saved data."""
    assert state.exists(), f"no client was saved in {state}"
    saved = json.loads(state.read_text())
    storage.client_info = OAuthClientInformationFull.model_validate(saved["client_info"])
    storage.tokens = OAuthToken.model_validate(saved["tokens"])
    # without the discovered metadata the SDK refreshes at the resource's origin
    provider.context.oauth_metadata = OAuthMetadata.model_validate(saved["oauth_metadata"])
    return saved


def save_client(state: Path, storage: MemoryStorage, provider: OAuthClientProvider) -> None:
    """Keep the client's registration, tokens and discovered metadata for a later process."""
    assert storage.tokens and storage.client_info and provider.context.oauth_metadata
    saved = {
        "client_info": storage.client_info.model_dump(mode="json"),
        "tokens": storage.tokens.model_dump(mode="json"),
        "oauth_metadata": provider.context.oauth_metadata.model_dump(mode="json"),
    }
    state.touch(mode=0o600)  # it holds a refresh token
    state.write_text(json.dumps(saved))


@pytest.mark.skipif(not CLIENT_STATE, reason="GATEWAY_CLIENT_STATE names no file to carry a client in")
def test_the_same_client_carries_on_after_the_guest_restarts(target: Target) -> None:
    """Before a reboot the client logs in, calls and is saved; after it (GATEWAY_CLIENT_RESUME=1) the
    saved client, in a new process, calls with its old access token and refreshes with its old refresh
    token, with no new login: the reboot lost no registration, grant or refresh token."""
    state = Path(CLIENT_STATE)
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, "time", storage, browser)
    saved = resume_client(state, storage, provider) if CLIENT_RESUME else {}
    out = anyio.run(call_twice, target, "time", provider, "auto")
    assert out["first_error"] is False and out["second_error"] is False, out
    assert out["refreshed"] is True, out
    if CLIENT_RESUME:
        assert browser.history == [], f"the saved client had to log in again: {browser.history}"
        assert storage.client_info.client_id == saved["client_info"]["client_id"]
    save_client(state, storage, provider)
