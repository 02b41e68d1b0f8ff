"""The authorization server: authlib's AuthorizationServer on this gateway's storage, keys and policy
(clients from registrations and metadata documents, JWT access tokens bound to one resource)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
    scope_to_list,
)
from flask import Flask, current_app

from .. import cimd
from ..allowlist import Identity
from ..clients import Client
from ..config import Settings
from ..keys import KeyRing
from ..logs import security_event
from ..store import Store, digest, new_secret
from .http import GatewayJsonRequest, GatewayRequest


class InvalidTargetError(OAuth2Error):
    """RFC 8707: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


@dataclass
class User:
    login: str
    grant_id: str | None = None
    resource: str | None = None
    identity: Identity | None = field(default=None, repr=False)  # the claims the allowlist's rules read
    upstream: dict | None = field(default=None, repr=False)  # the provider's state, kept with the grant

    def get_user_id(self) -> str:
        return self.login


class GatewayServer(AuthorizationServer):
    def __init__(self, app: Flask, settings: Settings, store: Store, keys: KeyRing) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        super().__init__(app, query_client=self._query_client, save_token=self._save_token)
        self.scopes_supported = list(settings.scopes)
        self.register_token_generator("default", self._generate_token)

    def create_oauth2_request(self, request):
        if isinstance(request, OAuth2Request):
            return request
        return GatewayRequest(self.settings.issuer)

    def create_json_request(self, request):
        return GatewayJsonRequest(self.settings.issuer)

    # -- clients ---------------------------------------------------------------------------------
    def _query_client(self, client_id: str | None) -> Client | None:
        if not client_id or not isinstance(client_id, str) or len(client_id) > 2048:
            return None
        if cimd.looks_like_cimd(client_id):
            return self._cimd_client(client_id)
        record = self.store.get_client(client_id)
        return Client(record, self.settings.scopes) if record else None

    def _cimd_client(self, url: str) -> Client | None:
        metadata = self.store.get_cimd(url)
        if metadata is None:
            limiter = current_app.extensions.get("mcpgw_cimd_limit")
            if limiter is not None and not limiter():
                raise InvalidRequestError("Too many client metadata document fetches; try again later")
            policy = cimd.FetchPolicy(
                max_bytes=self.settings.cimd_max_bytes,
                timeout=self.settings.cimd_timeout,
                allowed_test_hosts=self.settings.cimd_test_allowed_hosts,
            )
            try:
                document, cache_seconds = cimd.fetch_document(url, policy)
                metadata = cimd.validate_document(url, document)
            except cimd.CimdError as exc:
                security_event("cimd_refused", client_id=url, reason=str(exc))
                raise InvalidClientCimdError(str(exc)) from exc
            self.store.save_cimd(url, metadata, cache_seconds)
        return Client({"client_id": url, "kind": "cimd", "metadata": metadata}, self.settings.scopes)

    def validate_requested_scope(self, scope):
        if scope and not set(scope_to_list(scope)) <= set(self.settings.scopes):
            from authlib.oauth2.rfc6749 import InvalidScopeError

            raise InvalidScopeError(f"Supported scopes: {' '.join(self.settings.scopes)}")

    # -- tokens ----------------------------------------------------------------------------------
    def _generate_token(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        now = int(time.time())
        ttl = self.settings.access_token_ttl
        claims = {
            "iss": self.settings.issuer,
            "sub": user.login,
            "aud": user.resource,
            "client_id": client.client_id,
            "scope": scope or "",
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": new_secret(18),
            "gid": user.grant_id,
        }
        token = {
            "token_type": "Bearer",
            "access_token": self.keys.sign(claims),
            "expires_in": ttl,
            "scope": scope or "",
        }
        if include_refresh_token:
            token["refresh_token"] = new_secret(32)
        return token

    def refresh_record(self, user: User, client_id: str, scope: str) -> dict:
        """What is stored (hashed key) for a refresh token."""
        return {
            "grant_id": user.grant_id,
            "client_id": client_id,
            "user": user.login,
            "scope": scope,
            "resource": user.resource,
            "issued_at": int(time.time()),
        }

    @property
    def grant_ttl(self) -> int:
        return max(self.settings.refresh_token_ttl, self.settings.access_token_ttl)

    def _save_token(self, token: dict, request) -> None:
        """The authorization code grant's tokens (the refresh grant rotates in RefreshTokenGrant.save_token)."""
        user: User = request.user
        if token.get("refresh_token"):
            self.store.issue_refresh(
                token["refresh_token"],
                self.refresh_record(user, request.client.client_id, token.get("scope", "")),
                self.settings.refresh_token_ttl,
                self.grant_ttl,
            )
        else:
            # A client without the refresh_token grant: the grant was created for the code's life
            # only and must now live as long as the access token issued from it.
            self.store.keep_grant(user.grant_id, request.client.client_id, user.login, self.settings.access_token_ttl)
        self.audit_issued(request)

    def audit_issued(self, request) -> None:
        user: User = request.user
        security_event(
            "token_issued",
            user=user.login,
            client_id=request.client.client_id,
            grant=digest(user.grant_id)[:12],
            resource=user.resource,
            grant_type=request.payload.grant_type,
        )

    def check_resource(self, value: str | None) -> str:
        if not value:
            raise InvalidTargetError("The 'resource' parameter (RFC 8707) is required")
        if self.settings.resource_by_url(value) is None:
            raise InvalidTargetError("The requested resource is not served by this authorization server")
        return value


class InvalidClientCimdError(OAuth2Error):
    error = "invalid_client"
    status_code = 400
