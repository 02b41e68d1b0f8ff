"""Handshake-era sessions (2024-11-05 .. 2025-11-25): one child per session, relayed through the SDK transport.

The SDK's ``StreamableHTTPServerTransport`` does the HTTP side of a session: the ``Mcp-Session-Id``
checks, POST answered over SSE, the GET stream, DELETE, 202 for notifications and responses, event ids
and ``Last-Event-ID`` replay, idle expiry. The SDK's session *manager* drives an in-process ``Server``,
which a bridge does not have, so this module is the small replacement: it owns a registry of sessions
bound to users, and pumps each transport's messages to and from a child process.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore, StreamableHTTPServerTransport
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCMessage, JSONRPCNotification, JSONRPCRequest, jsonrpc_message_adapter

from .child import CHILD_EXITED, INTERNAL_ERROR, REQUEST_TIMEOUT, Child, _error
from .config import Settings
from .metrics import Metrics
from .supervision import FIRST_DELAY, RestartBackoff

log = logging.getLogger("mcp_gateway_proxy.legacy")

JSON = dict[str, Any]

# Messages a child sends outside any request that still belong with the request being served, when only
# one is: log lines and progress emitted while a tool runs, and the server's own requests for it.
_REQUEST_SCOPED = ("notifications/message", "notifications/progress")


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
        self.session_id = secrets.token_urlsafe(32)  # 256 random bits, visible ASCII
        self.user = user
        self.settings = settings
        self.metrics = metrics
        self.on_closed = on_closed
        self.transport = StreamableHTTPServerTransport(
            mcp_session_id=self.session_id,
            is_json_response_enabled=False,
            event_store=BoundedEventStore(),
            security_settings=None,  # Origin is checked by the app for every era; Host is Traefik's
            retry_interval=1000,
            idle_timeout=settings.session_idle_timeout,
        )
        self.child: Child | None = None
        self.child_ready = anyio.Event()
        self.closing = False
        self.init_params: JSON | None = None
        self.initialized_ok = False
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
                idle_scope = self.transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    async with anyio.create_task_group() as tg:
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
        child = await self._ready_child()
        if child is None:
            return
        if isinstance(message, JSONRPCNotification):
            if message.method == "notifications/initialized":
                self.initialized_params = raw.get("params") or {}
            if message.method == "notifications/cancelled":
                request_id = (raw.get("params") or {}).get("requestId")
                target = self.in_flight.get(request_id)
                if target is not None and target[1] is not None:
                    await target[0].cancel(target[1], "cancelled by the client")
                return
        try:
            await child.send(raw)  # notifications, and the client's answers to the child's own requests
        except Exception:  # noqa: BLE001 - a dead child is the supervisor's business
            log.debug("dropped a client message: the child is gone")

    async def _ready_child(self) -> Child | None:
        if self.child is not None and self.child.spawn_failed:
            return None  # answer at once: waiting will not make a missing command appear
        with anyio.move_on_after(self.settings.request_timeout):
            while True:
                await self.child_ready.wait()
                if self.child is not None and self.child.alive:
                    return self.child
                # The child just went and the supervisor has not noticed yet: wait for its replacement.
                await anyio.sleep(0.05)
        return None

    async def _relay_request(self, raw: JSON) -> None:
        client_id = raw["id"]
        method = raw["method"]
        params = raw.get("params")
        if method == "initialize":
            self.init_params = params
        child = await self._ready_child()
        if child is None:
            response = _error(client_id, CHILD_EXITED, "MCP server is not running")
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
            await self._to_client(_error(client_id, INTERNAL_ERROR, "MCP server sent an answer that cannot be relayed"))

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
        """Hand a message to the transport; False when it is not a valid JSON-RPC message (then it is dropped)."""
        try:
            message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except ValueError:
            log.warning(json.dumps({"event": "child_message_invalid", "session": self.session_id[:8]}))
            return False
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

    async def keep_spares(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep ``spare_children`` children started and idle, so that a new session need not wait for one."""
        backoff = RestartBackoff(self.settings.restart_backoff_reset)
        async with anyio.create_task_group() as tg:
            task_status.started()
            while self.settings.spare_children > 0:
                for dead in [c for c in self.spares if not c.alive]:
                    self.spares.remove(dead)  # it exited before any session took it: a crash like any other
                    await backoff.pause(dead)
                if len(self.spares) < self.settings.spare_children:
                    child = Child.for_settings(self.settings, label="spare", on_unrouted=_ignore)
                    await tg.start(child.run)
                    self.metrics.children_started += 1
                    if not child.alive:
                        await backoff.pause(child)  # the command could not be started, or exited at once
                        continue
                    self.spares.append(child)
                await anyio.sleep(FIRST_DELAY)  # look again soon: a session may have taken a spare

    def _take_spare(self) -> Child | None:
        while self.spares:
            child = self.spares.pop(0)
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
