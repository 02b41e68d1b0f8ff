"""Dynamic client registration (RFC 7591) and client configuration (RFC 7592)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
)
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint, InvalidClientMetadataError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint

from ..clients import Client, RegistrationClaims, new_client_id
from ..logs import security_event
from ..store import digest, new_secret, same_secret
from .metadata import server_metadata
from .server import GatewayServer

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
        client_id = new_client_id()
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
        security_event("client_registered", client_id=client_id, client_name=metadata.get("client_name"))
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
        security_event("client_updated", client_id=client.client_id)
        return Client(record, self.server.settings.scopes)

    def delete_client(self, client, request):
        self.server.store.delete_client(client.client_id)
        security_event("client_deleted", client_id=client.client_id)
