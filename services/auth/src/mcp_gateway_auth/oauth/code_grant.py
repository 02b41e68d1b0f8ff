"""The authorization code grant (RFC 6749 section 4.1) with S256-only PKCE (RFC 7636), resource
indicators (RFC 8707) and codes consumed once, atomically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge

from .. import events
from ..allowlist import Identity
from ..clients import AUTH_METHODS
from ..store import digest
from .server import GatewayServer, InvalidTargetError, User


class S256Required(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


@dataclass
class AuthorizationCode:
    data: dict

    def get_redirect_uri(self):
        return self.data["redirect_uri"]

    def get_scope(self):
        return self.data["scope"]

    @property
    def code_challenge(self):
        return self.data["code_challenge"]

    @property
    def code_challenge_method(self):
        return self.data["code_challenge_method"]


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    server: GatewayServer

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        uri = request.payload.redirect_uri
        if uri is not None and (len(uri) > 2000 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri)):
            raise InvalidRequestError("The redirect_uri is not registered for this client")
        if uri and not client.check_redirect_uri(uri):
            raise InvalidRequestError("The redirect_uri is not registered for this client")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        try:
            self.server.check_resource(self.request.payload.data.get("resource"))
            if len(self.request.payload.datalist.get("resource", [])) > 1:
                raise InvalidTargetError("Request one resource at a time")
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code, request):
        settings = self.server.settings
        data = request.payload.data
        user: User = request.user
        if request.client.record.get("unused"):
            self.server.store.keep_client(request.client.client_id)
        gid = self.server.store.create_grant(
            user=user.login,
            client_id=request.client.client_id,
            resource=data["resource"],
            scope=request.scope or "",
            ttl=settings.code_ttl,
            claims=user.identity.claims() if user.identity else None,
            upstream=user.upstream,
        )
        self.server.store.save_code(
            code,
            {
                "grant_id": gid,
                "client_id": request.client.client_id,
                "redirect_uri": data.get("redirect_uri"),
                "scope": request.scope or "",
                "resource": data["resource"],
                "code_challenge": data["code_challenge"],
                "code_challenge_method": data["code_challenge_method"],
                "user": user.login,
            },
            settings.code_ttl,
        )

    def query_authorization_code(self, code, client):
        store = self.server.store
        status, data = store.consume_code(code, self.server.settings.code_ttl)
        if status == "replayed":
            store.revoke_grant(data)
            events.security("code_replayed", client_id=client.client_id, grant=digest(data)[:12])
            return None
        if status != "ok":
            return None
        if data["client_id"] != client.client_id:
            store.revoke_grant(data["grant_id"])
            events.security("code_other_client", client_id=client.client_id)
            return None
        return AuthorizationCode(data)

    def validate_token_request(self):
        super().validate_token_request()
        code: AuthorizationCode = self.request.authorization_code
        requested = self.server.check_resource(self.request.form.get("resource"))
        if requested != code.data["resource"]:
            raise InvalidTargetError("The resource differs from the one authorized")

    def delete_authorization_code(self, authorization_code):
        """Already consumed atomically by query_authorization_code."""

    def authenticate_user(self, authorization_code):
        data = authorization_code.data
        resource = self.server.settings.resource_by_url(data["resource"])
        grant = self.server.store.get_grant(data["grant_id"])
        identity = Identity.from_claims(data["user"], grant.get("claims") if grant else None)
        if not self.server.settings.user_allowed(data["user"], resource, identity):
            self.server.store.revoke_grant(data["grant_id"])
            raise InvalidGrantError("The user is no longer allowed")
        if grant is None:
            raise InvalidGrantError("The authorization was revoked")
        return User(data["user"], data["grant_id"], data["resource"])
