"""GitHub (or GitHub Enterprise Server) as the upstream identity provider, with state and PKCE."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import httpx

from ..allowlist import Identity
from ..config import Settings
from . import Login, UpstreamError


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class GitHub:
    kind = "github"
    remembers_login = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.callback_url = f"{settings.issuer}/callback"
        self.http = httpx.Client(timeout=10.0, follow_redirects=False, headers={"User-Agent": "mcp-gateway-auth"})

    def begin(self, state: str) -> tuple[str, dict]:
        verifier = secrets.token_urlsafe(48)
        return self.authorize_url(state, verifier), {"verifier": verifier}

    def finish(self, code: str, saved: dict) -> Login:
        return Login(Identity(self.login_for_code(code, saved["verifier"])))

    def recheck(self, login: str, upstream: dict | None, created_at: int) -> None:
        """GitHub logins are matched by name only: the allowlist in force is the whole check."""
        return None

    def authorize_url(self, state: str, verifier: str) -> str:
        query = urlencode(
            {
                "client_id": self.settings.github_client_id,
                "redirect_uri": self.callback_url,
                "state": state,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
                "allow_signup": "false",
            }
        )
        return f"{self.settings.github_url}/login/oauth/authorize?{query}"

    def login_for_code(self, code: str, verifier: str) -> str:
        """Exchange the upstream code and return the GitHub login (lower-case)."""
        try:
            response = self.http.post(
                f"{self.settings.github_url}/login/oauth/access_token",
                data={
                    "client_id": self.settings.github_client_id,
                    "client_secret": self.settings.github_client_secret,
                    "code": code,
                    "redirect_uri": self.callback_url,
                    "code_verifier": verifier,
                },
                headers={"Accept": "application/json"},
            )
            payload = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError("GitHub could not be reached") from exc
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            error = payload.get("error") if isinstance(payload, dict) else None
            raise UpstreamError(f"GitHub refused the login ({error or response.status_code})")
        try:
            user = self.http.get(
                f"{self.settings.github_api_url}/user",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
            )
            data = user.json() if user.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError("GitHub could not be reached") from exc
        login = data.get("login") if isinstance(data, dict) else None
        if not isinstance(login, str) or not login.strip():
            raise UpstreamError("GitHub did not name the user")
        return login.strip().lower()
