"""`mcp-gateway clients setup`: ready-to-paste client configuration for one MCP service.

Claude Code (`claude mcp add`), Claude Desktop (a stdio client: through `mcp-remote`), VS Code's
`mcp.json` and Claude.ai's custom connector all log in by themselves through the gateway's OAuth
flow, so each needs only the service's URL. What differs is trust: when the certificate Traefik
serves for the service is not from a public CA (a private ACME CA, a test CA), Node-based clients
need NODE_EXTRA_CA_CERTS and Claude.ai, which connects from Anthropic's servers, cannot connect at all.
The certificate is checked as a client would meet it, against the public CAs (certifi's bundle),
fetched through this host's Traefik with the service's name as SNI.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import click

from ..allowlist import is_rule
from ..config import Resource
from .context import AdminContext, pass_admin
from .output import emit, json_option

TIMEOUT = 10.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _issuer(cert: dict) -> str:
    names = dict(item for rdn in cert.get("issuer", ()) for item in rdn)
    return str(names.get("commonName") or names.get("organizationName") or "?")


def check_certificate(url: str, address: str, host_store: str | None) -> dict:
    """Whether a client with only the public CAs trusts the service's certificate: `public_ca` True
    or False, or None when it could not be fetched; `issuer` when the host's own CA store
    (`host_store`, else the default) trusts it and so names the private CA."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443

    def handshake(context: ssl.SSLContext) -> dict:
        with (
            socket.create_connection((address, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return tls.getpeercert() or {}

    try:
        cert = handshake(ssl.create_default_context(cafile=certifi.where()))
        return {"public_ca": True, "issuer": _issuer(cert), "detail": "issued by a public CA"}
    except ssl.SSLCertVerificationError as exc:
        refused = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        return {"public_ca": None, "issuer": None, "detail": f"could not be fetched through {address}:{port}: {exc}"}
    try:
        cert = handshake(ssl.create_default_context(cafile=host_store) if host_store else ssl.create_default_context())
    except (OSError, ssl.SSLError):
        return {"public_ca": False, "issuer": None, "detail": f"not trusted by the public CAs ({refused})"}
    issuer = _issuer(cert)
    return {"public_ca": False, "issuer": issuer, "detail": f"issued by {issuer!r}, not a public CA"}


def setup(resource: Resource, name: str, certificate: dict, ca_file: str | None) -> dict:
    url = resource.resource
    private = certificate["public_ca"] is not True
    ca_path = ca_file or "/path/to/gateway-ca.pem"
    desktop: dict = {"command": "npx", "args": ["-y", "mcp-remote", url]}
    if private:
        desktop["env"] = {"NODE_EXTRA_CA_CERTS": ca_path}
    hint = None
    if certificate["public_ca"] is False:
        hint = (
            f"The certificate of {urlsplit(url).hostname} is {certificate['detail'].removeprefix('issued by ')}: "
            f"Node-based clients (Claude Code, mcp-remote for Claude Desktop) must be started with "
            f"NODE_EXTRA_CA_CERTS={ca_path} (that CA's certificate, PEM); VS Code uses the operating system's "
            "store, so add the CA there; Claude.ai connects from Anthropic's servers and needs a certificate "
            "from a public CA (and a name they can reach)."
        )
    elif certificate["public_ca"] is None:
        hint = (
            f"The certificate {certificate['detail']}. If it is not from a public CA, start Node-based clients "
            f"with NODE_EXTRA_CA_CERTS={ca_path} and add the CA to the system store for VS Code."
        )
    claude_code = f"claude mcp add --transport http {shlex.quote(name)} {shlex.quote(url)}"
    if private:
        claude_code = f"NODE_EXTRA_CA_CERTS={shlex.quote(ca_path)} {claude_code}"
    return {
        "service": resource.name,
        "url": url,
        "claude_code": claude_code,
        "claude_desktop": {"mcpServers": {name: desktop}},
        "vscode": {"servers": {name: {"type": "http", "url": url}}},
        "claude_ai": {"url": url},
        "certificate": certificate,
        "ca_hint": hint,
    }


def render(data: dict) -> str:
    lines = [f"MCP service {data['service']}: {data['url']}"]
    if data.get("user"):
        lines.append(f"Sign in as {data['user']} when the browser opens.")
    lines += [
        "",
        "Claude Code:",
        f"  {data['claude_code']}",
        "",
        "Claude Desktop (claude_desktop_config.json; a stdio client, so through mcp-remote):",
        *("  " + line for line in json.dumps(data["claude_desktop"], indent=2).splitlines()),
        "",
        "VS Code (.vscode/mcp.json, or the user's mcp.json):",
        *("  " + line for line in json.dumps(data["vscode"], indent=2).splitlines()),
        "",
        "Claude.ai (Settings > Connectors > Add custom connector), URL:",
        f"  {data['claude_ai']['url']}",
    ]
    if data["ca_hint"]:
        lines += ["", "Certificate: " + data["ca_hint"]]
    return "\n".join(lines)


@click.command("setup")
@click.option("--service", "service_name", required=True, help="The MCP service (its name in mcp_servers).")
@click.option("--user", "login", default=None, help="The user who will sign in: checked against the allow-list.")
@click.option("--name", default=None, help="The name the client shows for the server (default: the service's).")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Where Traefik answers on this host, to read the certificate clients will meet.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The private CA's certificate clients must trust (named in the hint; default: found by the check).",
)
@json_option
@pass_admin
def setup_command(
    admin: AdminContext,
    service_name: str,
    login: str | None,
    name: str | None,
    address: str,
    ca_file: Path | None,
    as_json: bool,
) -> None:
    """Print ready-to-paste setup of a service for Claude Code, Claude Desktop, VS Code and Claude.ai."""
    settings = admin.settings
    resource = next((r for r in settings.resources if r.name == service_name), None)
    if resource is None:
        known = ", ".join(r.name for r in settings.resources)
        raise click.ClickException(f"no such service: {service_name} (the services: {known})")
    name = name or resource.name
    if not _NAME.fullmatch(name):
        raise click.UsageError(f"--name {name!r}: letters, digits, '-' and '_' only")
    note = None
    if login is not None:
        login = login.strip().lower()
        if not settings.user_allowed(login, resource):
            rules = [e for e in settings.allowed_users | (resource.allowed_users or frozenset()) if is_rule(e)]
            if not rules:
                raise click.ClickException(
                    f"{login} may not use {resource.name}: not on its allow-list ({settings.allowlist_setting}"
                    f"{', allowed_users of ' + resource.name if resource.allowed_users is not None else ''})"
                )
            note = f"{login} is not named on the allow-list; the provider's claims decide ({', '.join(sorted(rules))})"
    # The service's CA store (the role points SSL_CERT_FILE at the system bundle with the extra CAs).
    host_store = str(ca_file) if ca_file else admin.variables.get("SSL_CERT_FILE") or None
    certificate = check_certificate(resource.resource, address, host_store)
    data = setup(resource, name, certificate, str(ca_file) if ca_file else None)
    data["user"] = login
    data["note"] = note
    emit(as_json, data, lambda: render(data) + (f"\n\nNote: {note}" if note else ""))
