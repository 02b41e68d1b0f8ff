"""The one log schema both services write (LOGS.md at the repository's root), as assertions.

entries = parse_log(text)        # every line must be one JSON object
for entry in entries:
    assert_schema(entry)         # keys and types, access lines included
"""

from __future__ import annotations

import json
import re
from typing import Any

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
EVENT = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LEVELS = {"debug", "info", "warning", "error", "critical"}
# Fields that are numbers wherever they appear (null where unknown), and what a boolean turned text looks like.
NUMBERS = {"status", "bytes", "duration_ms", "pid", "code", "grants_revoked", "pool_size", "lines", "rpc_error"}
BOOL_AS_TEXT = {"true", "false", "True", "False"}


def parse_log(text: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from exc
        assert isinstance(entry, dict), f"line {number} is not a JSON object: {line!r}"
        entries.append(entry)
    return entries


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_schema(entry: dict[str, Any], *, agent: bool = False) -> None:
    """One line of either service; `agent`: access lines carry the user agent (the auth service)."""
    where = json.dumps(entry)[:300]
    assert TS.match(str(entry.get("ts"))), f"ts: {where}"
    assert entry.get("level") in LEVELS, f"level: {where}"
    assert isinstance(entry.get("logger"), str) and entry["logger"], f"logger: {where}"
    assert "event" in entry or "msg" in entry, f"neither event nor msg: {where}"
    if "event" in entry:
        assert isinstance(entry["event"], str) and EVENT.match(entry["event"]), f"event: {where}"
    if "msg" in entry:
        assert isinstance(entry["msg"], str), f"msg: {where}"
    if "exc" in entry:
        assert isinstance(entry["exc"], str) and "Traceback" in entry["exc"], f"exc: {where}"
    for legacy in ("time", "message", "exception", "type"):
        assert legacy not in entry, f"{legacy} belongs to no schema: {where}"
    for key, value in entry.items():
        if key in NUMBERS:
            assert value is None or _is_number(value), f"{key} is not a number: {where}"
        elif key not in ("msg", "exc", "line"):
            assert not (isinstance(value, str) and value in BOOL_AS_TEXT), f"{key} is a boolean as text: {where}"
    if "audit" in entry:
        assert entry["audit"] is True, f"audit: {where}"
    if entry.get("event") == "access":
        assert isinstance(entry["method"], str) and entry["method"], where
        assert isinstance(entry["path"], str) and entry["path"].startswith("/") and "?" not in entry["path"], where
        assert isinstance(entry["status"], int) and not isinstance(entry["status"], bool), where
        assert 100 <= entry["status"] <= 599, where
        assert isinstance(entry["bytes"], int) and not isinstance(entry["bytes"], bool), where
        assert entry["bytes"] >= 0, where
        assert _is_number(entry["duration_ms"]) and entry["duration_ms"] >= 0, where
        assert "remote" in entry and (entry["remote"] is None or isinstance(entry["remote"], str)), where
        if agent:
            assert "agent" in entry and (entry["agent"] is None or isinstance(entry["agent"], str)), where
