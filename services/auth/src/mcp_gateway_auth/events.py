"""Where a security event, an operator action or a refusal is recorded, in one place.

Three records, each for its reader:
- the journal line (logs.py, LOGS.md): every event, for the log pipeline;
- the bounded audit list in Redis (`mcp-gateway audit`): operator actions and the security events
  an operator must see (reuse detections, refused or banned logins), not routine ones such as
  `token_issued`;
- the counters in Redis (`mcp-gateway stats`): logins, tokens issued, refusals by reason and
  refresh-reuse detections, one pipelined HINCRBY each.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from .logs import operator_audit, security_event
from .store import Store, get_store

# Security events that go into the audit list (and are counted), besides the journal.
AUDITED = frozenset(
    {
        "refresh_reused",
        "refresh_other_client",
        "refresh_user_removed",
        "refresh_banned",
        "refresh_upstream_refused",
        "code_replayed",
        "code_other_client",
        "login_refused",
        "login_banned",
    }
)

_log = logging.getLogger("mcp_gateway_auth")


def security(event: str, **fields: Any) -> None:
    """A security decision of the service: its journal line and, when notable, its audit entry and count."""
    security_event(event, **fields)
    if event in AUDITED:
        _best_effort(lambda store: store.record_audit(_entry("security", event, fields)))
        count(event)


def count(event: str) -> None:
    """One more `event` in this bucket of the counters (never changes the answer being given)."""
    _best_effort(lambda store: store.count(event))


def refused(reason: str) -> None:
    count(f"refused:{reason}")


def operator(store: Store, by: str, event: str, outcome: str, **fields: Any) -> None:
    """An operator action by `by`: its journal line (to /dev/log) and its audit entry."""
    operator_audit(event, outcome, by=by, **fields)
    store.record_audit(_entry("operator", event, {"actor": by, "outcome": outcome, **fields}))


def _entry(kind: str, event: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"ts": round(time.time(), 3), "kind": kind, "event": event, **fields}


def _best_effort(action) -> None:
    # A counter or audit entry is worth less than the answer it describes: when Redis fails here,
    # the request's own outcome stands (and whatever needed Redis already answered 503).
    try:
        action(get_store())
    except redis.RedisError:
        _log.warning('{"event": "stats_not_recorded"}')
