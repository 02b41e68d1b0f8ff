"""``mcp-proxy``: parse options, set up JSON logging, serve with uvicorn on loopback or a unix socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import stat
import sys
import time
from collections.abc import Sequence

import uvicorn
from sse_starlette import EventSourceResponse

from .app import create_app
from .config import Settings, parse_settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line in the gateway's log schema (LOGS.md at the repository's root):
    `ts`, `level`, `logger`; a message that is a JSON object adds its keys (it cannot replace those
    three), any other message is `msg`; a traceback is `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
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


def build_server(settings: Settings) -> uvicorn.Server:
    # sse-starlette reads its keep-alive period from this class attribute; the SDK's legacy transport
    # builds its EventSourceResponse without a ping argument, so this is the one place to set it.
    EventSourceResponse.DEFAULT_PING_INTERVAL = settings.sse_keepalive  # type: ignore[assignment]
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace)),
        h11_max_incomplete_event_size=None,
    )
    return uvicorn.Server(config)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    if settings.check_config is not None:
        command = shlex.join(settings.command)
        print(f"mcp-proxy: {settings.check_config}: the configuration is valid (command: {command})")
        return
    configure_logging(settings.log_level)
    where = settings.uds or f"{settings.host}:{settings.port}"
    logging.getLogger("mcp_gateway_proxy").info(
        json.dumps({"event": "starting", "listen": where, "command": settings.command, "pool_size": settings.pool_size})
    )
    server = build_server(settings)
    if settings.uds is None:
        server.run()
        return
    # Bind the unix socket here rather than in uvicorn, which would make it world-writable (0666): anyone on
    # the host could then claim any user in the identity header.
    if os.path.exists(settings.uds) and stat.S_ISSOCK(os.stat(settings.uds).st_mode):
        os.unlink(settings.uds)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~settings.uds_mode)
    try:
        sock.bind(settings.uds)
    finally:
        os.umask(old_umask)
    os.chmod(settings.uds, settings.uds_mode)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(settings.uds)


if __name__ == "__main__":
    main()
