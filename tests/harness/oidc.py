"""Start and steer a real OpenID Connect provider (node-oidc-provider, `oidc_provider.mjs`) on loopback.

    provider = OidcProvider(workdir, test_ca, redirect_uri="https://auth.example.test/callback").start()
    provider.set_user("alice")              # who signs in at the provider (None: its login page)
    provider.set_account("alice", groups=[])  # change an account (a group removed)
    provider.stop()

It serves HTTPS with a certificate of the test CA (point SSL_CERT_FILE of the auth service at the
CA). Accounts: alice (alice@example.org, verified, group mcp-users), bob (bob@example.org, no
group), carol (carol@elsewhere.test, mcp-users), eve (claims alice@example.org, unverified).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port
from tests.harness.tls import TestCA

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
OTHER_CLIENT = "other-app"
OTHER_REDIRECT = "https://other.example.test/cb"


class OidcProvider:
    """node-oidc-provider with the gateway registered as a confidential client (`client_id`,
    `client_secret`) and a second application (`other-app`)."""

    def __init__(
        self,
        workdir: Path,
        ca: TestCA,
        *,
        redirect_uri: str,
        jwk_path: Path | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.port = free_port()
        self.redirect_uri = redirect_uri
        # The signing key's file: a second provider given the same file signs with the same key.
        self.jwk_path = jwk_path or self.workdir / f"jwk-{self.port}.json"
        self.client_id = client_id or "gateway-" + secrets.token_hex(4)
        self.client_secret = client_secret or secrets.token_hex(20)
        self._proc: ManagedProcess | None = None

    @property
    def issuer(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def _http(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca.cert_path)), timeout=10)

    def start(self, timeout: float = 30.0) -> OidcProvider:
        cert = self.ca.issue(LOOPBACK, "localhost", stem=f"oidc-{self.port}")
        node = shutil.which("node") or "node"
        argv = [
            node,
            str(SCRIPT),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--cert",
            str(cert.cert_path),
            "--key",
            str(cert.key_path),
            "--jwk",
            str(self.jwk_path),
            "--client-id",
            self.client_id,
            "--client-secret",
            self.client_secret,
            "--redirect-uri",
            self.redirect_uri,
            "--other-client-id",
            OTHER_CLIENT,
            "--other-redirect-uri",
            OTHER_REDIRECT,
        ]
        self._proc = ManagedProcess(f"oidc-{self.port}", argv, log_dir=self.workdir, cwd=REPO)
        self._proc.start().wait_for_port(self.port, timeout=timeout)
        with self._http() as http:
            http.get(f"{self.issuer}/_ctl/health").raise_for_status()
        return self

    def _control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        with self._http() as http:
            if payload is None:
                response = http.get(f"{self.issuer}/_ctl/{path}")
            else:
                response = http.post(f"{self.issuer}/_ctl/{path}", json=payload)
        response.raise_for_status()
        return response.json()

    def set_user(self, account: str | None) -> None:
        """The account that signs in at once; None stops at the provider's login page."""
        self._control("config", {"user": account or ""})

    def set_account(self, name: str, **claims: Any) -> None:
        """Create or replace an account's claims (email, email_verified, groups, ...)."""
        self._control("config", {"accounts": {name: claims}})

    def remove_account(self, name: str) -> None:
        """The account is gone at the provider (deleted, disabled)."""
        self._control("config", {"accounts": {name: None}})

    def reset_accounts(self) -> None:
        """The accounts as at start (every change of set_account undone)."""
        self._control("config", {"reset": True})

    def tamper_next_id_token(self, id_token: str) -> None:
        """The next /token answer carries this id_token instead of the one the provider made."""
        self._control("tamper", {"id_token": id_token})

    def fail_next_token_request(self, error: str) -> None:
        self._control("token-error", {"error": error})

    def last_id_token(self) -> str | None:
        return self._control("last")["id_token"]

    def last_authorization(self) -> dict[str, str] | None:
        """The query parameters of the last authorization request the provider received."""
        return self._control("last-authorization")["query"]

    def id_token_for_other_client(self, account: str, nonce: str | None = None) -> str:
        """Sign `account` in to the provider's other application (with `nonce`) and return the
        id_token it got: a genuine token of this provider, for another audience."""
        return self.sign_in_directly(account, nonce, OTHER_CLIENT, "other-secret", OTHER_REDIRECT)

    def id_token_for_gateway(self, account: str, nonce: str) -> str:
        """Sign `account` in as the gateway's client would, without the gateway: the id_token."""
        return self.sign_in_directly(account, nonce, self.client_id, self.client_secret, self.redirect_uri)

    def sign_in_directly(self, account: str, nonce: str | None, client_id: str, secret: str, redirect_uri: str) -> str:
        self.set_user(account)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "client_id": client_id,
                "response_type": "code",
                "scope": "openid email profile groups",
                "redirect_uri": redirect_uri,
                "nonce": nonce or secrets.token_urlsafe(16),
                "state": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        url = f"{self.issuer}/auth?{query}"
        with self._http() as http:
            for _ in range(10):
                response = http.get(url)
                location = response.headers.get("location")
                assert location, f"{response.status_code} {response.text[:300]}"
                url = urljoin(url, location)
                if url.startswith(redirect_uri):
                    break
            code = parse_qs(urlsplit(url).query)["code"][0]
            token = http.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
                auth=(client_id, secret),
            )
        token.raise_for_status()
        return token.json()["id_token"]

    def log_tail(self, lines: int = 60) -> str:
        return self._proc.log_tail(lines) if self._proc else "(not started)"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
