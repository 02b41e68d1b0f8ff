"""`mcp-gateway audit`: operator actions and security events, newest first.

From the bounded list in Redis (events.py keeps the newest store.AUDIT_KEEP entries); the journal
has every line for longer history (`journalctl -t mcp-gateway`, `journalctl -u mcp-gateway-auth`).
"""

from __future__ import annotations

import click

from ..store import AUDIT_KEEP
from .context import AdminContext, pass_admin
from .output import emit, json_option, table, when

_SHOWN = ("ts", "kind", "event", "actor", "outcome")


@click.command("audit")
@click.option(
    "--limit",
    type=click.IntRange(1, AUDIT_KEEP),
    default=50,
    show_default=True,
    help="How many entries, newest first.",
)
@json_option
@pass_admin
def command(admin: AdminContext, limit: int, as_json: bool) -> None:
    """Operator actions (deletions, revocations, bans) and security events (refresh-token reuse,
    refused and banned logins), newest first."""
    entries = admin.store.audit_entries(limit)

    def render() -> str:
        rows = [
            (
                when(entry.get("ts")),
                entry.get("kind"),
                entry.get("event"),
                entry.get("actor") or entry.get("user"),
                entry.get("outcome"),
                " ".join(f"{k}={v}" for k, v in entry.items() if k not in _SHOWN and v not in (None, "")),
            )
            for entry in entries
        ]
        return table(rows, ["time", "kind", "event", "who", "outcome", "details"])

    emit(as_json, entries, render)
