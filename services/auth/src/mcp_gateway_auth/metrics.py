"""Prometheus counters of the auth service and its `/metrics` endpoint, for scrapers on loopback only.

Under gunicorn the counters live in files that every worker writes and any worker reads
(prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR, prepared by gunicorn.conf.py), so
a scrape answered by one worker counts what all of them did. Without that variable (a Flask shell,
the operator commands) they are the process's own.

Every label takes its values from a fixed set (route templates, a list of methods, the outcomes
below), so no request, however made up, adds a series. The names and labels are documented in
docs/metrics.md.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .web import json_error

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# A path that matches no route: one label value for all of them.
UNMATCHED = "unmatched"

VERIFY_OUTCOMES = (
    "allowed",
    "bad_path",
    "unknown_resource",
    "no_token",
    "invalid_token",
    "expired",
    "not_access_token",
    "user_not_allowed",
    "banned",
    "revoked",
    "insufficient_scope",
    # Set by the request hook when /verify ended in an error answer instead of a decision.
    "unavailable",
    "error",
)
GRANT_TYPES = ("authorization_code", "refresh_token")
# Audit events (logs.security_event) that end a person's sign-in, and the outcome each one counts as.
LOGIN_OUTCOMES = {
    "authorized": "authorized",
    "login_refused": "refused",
    "consent_denied": "denied",
    "github_login_failed": "upstream_failed",
    "oidc_login_failed": "upstream_failed",
}
# Which AUTH_RATELIMIT_* budget a refused request spent, by Flask endpoint.
RATE_LIMITS = {
    "oauth.register": "register",
    "oauth.client_configuration": "register",
    "oauth.token": "token",
    "oauth.revoke": "token",
    "oauth.introspect": "token",
    "oauth.authorize": "authorize",
    "oauth.consent": "authorize",
}

HTTP_REQUESTS = Counter(
    "mcpgw_auth_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["endpoint", "method", "status"],
)
VERIFY = Counter("mcpgw_auth_verify", "ForwardAuth decisions of /verify, by outcome.", ["outcome"])
TOKENS_ISSUED = Counter(
    "mcpgw_auth_tokens_issued",
    "Access tokens issued by /token, by grant type (refresh_token: a refresh).",
    ["grant_type"],
)
REFRESH_REUSE = Counter(
    "mcpgw_auth_refresh_reuse_detections",
    "Spent refresh tokens presented again: the grant was revoked as stolen.",
)
REGISTRATIONS = Counter("mcpgw_auth_registrations", "Clients registered through /register (RFC 7591).")
LOGINS = Counter("mcpgw_auth_logins", "Sign-ins that ended, by outcome.", ["outcome"])
RATE_LIMITED = Counter(
    "mcpgw_auth_rate_limited",
    "Requests refused by a rate limit (429, or a metadata-document fetch refused), by limit.",
    ["limit"],
)

# Series that exist from the start, at zero: rate() and alerts see a first increase as one.
for _outcome in VERIFY_OUTCOMES:
    VERIFY.labels(_outcome)
for _grant_type in GRANT_TYPES:
    TOKENS_ISSUED.labels(_grant_type)
for _outcome in LOGIN_OUTCOMES.values():
    LOGINS.labels(_outcome)
for _limit in ("register", "token", "authorize", "cimd"):
    RATE_LIMITED.labels(_limit)

bp = Blueprint("metrics", __name__)


def verify_outcome(outcome: str) -> None:
    """Record the decision /verify is about to answer with; the request hook counts it."""
    g.mcpgw_verify_outcome = outcome


def count_event(event: str, fields: Mapping[str, Any]) -> None:
    """Count an audit event of the service (called for every logs.security_event)."""
    if event == "token_issued":
        grant_type = fields.get("grant_type")
        TOKENS_ISSUED.labels(grant_type if grant_type in GRANT_TYPES else "other").inc()
    elif event == "refresh_reused":
        REFRESH_REUSE.inc()
    elif event == "client_registered":
        REGISTRATIONS.inc()
    elif event in LOGIN_OUTCOMES:
        LOGINS.labels(LOGIN_OUTCOMES[event]).inc()


def count_rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


def _count_request(response: Response) -> Response:
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in HTTP_METHODS else "other"
    status = response.status_code
    HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
    if request.endpoint == "verify.verify":
        outcome = g.pop("mcpgw_verify_outcome", None)
        VERIFY.labels(outcome or ("unavailable" if status == 503 else "error")).inc()
    elif status == 429 and request.endpoint in RATE_LIMITS:
        RATE_LIMITED.labels(RATE_LIMITS[request.endpoint]).inc()
    return response


def _proxied() -> bool:
    """The request carries forwarding headers: it came through Traefik (which always adds them)."""
    environ = request.environ
    return any(name.startswith(("HTTP_X_FORWARDED_", "HTTP_FORWARDED", "HTTP_X_REAL_IP")) for name in environ)


def _peer_is_loopback() -> bool:
    # The TCP peer itself, not the client ProxyFix took from X-Forwarded-For.
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    peer = original.get("REMOTE_ADDR", request.environ.get("REMOTE_ADDR")) or ""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _registry() -> CollectorRegistry:
    path = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not path:
        return REGISTRY
    # A new registry per scrape, as prometheus_client's multiprocess mode requires: it reads every
    # worker's file, the dead workers' included, so counts never go back when a worker is replaced.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    # Scrapers run on the host. Through Traefik (never routed, but a path it does not clean could
    # get here) or from another machine, the endpoint does not exist.
    if _proxied() or not _peer_is_loopback():
        return json_error(404, "not_found", "No such endpoint")
    response = Response(generate_latest(_registry()), status=200)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(_count_request)
