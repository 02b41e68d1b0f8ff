"""The OAuth 2.1 server: authlib's grants and endpoints on this gateway's storage and policy.

authlib does the protocol work (request validation, client authentication, PKCE, error shapes,
RFC 7591/7592/7009/7662 endpoints, RFC 9207 `iss`); this package supplies the persistence hooks and
what authlib does not know: resource indicators (RFC 8707), S256-only PKCE, JWT access tokens bound
to one resource, grants that revoke together, refresh rotation with reuse detection and CIMD clients.

One module per job: server (the AuthorizationServer, clients, token generation), http (requests as
authlib sees them), code_grant, refresh_grant, token_endpoints (revocation, introspection),
registration (RFC 7591, RFC 7592) and metadata (RFC 8414).
"""

from __future__ import annotations

from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app

from ..config import Settings
from .code_grant import AuthorizationCodeGrant, S256Required
from .refresh_grant import RefreshTokenGrant
from .registration import Configuration, Registration
from .server import GatewayServer
from .token_endpoints import Introspection, Revocation


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
