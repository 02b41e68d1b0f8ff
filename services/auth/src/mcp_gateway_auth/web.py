"""Cross-cutting HTTP policy: proxy trust, rate limits, CORS, security headers, error bodies."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, render_template, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings


def client_address_key() -> str:
    """Whom a rate limit counts: the client's IPv4 address, or the /64 of its IPv6 address. One
    IPv6 host usually holds a whole /64 and could otherwise take a fresh budget per address."""
    address = request.remote_addr or "-"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


limiter = Limiter(key_func=client_address_key, headers_enabled=True, key_prefix="mcpgw:rl")

# Endpoints no rate limit applies to. /verify answers Traefik on every MCP request, /health and
# /metrics local probes; Traefik rate-limits the MCP routes itself. Without this filter the limiter
# would still resolve, on each of their requests, which limits apply (none): about 3 % of a cached
# /verify's time in a py-spy profile.
UNLIMITED_ENDPOINTS = frozenset({"verify.verify", "oauth.health", "metrics.metrics"})


@limiter.request_filter
def _not_rate_limited() -> bool:
    return request.endpoint in UNLIMITED_ENDPOINTS


# Endpoints a browser-based MCP client (the MCP Inspector) calls cross-origin.
CORS_PATHS = ("/.well-known/", "/register", "/token", "/revoke", "/introspect", "/jwks")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"
    ),
    "Access-Control-Expose-Headers": (
        "Mcp-Session-Id, WWW-Authenticate, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
    ),
    "Access-Control-Max-Age": "600",
}
# Pages a person sees in a browser; everything else answers JSON.
HTML_PATHS = ("/authorize", "/consent", "/callback")
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened without building its signing serializer when the
    request carries no session cookie. Flask opens the session for every request, and only the
    browser pages ever have one: on a cached /verify opening it was up to 6 % of the time."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def json_error(status: int, error: str, description: str | None = None, headers: dict | None = None) -> Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def html_error(status: int, title: str, message: str) -> Response:
    response = Response(render_template("error.html", title=title, message=message), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_html() -> bool:
    return request.path.startswith(HTML_PATHS)


def _is_cors_path() -> bool:
    return request.path.startswith(CORS_PATHS)


def behind_proxies(settings: Settings, wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI app that takes the client's address, scheme and host from the trusted proxies'
    X-Forwarded-* headers (AUTH_TRUSTED_PROXY_HOPS), before anything else reads them."""
    hops = settings.trusted_proxy_hops
    if not hops:
        return wsgi_app
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=0, x_prefix=0)


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    app.session_interface = CookieSessionInterface()
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["RATELIMIT_STORAGE_URI"] = settings.limits_storage_uri
    app.config["RATELIMIT_STORAGE_OPTIONS"] = settings.limits_storage_options
    app.config["RATELIMIT_HEADERS_ENABLED"] = True

    # Flask runs after-request hooks in reverse order of registration: registered before the
    # limiter's, this one sees the headers the limiter adds.
    @app.after_request
    def _retry_after_only_on_refusals(response: Response) -> Response:
        # Flask-Limiter adds Retry-After to every answer of a limited endpoint; it means "wait
        # before trying again" (RFC 9110 section 10.2.3), so it belongs on a 429 or 503 alone.
        # The X-RateLimit-* headers stay: they let a client pace itself before it is refused.
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response

    limiter.init_app(app)

    @app.before_request
    def _preflight():
        if request.method == "OPTIONS" and _is_cors_path():
            return Response(status=204, headers=CORS_HEADERS)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        if _is_cors_path():
            for key, value in CORS_HEADERS.items():
                response.headers.setdefault(key, value)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = PAGE_CSP
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 429:
            retry = {"Retry-After": "60"}
            if _wants_html():
                response = html_error(429, "Too many requests", "Please wait a minute and try again.")
                response.headers.update(retry)
                return response
            return json_error(429, "rate_limited", "Too many requests; retry later", retry)
        if status == 413:
            error, description = "invalid_request", "The request body is too large"
        elif status == 405:
            error, description = "invalid_request", "Method not allowed"
        elif status == 404:
            error, description = "not_found", "No such endpoint"
        else:
            error, description = "invalid_request", "The request could not be understood"
        if _wants_html():
            return html_error(status, "Request refused", description)
        return json_error(status, error, description)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    @app.errorhandler(RedisReadOnlyError)
    def _storage_unavailable(exc: Exception):
        # Redis down or restarting, a failover under way (the old primary answering READONLY, the
        # replicas not acknowledging a durable write): nothing was confirmed, and the client may retry.
        current_app.logger.error("storage unavailable on %s: %s", request.path, exc)
        retry = {"Retry-After": "5"}
        if _wants_html():
            response = html_error(
                503, "Temporarily unavailable", "The sign-in service cannot reach its storage; try again shortly."
            )
            response.headers.update(retry)
            return response
        return json_error(503, "temporarily_unavailable", "Storage unavailable; retry shortly", retry)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        current_app.logger.exception("unhandled error on %s", request.path)
        if _wants_html():
            return html_error(500, "Something went wrong", "The sign-in service failed; please try again.")
        return json_error(500, "server_error", "Internal error")
