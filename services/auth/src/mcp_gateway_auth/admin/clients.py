"""`mcp-gateway clients`: registered and metadata-document clients, their users, deletion.

A registered client (RFC 7591) has a record; a metadata-document client (its id is an https URL)
has none, only grants and a cached document, so it is listed while it holds grants.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from .. import events
from ..cimd import looks_like_cimd
from ..store import Store
from .arguments import IdArguments
from .client_setup import setup_command
from .context import AdminContext, pass_admin
from .grants import grant_line, grants_table
from .output import emit, json_option, table, when


def _describe(store: Store, client_id: str, record: dict | None, last_used: int | None) -> dict:
    if record is not None:
        metadata = record.get("metadata", {})
        kind = "registered"
    else:
        metadata = store.get_cimd(client_id) or {}  # the cached document, while it is cached
        kind = "metadata document"
    redirect_uris = metadata.get("redirect_uris") or []
    grants = store.client_grants(client_id)
    return {
        "client_id": client_id,
        "client_name": metadata.get("client_name"),
        "kind": kind,
        "redirect_uris": redirect_uris,
        "redirect_hosts": sorted({urlsplit(uri).hostname or urlsplit(uri).scheme + ":" for uri in redirect_uris}),
        "created_at": record.get("client_id_issued_at") if record else None,
        "expires_at": (record.get("expires_at") or None) if record else None,
        "last_used_at": last_used,
        "users": sorted({grant["user"] for grant in grants}),
        "grants": [grant_line(grant) for grant in grants],
    }


def _all_clients(store: Store) -> list[dict]:
    records = {record["client_id"]: record for record in store.list_clients()}
    documents = [c for c in store.clients_with_grants() if looks_like_cimd(c) and c not in records]
    ids = sorted(records) + documents
    last_used = store.clients_last_used(ids)
    return [_describe(store, client_id, records.get(client_id), last_used[client_id]) for client_id in ids]


def _find(store: Store, client_id: str) -> dict | None:
    record = store.get_client(client_id)
    if record is None and not (looks_like_cimd(client_id) and store.client_grants(client_id)):
        return None
    return _describe(store, client_id, record, store.clients_last_used([client_id])[client_id])


@click.group("clients")
def group() -> None:
    """OAuth clients: registered (RFC 7591) and metadata-document clients holding grants."""


@group.command("list")
@json_option
@pass_admin
def list_clients(admin: AdminContext, as_json: bool) -> None:
    """Every client: id, name, kind, redirect hosts, created, last used, users with live grants."""
    clients = _all_clients(admin.store)
    for client in clients:
        del client["grants"]  # `clients show` has them

    def render() -> str:
        rows = [
            (
                c["client_id"],
                c["client_name"],
                c["kind"],
                c["redirect_hosts"],
                when(c["created_at"]),
                when(c["last_used_at"]),
                c["users"],
            )
            for c in clients
        ]
        return table(rows, ["client id", "name", "kind", "redirect hosts", "created", "last used", "users"])

    emit(as_json, clients, render)


@group.command("show", cls=IdArguments)
@click.argument("client_id")
@json_option
@pass_admin
def show(admin: AdminContext, client_id: str, as_json: bool) -> None:
    """One client in full, with its live grants."""
    client = _find(admin.store, client_id)
    if client is None:
        raise click.ClickException(f"no such client: {client_id}")

    def render() -> str:
        fields = [
            ("client id", client["client_id"]),
            ("name", client["client_name"]),
            ("kind", client["kind"]),
            ("redirect uris", client["redirect_uris"]),
            ("created", when(client["created_at"])),
            ("expires", when(client["expires_at"])),
            ("last used", when(client["last_used_at"])),
            ("users", client["users"]),
        ]
        return table(fields, ["field", "value"]) + "\n\n" + grants_table(client["grants"])

    emit(as_json, client, render)


@group.command("delete", cls=IdArguments)
@click.argument("client_id")
@json_option
@pass_admin
def delete(admin: AdminContext, client_id: str, as_json: bool) -> None:
    """Delete a client and revoke everything issued to it. A metadata-document client loses its
    grants; its document stays where its owner publishes it."""
    store = admin.store
    if _find(store, client_id) is None:
        events.operator(store, admin.actor, "client_deleted", "not_found", client_id=client_id)
        raise click.ClickException(f"no such client: {client_id}")
    count = store.delete_client(client_id)
    events.operator(store, admin.actor, "client_deleted", "ok", client_id=client_id, grants_revoked=count)
    emit(
        as_json,
        {"client_id": client_id, "grants_revoked": count},
        lambda: f"deleted {client_id} and revoked {count} grant(s)",
    )


group.add_command(setup_command)
