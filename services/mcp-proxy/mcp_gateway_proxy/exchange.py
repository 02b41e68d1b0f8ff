"""One 2026-07-28 request to a pool child, which may outlive its HTTP request (multi-round-trip input
requests), and the events it hands to the HTTP side: notifications, a server question, the outcome."""

from __future__ import annotations

import itertools
import json
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any

import anyio
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND

from .child import Child
from .config import Settings
from .jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT, rpc_error
from .pool import send_quietly

log = logging.getLogger("mcp_gateway_proxy.exchange")

JSON = dict[str, Any]

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

    def __init__(
        self,
        settings: Settings,
        parked: dict[str, Exchange],
        seal: Callable[[str, Child, str], str],
        child: Child,
        method: str,
        user: str,
        client_capabilities: JSON,
    ) -> None:
        self.settings = settings
        self.parked = parked  # the exchanges waiting for a client's input, by requestState
        self.seal = seal  # binds a 2026-07-28 child's own requestState to this user and child
        self.child = child
        self.method = method
        self.user = user
        self.client_capabilities = client_capabilities
        # The requestState handed to the client: made at the first input request (most requests never ask,
        # and 24 random bytes per request showed in a profile); until then nothing is parked under it.
        self.token = ""
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
                timeout=self.settings.request_timeout,
                notify=self._event,
                log_opt_in=log_opt_in,
                on_server_request=self._server_request,
            )
            if response.get("error", {}).get("code") == REQUEST_TIMEOUT:
                await self.child.kill_if_unresponsive(min(5.0, self.settings.request_timeout))
        if response is not None:
            result = response.get("result")
            state = result.get("requestState") if isinstance(result, dict) else None
            if isinstance(result, dict) and result.get("resultType") == "input_required" and isinstance(state, str):
                # A 2026-07-28 child's own multi-round trip: the state the client sees is bound to this user
                # and names this child (which sealed it with its own key), where the retry must go back.
                sealed = self.seal(state, self.child, self.user)
                response = {**response, "result": {**result, "requestState": sealed}}
            self.events_in.send_nowait({"outcome": response})
        if not self.attached:
            # Nobody is there to read the outcome (the client never retried): forget the exchange.
            self.parked.pop(self.token, None)

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
            await send_quietly(self.child, rpc_error(message["id"], METHOD_NOT_FOUND, reason))
            return
        if self.events_in.statistics().current_buffer_used >= _NOTIFICATIONS_KEPT + _QUESTIONS_KEPT:
            await send_quietly(self.child, rpc_error(message["id"], INTERNAL_ERROR, "too many questions unanswered"))
            return
        self.events_in.send_nowait({"server_request": message})

    def input_required(self, request_id: Any, message: JSON) -> JSON:
        key = f"input-{next(self._keys)}"
        if not self.token:
            self.token = secrets.token_urlsafe(24)
        self.awaiting[key] = message["id"]
        self.parked[self.token] = self
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
                await send_quietly(self.child, {"jsonrpc": "2.0", "id": child_request_id, "result": value})
            else:
                await send_quietly(self.child, rpc_error(child_request_id, INVALID_PARAMS, "the client gave no answer"))

    def cancel(self) -> None:
        self.parked.pop(self.token, None)
        self.scope.cancel()
