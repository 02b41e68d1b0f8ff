"""The gateway's one log schema (LOGS.md at the repository's root): one JSON object per line.

The application, gunicorn's error and access logs and the operator commands all write it. The
bridge (services/mcp-proxy) writes the same schema with its own formatter: the two packages share
no code, so LOGS.md is the contract and each service's tests check it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import pwd
import sys
import time
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger as GunicornBaseLogger

# The operator commands' audit lines go to the journal through this socket when it exists
# (journald provides /dev/log); a test points it at a datagram socket of its own.
AUDIT_SOCKET_VARIABLE = "AUTH_AUDIT_SYSLOG_SOCKET"
AUDIT_SOCKET_DEFAULT = "/dev/log"
SYSLOG_IDENTIFIER = "mcp-gateway"


def timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-11-30T10:05:11.123Z."""
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _json_object(message: str) -> dict | None:
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JsonFormatter(logging.Formatter):
    """`ts`, `level`, `logger`; a message that is a JSON object adds its keys (it cannot replace those
    three), any other message is `msg`; a traceback is `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        fields = _json_object(message)
        if fields is None:
            entry["msg"] = message
        else:
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def audit(logger: logging.Logger, event: str, **fields: Any) -> None:
    """A security decision: one line with `event` and `"audit": true` (never a secret in `fields`)."""
    logger.info(json.dumps({"event": event, "audit": True, **fields}, default=str))


def security_event(event: str, **fields: Any) -> None:
    """A security decision of the service (a token issued, a refresh token reused, a login refused):
    one audit line, and the counters of /metrics that follow such decisions."""
    audit(logging.getLogger("mcp_gateway_auth"), event, **fields)
    # Imported here, not at the top: gunicorn's master loads this module for its logger class and
    # needs neither Flask nor the counters.
    from .metrics import count_event

    count_event(event, fields)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with access lines built as a dict, so that status, bytes and duration are
    JSON numbers (access_log_format can only substitute its atoms into strings)."""

    def access(self, resp, req, environ: dict, request_time: timedelta) -> None:
        if not self.access_log_enabled or _routine_check(resp, environ):
            return
        try:
            self.access_log.info(json.dumps(access_fields(resp, environ, request_time)))
        except Exception:  # noqa: BLE001 - a log line must never break a request
            self.error_log.exception("could not write the access line")


# Traefik asks /verify once for every request to an MCP server: a line for each granted check would
# be most of the journal and about 6 % of a cached check's time. Refusals (401, 403, 400) and errors
# are kept.
QUIET_WHEN_GRANTED = "/verify"


def _routine_check(resp, environ: dict) -> bool:
    """A granted ForwardAuth check: no access line (Traefik's own access log has the request)."""
    return environ.get("PATH_INFO") == QUIET_WHEN_GRANTED and getattr(resp, "status_code", None) == 200


def access_fields(resp, environ: dict, request_time: timedelta) -> dict[str, Any]:
    raw = environ.get("RAW_URI") or environ.get("PATH_INFO") or "/"
    status = resp.status_code if isinstance(getattr(resp, "status_code", None), int) else _status(resp.status)
    return {
        "event": "access",
        "method": environ.get("REQUEST_METHOD", ""),
        # The path as received, never the query string (it may carry codes or states).
        "path": raw.split("?", 1)[0].split("#", 1)[0],
        "status": status,
        "bytes": int(getattr(resp, "sent", 0) or 0),
        "duration_ms": round(request_time.total_seconds() * 1000, 3),
        # REMOTE_ADDR after ProxyFix: the client Traefik saw.
        "remote": environ.get("REMOTE_ADDR"),
        "agent": environ.get("HTTP_USER_AGENT"),
    }


def _status(value: object) -> int:
    try:
        return int(str(value).split(None, 1)[0])
    except ValueError:
        return 0


# -- operator actions ------------------------------------------------------------------------------
def actor() -> str:
    """Who ran the command: the person behind sudo, else the invoking user's login."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return os.getlogin()
    except OSError:
        return pwd.getpwuid(os.getuid()).pw_name


def _operator_handler() -> logging.Handler:
    address = os.environ.get(AUDIT_SOCKET_VARIABLE) or AUDIT_SOCKET_DEFAULT
    if os.path.exists(address):
        try:
            handler: logging.Handler = logging.handlers.SysLogHandler(
                address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH
            )
        except OSError:
            pass
        else:
            # journald takes "IDENTIFIER[PID]: " as SYSLOG_IDENTIFIER and _PID.
            handler.ident = f"{SYSLOG_IDENTIFIER}[{os.getpid()}]: "
            handler.append_nul = False
            handler.setFormatter(JsonFormatter())
            return handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def operator_audit(event: str, outcome: str, *, by: str | None = None, **fields: Any) -> None:
    """One audit line for an operator action, sent to the journal (/dev/log) when there is one and
    to stderr otherwise; the command prints its result for the person separately. `by` names the
    actor when the caller took it before changing user (the admin command drops to the service's)."""
    logger = logging.getLogger("mcp_gateway_auth.operator")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _operator_handler()
    logger.addHandler(handler)
    try:
        audit(logger, event, actor=by or actor(), outcome=outcome, **fields)
    finally:
        logger.removeHandler(handler)
        handler.close()
