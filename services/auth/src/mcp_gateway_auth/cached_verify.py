"""A cached ForwardAuth grant answered before Flask.

Traefik asks `/verify` once for every request to an MCP server, and nearly every answer is a grant the
verify cache already holds. Through Flask that answer costs a request context, the hooks of every
extension and a response object: most of a cached check's CPU (py-spy, BENCHMARKS.md "The whole
path"). This WSGI layer sits between ProxyFix and Flask and answers only that case, with the same
status, headers and counters as the Flask view. Everything else (another path, a refusal, a cache miss,
a check that needs Redis) goes to Flask unchanged, so every decision, refusal and error answer stays in
one place: verify.verify.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import get_host

from .config import Settings
from .metrics import HTTP_REQUESTS, VERIFY
from .verify import METHODS, cached_grant
from .web import PAGE_CSP

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

PATH = "/verify"
# What the Flask view's 200 carries besides the identity headers: an empty text/html body (Flask's
# default type), `no-store`, and web.py's security headers for an HTML answer. Kept in the view's order.
_BEFORE = [("Content-Type", "text/html; charset=utf-8")]
_AFTER = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", PAGE_CSP),
    ("X-Frame-Options", "DENY"),
    ("Content-Length", "0"),
]


class CachedGrants:
    """WSGI middleware: a `/verify` the cache can grant answered here, every other request by `app`."""

    def __init__(self, app: WsgiApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # One child per method: the counter's labels are looked up once, not per request.
        self.requests = {method: HTTP_REQUESTS.labels(PATH, method, "200") for method in METHODS}
        self.allowed = VERIFY.labels("allowed")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if environ.get("PATH_INFO") != PATH or method not in self.requests:
            return self.app(environ, start_response)
        headers = cached_grant(
            self.settings,
            environ.get("wsgi.url_scheme", "http"),
            # Flask's request.host: the Host header (X-Forwarded-Host once ProxyFix trusts it).
            get_host(environ),
            environ.get("HTTP_X_FORWARDED_URI", "/"),
            environ.get("HTTP_AUTHORIZATION", ""),
        )
        if headers is None:
            return self.app(environ, start_response)
        self.requests[method].inc()
        self.allowed.inc()
        start_response("200 OK", [*_BEFORE, *headers.items(), *_AFTER])
        return [b""]
