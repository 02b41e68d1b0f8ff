"""The ASGI application: /mcp (both protocol eras on one endpoint), /health and /metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from mcp_types import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .config import Settings, parse_settings
from .inflight import InFlight
from .jsonrpc import CHILD_EXITED, REQUEST_TIMEOUT, respond, respond_rpc, rpc_error
from .legacy import SessionRefused, SessionRegistry
from .logs import FIELDS, configure_logging
from .metrics import Metrics
from .modern import ModernHandler
from .pool import ChildPool

access_log = logging.getLogger("mcp_gateway_proxy.access")
log = logging.getLogger("mcp_gateway_proxy")

_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class Bridge:
    """Everything that lives as long as the server: the child pool, the sessions, the counters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.pool = ChildPool(settings, self.metrics)
        self.sessions = SessionRegistry(settings, self.metrics)
        self.in_flight = InFlight(settings, self.metrics)
        self.modern = ModernHandler(settings, self.metrics, self.pool, self.in_flight)
        self._tg: anyio.abc.TaskGroup | None = None
        self.metrics.gauges.update(
            {
                "mcp_proxy_sessions_open": lambda: len(self.sessions),
                "mcp_proxy_sessions_most_held_by_one_user": self.sessions.most_held_by_one_user,
                "mcp_proxy_requests_in_flight_most_held_by_one_user": self.in_flight.most_held_by_one_user,
                "mcp_proxy_users_with_requests_in_flight": lambda: len(self.in_flight.by_user),
                "mcp_proxy_children_running": lambda: (
                    len(self.pool.children)
                    + len(self.sessions.spares)
                    + sum(1 for s in list(self.sessions.sessions.values()) if s.child is not None and s.child.alive)
                ),
                "mcp_proxy_pool_children_ready": lambda: len(self.pool.ready),
                "mcp_proxy_spare_children": lambda: len(self.sessions.spares),
                "mcp_proxy_modern_requests_in_flight": lambda: self.in_flight.by_era["2026-07-28"],
                "mcp_proxy_legacy_requests_in_flight": lambda: self.in_flight.by_era["legacy"],
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.modern.tg = tg
            await tg.start(self.pool.run)
            await tg.start(self.sessions.keep_spares)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    # ---- /mcp -------------------------------------------------------------------------------------

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        allowed = self.settings.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.rsplit(":", 1)[0] in _LOOPBACK_HOSTS

    async def mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        headers = Headers(scope=scope)
        user = (headers.get(self.settings.user_header) or "").strip() or "anonymous"
        info: dict[str, Any] = {"era": "unknown", "status": None, "user": user, "bytes": 0}

        origin = headers.get("origin")
        cors = origin is not None and self.origin_allowed(origin)

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        info["sse"] = True
                if cors:
                    message = {**message, "headers": [*message.get("headers", []), *_cors_headers(origin)]}
            elif message["type"] == "http.response.body":
                info["bytes"] += len(message.get("body", b""))
            await send(message)

        if scope["method"] == "OPTIONS" and cors:
            # A browser client's preflight (the MCP Inspector): allowed origins only, nothing else is served.
            info["era"] = "cors"
            preflight = [*_CORS_PREFLIGHT, _allowed_request_headers(headers.get("access-control-request-headers"))]
            await watched_send({"type": "http.response.start", "status": 204, "headers": preflight})
            await watched_send({"type": "http.response.body", "body": b""})
            return

        try:
            await self._mcp(scope, receive, watched_send, headers, user, info)
        finally:
            elapsed = time.monotonic() - started
            status = info["status"] or 0
            method = scope["method"] if scope["method"] in _HTTP_METHODS else "other"  # labels stay bounded
            self.metrics.observe(info["era"], method, status, elapsed)
            if info.get("rpc_error") is not None:
                self.metrics.rpc_errors[(info["era"], int(info["rpc_error"]))] += 1
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                fields = {
                    "event": "access",
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "bytes": info["bytes"],
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": client[0] if client else None,
                    "era": info["era"],
                    "rpc_method": info.get("rpc_method"),
                    "rpc_error": info.get("rpc_error"),
                    "session": (info.get("session") or "")[:8] or None,
                    "user": user,
                    "sse": bool(info.get("sse")),
                }
                # The fields go to the formatter as they are: one JSON encoding per line, not three.
                access_log.info("access", extra={FIELDS: fields})

    async def _mcp(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, user: str, info: dict[str, Any]
    ) -> None:
        if not self.origin_allowed(headers.get("origin")):
            await respond_rpc(send, 403, rpc_error(None, INVALID_REQUEST, "Origin not allowed"))
            return
        body = b""
        if scope["method"] == "POST":
            read = await _read_body(receive, self.settings.max_body_bytes)
            if read is None:
                await respond_rpc(send, 413, rpc_error(None, INVALID_REQUEST, "Request body too large"))
                return
            body = read
        replay = _replaying(body, receive)
        version = headers.get("mcp-protocol-version")
        session_id = headers.get("mcp-session-id")
        decoded = _try_json(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("method"), str):
            info["rpc_method"] = decoded["method"]

        if version is not None and version not in KNOWN_PROTOCOL_VERSIONS and session_id is not None:
            info["era"] = "legacy"
            await respond_rpc(
                send, 400, rpc_error(None, INVALID_REQUEST, f"Unsupported MCP-Protocol-Version: {version}")
            )
            return
        if session_id is not None and version not in MODERN_PROTOCOL_VERSIONS:
            info["era"], info["session"] = "legacy", session_id
            session = self.sessions.find(session_id, user)
            if session is None:
                await respond_rpc(send, 404, rpc_error(None, INVALID_REQUEST, "Session not found"))
                return

            async def serve(answer: Send) -> None:
                await session.handle(scope, replay, answer, decoded)

            if scope["method"] == "POST":
                # Each POST holds its body (and a relay task) until the child answers: bounded, like 2026 ones.
                await self.in_flight.serve("legacy", user, send, None, serve, awaits_answer=_awaits_answer(decoded))
            else:
                await serve(send)
            if session.transport.is_terminated:
                await self.sessions.discard(session)
            return
        if (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS) or _has_modern_envelope(decoded):
            info["era"] = "2026-07-28"
            await self.modern(scope, replay, send, body, info)
            return
        info["era"] = "legacy"
        if scope["method"] == "POST" and isinstance(decoded, dict) and decoded.get("method") == "initialize":
            await self._open_session(scope, replay, send, user, info, decoded)
            return
        if scope["method"] not in ("POST", "GET", "DELETE"):
            await respond_rpc(send, 405, rpc_error(None, INVALID_REQUEST, "Method not allowed"))
            return
        if scope["method"] == "GET":
            # The transport rule for GET: a text/event-stream or 405. Clients that probe for a stream before
            # initialize (the TypeScript SDK) take only 405 as "no stream here" and go on with POST.
            await respond(send, 405, b"", headers=[(b"allow", b"GET, POST, DELETE")])
            return
        await respond_rpc(send, 400, rpc_error(None, INVALID_REQUEST, "Bad Request: Missing Mcp-Session-Id header"))

    async def _open_session(
        self, scope: Scope, receive: Receive, send: Send, user: str, info: dict[str, Any], decoded: Any
    ) -> None:
        assert self._tg is not None
        try:
            session = await self.sessions.open(user, self._tg)
        except SessionRefused as refused:
            if refused.reason == "per_user":
                self.metrics.sessions_refused_per_user += 1
                message = f"Too many open sessions for this user ({refused.limit}); end one (DELETE) or retry later"
            else:
                self.metrics.sessions_refused += 1
                message = f"Too many open sessions ({refused.limit}); retry later"
            log.warning(
                json.dumps(
                    {
                        "event": "session_refused",
                        "reason": refused.reason,
                        "user": user,
                        "held": refused.held,
                        "limit": refused.limit,
                    }
                )
            )
            # The same answer at either cap: 503, JSON-RPC -32000, Retry-After.
            await respond_rpc(send, 503, rpc_error(None, CHILD_EXITED, message), retry_after=5)
            return
        info["session"] = session.session_id
        await session.handle(scope, receive, send, decoded)
        if not session.initialized_ok or (info["status"] or 500) >= 400:
            await self.sessions.discard(session)

    # ---- /health and /metrics ---------------------------------------------------------------------

    async def health(self, _request: Request) -> JSONResponse:
        """Ask a running pool child for a ping; never start a process to answer."""
        body: dict[str, Any] = {
            "sessions": len(self.sessions),
            "pool_ready": len(self.pool.ready),
            "pool_size": self.settings.pool_size,
            "child_era": {True: "2026-07-28", False: "handshake", None: "unknown"}[self.pool.passthrough],
        }
        ready = [c for c in self.pool.ready if c.alive]
        if not ready:
            return JSONResponse({"status": "unavailable", "reason": "no MCP server process is ready", **body}, 503)
        child = min(ready, key=lambda c: len(c.pending))
        started = time.monotonic()
        # 2026-07-28 dropped ping; any answer at all (a result, or a JSON-RPC error from the child itself)
        # shows the child reads and writes.
        response = await child.request("ping", _ping_params(self.pool.passthrough), timeout=5.0)
        body["ping_ms"] = round((time.monotonic() - started) * 1000, 2)
        if response.get("error", {}).get("code") in (CHILD_EXITED, REQUEST_TIMEOUT):
            return JSONResponse({"status": "unavailable", "reason": response.get("error"), **body}, 503)
        return JSONResponse({"status": "ok", **body})

    async def metrics_endpoint(self, _request: Request) -> PlainTextResponse:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")


_HTTP_METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})
_CORS_PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    (b"access-control-max-age", b"600"),
]
_CORS_ALLOWED_HEADERS = (
    "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"
)


def _allowed_request_headers(requested: str | None) -> tuple[bytes, bytes]:
    """The fixed list, plus the ``Mcp-Param-*`` headers the preflight asks for: a 2026-07-28 browser client
    mirrors a tool's ``x-mcp-header`` arguments in headers whose names only the tool's schema knows."""
    params = [
        name.strip()
        for name in (requested or "").split(",")
        if name.strip().lower().startswith("mcp-param-")
        and name.strip().isascii()
        and name.strip().replace("-", "").isalnum()
    ]
    return b"access-control-allow-headers", ", ".join([_CORS_ALLOWED_HEADERS, *params]).encode("latin-1")


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", (origin or "").encode("latin-1")),
        (b"access-control-expose-headers", b"Mcp-Session-Id, WWW-Authenticate"),
        (b"vary", b"Origin"),
    ]


def _ping_params(passthrough: bool | None) -> dict[str, Any] | None:
    if not passthrough:
        return None
    return {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSIONS[-1],
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    }


def _try_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _awaits_answer(decoded: Any) -> bool:
    """False for a notification or a response (the client's answer to a server request): the child gets it
    at once and nothing waits for an answer. Anything else (a request, or a body the transport will refuse)
    is True."""
    return not (isinstance(decoded, dict) and ("method" not in decoded or "id" not in decoded))


def _has_modern_envelope(decoded: Any) -> bool:
    if not isinstance(decoded, dict) or decoded.get("method") == "initialize":
        return False
    params = decoded.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes."""
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(chunks)
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive callable that hands out the already-read body once, then the live connection's events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Endpoint:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.bridge.mcp(scope, receive, send)


class BridgeApp:
    """The ASGI application: ``/mcp`` goes straight to the bridge; everything else (``/health``, ``/metrics``,
    lifespan, other paths) to Starlette. Starlette's router and its two middlewares each wrapped ``send`` and
    matched routes on every MCP call (a profile under 16 clients); the bridge answers every ``/mcp`` request
    itself, and an exception there still gets uvicorn's 500."""

    def __init__(self, bridge: Bridge, starlette: Starlette) -> None:
        self.bridge = bridge
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            await self.bridge.mcp(scope, receive, send)
            return
        await self.starlette(scope, receive, send)


def create_app(settings: Settings) -> BridgeApp:
    bridge = Bridge(settings)
    app = Starlette(
        routes=[
            Route("/mcp", _Endpoint(bridge), methods=None),  # other spellings (``/mcp/`` redirects here)
            Route("/health", bridge.health, methods=["GET", "HEAD"]),
            Route("/metrics", bridge.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=bridge.lifespan,
    )
    return BridgeApp(bridge, app)


def from_environment() -> BridgeApp:
    """App factory for an ASGI server configured only by ``MCP_PROXY_*`` variables (e.g. Gunicorn's uvicorn
    worker: ``gunicorn -k uvicorn.workers.UvicornWorker -w 1 'mcp_gateway_proxy.app:from_environment()'``)."""
    settings = parse_settings([])
    configure_logging(settings.log_level)
    return create_app(settings)
