"""The upstream identity provider that signs people in: GitHub or any OpenID Connect provider.

One small interface, one module per provider. The views call `begin` to send the browser to the
provider and `finish` when it comes back; the refresh grant calls `recheck` so that a user the
provider no longer vouches for (removed from a group, account disabled) is refused at refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import Flask, current_app

from ..allowlist import Identity
from ..config import Settings


class UpstreamError(Exception):
    """The provider did not confirm who the person is; the message is safe to show."""


class UpstreamRefused(Exception):
    """At refresh: the provider no longer vouches for the user, or cannot be asked; the message is
    safe to give the client."""


@dataclass(frozen=True)
class Login:
    """A completed sign-in: who, and what the grant keeps to ask the provider again at refresh."""

    identity: Identity
    upstream: dict | None = None  # provider state kept with the grant (secrets encrypted)


class Upstream(Protocol):
    kind: str  # "github" or "oidc": names events such as github_login_failed
    # Whether the browser session may stand for a fresh sign-in (a remembered consent then skips the
    # provider). An OpenID Connect grant needs its own provider tokens, so it always asks.
    remembers_login: bool

    def begin(self, state: str) -> tuple[str, dict]:
        """The provider's authorization URL for `state`, and the secrets to keep until the callback."""

    def finish(self, code: str, saved: dict) -> Login:
        """Exchange the provider's code (with what `begin` kept); raise UpstreamError."""

    def recheck(self, login: str, upstream: dict | None, created_at: int) -> tuple[Identity, dict | None] | None:
        """At refresh: the user's current identity and the new provider state, or None when the
        provider has nothing to re-check; raise UpstreamRefused."""


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    if settings.idp == "oidc":
        from .oidc import OpenIDConnect

        provider: Upstream = OpenIDConnect(settings)
    else:
        from .github import GitHub

        provider = GitHub(settings)
    app.extensions["mcpgw_upstream"] = provider


def get_upstream() -> Upstream:
    return current_app.extensions["mcpgw_upstream"]
