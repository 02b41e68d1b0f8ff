"""Handshake-era sessions (2024-11-05 .. 2025-11-25): one child per session, relayed through the SDK transport.

The SDK's ``StreamableHTTPServerTransport`` does the HTTP side of a session: the ``Mcp-Session-Id``
checks, the GET stream, DELETE, 202 for notifications and responses, event ids and ``Last-Event-ID``
replay. The SDK's session *manager* drives an in-process ``Server``, which a bridge does not have, so this
module is the small replacement: it owns a registry of sessions bound to users, and pumps each transport's
messages to and from a child process.

One path skips the transport: a well-formed request POST (not ``initialize``) is relayed to the child and
answered by the session itself (``answer_directly``), as JSON when the child's answer is all there is, and
as an SSE stream (priming event, events stored for ``Last-Event-ID`` in the same event store) as soon as a
notification, a server request or a keep-alive belongs with it. The transport would open an SSE stream
for every POST, and its memory streams, task groups and SSE encoder cost more than the relay itself.
Anything the fast path does not recognise goes to the transport, which gives the SDK's answer.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.streamable_http import (
    DEFAULT_NEGOTIATED_VERSION,
    EventCallback,
    EventMessage,
    EventStore,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCMessage, JSONRPCRequest, jsonrpc_message_adapter
from mcp_types.version import is_version_at_least
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .child import Child
from .config import Settings
from .jsonrpc import CHILD_EXITED, INTERNAL_ERROR, REQUEST_TIMEOUT, respond, rpc_error
from .metrics import Metrics
from .sse_to_json import JsonWhenPossible
from .supervision import RestartBackoff

log = logging.getLogger("mcp_gateway_proxy.legacy")

JSON = dict[str, Any]

# Messages a child sends outside any request that still belong with the request being served, when only
# one is: log lines and progress emitted while a tool runs, and the server's own requests for it.
_REQUEST_SCOPED = ("notifications/message", "notifications/progress")
_RETRY_MS = 1000  # the reconnection delay an SSE priming event suggests
_SPARES_STARTING = 4  # spare children started at once: a refill in parallel, bounded
_REFILL_AFTER = 0.2  # seconds without a spare taken before spares are started again
_QUICK_ANSWER = 0.05  # seconds an answer is awaited before the connection is watched for a client that left
_WARM_UP_WAIT = 10.0  # seconds a spare gets to answer its warm-up ping; one that ignores pings is used after it


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _well_formed_error(error: Any) -> bool:
    return isinstance(error, dict) and type(error.get("code")) is int and isinstance(error.get("message"), str)


def _json_when_possible(scope: Scope, send: Send) -> Send:
    return JsonWhenPossible(send) if scope["method"] == "POST" else send


class BoundedEventStore(EventStore):
    """Per-session in-memory event log for SSE resumability (``Last-Event-ID``), capped in length and in bytes:
    answers of many MiB would otherwise keep up to 1000 of them alive per session."""

    def __init__(self, max_events: int = 1000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._events: deque[tuple[int, str, JSONRPCMessage | None, int]] = deque()
        self._counter = itertools.count(1)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.size = 0

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        number = next(self._counter)
        size = len(jsonrpc_message_adapter.dump_json(message, by_alias=True)) if message is not None else 0
        self._events.append((number, stream_id, message, size))
        self.size += size
        # The newest event is always kept (a message is at most --max-message-bytes), older ones go first.
        while len(self._events) > 1 and (len(self._events) > self.max_events or self.size > self.max_bytes):
            self.size -= self._events.popleft()[3]
        return str(number)

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        try:
            last = int(last_event_id)
        except ValueError:
            return None
        stream_id = next((sid for number, sid, _, _ in self._events if number == last), None)
        if stream_id is None:
            return None
        for number, sid, message, _ in list(self._events):
            if number > last and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, str(number)))
        return stream_id


class LegacySession:
    """One ``Mcp-Session-Id``: its SDK transport, its owner, and the child that serves it."""

    def __init__(
        self,
        user: str,
        settings: Settings,
        metrics: Metrics,
        on_closed: Callable[[str], None],
        take_spare: Callable[[], Child | None] = lambda: None,
    ) -> None:
        self.take_spare = take_spare
        # 256 random bits, visible ASCII, after the host's prefix (Traefik routes the session by it)
        self.session_id = settings.session_id_prefix + secrets.token_urlsafe(32)
        self.user = user
        self.settings = settings
        self.metrics = metrics
        self.on_closed = on_closed
        self.events = BoundedEventStore()
        self.transport = StreamableHTTPServerTransport(
            mcp_session_id=self.session_id,
            is_json_response_enabled=False,
            event_store=self.events,
            security_settings=None,  # Origin is checked by the app for every era; Host is Traefik's
            retry_interval=_RETRY_MS,
            # The idle countdown is the session's own (``handle``): requests answered directly hold it too.
            idle_timeout=None,
        )
        self.idle_scope = anyio.CancelScope()
        self._requests_in_flight = 0
        self._tg: anyio.abc.TaskGroup | None = None
        # Requests answered by ``answer_directly``: client request id -> where the child's messages for it go.
        self.direct: dict[Any, MemoryObjectSendStream[tuple[JSON, JSONRPCMessage | None]]] = {}
        self.child: Child | None = None
        self.child_ready = anyio.Event()
        self.closing = False
        self.init_params: JSON | None = None
        self.initialized_ok = False
        self.initialize_seen = False  # the first initialize is answered by the session itself
        self.initialized_params: JSON | None = None
        self.in_flight: dict[Any, tuple[Child, int | None]] = {}
        self._write: Any = None
        self._restarts = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.metrics.sessions_opened += 1
        try:
            async with self.transport.connect() as (read_stream, write_stream):
                self._write = write_stream
                task_status.started()
                idle_scope = self.idle_scope
                with idle_scope:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        tg.start_soon(self._supervise_child, tg)
                        try:
                            async for item in read_stream:
                                if isinstance(item, Exception):
                                    continue
                                await self._from_client(item.message, tg)
                        except (anyio.ClosedResourceError, anyio.EndOfStream):
                            pass  # DELETE or shutdown closed the transport
                        tg.cancel_scope.cancel()
                if idle_scope.cancelled_caught:
                    log.info(json.dumps({"event": "session_idle_timeout", "session": self.session_id[:8]}))
        except Exception:
            # One session's failure must never take the server (whose task group runs it) down with it.
            log.exception("session %s failed", self.session_id[:8])
        finally:
            self.closing = True
            self.on_closed(self.session_id)
            with anyio.CancelScope(shield=True):
                if not self.transport.is_terminated:
                    await self.transport.terminate()
                if self.child is not None:
                    await self.child.kill()

    async def handle(self, scope: Scope, receive: Receive, send: Send, decoded: Any) -> None:
        """Serve one HTTP request of this session; ``decoded`` is its JSON body (None when there is none or it
        does not parse). A request in flight (an open GET stream included) holds the session: the idle
        countdown stops while any is served and starts again when the last one ends."""
        if self.idle_scope.cancel_called:
            # The idle period ran out and the session is going away: the transport answers 404.
            if not self.transport.is_terminated:
                await self.transport.terminate()
            await self.transport.handle_request(scope, receive, send)
            return
        self._requests_in_flight += 1
        self.idle_scope.deadline = math.inf
        try:
            kind = self._direct_kind(scope, decoded)
            if kind == "request":
                if decoded["method"] == "initialize":
                    # The transport's rule: an initialize's own protocolVersion decides the priming event.
                    version = str((decoded.get("params") or {}).get("protocolVersion", DEFAULT_NEGOTIATED_VERSION))
                else:
                    version = Headers(scope=scope).get("mcp-protocol-version", DEFAULT_NEGOTIATED_VERSION)
                await self.answer_directly(decoded["id"], decoded, version, receive, send)
            elif kind == "other":
                # A notification or an answer to the child: written before the 202 goes out, so a request the
                # client sends next (notifications/initialized, then tools/list) reaches the child after it.
                await self._pass_on(decoded)
                headers = [(b"content-type", b"application/json"), (b"mcp-session-id", self.session_id.encode())]
                await respond(send, 202, b"", headers)
            else:
                await self.transport.handle_request(scope, receive, _json_when_possible(scope, send))
        finally:
            self._requests_in_flight -= 1
            if not self._requests_in_flight:
                self.idle_scope.deadline = anyio.current_time() + self.settings.session_idle_timeout

    def _direct_kind(self, scope: Scope, decoded: Any) -> str | None:
        """``request`` for a plain JSON-RPC request POST the session answers itself, ``other`` for a
        notification or a response it hands to the child itself; None for everything the transport must judge
        (initialize, GET, DELETE, anything malformed: its checks give the SDK's answers)."""
        if scope["method"] != "POST" or self._tg is None or self.transport.is_terminated:
            return None
        if not (
            isinstance(decoded, dict)
            and decoded.get("jsonrpc") == "2.0"
            and isinstance(decoded.get("params", {}), dict)
            and (decoded.get("method") != "initialize" or not self.initialize_seen)
        ):
            return None
        if decoded.get("method") == "initialize":
            # The session's own initialize (the registry opened the session for it) is relayed like any
            # request: the transport's SSE round trip cost a burst of 16 opens most of its time. A second
            # initialize is the transport's to judge.
            self.initialize_seen = True
        request_id = decoded.get("id")
        if isinstance(decoded.get("method"), str):
            if "id" not in decoded:
                kind = "other"  # a notification
            elif type(request_id) in (int, str) and request_id not in self.direct and request_id not in self.in_flight:
                kind = "request"  # (an id reused while the first is pending: the transport's rules apply)
            else:
                return None
        elif "method" in decoded or type(request_id) not in (int, str):
            return None
        elif isinstance(decoded.get("result"), dict) != _well_formed_error(decoded.get("error")):
            kind = "other"  # the client's answer to a request of the child: a result or an error, not both
        else:
            return None
        request = Request(scope)
        content_type = request.headers.get("content-type", "")
        if "application/json" not in (part.strip() for part in content_type.split(";")[0].split(",")):
            return None
        has_json, has_sse = check_accept_headers(request)
        return kind if has_json and has_sse else None

    async def answer_directly(
        self, request_id: Any, raw: JSON, protocol_version: str, receive: Receive, send: Send
    ) -> None:
        """Relay one request and answer it: JSON when the child's answer comes before anything else for it,
        else an SSE stream of what belongs with it and then the answer, as the transport would write it.
        A client that goes away frees its HTTP request at once; the child's work goes on (a handshake-era
        client cancels with notifications/cancelled) and what it sends is kept for a Last-Event-ID replay."""
        assert self._tg is not None
        inbox, outbox = anyio.create_memory_object_stream[tuple[JSON, JSONRPCMessage | None]](math.inf)
        self.direct[request_id] = inbox
        try:
            self._tg.start_soon(self._relay_request, raw)
            first = None
            with anyio.move_on_after(_QUICK_ANSWER):
                first = await outbox.receive()
            if first is not None and "method" not in first[0]:
                # The common case, kept cheap: the answer alone, as JSON, and no task to watch the connection.
                data = json.dumps(first[0], separators=(",", ":"), ensure_ascii=False).encode()
                headers = [(b"content-type", b"application/json"), (b"mcp-session-id", self.session_id.encode())]
                await respond(send, 200, data, headers)
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                await self._answer_over_time(request_id, protocol_version, outbox, first, send)
                tg.cancel_scope.cancel()
        finally:
            # Whatever comes later for this request (the client went away) goes through the transport, which
            # stores it for a Last-Event-ID replay.
            self.direct.pop(request_id, None)
            inbox.close()

    async def _answer_over_time(
        self,
        request_id: Any,
        protocol_version: str,
        outbox: MemoryObjectReceiveStream[tuple[JSON, JSONRPCMessage | None]],
        first: tuple[JSON, JSONRPCMessage | None] | None,
        send: Send,
    ) -> None:
        """The answer of a request that takes its time or has company: JSON if the answer still comes first,
        else SSE (priming event, the messages with their event ids, keep-alive comments, then the answer)."""
        stream_id = str(request_id)  # the transport's stream id for a POST, so Last-Event-ID replay finds it
        streaming = False

        async def start_stream() -> None:
            nonlocal streaming
            streaming = True
            await send({"type": "http.response.start", "status": 200, "headers": self._sse_headers()})
            if is_version_at_least(protocol_version, "2025-11-25"):
                event_id = await self.events.store_event(stream_id, None)
                priming = f"id: {event_id}\r\ndata: \r\nretry: {_RETRY_MS}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": priming, "more_body": True})

        item = first
        while True:
            if item is None:
                with anyio.move_on_after(self.settings.sse_keepalive - _QUICK_ANSWER * (not streaming)):
                    item = await outbox.receive()
            if item is None:
                # The child takes its time: commit to SSE and keep idle proxies from cutting the connection.
                if not streaming:
                    await start_stream()
                ping = f": ping - {datetime.now(UTC).isoformat(sep=' ')}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": ping, "more_body": True})
                continue
            (message, model), item = item, None
            is_answer = "method" not in message
            data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
            if is_answer and not streaming:
                headers = [(b"content-type", b"application/json"), (b"mcp-session-id", self.session_id.encode())]
                await respond(send, 200, data, headers)
                return
            if not streaming:
                await start_stream()
            if model is None:
                model = jsonrpc_message_adapter.validate_python(message, by_name=False)
            event_id = await self.events.store_event(stream_id, model)
            event = b"id: " + event_id.encode() + b"\r\nevent: message\r\ndata: " + data + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": event, "more_body": not is_answer})
            if is_answer:
                return

    def _sse_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache, no-transform"),
            (b"connection", b"keep-alive"),
            (b"x-accel-buffering", b"no"),
            (b"mcp-session-id", self.session_id.encode()),
        ]

    async def _supervise_child(self, tg: anyio.abc.TaskGroup) -> None:
        """Keep one child running for the session; after a crash, start another and replay the handshake."""
        backoff = RestartBackoff(self.settings.restart_backoff_reset)
        spare = self.take_spare()
        while not self.closing:
            label = f"session-{self.session_id[:8]}"
            if spare is not None:
                # A child started ahead of time (and run by the registry): the session skips the start-up wait.
                child, spare = spare, None
                child.label, child.on_unrouted = label, self._from_child_unrouted
                self.child = child
            else:
                child = Child.for_settings(self.settings, label=label, on_unrouted=self._from_child_unrouted)
                self.child = child
                await tg.start(child.run)
                self.metrics.children_started += 1
            # Only a child that replaces one the client has already initialized gets the recorded handshake.
            # The first child gets the client's own initialize, which may already be waiting for it (with no
            # spare ready, init_params is set while the child starts): replaying it too would send it twice.
            if child.alive and self.initialized_ok:
                await self._replay_handshake(child)
            if child.alive:
                self.child_ready.set()
            await child.exited.wait()
            self.child_ready = anyio.Event()
            if self.closing:
                return
            self.metrics.child_restarts += 1
            self._restarts += 1
            await backoff.pause(child)

    async def _replay_handshake(self, child: Child) -> None:
        """A replacement child gets the client's own initialize, so the session goes on as before."""
        response = await child.request("initialize", self.init_params, timeout=self.settings.request_timeout)
        if "result" in response and self.initialized_params is not None:
            message: JSON = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            if self.initialized_params:
                message["params"] = self.initialized_params
            await child.send(message)

    async def _from_client(self, message: JSONRPCMessage, tg: anyio.abc.TaskGroup) -> None:
        raw = message.model_dump(by_alias=True, mode="json", exclude_unset=True)
        if isinstance(message, JSONRPCRequest):
            tg.start_soon(self._relay_request, raw)
            return
        await self._pass_on(raw)

    async def _pass_on(self, raw: JSON) -> None:
        """Hand a client's notification, or its answer to one of the child's requests, to the child."""
        child = await self._ready_child()
        if child is None:
            return
        method = raw.get("method")
        if method == "notifications/initialized":
            self.initialized_params = raw.get("params") or {}
        if method == "notifications/cancelled":
            request_id = (raw.get("params") or {}).get("requestId")
            target = self.in_flight.get(request_id) if isinstance(request_id, int | str) else None
            if target is not None and target[1] is not None:
                await target[0].cancel(target[1], "cancelled by the client")
            return
        try:
            await child.send(raw)  # notifications, and the client's answers to the child's own requests
        except Exception:  # noqa: BLE001 - a dead child is the supervisor's business
            log.debug("dropped a client message: the child is gone")

    async def _ready_child(self) -> Child | None:
        with anyio.move_on_after(self.settings.request_timeout):
            while True:
                if self.child is not None and self.child.spawn_failed:
                    return None  # answer at once: waiting will not make a missing command appear
                if self.child_ready.is_set() and self.child is not None and self.child.alive:
                    return self.child
                # No child yet (the session's first request can come before its supervisor has one), or it
                # just went and the supervisor has not noticed yet: look again shortly, so that a command
                # that cannot start is reported as soon as the supervisor has tried it.
                with anyio.move_on_after(0.05):
                    await self.child_ready.wait()
        return None

    async def _relay_request(self, raw: JSON) -> None:
        client_id = raw["id"]
        method = raw["method"]
        params = raw.get("params")
        if method == "initialize":
            self.init_params = params
        child = await self._ready_child()
        if child is None:
            response = rpc_error(client_id, CHILD_EXITED, "MCP server is not running")
        else:
            self.in_flight[client_id] = (child, None)

            async def notify(notification: JSON) -> None:
                await self._to_client(notification, related=client_id)

            def remember(bridge_id: int) -> None:
                self.in_flight[client_id] = (child, bridge_id)

            try:
                response = await child.request(
                    method, params, timeout=self.settings.request_timeout, notify=notify, on_sent=remember
                )
            finally:
                self.in_flight.pop(client_id, None)
            if response.get("error", {}).get("code") == REQUEST_TIMEOUT:
                self.metrics.timeouts += 1
                await child.kill_if_unresponsive(min(5.0, self.settings.request_timeout))
        if method == "initialize" and "result" in response:
            self.initialized_ok = True
        if isinstance(response.get("error"), dict):
            self.metrics.rpc_errors[("legacy", int(response["error"].get("code", 0)))] += 1
        response = {**response, "id": client_id}
        if not await self._to_client(response):
            await self._to_client(
                rpc_error(client_id, INTERNAL_ERROR, "MCP server sent an answer that cannot be relayed")
            )

    async def _from_child_unrouted(self, child: Child, message: JSON) -> None:
        if child is not self.child:
            return
        if "method" not in message:
            return  # an answer to a request nobody waits for any more
        related = None
        if ("id" in message or message["method"] in _REQUEST_SCOPED) and len(self.in_flight) == 1:
            related = next(iter(self.in_flight))
        await self._to_client(message, related=related)

    async def _to_client(self, raw: JSON, related: Any = None) -> bool:
        """Hand a message to the request answered directly that it belongs to, or else to the transport;
        False when it is not a valid JSON-RPC message (then it is dropped)."""
        target = self.direct.get(raw.get("id") if "method" not in raw else related) if self.direct else None
        if target is not None and "method" not in raw:
            # An answer: well formed by construction (``well_formed_answer`` or the bridge's own error).
            target.send_nowait((raw, None))
            return True
        try:
            message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except ValueError:
            log.warning(json.dumps({"event": "child_message_invalid", "session": self.session_id[:8]}))
            return False
        if target is not None:
            target.send_nowait((raw, message))
            return True
        metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
        try:
            await self._write.send(SessionMessage(message, metadata=metadata))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("session %s closed before a message could be delivered", self.session_id[:8])
        return True


class SessionRefused(Exception):
    """No new session: the bridge holds ``--max-sessions`` already, or this user ``--max-sessions-per-user``."""

    def __init__(self, reason: str, limit: int, held: int) -> None:
        super().__init__(reason)
        self.reason = reason  # "per_user" or "global"
        self.limit = limit
        self.held = held


async def _ignore(_child: Child, _message: JSON) -> None:
    """A spare child has no client yet; it has nothing to say that anyone waits for."""


class SessionRegistry:
    """Open sessions by id, each bound to the user that opened it, capped in number, in all and per user."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.sessions: dict[str, LegacySession] = {}
        self.spares: list[Child] = []
        self._spares_changed = anyio.Event()
        self._taken_at = 0.0

    async def keep_spares(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep ``spare_children`` warm children idle, so that a new session need not wait for its server to
        start. A burst of sessions takes several at once: they are replaced in parallel, at most
        ``_SPARES_STARTING`` at a time, so the refill does not starve the sessions being served of CPU."""
        backoff = RestartBackoff(self.settings.restart_backoff_reset)
        starting = 0

        async def start_one() -> None:
            nonlocal starting
            try:
                child = Child.for_settings(self.settings, label="spare", on_unrouted=_ignore)
                await tg.start(child.run)
                self.metrics.children_started += 1
                # Warm: any answer to a ping (the specification allows one before initialize) shows the server
                # has loaded and reads its input, so the session's initialize is answered at once.
                if child.alive:
                    await child.request("ping", None, timeout=min(self.settings.request_timeout, _WARM_UP_WAIT))
                if child.alive:
                    self.spares.append(child)
                else:
                    await backoff.pause(child)  # the command could not be started, or exited at once
            finally:
                starting -= 1
                self._spares_changed.set()

        async with anyio.create_task_group() as tg:
            task_status.started()
            while self.settings.spare_children > 0:
                for dead in [c for c in self.spares if not c.alive]:
                    self.spares.remove(dead)  # it exited before any session took it: a crash like any other
                    await backoff.pause(dead)
                since_take = time.monotonic() - self._taken_at
                if since_take < _REFILL_AFTER:
                    # Sessions are being opened: starting a process now would hold the next ones up (a spawn
                    # blocks the event loop for milliseconds); refill once the burst is over.
                    await anyio.sleep(_REFILL_AFTER - since_take)
                    continue
                missing = self.settings.spare_children - len(self.spares) - starting
                for _ in range(max(0, min(missing, _SPARES_STARTING - starting))):
                    starting += 1
                    tg.start_soon(start_one)
                # Look again when a spare is taken or a start ends, and now and then for spares that died.
                with anyio.move_on_after(1.0):
                    await self._spares_changed.wait()
                self._spares_changed = anyio.Event()

    def _take_spare(self) -> Child | None:
        while self.spares:
            child = self.spares.pop(0)
            self._taken_at = time.monotonic()
            self._spares_changed.set()
            if child.alive:
                return child
        return None

    def __len__(self) -> int:
        return len(self.sessions)

    def find(self, session_id: str, user: str) -> LegacySession | None:
        """The session, or None when unknown, ended, or opened by someone else (all answer alike: 404)."""
        session = self.sessions.get(session_id)
        if session is None or not secrets.compare_digest(session.user.encode(), user.encode()):
            return None
        return session

    def held_by(self, user: str) -> int:
        """Sessions this user holds, counted from the registry itself: whatever ends a session (DELETE, idle
        reaping, a failed initialize, shutdown) removes it there, so there is no separate count to drift."""
        return sum(1 for session in self.sessions.values() if session.user == user)

    def most_held_by_one_user(self) -> int:
        return max(Counter(session.user for session in self.sessions.values()).values(), default=0)

    async def open(self, user: str, tg: anyio.abc.TaskGroup) -> LegacySession:
        """A new session for ``user``, or SessionRefused. The checks and the insertion happen with no await in
        between, so concurrent initializes from one user cannot overshoot the caps; a session counts from its
        initialize on, not only once that succeeded."""
        held = self.held_by(user)
        if held >= self.settings.sessions_per_user:
            raise SessionRefused("per_user", self.settings.sessions_per_user, held)
        if len(self.sessions) >= self.settings.max_sessions:
            raise SessionRefused("global", self.settings.max_sessions, len(self.sessions))
        session = LegacySession(user, self.settings, self.metrics, self._closed, self._take_spare)
        self.sessions[session.session_id] = session
        await tg.start(session.run)
        return session

    def _closed(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def discard(self, session: LegacySession) -> None:
        self.sessions.pop(session.session_id, None)
        session.closing = True
        if not session.transport.is_terminated:
            await session.transport.terminate()
