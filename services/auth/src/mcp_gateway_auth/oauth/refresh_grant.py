"""The refresh token grant: rotation on every use, reuse detection that revokes the grant, and a
short retry grace for a lost answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    OAuth2Error,
    grants,
    scope_to_list,
)

from .. import events
from ..allowlist import Identity
from ..clients import AUTH_METHODS
from ..store import RefreshState, digest
from ..upstream import UpstreamRefused, get_upstream
from ..upstream.oidc import UpstreamUnavailable
from .server import GatewayServer, InvalidTargetError, User


class TemporarilyUnavailableError(OAuth2Error):
    """The identity provider could not be asked; the refresh token stays good for a retry."""

    error = "temporarily_unavailable"
    status_code = 503


@dataclass
class RefreshRecord:
    """A presented refresh token that may be rotated: a live one, or the retry of a lost answer."""

    state: RefreshState

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def data(self) -> dict:
        return self.state.data or {}

    def check_client(self, client):
        return self.data.get("client_id") == client.client_id

    def get_scope(self):
        return self.data["scope"]


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation with reuse detection, written in one Redis script (Store.rotate_refresh).

    The token is looked up without spending it, so a request refused for its scope or resource
    leaves the client its refresh token; the rotation itself happens in save_token, once the new
    pair exists. Presenting a rotated token revokes the grant, except for the retry of a lost answer:
    the immediately previous token, within AUTH_REFRESH_REUSE_GRACE seconds of its rotation, while
    its successor is unused. That retry gets a fresh pair and voids the unclaimed successor.
    """

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: GatewayServer

    def _accept(self, state: RefreshState) -> RefreshRecord | None:
        """The record to rotate, or None; a reused or stolen token revokes its grant on the way."""
        store = self.server.store
        if state.status == "reused":
            # A rotated refresh token came back: one of the two holders is not the client.
            store.revoke_grant(state.grant_id)
            events.security("refresh_reused", grant=digest(state.grant_id)[:12])
            return None
        if state.status not in ("live", "retry"):
            return None
        record = RefreshRecord(state)
        if not record.check_client(self.request.client):
            store.revoke_grant(record.data["grant_id"])
            events.security("refresh_other_client", client_id=self.request.client.client_id)
            return None
        if state.grant is None:
            return None
        return record

    def _lookup(self, refresh_token: str) -> RefreshRecord | None:
        settings = self.server.settings
        return self._accept(self.server.store.lookup_refresh(refresh_token, settings.refresh_reuse_grace))

    def authenticate_refresh_token(self, refresh_token):
        return self._lookup(refresh_token)

    def authenticate_user(self, refresh_token: RefreshRecord):
        settings = self.server.settings
        store = self.server.store
        data = refresh_token.data
        grant = refresh_token.state.grant
        requested = self.request.form.get("resource") or data["resource"]
        if grant is None:
            raise InvalidGrantError("The authorization was revoked")
        if requested not in grant["resources"]:
            raise InvalidTargetError("The resource is not part of this authorization")
        resource = settings.resource_by_url(requested)
        if resource is None:
            raise InvalidTargetError("The resource is no longer served")
        identity = Identity.from_claims(data["user"], grant.get("claims"))
        if not settings.user_allowed(data["user"], resource, identity):
            store.revoke_grant(data["grant_id"])
            events.security("refresh_user_removed", user=data["user"])
            raise InvalidGrantError("The user is no longer allowed")
        if store.is_banned(data["user"]):
            # The ban revoked the grants it found; this one was made while the ban was being written.
            store.revoke_grant(data["grant_id"])
            events.security("refresh_banned", user=data["user"])
            raise InvalidGrantError("The user is banned")
        self._recheck_upstream(data, grant, resource)
        return User(data["user"], data["grant_id"], requested)

    def _recheck_upstream(self, data: dict, grant: dict, resource) -> None:
        """Ask the identity provider again (OpenID Connect: its refresh token), so a user it no longer
        vouches for, or whose groups or email no longer pass the allowlist, is refused now."""
        store = self.server.store
        try:
            rechecked = get_upstream().recheck(data["user"], grant.get("upstream"), int(grant.get("created_at", 0)))
        except UpstreamUnavailable as exc:
            raise TemporarilyUnavailableError(str(exc)) from exc
        except UpstreamRefused as exc:
            store.revoke_grant(data["grant_id"])
            events.security("refresh_upstream_refused", user=data["user"], reason=str(exc))
            raise InvalidGrantError(str(exc)) from exc
        if rechecked is None:
            return
        identity, upstream = rechecked
        if not self.server.settings.user_allowed(data["user"], resource, identity):
            store.revoke_grant(data["grant_id"])
            events.security("refresh_user_removed", user=data["user"])
            raise InvalidGrantError("The user is no longer allowed")
        if not store.update_grant_identity(data["grant_id"], identity.claims(), upstream):
            raise InvalidGrantError("The authorization was revoked")

    def save_token(self, token):
        """Spend the presented token and store the new one in one Redis operation."""
        server = self.server
        record: RefreshRecord = self.request.refresh_token
        user: User = self.request.user
        scope = token.get("scope", "")
        data = server.refresh_record(user, self.request.client.client_id, scope)
        for _ in range(3):
            outcome = server.store.rotate_refresh(
                record.state, token["refresh_token"], data, server.settings.refresh_token_ttl, server.grant_ttl
            )
            if outcome == "ok":
                if record.state.status == "retry":
                    events.security("refresh_retried", grant=digest(user.grant_id)[:12])
                server.audit_issued(self.request)
                return
            if outcome == "revoked":
                raise InvalidGrantError("The authorization was revoked")
            # Another request with the same token changed its state after we read it: decide again,
            # exactly as if this request had come a moment later (a retry, or reuse that revokes).
            again = self._lookup(record.token)
            if (
                again is None
                or again.data["grant_id"] != user.grant_id
                or not set(scope_to_list(scope)) <= set(scope_to_list(again.get_scope()))
            ):
                raise InvalidGrantError()
            record = again
        raise InvalidGrantError()

    def revoke_old_credential(self, refresh_token):
        """Already spent by save_token, atomically with storing its successor."""
