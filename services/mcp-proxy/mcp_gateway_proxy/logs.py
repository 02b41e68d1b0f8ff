"""The bridge's log lines: one JSON object per line in the gateway's schema (LOGS.md at the repository's
root), written to stderr (journald under systemd)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIELDS = "fields"  # the ``extra`` key of a record whose keys are given ready-made (no JSON round trip)


class JsonFormatter(logging.Formatter):
    """`ts`, `level`, `logger`; then the keys of the record's ``fields`` (``log.info("access",
    extra={"fields": {...}})``, the cheap form used on hot paths), or of a message that is a JSON object (they
    cannot replace those three), or else the message as `msg`; a traceback is `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        else:
            message = record.getMessage()
            parsed = None
            if message.startswith("{"):
                try:
                    parsed = json.loads(message)
                except ValueError:
                    parsed = None
            if isinstance(parsed, dict):
                for key, value in parsed.items():
                    entry.setdefault(key, value)
            else:
                entry["msg"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs every session event at info; keep it to warnings unless debugging.
    if level.lower() != "debug":
        logging.getLogger("mcp").setLevel(logging.WARNING)
        logging.getLogger("sse_starlette").setLevel(logging.WARNING)
