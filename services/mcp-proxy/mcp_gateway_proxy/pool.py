"""The child pool that serves 2026-07-28 requests: ``pool_size`` children shared by every client, each probed
once with ``server/discover`` (PROTOCOL.md §4) and restarted when it dies.

A child that answers with a 2026 version gets requests passed through; a child that only speaks the
handshake era is initialized by the bridge (as a client that can sample and elicit), and ``server/discover``
is answered from its ``initialize`` result.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from typing import Any

import anyio
import anyio.abc
from mcp_types import METHOD_NOT_FOUND, SERVER_INFO_META_KEY
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS

from . import __version__
from .child import Child
from .config import Settings
from .jsonrpc import rpc_error
from .metrics import Metrics
from .supervision import RestartBackoff

log = logging.getLogger("mcp_gateway_proxy.pool")

JSON = dict[str, Any]
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
            response = await child.request("server/discover", {"_meta": bridge_envelope()}, timeout=timeout)
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
                params["_meta"] = bridge_envelope()
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
            await send_quietly(child, rpc_error(message["id"], METHOD_NOT_FOUND, f"{method} is not available"))
            return
        if method in ("notifications/message", "notifications/progress"):
            opted_in = [w for w in child.pending.values() if w.notify is not None and w.log_opt_in]
            if method == "notifications/message" and len(child.pending) == 1 and opted_in:
                await opted_in[0].notify(message)  # type: ignore[misc]


def bridge_envelope() -> JSON:
    """The 2026-07-28 per-request envelope of the bridge's own requests to a 2026-speaking child."""
    return {
        "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": BRIDGE_CLIENT_INFO,
    }


async def send_quietly(child: Child, message: JSON) -> None:
    try:
        await child.send(message)
    except Exception:  # noqa: BLE001 - a dead child is its slot's business
        log.debug("could not answer %s", child.label)
