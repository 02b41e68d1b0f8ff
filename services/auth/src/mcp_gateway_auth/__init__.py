"""MCP OAuth Gateway authorization service.

Run as: gunicorn -c services/auth/gunicorn.conf.py 'mcp_gateway_auth:create_app()'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta

from flask import Flask

from . import metrics, oauth, store, upstream, web
from .config import ConfigError, Settings, load_settings
from .keys import KeyRing

__all__ = ["ConfigError", "Settings", "create_app"]


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app from AUTH_* environment variables, with `config` entries taking precedence.

    Raises ConfigError (the message names the variable) when something required is missing or
    malformed, so the service never starts half-configured.
    """
    try:
        settings = load_settings(config)
        keys = KeyRing(settings.signing_key_paths)
    except ConfigError as exc:
        logging.getLogger("mcp_gateway_auth").critical("configuration error: %s", exc)
        raise
    if settings.test_mode:
        # Loud on purpose: test settings switch guards off (the metadata-document SSRF guard, for one).
        logging.getLogger("mcp_gateway_auth").warning(
            json.dumps(
                {
                    "event": "test_mode",
                    "settings": list(settings.test_settings),
                    "message": "TEST MODE: started by the test harness with test-only settings; never in production",
                }
            )
        )
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="__Host-mcpgw",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_ttl),
        JSON_SORT_KEYS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    app.extensions["mcpgw_keys"] = keys
    store.init_app(app)
    upstream.init_app(app)
    web.init_app(app)
    oauth.init_app(app)
    metrics.init_app(app)

    from . import verify, views
    from .cached_verify import CachedGrants

    app.register_blueprint(views.bp)
    app.register_blueprint(verify.bp)
    _cimd_rate_limit(app, settings)
    # Outermost first: the proxies' headers applied, then a cached /verify grant answered before Flask.
    app.wsgi_app = web.behind_proxies(settings, CachedGrants(app.wsgi_app, settings))  # type: ignore[method-assign]
    return app


def _cimd_rate_limit(app: Flask, settings: Settings) -> None:
    """Metadata-document fetches are outbound requests an anonymous caller can trigger: cap them."""
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    limit = parse(settings.ratelimit_cimd)
    limiter = FixedWindowRateLimiter(
        storage_from_string(settings.limits_storage_uri, **settings.limits_storage_options)
    )

    def allow() -> bool:
        from .web import client_address_key

        if limiter.hit(limit, "mcpgw:rl:cimd", client_address_key()):
            return True
        metrics.count_rate_limited("cimd")
        return False

    app.extensions["mcpgw_cimd_limit"] = allow
