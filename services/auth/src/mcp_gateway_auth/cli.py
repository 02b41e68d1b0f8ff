"""Operator commands on the host: `flask --app 'mcp_gateway_auth:create_app()' gateway --help`
(with the service's AUTH_* environment).

Every command goes through the store's operations (list_clients, client_grants, user_grants,
delete_client, revoke_user); none touches Redis keys itself. Every action that changes something
writes one audit line to the journal (LOGS.md) and prints its result for the person.
"""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from .logs import operator_audit
from .store import digest, get_store


def _login(value: str) -> str:
    """GitHub logins are stored lower case and trimmed, as the allowlist compares them."""
    return value.strip().lower()


def _client_line(record: dict) -> dict:
    metadata = record.get("metadata", {})
    return {
        "client_id": record["client_id"],
        "client_name": metadata.get("client_name"),
        "redirect_uris": metadata.get("redirect_uris"),
        "client_id_issued_at": record.get("client_id_issued_at"),
    }


def _grant_line(grant: dict) -> dict:
    return {
        "grant_id": grant["grant_id"],
        "grant": digest(grant["grant_id"])[:12],  # as the service's audit lines name it
        "user": grant["user"],
        "client_id": grant["client_id"],
        "resources": grant.get("resources", []),
        "scope": grant.get("scope", ""),
        "created_at": grant.get("created_at"),
    }


def init_app(app: Flask) -> None:
    group = AppGroup("gateway", help="Manage registrations and grants of the auth service.")

    @group.command("clients")
    def clients() -> None:
        """List registered clients as JSON lines (id, name, redirect URIs, issued at)."""
        for record in get_store().list_clients():
            click.echo(json.dumps(_client_line(record)))

    @group.command("grants")
    @click.option("--client", "client_id", help="The grants of this client id.")
    @click.option("--user", "login", help="The grants of this GitHub login.")
    def grants(client_id: str | None, login: str | None) -> None:
        """List the live grants of a client or of a GitHub login as JSON lines."""
        if (client_id is None) == (login is None):
            raise click.UsageError("give either --client CLIENT_ID or --user LOGIN")
        store = get_store()
        found = store.client_grants(client_id) if client_id is not None else store.user_grants(_login(login or ""))
        for grant in found:
            click.echo(json.dumps(_grant_line(grant)))

    @group.command("delete-client")
    @click.argument("client_id")
    def delete_client(client_id: str) -> None:
        """Delete a registration and revoke every token issued to it (an id that begins with "-", from
        before ids stopped doing so, goes after "--")."""
        store = get_store()
        if store.get_client(client_id) is None:
            operator_audit("client_deleted", "not_found", client_id=client_id)
            raise click.ClickException(f"no such client: {client_id}")
        count = store.delete_client(client_id)
        operator_audit("client_deleted", "ok", client_id=client_id, grants_revoked=count)
        click.echo(f"deleted {client_id} and revoked {count} grant(s)")

    @group.command("revoke-user")
    @click.argument("login")
    def revoke_user(login: str) -> None:
        """Revoke every grant (refresh and access tokens) of a GitHub login."""
        count = get_store().revoke_user(_login(login))
        operator_audit("user_revoked", "ok", user=_login(login), grants_revoked=count)
        click.echo(f"revoked {count} grant(s) of {_login(login)}")

    app.cli.add_command(group)
