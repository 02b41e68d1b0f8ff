"""`mcp-gateway stats`: what the gateway holds now and what happened over the last hour and day.

"Now" is counted from the store (a SCAN: an operator's question, not a request's). Events come
from the counters the service keeps (events.py: one HINCRBY into a 5-minute bucket that lives a
day), so "the last hour" is right to within one bucket.
"""

from __future__ import annotations

import click

from ..cimd import looks_like_cimd
from ..events import AUDITED
from ..store import Store
from .context import AdminContext, pass_admin
from .output import emit, json_option, table

PERIODS = (("last_hour", 3600), ("last_day", 86400))
REUSE = "refresh_reused"
REFUSED_PREFIX = "refused:"


def _period(counts: dict[str, int]) -> dict:
    refusals = {name[len(REFUSED_PREFIX) :]: n for name, n in counts.items() if name.startswith(REFUSED_PREFIX)}
    # Refused logins and refreshes are security events too; they count as refusals here.
    refusals.update({name: n for name, n in counts.items() if name in AUDITED and name != REUSE})
    return {
        "logins": counts.get("login", 0),
        "refresh_reuse_detected": counts.get(REUSE, 0),
        "refusals": dict(sorted(refusals.items())),
    }


def gather(store: Store) -> dict:
    registered = sum(1 for _ in store.list_clients())
    documents = sum(1 for client_id in store.clients_with_grants() if looks_like_cimd(client_id))
    return {
        "clients": {"registered": registered, "metadata_document": documents},
        "live_grants": len(store.all_grants()),
        "banned_users": len(store.bans()),
        **{name: _period(store.counts(seconds)) for name, seconds in PERIODS},
    }


@click.command("stats")
@json_option
@pass_admin
def command(admin: AdminContext, as_json: bool) -> None:
    """Clients, live grants, bans; logins, refusals by reason and refresh-reuse detections
    over the last hour and the last day."""
    stats = gather(admin.store)

    def render() -> str:
        now = table(
            [
                ("registered clients", stats["clients"]["registered"]),
                ("metadata-document clients with grants", stats["clients"]["metadata_document"]),
                ("live grants", stats["live_grants"]),
                ("banned users", stats["banned_users"]),
            ],
            ["now", "count"],
        )
        hour, day = stats["last_hour"], stats["last_day"]
        rows = [
            ("logins", hour["logins"], day["logins"]),
            ("refresh reuse detected", hour["refresh_reuse_detected"], day["refresh_reuse_detected"]),
        ]
        rows += [(f"refused: {reason}", hour["refusals"].get(reason, 0), n) for reason, n in day["refusals"].items()]
        return now + "\n\n" + table(rows, ["event", "last hour", "last day"])

    emit(as_json, stats, render)
