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
import json
import logging
import math
import secrets
from collections.abc import Mapping
from typing import Any

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
)
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .child import Child
from .config import Settings
from .exchange import Exchange
from .inflight import InFlight
from .jsonrpc import CHILD_EXITED, REQUEST_TIMEOUT, respond, respond_rpc, rpc_error
from .metrics import Metrics
from .pool import ChildPool

log = logging.getLogger("mcp_gateway_proxy.modern")

JSON = dict[str, Any]
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
LOG_LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
CACHEABLE_METHODS = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
# Handshake-era methods removed at 2026-07-28, and the long-lived listen stream the bridge does not carry.
NOT_OFFERED = frozenset({"subscriptions/listen", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})


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


_QUICK_ANSWER = 0.05  # seconds an outcome is awaited before the connection is watched for a client that left
_UNKNOWN_STATE = "requestState is unknown or has expired; send the request again without it"


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
            await respond(send, 405, b"", headers=[(b"allow", b"POST")])
            return
        if not request.headers.get("content-type", "").lower().startswith("application/json"):
            await respond_rpc(send, 415, rpc_error(None, INVALID_REQUEST, "Content-Type must be application/json"))
            return
        has_json, has_sse = check_accept_headers(request)
        if not has_json:
            await respond_rpc(send, 406, rpc_error(None, INVALID_REQUEST, "Accept must include application/json"))
            return
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            await self._reply(send, info, rpc_error(None, PARSE_ERROR, "Parse error"))
            return
        if isinstance(decoded, dict) and "id" not in decoded and isinstance(decoded.get("method"), str):
            # Notifications have nothing to act on at 2026-07-28 (cancelling is closing the stream): 202.
            requested = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, "")
            rejection = unsupported_protocol_version_rejection(requested)
            if rejection is not None:
                await self._reject(send, info, rejection, None)
                return
            await respond(send, 202, b"")
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
            await self._reply(send, info, rpc_error(None, INVALID_REQUEST, message))
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
            await self._reply(send, info, rpc_error(request_id, METHOD_NOT_FOUND, f"Method not found: {method}"))
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
                await self._reply(send, info, rpc_error(request_id, INVALID_PARAMS, _UNKNOWN_STATE))
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
                await self._reply(send, info, rpc_error(request_id, INVALID_PARAMS, _UNKNOWN_STATE))
                return
            child, original = opened
            params = {**(params or {}), "requestState": original}
        if child is None or not child.alive:
            child = await self.pool.acquire(self.settings.request_timeout)
        if child is None:
            await respond_rpc(
                send, 503, rpc_error(request_id, CHILD_EXITED, "No MCP server process is available"), retry_after=2
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
        exchange = Exchange(
            self.settings,
            self.exchanges,
            self.seal_state,
            child,
            method,
            info["user"],
            capabilities if isinstance(capabilities, dict) else {},
        )
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
            first: JSON | None = None
            with anyio.move_on_after(_QUICK_ANSWER):
                first = await exchange.events_out.receive()
            if first is not None and "outcome" in first:
                # The common case, kept cheap: the outcome alone, as JSON, and no task to watch the connection
                # (a client gone within this moment is noticed when the answer cannot be sent).
                final = self._finish(first["outcome"], request_id, exchange.method)
                exchange.finished = True
                await self._reply(send, info, final)
                completed = True
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_disconnect, tg.cancel_scope)
                waited = _QUICK_ANSWER  # the first keep-alive is due that much sooner
                while True:
                    event, first = first, None
                    if event is None:
                        with anyio.move_on_after(self.settings.sse_keepalive - waited if has_sse else math.inf):
                            event = await exchange.events_out.receive()
                        waited = 0.0
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
        await respond_rpc(send, status, message)


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def _sse_event(message: JSON) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"
