"""2026-07-28 (stateless) requests: validated with the SDK's inbound ladder, served by a shared child pool.

The SDK's own 2026 entry (``mcp.server._streamable_http_modern``) dispatches to an in-process ``Server``;
the bridge instead relays the request to a child. It reuses the SDK's validation (``classify_inbound_request``,
duplicated routing headers, the error-code to HTTP-status table, Accept parsing) and writes only the relay.

Children are probed once with ``server/discover``. A child that answers with a 2026 version gets requests
passed through (only the id and progress token are rewritten, so many clients can share it). A child that
only speaks the handshake era is initialized by the bridge, and each 2026 request is translated: the
per-request envelope is stripped, the result gets ``resultType`` and the cache hints, and ``server/discover``
is answered from the child's ``initialize`` result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
    validate_mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from . import __version__
from .child import CHILD_EXITED, INTERNAL_ERROR, REQUEST_TIMEOUT, Child, _error
from .config import Settings
from .metrics import Metrics
from .supervision import RestartBackoff

if TYPE_CHECKING:
    from .inflight import InFlight

log = logging.getLogger("mcp_gateway_proxy.modern")

JSON = dict[str, Any]
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
LOG_LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
CACHEABLE_METHODS = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
# Handshake-era methods removed at 2026-07-28, and the long-lived listen stream the bridge does not carry.
NOT_OFFERED = frozenset({"subscriptions/listen", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
BRIDGE_CLIENT_INFO = {"name": "mcp-gateway-proxy", "version": __version__}


class ChildPool:
    """A few children shared by all 2026-07-28 requests, kept at ``pool_size`` by restarting the dead."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.children: list[Child] = []
        self.ready: list[Child] = []
        self.ready_changed = anyio.Event()
        self.passthrough: bool | None = None  # True: the child speaks 2026-07-28 itself
        self.discover_result: JSON | None = None
        self.initialize_result: JSON | None = None
        self.failing = False  # the last child started could not be made ready
        self._schemas: dict[str, Any] | None = None  # tool name -> inputSchema, for Mcp-Param-* checks
        self._schemas_at = 0.0
        self._schemas_lock = anyio.Lock()
        self._turns = itertools.count()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for slot in range(self.settings.pool_size):
                tg.start_soon(self._keep_slot, slot, tg)
            task_status.started()

    async def _keep_slot(self, slot: int, tg: anyio.abc.TaskGroup) -> None:
        backoff = RestartBackoff(self.settings.restart_backoff_reset)
        first = True
        while True:
            child = Child.for_settings(self.settings, label=f"pool-{slot}", on_unrouted=self._from_child_unrouted)
            self.children.append(child)
            await tg.start(child.run)
            self.metrics.children_started += 1
            if not first:
                self.metrics.child_restarts += 1
            first = False
            prepared = False
            try:
                if child.alive and await self._prepared(child):
                    prepared = True
                    self.failing = False
                    self.ready.append(child)
                    self._notify_ready()
                else:
                    self.failing = True
                    self._notify_ready()
                    await child.kill()
                await child.exited.wait()
            finally:
                if child in self.ready:
                    self.ready.remove(child)
                self.children.remove(child)
            await backoff.pause(child, ran_well=prepared)

    def _notify_ready(self) -> None:
        self.ready_changed.set()
        self.ready_changed = anyio.Event()

    async def _prepared(self, child: Child) -> bool:
        """Whether the child is ready to serve; an answer of any odd shape fails this child, not the pool."""
        try:
            return await self._prepare(child)
        except Exception:
            log.exception("preparing %s failed", child.label)
            return False

    async def _prepare(self, child: Child) -> bool:
        """Probe with ``server/discover`` and fall back to ``initialize`` (PROTOCOL.md §4)."""
        timeout = min(self.settings.request_timeout, 60.0)
        if self.passthrough is not False:
            response = await child.request("server/discover", {"_meta": _bridge_envelope()}, timeout=timeout)
            result = response.get("result")
            versions = result.get("supportedVersions") if isinstance(result, dict) else None
            versions = versions if isinstance(versions, list) else []
            if isinstance(result, dict) and any(v in MODERN_PROTOCOL_VERSIONS for v in versions):
                self.passthrough = True
                self.discover_result = result
                return True
            if self.passthrough:
                return False  # the other children speak 2026; this one answered nonsense
            if not child.alive:
                return False
        response = await child.request(
            "initialize",
            {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                # Relayed to 2026-07-28 clients as input requests (see Exchange), for those that declare them.
                "capabilities": {"sampling": {}, "elicitation": {}},
                "clientInfo": BRIDGE_CLIENT_INFO,
            },
            timeout=timeout,
        )
        result = response.get("result")
        if not isinstance(result, dict):
            log.error(json.dumps({"event": "child_initialize_failed", "child": child.label, "response": response}))
            return False
        await child.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.passthrough = False
        self.initialize_result = result
        self.discover_result = self._discover_from_initialize(result)
        return True

    def _discover_from_initialize(self, init: JSON) -> JSON:
        capabilities = dict(init.get("capabilities") or {})
        capabilities.pop("tasks", None)  # 2025-11-25 only; an extension at 2026-07-28
        for name in ("tools", "prompts", "resources"):
            if isinstance(capabilities.get(name), dict):
                # Change notifications need subscriptions/listen, which the bridge does not carry.
                kept = {k: v for k, v in capabilities[name].items() if k not in ("listChanged", "subscribe")}
                capabilities[name] = kept
        result: JSON = {
            "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
            "capabilities": capabilities,
            "resultType": "complete",
            "ttlMs": self.settings.cache_ttl_ms,
            "cacheScope": self.settings.cache_scope,
        }
        if init.get("instructions"):
            result["instructions"] = init["instructions"]
        if isinstance(init.get("serverInfo"), dict):
            result["_meta"] = {SERVER_INFO_META_KEY: init["serverInfo"]}
        return result

    async def tool_schema(self, name: str) -> Any | None:
        """The inputSchema the server advertises for ``name`` (tools/list, cached for a minute), or None.

        One refresh at a time: a burst of tools/call requests on a stale cache asks the child once, not once
        per request (those requests are not yet counted in flight)."""
        async with self._schemas_lock:
            if self._schemas is None or time.monotonic() - self._schemas_at > 60:
                schemas = await self._list_tool_schemas()
                if schemas is None and self._schemas is None:
                    return None  # no child to ask yet: ask again next time
                self._schemas, self._schemas_at = (schemas or {}), time.monotonic()
        return self._schemas.get(name)

    async def _list_tool_schemas(self) -> dict[str, Any] | None:
        child = await self.acquire(5.0)
        if child is None:
            return None
        schemas: dict[str, Any] = {}
        cursor: Any = None
        for _ in range(100):  # a server whose pages never end cannot hold a request up
            params: JSON = {"cursor": cursor} if isinstance(cursor, str) else {}
            if self.passthrough:
                params["_meta"] = _bridge_envelope()
            response = await child.request("tools/list", params or None, timeout=10.0)
            result = response.get("result")
            tools = result.get("tools") if isinstance(result, dict) else None
            if not isinstance(tools, list):
                return {}  # a server without a usable tools/list: nothing to check (the SDK's fail-open)
            for tool in tools:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    schemas[tool["name"]] = tool.get("inputSchema")
            cursor = result.get("nextCursor")  # type: ignore[union-attr]
            if not isinstance(cursor, str):
                break
        return schemas

    async def acquire(self, timeout: float) -> Child | None:
        """The ready child with the fewest requests in flight, waiting (bounded) while none is ready."""
        with anyio.move_on_after(timeout):
            while True:
                alive = [c for c in self.ready if c.alive]
                if alive:
                    # Fewest requests in flight; ties rotate, so quick requests spread over the pool too.
                    start = next(self._turns) % len(alive)
                    return min(alive[start:] + alive[:start], key=lambda c: len(c.pending))
                if self.failing:
                    return None  # the server does not start: say so now (503) rather than after the timeout
                await self.ready_changed.wait()
        return None

    async def _from_child_unrouted(self, child: Child, message: JSON) -> None:
        method = message.get("method")
        if method is None:
            return  # a late answer to a request that timed out or was cancelled
        if "id" in message:
            # A stdio server does not say which request its question belongs to: it is relayed (as an input
            # request) only when exactly one request is in flight on this child; otherwise it is refused
            # rather than shown to the wrong client, so the child is never left waiting.
            waiters = list(child.pending.values())
            if len(waiters) == 1 and waiters[0].on_server_request is not None:
                await waiters[0].on_server_request(message)
                return
            await _safe_send(child, _error(message["id"], METHOD_NOT_FOUND, f"{method} is not available"))
            return
        if method in ("notifications/message", "notifications/progress"):
            opted_in = [w for w in child.pending.values() if w.notify is not None and w.log_opt_in]
            if method == "notifications/message" and len(child.pending) == 1 and opted_in:
                await opted_in[0].notify(message)  # type: ignore[misc]


def _bridge_envelope() -> JSON:
    """The 2026-07-28 per-request envelope of the bridge's own requests to a 2026-speaking child."""
    return {
        "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": BRIDGE_CLIENT_INFO,
    }


async def _safe_send(child: Child, message: JSON) -> None:
    try:
        await child.send(message)
    except Exception:  # noqa: BLE001 - a dead child is its slot's business
        log.debug("could not answer %s", child.label)


def _strip_envelope(params: Mapping[str, Any] | None) -> tuple[JSON | None, bool]:
    """Drop the 2026 per-request envelope for a handshake-era child; report whether logging was opted in."""
    if params is None:
        return None, False
    params = dict(params)
    meta = params.get("_meta")
    opted_in = False
    if isinstance(meta, dict):
        opted_in = LOG_LEVEL_META_KEY in meta
        kept = {k: v for k, v in meta.items() if not k.startswith(ENVELOPE_PREFIX)}
        if kept:
            params["_meta"] = kept
        else:
            del params["_meta"]
    return params, opted_in


_UNKNOWN_STATE = "requestState is unknown or has expired; send the request again without it"

# Notifications an exchange holds for a client that reads slowly, and server questions on top of them.
_NOTIFICATIONS_KEPT = 256
_QUESTIONS_KEPT = 16

# Client capability each server-to-client request needs before it may be relayed as an input request.
_NEEDS_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


class Exchange:
    """One 2026-07-28 request to a child, which may outlive its HTTP request.

    A handshake-era child may ask the client something (sampling, elicitation, roots) while it works on a
    request. 2026-07-28 has no back-channel for that; its replacement is the multi-round-trip result
    (``resultType: "input_required"``): the bridge answers the HTTP request with the child's question as an
    input request and an opaque ``requestState``, keeps the child's request waiting, and when the client
    retries with ``inputResponses`` and that state, passes the answers to the child and goes on waiting.
    """

    def __init__(self, handler: ModernHandler, child: Child, method: str, user: str, client_capabilities: JSON) -> None:
        self.handler = handler
        self.child = child
        self.method = method
        self.user = user
        self.client_capabilities = client_capabilities
        self.token = secrets.token_urlsafe(24)
        # Unbounded as a stream; _event and _server_request bound it (the outcome itself is never dropped).
        self.events_in, self.events_out = anyio.create_memory_object_stream[JSON](math.inf)
        self.dropped = 0
        self.awaiting: dict[str, Any] = {}  # input request key -> the child's JSON-RPC request id
        self.attached = False
        self.finished = False
        self.scope = anyio.CancelScope()
        self._keys = itertools.count(1)

    async def run(self, params: JSON | None, log_opt_in: bool) -> None:
        response: JSON | None = None
        with self.scope:
            response = await self.child.request(
                self.method,
                params,
                timeout=self.handler.settings.request_timeout,
                notify=self._event,
                log_opt_in=log_opt_in,
                on_server_request=self._server_request,
            )
            if response.get("error", {}).get("code") == REQUEST_TIMEOUT:
                await self.child.kill_if_unresponsive(min(5.0, self.handler.settings.request_timeout))
        if response is not None:
            result = response.get("result")
            state = result.get("requestState") if isinstance(result, dict) else None
            if isinstance(result, dict) and result.get("resultType") == "input_required" and isinstance(state, str):
                # A 2026-07-28 child's own multi-round trip: the state the client sees is bound to this user
                # and names this child (which sealed it with its own key), where the retry must go back.
                sealed = self.handler.seal_state(state, self.child, self.user)
                response = {**response, "result": {**result, "requestState": sealed}}
            self.events_in.send_nowait({"outcome": response})
        if not self.attached:
            # Nobody is there to read the outcome (the client never retried): forget the exchange.
            self.handler.exchanges.pop(self.token, None)

    async def _event(self, event: JSON) -> None:
        """A notification for the client: kept while the client keeps up, else dropped (and counted), since
        waiting for a slow client would stall the child's output for everyone else on that child."""
        if self.events_in.statistics().current_buffer_used >= _NOTIFICATIONS_KEPT:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(json.dumps({"event": "exchange_events_dropped", "child": self.child.label}))
            return
        self.events_in.send_nowait(event)

    async def _server_request(self, message: JSON) -> None:
        method = message.get("method", "")
        needed = _NEEDS_CAPABILITY.get(method)
        if needed is None or needed not in self.client_capabilities:
            reason = f"the client did not declare the {needed or method} capability"
            await _safe_send(self.child, _error(message["id"], METHOD_NOT_FOUND, reason))
            return
        if self.events_in.statistics().current_buffer_used >= _NOTIFICATIONS_KEPT + _QUESTIONS_KEPT:
            await _safe_send(self.child, _error(message["id"], INTERNAL_ERROR, "too many questions unanswered"))
            return
        self.events_in.send_nowait({"server_request": message})

    def input_required(self, request_id: Any, message: JSON) -> JSON:
        key = f"input-{next(self._keys)}"
        self.awaiting[key] = message["id"]
        self.handler.exchanges[self.token] = self
        request: JSON = {"method": message["method"]}
        if message.get("params") is not None:
            request["params"] = message["params"]
        result = {"resultType": "input_required", "inputRequests": {key: request}, "requestState": self.token}
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def answer(self, responses: JSON) -> None:
        """Hand the client's answers to the child's waiting requests (unanswered ones get an error)."""
        for key, child_request_id in list(self.awaiting.items()):
            del self.awaiting[key]
            value = responses.get(key)
            if isinstance(value, dict):
                await _safe_send(self.child, {"jsonrpc": "2.0", "id": child_request_id, "result": value})
            else:
                await _safe_send(self.child, _error(child_request_id, INVALID_PARAMS, "the client gave no answer"))

    def cancel(self) -> None:
        self.handler.exchanges.pop(self.token, None)
        self.scope.cancel()


class ModernHandler:
    def __init__(self, settings: Settings, metrics: Metrics, pool: ChildPool, in_flight: InFlight) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = pool
        self.in_flight = in_flight  # shared with the handshake era: the per-user cap counts both
        self.exchanges: dict[str, Exchange] = {}  # requestState -> exchange waiting for the client's input
        self._state_key = secrets.token_bytes(32)  # binds a 2026 child's requestState to user and child
        self.tg: anyio.abc.TaskGroup | None = None  # exchanges run here: they may outlive their HTTP request

    async def __call__(self, scope: Scope, receive: Receive, send: Send, body: bytes, info: dict[str, Any]) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            await _respond(send, 405, b"", headers=[(b"allow", b"POST")])
            return
        if not request.headers.get("content-type", "").lower().startswith("application/json"):
            await _respond_rpc(send, 415, _error(None, INVALID_REQUEST, "Content-Type must be application/json"))
            return
        has_json, has_sse = check_accept_headers(request)
        if not has_json:
            await _respond_rpc(send, 406, _error(None, INVALID_REQUEST, "Accept must include application/json"))
            return
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            await self._reply(send, info, _error(None, PARSE_ERROR, "Parse error"))
            return
        if isinstance(decoded, dict) and "id" not in decoded and isinstance(decoded.get("method"), str):
            # Notifications have nothing to act on at 2026-07-28 (cancelling is closing the stream): 202.
            requested = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, "")
            rejection = unsupported_protocol_version_rejection(requested)
            if rejection is not None:
                await self._reject(send, info, rejection, None)
                return
            await _respond(send, 202, b"")
            return
        if not (
            isinstance(decoded, dict)
            and decoded.get("jsonrpc") == "2.0"
            and isinstance(decoded.get("method"), str)
            and isinstance(decoded.get("id"), str | int)
            and not isinstance(decoded.get("id"), bool)
            and isinstance(decoded.get("params", {}), dict)
        ):
            message = "Body must be a single JSON-RPC request or notification object (batches are not accepted)"
            await self._reply(send, info, _error(None, INVALID_REQUEST, message))
            return
        request_id, method = decoded["id"], decoded["method"]
        info["rpc_method"] = method
        duplicated = find_duplicated_routing_header(request.headers.items())
        if duplicated is not None:
            rejection = InboundLadderRejection(HEADER_MISMATCH, f"{duplicated} header appears more than once")
            await self._reject(send, info, rejection, request_id)
            return
        verdict = classify_inbound_request(decoded, headers=dict(request.headers))
        if isinstance(verdict, InboundLadderRejection):
            await self._reject(send, info, verdict, request_id)
            return
        if method == "tools/call":
            rejection = await self._mcp_param_rejection(request.headers, decoded.get("params") or {})
            if rejection is not None:
                await self._reject(send, info, rejection, request_id)
                return
        if method in NOT_OFFERED or method == "initialize":
            await self._reply(send, info, _error(request_id, METHOD_NOT_FOUND, f"Method not found: {method}"))
            return

        async def serve(answer: Send) -> None:
            await self._serve(scope, receive, answer, info, request_id, method, decoded.get("params"), has_sse)

        await self.in_flight.serve("2026-07-28", info["user"], send, request_id, serve)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        info: dict[str, Any],
        request_id: Any,
        method: str,
        params: JSON | None,
        has_sse: bool,
    ) -> None:
        if method == "server/discover" and self.pool.passthrough is False and self.pool.discover_result is not None:
            await self._reply(send, info, {"jsonrpc": "2.0", "id": request_id, "result": self.pool.discover_result})
            return
        state = params.get("requestState") if isinstance(params, dict) else None
        if isinstance(state, str) and self.pool.passthrough is False:
            # The retry of a request that was answered with input_required: it continues the parked exchange.
            exchange = self.exchanges.get(state)
            if (
                exchange is None
                or exchange.user != info["user"]
                or exchange.method != method
                or exchange.attached  # the same state retried twice at once: one retry continues it
                or not exchange.awaiting
            ):
                await self._reply(send, info, _error(request_id, INVALID_PARAMS, _UNKNOWN_STATE))
                return
            exchange.attached = True
            try:
                await exchange.answer((params or {}).get("inputResponses") or {})
            finally:
                exchange.attached = False
            await self._drive(send, receive, info, request_id, exchange, has_sse)
            return
        child = None
        if isinstance(state, str) and self.pool.passthrough:
            opened = self.open_state(state, info["user"])
            if opened is None:  # not one the bridge handed out, or handed to another user
                await self._reply(send, info, _error(request_id, INVALID_PARAMS, _UNKNOWN_STATE))
                return
            child, original = opened
            params = {**(params or {}), "requestState": original}
        if child is None or not child.alive:
            child = await self.pool.acquire(self.settings.request_timeout)
        if child is None:
            await _respond_rpc(
                send, 503, _error(request_id, CHILD_EXITED, "No MCP server process is available"), retry_after=2
            )
            return
        meta = (params or {}).get("_meta") if isinstance(params, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        log_opt_in = LOG_LEVEL_META_KEY in meta
        capabilities = meta.get("io.modelcontextprotocol/clientCapabilities")
        if not self.pool.passthrough:
            params, _ = _strip_envelope(params)
            if isinstance(params, dict):
                params.pop("inputResponses", None)
                params.pop("requestState", None)
        exchange = Exchange(self, child, method, info["user"], capabilities if isinstance(capabilities, dict) else {})
        assert self.tg is not None
        self.tg.start_soon(exchange.run, params, log_opt_in and has_sse)
        await self._drive(send, receive, info, request_id, exchange, has_sse)

    async def _drive(
        self, send: Send, receive: Receive, info: dict[str, Any], request_id: Any, exchange: Exchange, has_sse: bool
    ) -> None:
        """Answer one HTTP request from the exchange's events: JSON when the outcome comes before any
        notification, else SSE (notifications, keep-alive comments, then the outcome). The outcome is the
        child's response, or an ``input_required`` result when the child asks the client for something."""
        committed = False
        completed = False

        async def commit() -> None:
            # Headers go out only once the child has said something: Traefik can cut off a stream whose
            # headers arrive while it still forwards the request body (bench/traefik_early_headers.py).
            nonlocal committed
            if not committed:
                committed = True
                info["sse"] = True
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

        async def watch_disconnect(cancel_scope: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            cancel_scope.cancel()

        exchange.attached = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_disconnect, tg.cancel_scope)
                while True:
                    event: JSON | None = None
                    with anyio.move_on_after(self.settings.sse_keepalive if has_sse else float("inf")):
                        event = await exchange.events_out.receive()
                    if event is None:
                        # A long wait: commit to SSE and keep idle proxies from cutting the connection.
                        await commit()
                        await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                        continue
                    if "outcome" not in event and "server_request" not in event:
                        if has_sse:
                            await commit()
                            await send({"type": "http.response.body", "body": _sse_event(event), "more_body": True})
                        continue
                    if "server_request" in event:
                        final = exchange.input_required(request_id, event["server_request"])
                    else:
                        final = self._finish(event["outcome"], request_id, exchange.method)
                        exchange.finished = True
                    if committed:
                        self._count(info, final)
                        info["status"] = 200
                        await send({"type": "http.response.body", "body": _sse_event(final), "more_body": False})
                    else:
                        await self._reply(send, info, final)
                    completed = True
                    tg.cancel_scope.cancel()
                    break
        finally:
            exchange.attached = False
            if exchange.finished:
                self.exchanges.pop(exchange.token, None)
            elif not completed:
                # A client that closes the response stream cancels the request (2026-07-28).
                exchange.cancel()

    async def _mcp_param_rejection(self, headers: Headers, params: JSON) -> InboundLadderRejection | None:
        """Check ``Mcp-Param-*`` headers against the tool's ``x-mcp-header`` declarations (the SDK's rule).

        The child never sees HTTP headers, so the bridge is the one place this can be checked. Fail-open
        like the SDK: if the schema cannot be had, nothing is rejected.
        """
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        has_headers = any(key.lower().startswith(MCP_PARAM_HEADER_PREFIX.lower()) for key in headers)
        schema = await self.pool.tool_schema(name)
        if schema is None or (not has_headers and not x_mcp_header_map(schema)):
            return None
        return validate_mcp_param_headers(schema, arguments, headers)

    def seal_state(self, state: str, child: Child, user: str) -> str:
        """``<child>.<mac>.<child's own state>``: a stdio child cannot bind its state to the user (it never
        learns who asks), so the bridge does, as the SDK's HTTP server binds it to the token's principal."""
        tag = str(child.instance)
        return f"{tag}.{self._state_mac(tag, user, state)}.{state}"

    def open_state(self, sealed: str, user: str) -> tuple[Child | None, str] | None:
        """The child that holds the state (None if it is gone) and the child's own state; None when the
        state was not handed to this user by this bridge."""
        parts = sealed.split(".", 2)
        if len(parts) != 3 or not hmac.compare_digest(parts[1], self._state_mac(parts[0], user, parts[2])):
            return None
        tag, _, state = parts
        return next((c for c in self.pool.ready if str(c.instance) == tag and c.alive), None), state

    def _state_mac(self, tag: str, user: str, state: str) -> str:
        message = "\0".join((tag, user, state)).encode("utf-8", "surrogatepass")
        digest = hmac.new(self._state_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _finish(self, response: JSON, request_id: Any, method: str) -> JSON:
        response = {**response, "id": request_id}
        error = response.get("error")
        if isinstance(error, dict) and error.get("code") == REQUEST_TIMEOUT:
            self.metrics.timeouts += 1
        if not self.pool.passthrough and isinstance(response.get("result"), dict):
            result = dict(response["result"])
            result.setdefault("resultType", "complete")
            if method in CACHEABLE_METHODS:
                result.setdefault("ttlMs", self.settings.cache_ttl_ms)
                result.setdefault("cacheScope", self.settings.cache_scope)
            response["result"] = result
        return response

    def _count(self, info: dict[str, Any], message: JSON) -> None:
        error = message.get("error")
        if isinstance(error, dict):
            info["rpc_error"] = error.get("code")

    async def _reject(self, send: Send, info: dict[str, Any], rejection: InboundLadderRejection, rid: Any) -> None:
        error: JSON = {"code": rejection.code, "message": rejection.message}
        if rejection.data is not None:
            error["data"] = rejection.data
        await self._reply(send, info, {"jsonrpc": "2.0", "id": rid, "error": error})

    async def _reply(self, send: Send, info: dict[str, Any], message: JSON) -> None:
        """A JSON answer; errors get the SDK's code-to-status mapping (e.g. -32020/-32022 → 400)."""
        status = 200
        error = message.get("error")
        if isinstance(error, dict):
            status = ERROR_CODE_HTTP_STATUS.get(error.get("code"), 200)  # type: ignore[arg-type]
        self._count(info, message)
        info["status"] = status
        await _respond_rpc(send, status, message)


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def _sse_event(message: JSON) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_rpc(send: Send, status: int, message: JSON, retry_after: int | None = None) -> None:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    await _respond(send, status, body, headers)


__all__ = ["ChildPool", "Exchange", "ModernHandler"]
