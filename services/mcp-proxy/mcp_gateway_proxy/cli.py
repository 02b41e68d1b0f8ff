"""``mcp-proxy``: parse options, set up JSON logging, serve with uvicorn on loopback or a unix socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import stat
from collections.abc import Sequence

import uvicorn
from sse_starlette import EventSourceResponse

from .app import create_app
from .config import Settings, parse_settings
from .logs import configure_logging


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
        loop="uvloop",
        http="httptools",
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
