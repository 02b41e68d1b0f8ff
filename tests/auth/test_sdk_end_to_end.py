"""The official MCP SDK client, with its OAuth provider, through the gateway's own routing: the real
Traefik run from the traefik role's rendered files (ForwardAuth, identity and token stripping, CORS).

Discovery (401 -> PRM -> AS metadata), registration (DCR, or a Client ID Metadata Document served
over HTTPS), consent, GitHub login at the stub, token, tool call, refresh, and a revoked token
refused, in both the `auto` (2026-07-28 probe) and `legacy` (initialize handshake) client modes.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.auth.gateway import Gateway, resolve_test_names
from tests.harness.oauthflow import Browser
from tests.harness.procs import LOOPBACK, free_port

# One gateway per worker session: under pytest-xdist (--dist loadgroup) the suite's gateway tests share a worker.
pytestmark = [pytest.mark.slow]
CALLBACK = "http://127.0.0.1:47123/callback"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class CimdServer:
    """Serves a client metadata document over HTTPS at https://localhost:<port>/client.json."""

    def __init__(self, cert, document_for) -> None:
        self.port = free_port()
        self.url = f"https://localhost:{self.port}/client.json"
        document = json.dumps(document_for(self.url)).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_path, cert.key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class TraefikBrowser(Browser):
    """The scripted browser, but through Traefik over TLS like a real one."""

    ca_path: str = ""

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=15, verify=ssl.create_default_context(cafile=self.ca_path))

    def _send(self, method, url, data=None):
        self.history.append(url)
        headers = {}
        if self.cookies and url.startswith(self.service.issuer):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, url, data=data, headers=headers)
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response


def make_provider(gateway: Gateway, storage: MemoryStorage, browser: Browser, cimd_url: str | None = None):
    redirected: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        outcome = await anyio.to_thread.run_sync(lambda: browser.open(url))
        if outcome.is_consent_page:
            outcome = await anyio.to_thread.run_sync(lambda: browser.consent(outcome.response))
        redirected.update(outcome.params)

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
        )

    metadata = OAuthClientMetadata(
        client_name="SDK end-to-end", redirect_uris=[CALLBACK], grant_types=["authorization_code", "refresh_token"]
    )
    return OAuthClientProvider(
        server_url=gateway.url("time", "/mcp"),
        client_metadata=metadata,
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=cimd_url,
    )


async def run_client(gateway: Gateway, provider: OAuthClientProvider, mode: str) -> list:
    """Two tool calls with a refresh between them; the results, the refresh tokens seen and the
    negotiated protocol version."""
    context = ssl.create_default_context(cafile=str(gateway.ca_file))
    results: list = []
    storage = provider.context.storage
    async with httpx2.AsyncClient(auth=provider, verify=context, timeout=30) as http:
        transport = streamable_http_client(gateway.url("time", "/mcp"), http_client=http)
        async with Client(transport, mode=mode) as client:
            result = await client.call_tool("add", {"a": 2, "b": 3})
            results.append(json.loads(result.content[0].text) if result.content else None)
            first_refresh = storage.tokens.refresh_token
            # Let the access token lapse on the client's clock: the next call must refresh first.
            provider.context.token_expiry_time = time.time() - 1
            result = await client.call_tool("add", {"a": 20, "b": 22})
            results.append(json.loads(result.content[0].text) if result.content else None)
            results.append(first_refresh != storage.tokens.refresh_token)
            results.append(client.protocol_version)
    return results


async def call_once(gateway: Gateway, provider: OAuthClientProvider, mode: str) -> int:
    context = ssl.create_default_context(cafile=str(gateway.ca_file))
    async with httpx2.AsyncClient(auth=provider, verify=context, timeout=30) as http:
        transport = streamable_http_client(gateway.url("time", "/mcp"), http_client=http)
        async with Client(transport, mode=mode) as client:
            result = await client.call_tool("add", {"a": 1, "b": 1})
            return json.loads(result.content[0].text)


def revoke_and_check(gateway: Gateway, storage: MemoryStorage) -> None:
    verify = ssl.create_default_context(cafile=str(gateway.ca_file))
    token = storage.tokens.access_token
    info = storage.client_info
    form = {"token": token, "token_type_hint": "access_token", "client_id": info.client_id}
    auth = None
    if info.client_secret:
        auth = (info.client_id, info.client_secret)
        form.pop("client_id")
    response = httpx.post(gateway.url("auth", "/revoke"), data=form, auth=auth, verify=verify, timeout=10)
    assert response.status_code == 200, response.text
    mcp = httpx.post(
        gateway.url("time", "/mcp"),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}',
        verify=verify,
        timeout=10,
    )
    assert mcp.status_code == 401
    challenge = mcp.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{gateway.url("time", "/.well-known/oauth-protected-resource/mcp")}"' in challenge


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_with_dynamic_registration_calls_a_tool_refreshes_and_is_refused_after_revocation(
    gateway, github_stub, mode
):
    storage = MemoryStorage()
    browser = TraefikBrowser(gateway.auth, github_stub, ca_path=str(gateway.ca_file))
    with resolve_test_names():
        provider = make_provider(gateway, storage, browser)
        results = anyio.run(run_client, gateway, provider, mode)
        assert results[:3] == [5, 42, True]  # two tool results, and the refresh token rotated
        assert (results[3] == "2026-07-28") == (mode == "auto"), results[3]
        assert storage.client_info.client_id and not storage.client_info.client_id.startswith("https://")
        # A refresh happened: the stored refresh token was rotated by the second call.
        assert storage.tokens.refresh_token
        revoke_and_check(gateway, storage)
        # The client, refused, authorizes again: the browser's session and remembered consent make
        # it silent (no consent page, no GitHub), and the call goes through with a new token.
        revoked = storage.tokens.access_token
        pages_before = len(browser.history)
        assert anyio.run(call_once, gateway, provider, mode) == 2
        assert storage.tokens.access_token != revoked
        assert not any("/consent" in url or "/login/oauth" in url for url in browser.history[pages_before:])
    exchanges = [r for r in github_stub.requests("/login/oauth/access_token")]
    assert exchanges and exchanges[-1]["form"].get("client_secret") == github_stub.client_secret
    assert exchanges[-1]["form"].get("code_verifier")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_with_a_client_id_metadata_document(gateway, github_stub, mode):
    cert = gateway.test_ca.issue("localhost", stem="cimd")

    def document(url):
        return {
            "client_id": url,
            "client_name": "SDK via metadata document",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }

    server = CimdServer(cert, document)
    try:
        storage = MemoryStorage()
        browser = TraefikBrowser(gateway.auth, github_stub, ca_path=str(gateway.ca_file))
        with resolve_test_names():
            provider = make_provider(gateway, storage, browser, cimd_url=server.url)
            results = anyio.run(run_client, gateway, provider, mode)
            assert results[:3] == [5, 42, True]
            assert storage.client_info.client_id == server.url
            revoke_and_check(gateway, storage)
    finally:
        server.stop()


def test_verify_is_not_reachable_through_traefik(gateway):
    with resolve_test_names():
        context = ssl.create_default_context(cafile=str(gateway.ca_file))
        response = httpx.get(gateway.url("auth", "/verify"), verify=context, timeout=10)
    assert response.status_code == 404
