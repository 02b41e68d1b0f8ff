"""Helpers for driving the auth service the way clients and browsers do, over real HTTP (any suite)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from tests.harness.auth import AuthService
from tests.harness.github import GitHubStub
from tests.harness.oidc import OidcProvider

TIME = "https://time.example.test/mcp"
FETCH = "https://fetch.example.test/mcp"
ISSUER = "https://auth.example.test"
REDIRECT = "http://127.0.0.1:33418/callback"


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def api(service: AuthService, host: str | None = None, **kwargs: Any) -> httpx.Client:
    """An HTTP client that reaches the service on loopback as if through Traefik for `host`."""
    headers = {"Host": host or host_of(service.issuer), "X-Forwarded-Proto": "https"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Client(base_url=service.url, headers=headers, timeout=15, **kwargs)


def signed_by_service(service: AuthService, claims: dict, **header: Any) -> str:
    """A JWT signed with the service's own signing key and `kid`; `header` adds or replaces header
    fields (`typ` defaults to `at+jwt` as the service's own access tokens; `typ=None` leaves it out)."""
    key = serialization.load_pem_private_key(service.signing_keys[0].read_bytes(), password=None)
    with api(service) as http:
        kid = http.get("/jwks").json()["keys"][0]["kid"]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt", **header})


def register(service: AuthService, **metadata: Any) -> dict:
    body = {
        "client_name": "Test client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    body.update(metadata)
    with api(service) as http:
        response = http.post("/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def verify(service: AuthService, token: str | None, resource: str = TIME, uri: str | None = None) -> httpx.Response:
    parts = urlsplit(resource)
    headers = {
        "X-Forwarded-Proto": parts.scheme,
        "X-Forwarded-Host": parts.netloc,
        "X-Forwarded-Uri": uri or parts.path,
        "X-Forwarded-Method": "POST",
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=service.url, timeout=10) as http:
        return http.get("/verify", headers=headers)


@dataclass
class Browser:
    """A scripted user agent that follows redirects between the auth service and the GitHub stub (or
    an OpenID Connect provider, `idp`) and stops at the client's redirect URI (or at a page that
    needs a person)."""

    service: AuthService
    github: GitHubStub
    cookies: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    idp: OidcProvider | None = None

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=15)
        # The provider serves HTTPS with the test CA's certificate; its cookies stay in this client.
        self.idp_http = (
            httpx.Client(timeout=15, verify=ssl.create_default_context(cafile=str(self.idp.ca.cert_path)))
            if self.idp is not None
            else None
        )

    def _upstream(self, url: str) -> bool:
        return url.startswith(self.github.url) or (self.idp is not None and url.startswith(self.idp.issuer + "/"))

    def _send(self, method: str, url: str, data: dict | None = None) -> httpx.Response:
        self.history.append(url)
        parts = urlsplit(url)
        issuer = urlsplit(self.service.issuer)
        if parts.netloc == issuer.netloc and parts.scheme == "https":
            target = self.service.url + parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Host": parts.netloc, "X-Forwarded-Proto": "https"}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            response = self.http.request(method, target, data=data, headers=headers)
            for header in response.headers.get_list("set-cookie"):
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0]
                if value:
                    self.cookies[name.strip()] = value
                else:
                    self.cookies.pop(name.strip(), None)
            return response
        if url.startswith(self.github.url):
            return self.http.request(method, url, data=data)
        if self.idp_http is not None and self.idp is not None and url.startswith(self.idp.issuer + "/"):
            return self.idp_http.request(method, url, data=data)
        raise AssertionError(f"the browser was sent somewhere unexpected: {url}")

    def open(self, url: str, method: str = "GET", data: dict | None = None, max_hops: int = 10) -> Outcome:
        for _ in range(max_hops):
            response = self._send(method, url, data)
            method, data = "GET", None
            if response.status_code in (301, 302, 303, 307, 308):
                location = urljoin(url, response.headers["location"])
                if not (location.startswith(self.service.issuer) or self._upstream(location)):
                    return Outcome(location=location, response=response)
                url = location
                continue
            return Outcome(location=None, response=response)
        raise AssertionError("too many redirects")

    def consent(self, page: httpx.Response, decision: str = "approve") -> Outcome:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        pending = re.search(r'name="pending" value="([^"]+)"', page.text)
        assert csrf and pending, page.text
        form = {"csrf": csrf.group(1), "pending": pending.group(1), "decision": decision}
        return self.open(f"{self.service.issuer}/consent", method="POST", data=form)

    def close(self) -> None:
        self.http.close()
        if self.idp_http is not None:
            self.idp_http.close()


@dataclass
class Outcome:
    location: str | None  # where the browser was sent outside the auth service, if anywhere
    response: httpx.Response

    @property
    def params(self) -> dict[str, str]:
        assert self.location, f"no redirect to the client: {self.response.status_code} {self.response.text[:500]}"
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}

    @property
    def is_consent_page(self) -> bool:
        return self.location is None and self.response.status_code == 200 and 'name="csrf"' in self.response.text


def authorize_url(service: AuthService, client_id: str, challenge: str | None, **overrides: Any) -> str:
    params: dict[str, Any] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "state-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": TIME,
        "scope": "mcp",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return f"{service.issuer}/authorize?{urlencode(params, doseq=True)}"


def get_code(browser: Browser, client_id: str, challenge: str, **overrides: Any) -> dict[str, str]:
    """Run /authorize through consent and GitHub; the parameters the client receives."""
    outcome = browser.open(authorize_url(browser.service, client_id, challenge, **overrides))
    if outcome.is_consent_page:
        outcome = browser.consent(outcome.response)
    return outcome.params


def post_token(service: AuthService, client: dict, form: dict[str, Any]) -> httpx.Response:
    """POST to /token authenticating as the client was registered (none, basic or post)."""
    auth = None
    if client.get("client_secret") and client.get("token_endpoint_auth_method") == "client_secret_basic":
        auth = (client["client_id"], client["client_secret"])
        form.pop("client_id", None)
    elif client.get("client_secret"):
        form["client_secret"] = client["client_secret"]
    with api(service) as http:
        return http.post("/token", data=form, auth=auth)


def exchange(service: AuthService, client: dict, code: str, verifier: str | None, **overrides: Any) -> httpx.Response:
    form: dict[str, Any] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client["client_id"],
        "code_verifier": verifier,
        "resource": TIME,
    }
    form.update(overrides)
    form = {k: v for k, v in form.items() if v is not None}
    return post_token(service, client, form)


def refresh(service: AuthService, client: dict, refresh_token: str, **overrides: Any) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client["client_id"]}
    form.update(overrides)
    return post_token(service, client, form)


def tokens_for(browser: Browser, client: dict, **overrides: Any) -> dict:
    """A complete authorization: code, exchange, token response (asserted 200)."""
    verifier, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge, **overrides)
    assert "code" in params, params
    token_overrides = {k: v for k, v in overrides.items() if k in ("resource", "redirect_uri")}
    response = exchange(browser.service, client, params["code"], verifier, **token_overrides)
    assert response.status_code == 200, response.text
    return response.json()


def login_tokens(service: AuthService, github: GitHubStub, client: dict, **overrides: Any) -> dict:
    """tokens_for through a browser of its own, closed afterwards: one user's login, start to finish."""
    browser = Browser(service, github)
    try:
        return tokens_for(browser, client, **overrides)
    finally:
        browser.close()
