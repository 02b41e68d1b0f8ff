"""Traefik ForwardAuth: is this bearer token good for the MCP endpoint being requested?

The answer needs the JWT signature (local), the audience (local), the allowlist (local) and the
grant's liveness plus the token's own revocation (one Redis MGET). A short per-process cache of
good answers saves even that round trip; revocation still takes effect within its lifetime.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import jwt
from flask import Blueprint, Response, current_app, request

from . import events
from .allowlist import Identity
from .config import Resource, Settings
from .keys import KeyRing, NotAnAccessTokenError
from .metrics import verify_outcome
from .store import get_store

bp = Blueprint("verify", __name__)


def _refused(reason: str) -> None:
    """Count a refusal twice over: in the service's Redis counters (`mcp-gateway stats`) and as the
    outcome the Prometheus request hook records."""
    events.refused(f"verify_{reason}")
    verify_outcome(reason)


_CACHE_MAX = 10000
_cache: dict[str, tuple[float, float, dict[str, str]]] = {}
_cache_lock = threading.Lock()


# Percent-encoded characters that could change which resource a path names once something behind
# Traefik decodes it: dot (dot segments), slash and backslash (separators), semicolon (path
# parameters), percent (double encoding) and NUL. None is ever needed in an MCP endpoint's path.
_ENCODED_SEPARATORS = re.compile(r"%(?:2e|2f|5c|3b|25|00)", re.IGNORECASE)


def path_problem(uri: str) -> str | None:
    """Why the requested path (X-Forwarded-Uri) is refused, or None when it is plain.

    The resource is matched on the raw path, so a path that a server behind Traefik might resolve
    to another one (`/alpha/mcp/../../beta/mcp`, `%2e%2e`, `..;/`, `%2f`, `%5c`, `//`) could borrow
    one resource's token for another. Traefik cleans paths by default; this check does not rely on it.
    """
    path = uri.split("?", 1)[0]
    if not path.startswith("/"):
        return "The request path must start with '/'"
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in path):
        return "The request path contains characters that must be percent-encoded"
    if "\\" in path:
        return "The request path contains a backslash"
    if ";" in path:
        return "The request path contains a ';' path parameter"
    if "#" in path:
        return "The request path contains a fragment"
    segments = path.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        return "The request path contains a dot segment"
    if "" in segments[:-1]:
        return "The request path contains an empty segment ('//')"
    if _ENCODED_SEPARATORS.search(path):
        return "The request path contains a percent-encoded dot, slash, backslash, ';', '%' or NUL"
    return None


def resource_for(settings: Settings, scheme: str, host: str, uri: str) -> Resource | None:
    """The configured resource that the request's scheme, host and X-Forwarded-Uri point at (a path that
    path_problem accepts)."""
    scheme = scheme.lower()
    host = host.lower()
    if scheme == "https" and host.endswith(":443"):
        host = host[:-4]
    path = uri.split("?", 1)[0]
    for item in settings.resources:
        if item.origin == f"{scheme}://{host}" and (path == item.path or path.startswith(item.path + "/")):
            return item
    return None


def requested_resource(settings: Settings) -> Resource | None:
    """The configured resource that Traefik's X-Forwarded-Proto/-Host/-Uri point at."""
    return resource_for(settings, request.scheme, request.host, request.headers.get("X-Forwarded-Uri", "/"))


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer` header (scheme case-insensitive), or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def cache_key(resource: Resource, token: str) -> str:
    return hashlib.sha256(f"{resource.resource}\0{token}".encode()).hexdigest()


def cached_grant(settings: Settings, scheme: str, host: str, uri: str, authorization: str) -> dict[str, str] | None:
    """The identity headers of a grant this process checked within the cache's lifetime, when the request
    passes every check that comes before the cache (the path, the resource, a bearer token); None when
    the request needs the whole check (verify() below), whatever its outcome will be."""
    if settings.verify_cache_seconds <= 0 or path_problem(uri) is not None:
        return None
    resource = resource_for(settings, scheme, host, uri)
    if resource is None:
        return None
    token = bearer_token(authorization)
    if token is None:
        return None
    return _cached(cache_key(resource, token))


def prm_url(resource: Resource) -> str:
    return f"{resource.origin}/.well-known/oauth-protected-resource{resource.path}"


def _quote(value: str) -> str:
    return value.replace("\\", "").replace('"', "'")


def challenge(
    settings: Settings, resource: Resource, status: int, error: str | None = None, description: str | None = None
) -> Response:
    parts = []
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_quote(description)}"')
    parts.append(f'scope="{" ".join(settings.scopes)}"')
    parts.append(f'resource_metadata="{prm_url(resource)}"')
    response = Response(status=status)
    response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(parts)
    response.headers["Cache-Control"] = "no-store"
    return response


def _cached(key: str) -> dict[str, str] | None:
    entry = _cache.get(key)
    if entry is None:
        return None
    valid_until, token_exp, headers = entry
    now = time.time()
    if now > valid_until or now > token_exp:
        _cache.pop(key, None)
        return None
    return headers


def _remember(key: str, token_exp: float, headers: dict[str, str], seconds: float) -> None:
    if seconds <= 0:
        return
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = (time.time() + seconds, token_exp, headers)


# Traefik forwards the method of the request it checks.
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


@bp.route("/verify", methods=list(METHODS))
def verify():
    settings: Settings = current_app.config["SETTINGS"]
    problem = path_problem(request.headers.get("X-Forwarded-Uri", "/"))
    if problem is not None:
        # Before any token check: whichever token came along, this path names no resource safely.
        _refused("bad_path")
        body = json.dumps({"error": "invalid_request", "error_description": problem})
        response = Response(body, status=400, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    resource = requested_resource(settings)
    if resource is None:
        _refused("unknown_resource")
        response = Response('{"error":"unknown_resource"}', status=403, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        # Every MCP client's first request: counted, as the start of discovery rather than an attack.
        _refused("no_token")
        return challenge(settings, resource, 401)
    key = cache_key(resource, token)
    headers = _cached(key)
    if headers is None:
        keys: KeyRing = current_app.extensions["mcpgw_keys"]
        try:
            claims = keys.verify(token, issuer=settings.issuer, audience=resource.resource)
        except jwt.InvalidTokenError as exc:
            if isinstance(exc, jwt.ExpiredSignatureError):
                reason, description = "expired", "The token is expired"
            elif isinstance(exc, NotAnAccessTokenError):
                reason, description = "not_access_token", "The token is not an access token"
            else:
                reason, description = "invalid_token", "The token is not valid for this resource"
            _refused(reason)
            return challenge(settings, resource, 401, "invalid_token", description)
        login = str(claims["sub"])
        grant, revoked, banned = get_store().token_state(str(claims.get("gid", "")), str(claims["jti"]), login)
        # Domain and group rules read the claims the grant keeps from the sign-in or the last refresh.
        identity = Identity.from_claims(login, grant.get("claims") if grant else None)
        if not settings.user_allowed(login, resource, identity):
            _refused("user_not_allowed")
            return challenge(settings, resource, 401, "invalid_token", "The user is not allowed")
        if banned:
            _refused("banned")
            return challenge(settings, resource, 401, "invalid_token", "The user is banned")
        if grant is None or revoked:
            _refused("revoked")
            return challenge(settings, resource, 401, "invalid_token", "The token was revoked")
        granted = set(str(claims.get("scope", "")).split())
        if not set(settings.scopes) <= granted:
            _refused("insufficient_scope")
            return challenge(settings, resource, 403, "insufficient_scope", "The token lacks a required scope")
        headers = {
            "X-Auth-User": login,
            "X-Auth-Client-Id": str(claims.get("client_id", "")),
            "X-Auth-Scope": " ".join(sorted(granted)),
        }
        _remember(key, float(claims["exp"]), headers, settings.verify_cache_seconds)
    verify_outcome("allowed")
    response = Response(status=200)
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response
