"""`mcp-gateway health`: is each part of the gateway up, as a client would find it?

- each unit (`systemctl is-active`): the auth service, Traefik, Redis, one bridge per MCP server;
- Redis persistence (`INFO persistence`, through the store): AOF on, its last write ok;
- each certificate Traefik serves (auth and every MCP service), fetched on this host's HTTPS port
  with the name as SNI and verified against the service's CA store, with its expiry date;
- each MCP service answering `tools/list` through Traefik, with an access token the command mints
  for itself: a grant it creates (60 s) and revokes afterwards, signed with the current key. The token
  names the first user both allowlists name (not banned); where they hold only rules (an email domain,
  a group: an OpenID Connect allowlist), the health client itself, with the claims those rules ask for.

Exit 0 when all is healthy, 1 naming what is not.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import click
import httpx

from ..allowlist import GROUP_PREFIX, Identity, is_rule
from ..config import Resource, Settings
from ..keys import KeyRing
from ..store import Store, new_secret
from .context import AdminContext, pass_admin
from .output import emit, json_option, table, when

HEALTH_CLIENT = "mcp-gateway-health"
HEALTH_TTL = 60
TIMEOUT = 10.0


def _units(settings: Settings, units: tuple[str, ...]) -> list[dict]:
    names = list(units) + [f"mcp-proxy@{r.name}.service" for r in settings.resources]
    systemctl = shutil.which("systemctl")
    rows = []
    for name in names:
        if systemctl is None:
            rows.append({"check": "unit", "name": name, "ok": False, "detail": "systemctl not found"})
            continue
        done = subprocess.run([systemctl, "is-active", name], capture_output=True, text=True, check=False)
        state = done.stdout.strip() or done.stderr.strip()
        rows.append({"check": "unit", "name": name, "ok": state == "active", "detail": state})
    return rows


def _persistence(store: Store) -> dict:
    info = store.persistence()
    aof = str(info.get("aof_enabled")) == "1"
    write_ok = info.get("aof_last_write_status") == "ok" and info.get("rdb_last_bgsave_status", "ok") == "ok"
    detail = f"aof {'on' if aof else 'off'}, last write {info.get('aof_last_write_status', '?')}"
    return {"check": "redis", "name": "persistence", "ok": aof and write_ok, "detail": detail}


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        # Read as the service's user, after the command became it: a file only root may read is refused
        # here too, and so is one that holds no PEM certificate.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(
            f"cannot trust the CA certificates in {ca_file} (read as the service's user): {reason}"
        ) from exc


def _certificate(host: str, port: int, address: str, context: ssl.SSLContext, days: int) -> dict:
    try:
        with (
            socket.create_connection((address, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            not_after = ssl.cert_time_to_seconds(tls.getpeercert()["notAfter"])
    except (OSError, ssl.SSLError, KeyError, ValueError) as exc:
        return {"check": "certificate", "name": host, "ok": False, "detail": f"not served: {exc}"}
    left = (not_after - time.time()) / 86400
    return {
        "check": "certificate",
        "name": host,
        "ok": left >= days,
        "expires_at": int(not_after),
        "detail": f"expires {when(not_after)} (in {left:.0f} days)",
    }


def _identity_for(settings: Settings, resource: Resource, store: Store) -> Identity | None:
    """Who the minted token speaks for: a user the service lets through for this resource (not banned).
    A rule (`@domain`, `group:NAME`) is no user: where the allowlists hold only rules, no real person can
    be named, so the health client speaks for itself with the claims the rules read (an email in one
    of the domains, every group named), which the grant keeps for /verify."""
    entries = [*sorted(resource.allowed_users or ()), *sorted(settings.allowed_users)]
    for login in entries:
        if login != "*" and not is_rule(login) and settings.user_allowed(login, resource):
            if not store.is_banned(login):
                return Identity(login)
    groups = frozenset(e.removeprefix(GROUP_PREFIX) for e in entries if e.startswith(GROUP_PREFIX))
    for domain in sorted({e for e in entries if e.startswith("@")}) or [""]:
        identity = Identity(HEALTH_CLIENT, email=f"{HEALTH_CLIENT}{domain}" if domain else None, groups=groups)
        if settings.user_allowed(HEALTH_CLIENT, resource, identity) and not store.is_banned(HEALTH_CLIENT):
            return identity
    return None


def _result(response: httpx.Response) -> dict:
    """The JSON-RPC answer, sent as JSON or as a server-sent event stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:"):
                return json.loads(line[5:])
        raise ValueError("no event in the stream")
    return response.json()


def _tools(settings: Settings, store: Store, keys: KeyRing, resource: Resource, address: str, ca: str | None) -> dict:
    row = {"check": "mcp", "name": resource.name}
    identity = _identity_for(settings, resource, store)
    if identity is None:
        return row | {"ok": False, "detail": "no allowed user to mint a token for"}
    login = identity.login
    row["user"] = login
    scope = " ".join(settings.scopes)
    # the claims only where the rules are what admits the token (a named user is admitted by name)
    claims = identity.claims() if login == HEALTH_CLIENT else None
    gid = store.create_grant(
        user=login, client_id=HEALTH_CLIENT, resource=resource.resource, scope=scope, ttl=HEALTH_TTL, claims=claims
    )
    try:
        now = int(time.time())
        token = keys.sign(
            {
                "iss": settings.issuer,
                "sub": login,
                "aud": resource.resource,
                "client_id": HEALTH_CLIENT,
                "scope": scope,
                "iat": now,
                "nbf": now,
                "exp": now + HEALTH_TTL,
                "jti": new_secret(18),
                "gid": gid,
            }
        )
        parts = urlsplit(resource.resource)
        host, port = parts.hostname or "", parts.port or 443
        url = f"https://{address}:{port}{parts.path}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Host": parts.netloc,
            "Accept": "application/json, text/event-stream",
        }
        # Connect to Traefik on this host, with the service's name as SNI and Host: no DNS needed.
        extensions = {"sni_hostname": host}
        with httpx.Client(verify=_tls_context(ca), timeout=TIMEOUT) as http:

            def call(body: dict, session: str | None = None) -> httpx.Response:
                extra = {"Mcp-Session-Id": session} if session else {}
                request = http.build_request("POST", url, json=body, headers=headers | extra, extensions=extensions)
                return http.send(request)

            init = call(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": HEALTH_CLIENT, "version": "1"},
                    },
                }
            )
            if init.status_code != 200:
                return row | {"ok": False, "detail": f"initialize answered {init.status_code}"}
            session = init.headers.get("mcp-session-id")
            call({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
            listed = call({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
            if listed.status_code != 200:
                return row | {"ok": False, "detail": f"tools/list answered {listed.status_code}"}
            tools = _result(listed).get("result", {}).get("tools")
            if session:
                http.send(
                    http.build_request(
                        "DELETE", url, headers=headers | {"Mcp-Session-Id": session}, extensions=extensions
                    )
                )
        if not isinstance(tools, list):
            return row | {"ok": False, "detail": "tools/list gave no tools"}
        return row | {"ok": True, "detail": f"{len(tools)} tool(s)"}
    except (httpx.HTTPError, ValueError) as exc:
        return row | {"ok": False, "detail": f"unreachable: {exc}"}
    finally:
        store.revoke_grant(gid)


@click.command("health")
@click.option("--address", default="127.0.0.1", show_default=True, help="Where Traefik listens on this host.")
@click.option("--cert-days", default=14, show_default=True, help="A certificate expiring sooner is unhealthy.")
@click.option(
    "--unit",
    "units",
    multiple=True,
    default=("mcp-gateway-auth.service", "traefik.service", "redis-server.service"),
    show_default=True,
    help="Units to check besides one mcp-proxy@NAME per MCP server.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Trust these CA certificates (PEM) instead of the service's SSL_CERT_FILE (a test ACME CA, say).",
)
@json_option
@pass_admin
def command(
    admin: AdminContext, address: str, cert_days: int, units: tuple[str, ...], ca_file: str | None, as_json: bool
) -> None:
    """Units, Redis persistence, certificates, and each MCP service's tools/list through Traefik."""
    settings, store = admin.settings, admin.store
    # The service's CA store (the role points it at the system bundle with the extra CAs).
    ca = ca_file or admin.variables.get("SSL_CERT_FILE") or None
    rows = _units(settings, units)
    rows.append(_persistence(store))
    context = _tls_context(ca)
    issuer = urlsplit(settings.issuer)
    hosts = {issuer.hostname or "": issuer.port or 443}
    for resource in settings.resources:
        parts = urlsplit(resource.resource)
        hosts.setdefault(parts.hostname or "", parts.port or 443)
    rows += [_certificate(host, port, address, context, cert_days) for host, port in hosts.items()]
    keys = KeyRing(settings.signing_key_paths)
    rows += [_tools(settings, store, keys, resource, address, ca) for resource in settings.resources]
    unhealthy = [f"{r['check']} {r['name']}" for r in rows if not r["ok"]]
    emit(
        as_json,
        {"healthy": not unhealthy, "checks": rows},
        lambda: table([(r["check"], r["name"], r["ok"], r["detail"]) for r in rows], ["check", "name", "ok", "detail"]),
    )
    if unhealthy:
        raise click.ClickException("unhealthy: " + ", ".join(unhealthy))
