"""The OAuth 2.1 server: authlib's grants and endpoints on this gateway's storage and policy.

authlib does the protocol work (request validation, client authentication, PKCE, error shapes,
RFC 7591/7592/7009/7662 endpoints, RFC 9207 `iss`); this module supplies the persistence hooks and
what authlib does not know: resource indicators (RFC 8707), S256-only PKCE, JWT access tokens bound
to one resource, grants that revoke together, refresh rotation with reuse detection and CIMD clients.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
    grants,
    scope_to_list,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, JsonPayload, JsonRequest
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint, InvalidClientMetadataError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app
from flask import request as flask_request

from . import cimd, logs, untrusted_json
from .clients import AUTH_METHODS, Client, RegistrationClaims
from .config import Settings
from .keys import KeyRing
from .store import RefreshState, Store, digest, new_secret, same_secret

log = logging.getLogger("mcp_gateway_auth")


def audit(event: str, **fields: Any) -> None:
    """A security decision of the service (`"audit": true`, see LOGS.md)."""
    logs.audit(log, event, **fields)


class InvalidTargetError(OAuth2Error):
    """RFC 8707: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


@dataclass
class User:
    login: str
    grant_id: str | None = None
    resource: str | None = None

    def get_user_id(self) -> str:
        return self.login


# -- requests: the URI is always the public https one, whatever hop reached us ---------------------
_TOKEN_WORD = re.compile(r"^[A-Za-z0-9_:.\- ]{1,100}$")


def _safe_word(value):
    """authlib quotes response_type and grant_type into error descriptions, which must be plain
    ASCII without quotes or backslashes; anything else is simply an unsupported value."""
    if value is None or _TOKEN_WORD.match(value):
        return value
    return "unsupported"


class _FlaskPayload(BasicOAuth2Payload):
    def __init__(self, values) -> None:
        self._values = values

    @property
    def response_type(self):
        return _safe_word(super().response_type)

    @property
    def grant_type(self):
        return _safe_word(super().grant_type)

    @property
    def data(self):
        return self._values

    @property
    def datalist(self):
        return {key: self._values.getlist(key) for key in self._values}


class GatewayRequest(OAuth2Request):
    def __init__(self, issuer: str) -> None:
        super().__init__(
            flask_request.method, issuer + flask_request.full_path.rstrip("?"), headers=flask_request.headers
        )
        self.payload = _FlaskPayload(flask_request.values)

    @property
    def args(self):
        return flask_request.args

    @property
    def form(self):
        return flask_request.form


class StoredRequest(OAuth2Request):
    """An authorization request replayed from storage after the GitHub login or the consent page."""

    def __init__(self, issuer: str, params: dict[str, str]) -> None:
        super().__init__("GET", issuer + "/authorize", headers={})
        self.payload = BasicOAuth2Payload(dict(params))

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


class _JsonBody(JsonPayload):
    @property
    def data(self):
        # The views have refused a body that is not a JSON object before authlib reads it.
        try:
            return untrusted_json.request_object()
        except untrusted_json.UntrustedJsonError:
            return {}


class GatewayJsonRequest(JsonRequest):
    def __init__(self, issuer: str) -> None:
        super().__init__(flask_request.method, issuer + flask_request.path, flask_request.headers)
        self.payload = _JsonBody()


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
                audit("cimd_refused", client_id=url, reason=str(exc))
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
        audit(
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


# -- PKCE: S256 only, for every client -----------------------------------------------------------
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
            audit("code_replayed", client_id=client.client_id, grant=digest(data)[:12])
            return None
        if status != "ok":
            return None
        if data["client_id"] != client.client_id:
            store.revoke_grant(data["grant_id"])
            audit("code_other_client", client_id=client.client_id)
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
        if not self.server.settings.user_allowed(data["user"], resource):
            self.server.store.revoke_grant(data["grant_id"])
            raise InvalidGrantError("The user is no longer allowed")
        if self.server.store.get_grant(data["grant_id"]) is None:
            raise InvalidGrantError("The authorization was revoked")
        return User(data["user"], data["grant_id"], data["resource"])


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
            audit("refresh_reused", grant=digest(state.grant_id)[:12])
            return None
        if state.status not in ("live", "retry"):
            return None
        record = RefreshRecord(state)
        if not record.check_client(self.request.client):
            store.revoke_grant(record.data["grant_id"])
            audit("refresh_other_client", client_id=self.request.client.client_id)
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
        if not settings.user_allowed(data["user"], resource):
            store.revoke_grant(data["grant_id"])
            audit("refresh_user_removed", user=data["user"])
            raise InvalidGrantError("The user is no longer allowed")
        return User(data["user"], data["grant_id"], requested)

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
                    audit("refresh_retried", grant=digest(user.grant_id)[:12])
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


# -- access and refresh tokens for revocation and introspection -----------------------------------
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
            grant, revoked = self.store.token_state(self.data.get("gid", ""), self.data["jti"])
            return revoked or grant is None
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
        audit("token_revoked", kind=token.kind, client_id=token.client_id)


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


# -- RFC 7591 and RFC 7592 -----------------------------------------------------------------------
def server_metadata(settings: Settings) -> dict:
    base = settings.issuer
    methods = list(AUTH_METHODS)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "registration_endpoint": f"{base}/register",
        "revocation_endpoint": f"{base}/revoke",
        "introspection_endpoint": f"{base}/introspect",
        "jwks_uri": f"{base}/jwks",
        "scopes_supported": list(settings.scopes),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }


UNUSED_CLIENT_TTL = 86400  # a registration that never got a code lives this long at most


class _Open:
    """Registration is open (RFC 7591 §3 without an initial access token), and rate-limited."""


class Registration(ClientRegistrationEndpoint):
    server: GatewayServer

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[RegistrationClaims])

    def authenticate_token(self, request):
        return _Open()

    def get_server_metadata(self):
        return server_metadata(self.server.settings)

    def create_registration_response(self, request):
        settings = self.server.settings
        metadata = self.extract_client_metadata(request)
        now = int(time.time())
        client_id = new_secret(24)
        public = metadata["token_endpoint_auth_method"] == "none"  # noqa: S105 - a method name
        secret = None if public else new_secret(32)
        registration_token = new_secret(32)
        expires_at = now + settings.client_ttl if settings.client_ttl else 0
        record = {
            "client_id": client_id,
            "kind": "dcr",
            "client_id_issued_at": now,
            "client_secret_expires_at": expires_at if secret else 0,
            "client_secret_hash": digest(secret) if secret else None,
            "registration_access_token_hash": digest(registration_token),
            "metadata": metadata,
            "expires_at": expires_at,
            # Registration is open: until it authorizes someone, a registration is kept one day at most,
            # so anonymous callers cannot fill Redis (noeviction) with clients kept for months.
            "unused": True,
        }
        self.server.store.save_client(record, min(settings.client_ttl or UNUSED_CLIENT_TTL, UNUSED_CLIENT_TTL))
        body = {**metadata, **public_client_info(record)}
        if secret:
            body["client_secret"] = secret
        body["registration_access_token"] = registration_token
        body["registration_client_uri"] = f"{settings.issuer}/register/{client_id}"
        audit("client_registered", client_id=client_id, client_name=metadata.get("client_name"))
        return 201, body, [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Pragma", "no-cache")]

    def extract_client_metadata(self, request):
        return validated_client_metadata(self, request)


def validated_client_metadata(endpoint: Registration | Configuration, request) -> dict:
    """RFC 7591's validation of client metadata, for registration and RFC 7592 updates alike (authlib's
    RFC 7592 endpoint has its own copy, which prints every refusal to stdout: a line outside the log
    schema in the journal)."""
    try:
        return ClientRegistrationEndpoint.extract_client_metadata(endpoint, request)
    except InvalidRequestError as exc:
        raise InvalidClientMetadataError("The body must be a JSON object of client metadata") from exc


def public_client_info(record: dict) -> dict:
    return {
        "client_id": record["client_id"],
        "client_id_issued_at": record["client_id_issued_at"],
        "client_secret_expires_at": record["client_secret_expires_at"],
    }


@dataclass
class RegistrationToken:
    value: str

    def check_client(self, client):
        return same_secret(self.value, client.record.get("registration_access_token_hash"))


class Configuration(ClientConfigurationEndpoint):
    server: GatewayServer
    software_statement_alg_values_supported = None  # as for registration: software statements are ignored

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[RegistrationClaims])

    def extract_client_metadata(self, request):
        return validated_client_metadata(self, request)

    def authenticate_token(self, request):
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return RegistrationToken(value.strip()) if scheme.lower() == "bearer" and value.strip() else None

    def authenticate_client(self, request):
        client_id = request.uri.rstrip("/").rsplit("/", 1)[-1]
        record = self.server.store.get_client(client_id)
        return Client(record, self.server.settings.scopes) if record and record.get("kind") == "dcr" else None

    def revoke_access_token(self, request, token):
        """Registration tokens are per client; an unknown client has none to revoke."""

    def check_permission(self, client, request):
        return True

    def introspect_client(self, client):
        return {**client.metadata, **public_client_info(client.record)}

    def generate_client_registration_info(self, client, request):
        return {
            "registration_client_uri": f"{self.server.settings.issuer}/register/{client.client_id}",
            "registration_access_token": request.credential.value,
        }

    def get_server_metadata(self):
        return server_metadata(self.server.settings)

    def update_client(self, client, client_metadata, request):
        record = dict(client.record)
        old_method = client.token_endpoint_auth_method
        if client_metadata.get("token_endpoint_auth_method") != old_method:
            raise InvalidClientMetadataError("token_endpoint_auth_method cannot be changed")
        record["metadata"] = client_metadata
        self.server.store.update_client(record)
        audit("client_updated", client_id=client.client_id)
        return Client(record, self.server.settings.scopes)

    def delete_client(self, client, request):
        self.server.store.delete_client(client.client_id)
        audit("client_deleted", client_id=client.client_id)


class Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


def init_app(app: Flask) -> GatewayServer:
    settings: Settings = app.config["SETTINGS"]
    server = GatewayServer(app, settings, app.extensions["mcpgw_store"], app.extensions["mcpgw_keys"])
    server.register_grant(AuthorizationCodeGrant, [S256Required(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_endpoint(Registration)
    server.register_endpoint(Configuration)
    server.register_extension(Issuer(settings.issuer))
    app.extensions["mcpgw_oauth"] = server
    return server


def get_server() -> GatewayServer:
    return current_app.extensions["mcpgw_oauth"]
