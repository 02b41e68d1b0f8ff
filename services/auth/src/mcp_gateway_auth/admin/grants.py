"""`mcp-gateway grants`: list live grants and revoke them (one, a user's, a client's, or all).

A grant groups the code, access tokens and refresh tokens of one authorization: revoking it ends
them all (refresh at once, /verify within AUTH_VERIFY_CACHE_MS).
"""

from __future__ import annotations

import click

from .. import events
from ..store import digest
from .arguments import IdArguments
from .context import AdminContext, pass_admin
from .output import emit, json_option, table, when
from .users import LOGIN


def grant_line(grant: dict) -> dict:
    return {
        "grant_id": grant["grant_id"],
        "grant": digest(grant["grant_id"])[:12],  # as the service's audit lines name it
        "user": grant["user"],
        "client_id": grant["client_id"],
        "resources": grant.get("resources", []),
        "scope": grant.get("scope", ""),
        "created_at": grant.get("created_at"),
    }


def grants_table(lines: list[dict]) -> str:
    return table(
        [(g["grant_id"], g["user"], g["client_id"], g["resources"], when(g["created_at"])) for g in lines],
        ["grant id", "user", "client", "resources", "created"],
    )


@click.group("grants")
def group() -> None:
    """Live grants (one per authorization: its code, access and refresh tokens)."""


@group.command("list")
@click.option("--user", "login", type=LOGIN, help="Only the grants of this GitHub login.")
@click.option("--client", "client_id", help="Only the grants of this client id.")
@json_option
@pass_admin
def list_grants(admin: AdminContext, login: str | None, client_id: str | None, as_json: bool) -> None:
    """Live grants, oldest first: all, or those of a user and/or a client."""
    store = admin.store
    if login is not None:
        found = store.user_grants(login)
        if client_id is not None:
            found = [grant for grant in found if grant["client_id"] == client_id]
    elif client_id is not None:
        found = store.client_grants(client_id)
    else:
        found = store.all_grants()
    lines = [grant_line(grant) for grant in found]
    emit(as_json, lines, lambda: grants_table(lines))


@group.command("revoke", cls=IdArguments)
@click.argument("grant_id", required=False)
@click.option("--user", "login", type=LOGIN, help="Revoke every grant of this GitHub login.")
@click.option("--client", "client_id", help="Revoke every grant issued to this client id.")
@click.option("--all", "everything", is_flag=True, help="Revoke every grant: everyone signs in again.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation of --all.")
@json_option
@pass_admin
def revoke(
    admin: AdminContext,
    grant_id: str | None,
    login: str | None,
    client_id: str | None,
    everything: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Revoke GRANT_ID, or every grant of --user, of --client, or --all of them."""
    chosen = [name for name, value in (("GRANT_ID", grant_id), ("--user", login), ("--client", client_id)) if value]
    if everything:
        chosen.append("--all")
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of GRANT_ID, --user LOGIN, --client CLIENT_ID or --all")
    store = admin.store
    if grant_id is not None:
        if not store.revoke_grant(grant_id):
            events.operator(store, admin.actor, "grant_revoked", "not_found", grant=digest(grant_id)[:12])
            raise click.ClickException(f"no such grant: {grant_id}")
        events.operator(store, admin.actor, "grant_revoked", "ok", grant=digest(grant_id)[:12])
        emit(as_json, {"grants_revoked": 1}, lambda: f"revoked grant {grant_id}")
        return
    if login is not None:
        count = store.revoke_user(login)
        events.operator(store, admin.actor, "user_revoked", "ok", user=login, grants_revoked=count)
        emit(as_json, {"grants_revoked": count}, lambda: f"revoked {count} grant(s) of {login}")
        return
    if client_id is not None:
        count = sum(store.revoke_grant(grant["grant_id"]) for grant in store.client_grants(client_id))
        events.operator(store, admin.actor, "client_revoked", "ok", client_id=client_id, grants_revoked=count)
        emit(as_json, {"grants_revoked": count}, lambda: f"revoked {count} grant(s) of {client_id}")
        return
    if not yes:
        click.confirm("Revoke every grant? Every user will have to sign in again", abort=True, err=True)
    count = sum(store.revoke_grant(grant["grant_id"]) for grant in store.all_grants())
    events.operator(store, admin.actor, "all_revoked", "ok", grants_revoked=count)
    emit(as_json, {"grants_revoked": count}, lambda: f"revoked {count} grant(s)")
