"""Revocation (RFC 7009) and introspection (RFC 7662) of the gateway's access and refresh tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from authlib.oauth2.rfc6749 import (
    OAuth2Error,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ..clients import AUTH_METHODS
from ..config import Settings
from ..logs import security_event
from ..store import Store
from .server import GatewayServer


@dataclass
class TokenView:
    kind: str  # "access_token" or "refresh_token"
    client_id: str
    data: dict
    store: Store
    user_allowed: bool = True  # the allowlist still admits the user for the token's resource

    def check_client(self, client):
        return self.client_id == client.client_id

    def get_scope(self):
        return self.data.get("scope", "")

    def is_expired(self):
        return self.kind == "access_token" and self.data["exp"] < time.time()

    def is_revoked(self):
        if not self.user_allowed:
            return True
        if self.kind == "access_token":
            grant, revoked, banned = self.store.token_state(
                self.data.get("gid", ""), self.data["jti"], str(self.data.get("sub", ""))
            )
            return revoked or banned or grant is None
        return self.store.get_grant(self.data["grant_id"]) is None


def _find_token(server: GatewayServer, token_string: str, hint: str | None) -> TokenView | None:
    if not token_string or len(token_string) > 8192:
        return None
    if token_string.count(".") == 2:
        try:
            claims = server.keys.verify(token_string, issuer=server.settings.issuer, audience=None)
        except Exception:  # noqa: BLE001 - any undecodable token is simply not ours
            claims = None
        if claims:
            allowed = _still_allowed(server.settings, str(claims.get("sub", "")), str(claims.get("aud", "")))
            return TokenView("access_token", claims.get("client_id", ""), claims, server.store, allowed)
    record = server.store.find_refresh(token_string)
    if record:
        allowed = _still_allowed(server.settings, record["user"], record["resource"])
        return TokenView("refresh_token", record["client_id"], record, server.store, allowed)
    return None


def _still_allowed(settings: Settings, login: str, resource_url: str) -> bool:
    """What /verify and refresh decide: a token of a user the allowlist no longer admits is dead."""
    resource = settings.resource_by_url(resource_url)
    return resource is not None and settings.user_allowed(login, resource)


class UnsupportedTokenTypeError(OAuth2Error):
    """RFC 7009 section 2.2.1, answered as RFC 6749 section 5.2 says: 400. (authlib's answers 401,
    which tells a client its authentication failed and carries no WWW-Authenticate.)"""

    error = "unsupported_token_type"


class _TokenTypeHint:
    def check_params(self, request, client):
        try:
            super().check_params(request, client)
        except OAuth2Error as exc:
            if exc.error == UnsupportedTokenTypeError.error:
                raise UnsupportedTokenTypeError(exc.description) from exc
            raise


class Revocation(_TokenTypeHint, RevocationEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    server: GatewayServer

    def query_token(self, token_string, token_type_hint):
        return _find_token(self.server, token_string, token_type_hint)

    def authenticate_token(self, request, client):
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # Another client's token: answer as for an unknown one, and touch nothing.
        return token if token and token.check_client(client) else None

    def revoke_token(self, token: TokenView, request):
        store = self.server.store
        if token.kind == "access_token":
            store.revoke_jti(token.data["jti"], int(token.data["exp"] - time.time()) + 10)
        else:
            store.revoke_grant(token.data["grant_id"])
        security_event("token_revoked", kind=token.kind, client_id=token.client_id)


class Introspection(_TokenTypeHint, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    server: GatewayServer

    def query_token(self, token_string, token_type_hint):
        return _find_token(self.server, token_string, token_type_hint)

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token: TokenView):
        data = token.data
        if token.kind == "access_token":
            return {
                "active": True,
                "token_type": "Bearer",
                "client_id": token.client_id,
                "scope": data.get("scope", ""),
                "sub": data["sub"],
                "username": data["sub"],
                "aud": data["aud"],
                "iss": data["iss"],
                "exp": data["exp"],
                "iat": data["iat"],
                "jti": data["jti"],
            }
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": token.client_id,
            "scope": data.get("scope", ""),
            "sub": data["user"],
            "username": data["user"],
            "aud": data["resource"],
            "iss": self.server.settings.issuer,
        }
