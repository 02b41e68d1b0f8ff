"""HTTP endpoints. Thin: authlib's create_*_response does the protocol work."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit, urlunsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from flask import Blueprint, Response, current_app, redirect, render_template, request, session

from . import events, untrusted_json
from .allowlist import Identity
from .clients import Client, is_loopback_host
from .config import Settings
from .logs import security_event
from .oauth import get_server
from .oauth.http import StoredRequest
from .oauth.metadata import server_metadata
from .oauth.server import GatewayServer, User
from .store import get_store, new_secret, same_secret, same_text
from .upstream import UpstreamError, get_upstream
from .web import html_error, json_error, limiter

bp = Blueprint("oauth", __name__)

AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "prompt",
)


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def _json(data: dict, status: int = 200, cache: str = "public, max-age=300") -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = cache
    return response


# -- discovery -----------------------------------------------------------------------------------
@bp.get("/.well-known/oauth-authorization-server")
@bp.get("/.well-known/openid-configuration")
def as_metadata():
    return _json(server_metadata(settings()))


@bp.get("/.well-known/oauth-protected-resource")
@bp.get("/.well-known/oauth-protected-resource/<path:resource_path>")
def protected_resource_metadata(resource_path: str | None = None):
    """RFC 9728, chosen by the Host Traefik kept from the client's request."""
    conf = settings()
    host = request.host.lower()
    if host.endswith(":443"):
        host = host[:-4]
    on_host = [r for r in conf.resources if r.origin == f"https://{host}"]
    if resource_path is None:
        matches = on_host if len(on_host) == 1 else []
    else:
        matches = [r for r in on_host if r.path == "/" + resource_path.rstrip("/")]
    if not matches:
        return json_error(404, "not_found", "No protected resource is served here")
    resource = matches[0]
    return _json(
        {
            "resource": resource.resource,
            "authorization_servers": [conf.issuer],
            "scopes_supported": list(conf.scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": resource.name,
        }
    )


@bp.get("/jwks")
def jwks():
    return _json(current_app.extensions["mcpgw_keys"].jwks())


@bp.get("/health")
def health():
    try:
        ok = get_store().ping()
    except Exception:  # noqa: BLE001 - any Redis failure means unhealthy
        ok = False
    return _json({"status": "ok" if ok else "unavailable"}, 200 if ok else 503, cache="no-store")


# -- registration (RFC 7591, RFC 7592) -------------------------------------------------------------
def _require_json_object() -> Response | None:
    if request.mimetype != "application/json":
        return json_error(400, "invalid_client_metadata", "Send client metadata as application/json")
    try:
        untrusted_json.request_object()
    except untrusted_json.UntrustedJsonError as exc:
        return json_error(400, "invalid_client_metadata", str(exc))
    return None


@bp.post("/register")
@limiter.limit(lambda: settings().ratelimit_register)
def register():
    problem = _require_json_object()
    if problem is not None:
        return problem
    return get_server().create_endpoint_response("client_registration")


@bp.route("/register/<client_id>", methods=["GET", "PUT", "DELETE"])
@limiter.limit(lambda: settings().ratelimit_register, methods=["PUT", "DELETE"])
def client_configuration(client_id: str):
    server = get_server()
    record = get_store().get_client(client_id)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    client = Client(record, settings().scopes) if record and record.get("kind") == "dcr" else None
    valid = (
        client is not None
        and scheme.lower() == "bearer"
        and same_secret(token.strip(), client.record.get("registration_access_token_hash"))
    )
    if not valid:
        # Unknown client and wrong token look the same, so client ids cannot be probed.
        return json_error(
            401,
            "invalid_token",
            "The registration access token is not valid for this client",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if request.method == "PUT":
        problem = _require_json_object()
        if problem is not None:
            return problem
    return server.create_endpoint_response("client_configuration")


# -- token, revocation, introspection -------------------------------------------------------------
def _form_only() -> Response | None:
    if request.mimetype != "application/x-www-form-urlencoded":
        return json_error(400, "invalid_request", "Use application/x-www-form-urlencoded")
    if request.args:
        return json_error(400, "invalid_request", "Parameters belong in the body, not the query string")
    return None


@bp.post("/token")
@limiter.limit(lambda: settings().ratelimit_token)
def token():
    problem = _form_only()
    if problem is not None:
        return problem
    response = get_server().create_token_response()
    if (
        response.status_code == 400
        and response.is_json
        and (response.get_json() or {}).get("error") == "invalid_client"
    ):
        # Unknown or expired client, or failed authentication: 401, so clients such as Claude.ai re-register.
        response.status_code = 401
    return response


@bp.post("/revoke")
@limiter.limit(lambda: settings().ratelimit_token)
def revoke():
    problem = _form_only()
    if problem is not None:
        return problem
    return get_server().create_endpoint_response("revocation")


@bp.post("/introspect")
@limiter.limit(lambda: settings().ratelimit_token)
def introspect():
    problem = _form_only()
    if problem is not None:
        return problem
    return get_server().create_endpoint_response("introspection")


# -- authorization: consent, the provider leg, the code -------------------------------------------
def _error_redirect(redirect_uri: str, error: OAuth2Error, state: str | None) -> Response:
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if state:
        params.append(("state", state))
    params.append(("iss", settings().issuer))
    return redirect(add_params_to_uri(redirect_uri, params), code=302)


def _validate(server: GatewayServer, oauth_request, user: User | None = None):
    """(grant, None) for a valid request, else (None, response) with an error page or redirect."""
    try:
        return server.get_consent_grant(oauth_request, end_user=user), None
    except OAuth2Error as error:
        state = oauth_request.payload.state if oauth_request is not None else None
        if error.redirect_uri:
            return None, _error_redirect(error.redirect_uri, error, state)
        return None, html_error(400, "This sign-in request cannot be used", f"{error.error}: {error.description or ''}")


def _fresh_login() -> str | None:
    """Who signed in with this browser lately, when the provider lets the session stand for a
    fresh sign-in (GitHub); an OpenID Connect provider is asked for every grant."""
    if not get_upstream().remembers_login:
        return None
    login = session.get("login")
    at = session.get("login_at", 0)
    if isinstance(login, str) and isinstance(at, int) and time.time() - at < settings().session_ttl:
        return login
    return None


def _expired() -> Response:
    return html_error(400, "Request expired", "This sign-in request expired. Start again from your application.")


def _complete(pending_id: str, identity: Identity, upstream: dict | None = None) -> Response:
    """Issue our code for a person the provider confirmed, the allowlist admits and no operator banned."""
    conf = settings()
    login = identity.login
    server = get_server()
    pending = get_store().take_pending(pending_id)
    if pending is None:
        return _expired()
    if get_store().is_banned(login):
        # A page for the person, not a redirect: the client can do nothing about it, and the
        # person should know why rather than see an application error.
        session.pop("login", None)
        events.security("login_banned", user=login, client_id=pending["params"]["client_id"])
        return html_error(
            403,
            "Account banned",
            f"An administrator of this gateway has banned this {conf.idp_name} account from signing in.",
        )
    params = pending["params"]
    oauth_request = StoredRequest(conf.issuer, params)
    user = User(login, identity=identity, upstream=upstream)
    grant, failure = _validate(server, oauth_request, user)
    if failure is not None:
        return failure
    resource = conf.resource_by_url(params["resource"])
    if not conf.user_allowed(login, resource, identity):
        events.security("login_refused", user=login, resource=params["resource"])
        error = AccessDeniedError(f"This {conf.idp_name} account may not use this service")
        return _error_redirect(grant.redirect_uri, error, params.get("state"))
    get_store().save_consent(
        login,
        params["client_id"],
        [params["resource"]],
        oauth_request.scope or "",
        consent_target(grant.redirect_uri),
        conf.consent_ttl,
    )
    security_event("authorized", user=login, client_id=params["client_id"], resource=params["resource"])
    return server.create_authorization_response(oauth_request, grant_user=user, grant=grant)


def consent_target(redirect_uri: str) -> str:
    """Where a consent sends the person back, as remembered: the redirect URI, without the port of
    a loopback one (any port matches it, RFC 8252 section 7.3)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return urlunsplit(("http", parts.hostname or "", parts.path, parts.query, ""))
    return redirect_uri


def _consent_covers(login: str, client_id: str, resource: str, scope: str, redirect_uri: str) -> bool:
    """A remembered consent covers this service, these scopes and this destination: a client that
    later changes its redirect URIs (RFC 7592, or its metadata document) asks again."""
    consent = get_store().get_consent(login, client_id)
    if not consent:
        return False
    return (
        resource in consent["resources"]
        and set(scope.split()) <= set(consent["scopes"])
        and consent_target(redirect_uri) in consent.get("redirect_targets", [])
    )


@bp.get("/authorize")
@limiter.limit(lambda: settings().ratelimit_authorize)
def authorize():
    conf = settings()
    server = get_server()
    oauth_request = server.create_oauth2_request(None)
    for name in AUTHORIZE_PARAMS:
        # A repeated resource is answered as invalid_target by the grant, on the client's redirect.
        if name != "resource" and len(request.args.getlist(name)) > 1:
            return html_error(400, "This sign-in request cannot be used", f"invalid_request: repeated {name}")
    grant, failure = _validate(server, oauth_request)
    if failure is not None:
        return failure
    client: Client = grant.client
    # Kept as the client sent them (a redirect_uri it omitted must stay omitted at /token).
    params = {k: request.args[k] for k in AUTHORIZE_PARAMS if k in request.args}
    scope = oauth_request.scope or ""
    params["scope"] = scope
    pending = {"params": params, "redirect_uri": grant.redirect_uri, "created_at": int(time.time())}
    pending_id = get_store().save_pending(pending, conf.code_ttl)
    login = _fresh_login()
    if (
        login
        and params.get("prompt") != "consent"
        and _consent_covers(login, client.client_id, params["resource"], scope, grant.redirect_uri)
    ):
        return _complete(pending_id, Identity(login))
    csrf = session.get("csrf") or new_secret(24)
    session["csrf"] = csrf
    session.permanent = True
    resource = conf.resource_by_url(params["resource"])
    return render_template(
        "consent.html",
        client=client,
        client_id=client.client_id,
        redirect_host=(urlsplit(grant.redirect_uri).hostname or urlsplit(grant.redirect_uri).scheme + ":"),
        localhost_only=client.localhost_only(),
        metadata_document=client.kind == "cimd",
        resource=resource,
        scopes=scope.split(),
        login=login,
        pending_id=pending_id,
        csrf=csrf,
    )


@bp.post("/consent")
@limiter.limit(lambda: settings().ratelimit_authorize)
def consent():
    conf = settings()
    token = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not same_text(token, expected):
        return html_error(400, "Request refused", "The form expired or did not come from this site. Start again.")
    pending_id = request.form.get("pending", "")
    pending = get_store().get_pending(pending_id)
    if pending is None:
        return _expired()
    params = pending["params"]
    if request.form.get("decision") != "approve":
        get_store().delete_pending(pending_id)
        security_event("consent_denied", client_id=params["client_id"])
        return _error_redirect(
            pending["redirect_uri"], AccessDeniedError("The user denied the request"), params.get("state")
        )
    login = _fresh_login()
    if login:
        return _complete(pending_id, Identity(login))
    state = new_secret(24)
    try:
        url, saved = get_upstream().begin(state)
    except UpstreamError as exc:
        security_event(f"{get_upstream().kind}_login_failed", reason=str(exc))
        return html_error(502, "Sign-in failed", str(exc))
    get_store().save_upstream(state, {"pending_id": pending_id, **saved}, conf.code_ttl)
    session["upstream_state"] = state
    session.permanent = True
    return redirect(url, code=303)


@bp.get("/callback")
def callback():
    state = request.args.get("state", "")
    expected = session.get("upstream_state")
    if not same_text(state, expected):
        return html_error(
            400, "Sign-in failed", f"This {settings().idp_name} sign-in does not belong to this browser session."
        )
    session.pop("upstream_state", None)
    upstream = get_store().pop_upstream(state)
    if upstream is None:
        return _expired()
    pending_id = upstream["pending_id"]
    pending = get_store().get_pending(pending_id)
    if pending is None:
        return _expired()
    if request.args.get("error") or not request.args.get("code"):
        get_store().delete_pending(pending_id)
        return _error_redirect(
            pending["redirect_uri"],
            AccessDeniedError(f"{settings().idp_name} sign-in was not completed"),
            pending["params"].get("state"),
        )
    provider = get_upstream()
    try:
        signed_in = provider.finish(request.args["code"], upstream)
    except UpstreamError as exc:
        security_event(f"{provider.kind}_login_failed", reason=str(exc))
        return html_error(502, "Sign-in failed", str(exc))
    session["login"] = signed_in.identity.login
    session["login_at"] = int(time.time())
    session.permanent = True
    events.count("login")
    return _complete(pending_id, signed_in.identity, signed_in.upstream)
