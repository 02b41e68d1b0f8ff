"""Operator commands on the host: `flask --app 'mcp_gateway_auth:create_app()' gateway --help`
(with the service's AUTH_* environment)."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from .store import PREFIX, get_store


def init_app(app: Flask) -> None:
    group = AppGroup("gateway", help="Manage registrations and grants of the auth service.")

    @group.command("clients")
    def clients() -> None:
        """List registered clients as JSON lines (id, name, redirect URIs, issued at)."""
        store = get_store()
        for key in store.redis.scan_iter(f"{PREFIX}client:*"):
            record = store.get_client(key[len(PREFIX) + len("client:") :])
            if record:
                metadata = record.get("metadata", {})
                click.echo(
                    json.dumps(
                        {
                            "client_id": record["client_id"],
                            "client_name": metadata.get("client_name"),
                            "redirect_uris": metadata.get("redirect_uris"),
                            "client_id_issued_at": record.get("client_id_issued_at"),
                        }
                    )
                )

    @group.command("delete-client")
    @click.argument("client_id")
    def delete_client(client_id: str) -> None:
        """Delete a registration and revoke every token issued to it."""
        store = get_store()
        if store.get_client(client_id) is None:
            raise click.ClickException(f"no such client: {client_id}")
        store.delete_client(client_id)
        click.echo(f"deleted {client_id}")

    @group.command("revoke-user")
    @click.argument("login")
    def revoke_user(login: str) -> None:
        """Revoke every grant (refresh and access tokens) of a GitHub login."""
        count = get_store().revoke_user(login.strip().lower())
        click.echo(f"revoked {count} grant(s) of {login.strip().lower()}")

    app.cli.add_command(group)
