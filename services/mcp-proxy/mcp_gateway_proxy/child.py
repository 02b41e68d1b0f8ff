"""One stdio MCP server process and the JSON-RPC bookkeeping the bridge keeps over it.

Why not the SDK's ``stdio_client``: the bridge needs the raw JSON-RPC frames (it relays messages it does
not model, from servers of either era), the child's stderr in its own log rather than a file handle, the
process in its own process group so a whole tree can be killed, and to know the instant the child dies so
waiting requests fail at once. So this module does the framing itself: newline-delimited JSON with no line
length limit (results of many MiB are one line), stderr drained continuously, non-JSON stdout lines logged
and skipped.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from .config import Settings
from .jsonrpc import CHILD_EXITED, INTERNAL_ERROR, REQUEST_CANCELLED, REQUEST_TIMEOUT, rpc_error

log = logging.getLogger("mcp_gateway_proxy.child")

JSON = dict[str, Any]

_STDERR_LINES_PER_SECOND = 200
_LOG_LINE_MAX = 4000


# The largest message written without waiting: well under a pipe's buffer (64 KiB on Linux), so a child that
# reads at all takes it at once.
_WRITE_AT_ONCE_BYTES = 16 * 1024


def _schedule_as_batch(pid: int) -> None:
    """Run the child under SCHED_BATCH (same priority, no wake-up preemption): each request the bridge
    writes wakes a child, and under the default policy the woken child took the bridge's core at once,
    stalling the bridge's one thread for a child's turn at every relayed request (a third of the bridge's
    profile under 16 clients sat inside those writes). Measured: +20 % calls/s with 16 clients in both eras
    and less CPU per call in bridge and children (BENCHMARKS.md). Processes the child starts inherit it."""
    try:
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux, or a sandbox that forbids it: only slower
        log.debug(json.dumps({"event": "child_sched_batch_failed", "pid": pid, "error": str(exc)}))


class ChildGone(Exception):
    """The child exited (or was killed) before answering."""


@dataclass
class Pending:
    """A request the bridge sent to the child and still waits for."""

    method: str
    client_progress_token: Any = None
    notify: Callable[[JSON], Awaitable[None]] | None = None
    log_opt_in: bool = False
    on_server_request: Callable[[JSON], Awaitable[None]] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    response: JSON | None = None


class Child:
    """A running stdio MCP server with request/response correlation.

    Requests sent through :meth:`request` get ids from the bridge's own counter, so requests from many
    HTTP clients can share one child without colliding; progress tokens are rewritten the same way and
    restored on the way back. Messages the child sends that answer none of these go to ``on_unrouted``.
    """

    _ids = itertools.count(1)
    _instances = itertools.count(1)

    def __init__(
        self,
        argv: Sequence[str],
        *,
        label: str,
        on_unrouted: Callable[[Child, JSON], Awaitable[None]],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        shutdown_grace: float = 3.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        write_timeout: float = 120.0,
    ) -> None:
        self.argv = list(argv)
        self.instance = next(Child._instances)  # unique for the bridge's life, unlike a label or a pid
        self.label = label
        self.on_unrouted = on_unrouted
        self.cwd = cwd
        self.env = dict(env) if env is not None else _child_environment()
        self.shutdown_grace = shutdown_grace
        self.max_message_bytes = max_message_bytes
        self.write_timeout = write_timeout
        self.failure: str | None = None  # why the bridge stopped the child, told to whoever waited
        self.process: anyio.abc.Process | None = None
        self.pending: dict[int, Pending] = {}
        self.by_token: dict[str, int] = {}
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self.started_at = time.monotonic()
        self.exited_at: float | None = None
        self.last_answer_at = time.monotonic()
        self.non_json_lines = 0
        self.stderr_lines = 0
        self._write_lock = anyio.Lock()

    @classmethod
    def for_settings(
        cls, settings: Settings, *, label: str, on_unrouted: Callable[[Child, JSON], Awaitable[None]]
    ) -> Child:
        return cls(
            settings.command,
            label=label,
            on_unrouted=on_unrouted,
            cwd=settings.child_cwd,
            shutdown_grace=settings.shutdown_grace,
            max_message_bytes=settings.max_message_bytes,
            write_timeout=settings.request_timeout,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and not self.exited.is_set()

    @property
    def spawn_failed(self) -> bool:
        """The command could not even be started (not found, not executable)."""
        return self.process is None and self.exited.is_set()

    @property
    def ran_for(self) -> float:
        """Seconds from start to exit (to now while it runs)."""
        return (self.exited_at if self.exited_at is not None else time.monotonic()) - self.started_at

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn the child and pump its output until it exits; then fail everything still waiting."""
        try:
            self.process = await anyio.open_process(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # own process group: kill the whole tree (npx, node, sh wrappers)
            )
        except OSError as exc:
            log.error(json.dumps({"event": "child_spawn_failed", "child": self.label, "error": str(exc)}))
            self.exited_at = time.monotonic()
            self.exited.set()
            self._fail_all(f"MCP server could not be started: {exc}")
            task_status.started()
            return
        _schedule_as_batch(self.process.pid)
        log.info(json.dumps({"event": "child_started", "child": self.label, "pid": self.process.pid}))
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drain_stderr)
                await self._read_stdout()
                if self.failure is None:
                    # stdout closed: the child is gone or going; reap it (bounded) and stop draining.
                    with anyio.move_on_after(self.shutdown_grace):
                        await self.process.wait()
                tg.cancel_scope.cancel()
        except Exception:  # whatever a child does must end this child only, never the bridge
            log.exception("reading the output of %s failed", self.label)
        finally:
            with anyio.CancelScope(shield=True):
                await self.kill()
            self.exited_at = time.monotonic()
            self.exited.set()
            self._fail_all(self.failure or f"MCP server exited (code {self.returncode})")
            log.info(json.dumps({"event": "child_exited", "child": self.label, "code": self.returncode}))

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        buffer = bytearray()
        try:
            async for chunk in self.process.stdout:
                scan_from = len(buffer)  # earlier bytes hold no newline: do not rescan a growing large line
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", max(start, scan_from))) != -1:
                    line = bytes(buffer[start:end])
                    start = end + 1
                    if line.strip():
                        await self._on_line(line)
                del buffer[:start]
                if len(buffer) > self.max_message_bytes:
                    # A line with no end in sight: stop before it takes the bridge's memory with it. The
                    # stream cannot be resynchronised with confidence, so the child is replaced.
                    self.failure = f"MCP server sent a message over {self.max_message_bytes} bytes"
                    log.error(json.dumps({"event": "child_message_too_large", "child": self.label}))
                    return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        if buffer.strip():
            await self._on_line(bytes(buffer))

    async def _on_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            self.non_json_lines += 1
            text = line[:_LOG_LINE_MAX].decode("utf-8", "replace")
            log.warning(json.dumps({"event": "child_stdout_not_json", "child": self.label, "line": text}))
            return
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict):
                continue
            try:
                await self._on_message(item)
            except Exception:  # one odd message is skipped; the child and the bridge go on
                log.exception("message from %s could not be handled", self.label)

    async def _on_message(self, message: JSON) -> None:
        self.last_answer_at = time.monotonic()
        if "method" not in message and "id" in message:
            waiter = self.pending.pop(message["id"], None) if isinstance(message["id"], int) else None
            if waiter is not None:
                self._forget_token(message["id"])
                waiter.response = message
                waiter.done.set()
                return
        elif message.get("method") == "notifications/progress" and isinstance(message.get("params"), dict):
            params = message["params"]
            owner = self.by_token.get(str(params.get("progressToken")))
            waiter = self.pending.get(owner) if owner is not None else None
            if waiter is not None and waiter.notify is not None:
                relayed = {**message, "params": {**params, "progressToken": waiter.client_progress_token}}
                await waiter.notify(relayed)
                return
        await self.on_unrouted(self, message)

    async def _drain_stderr(self) -> None:
        """Read stderr for as long as the child lives; log it, rate-limited so a flood cannot swamp the log."""
        assert self.process is not None and self.process.stderr is not None
        window_start, in_window, dropped = time.monotonic(), 0, 0
        buffer = bytearray()
        try:
            async for chunk in self.process.stderr:
                buffer += chunk
                *lines, rest = bytes(buffer).split(b"\n")
                buffer = bytearray(rest[-_LOG_LINE_MAX:])
                for line in lines:
                    self.stderr_lines += 1
                    now = time.monotonic()
                    if now - window_start >= 1.0:
                        if dropped:
                            log.warning(
                                json.dumps({"event": "child_stderr_dropped", "child": self.label, "lines": dropped})
                            )
                        window_start, in_window, dropped = now, 0, 0
                    if in_window >= _STDERR_LINES_PER_SECOND:
                        if not dropped:
                            log.warning(json.dumps({"event": "child_stderr_rate_limited", "child": self.label}))
                        dropped += 1
                        continue
                    in_window += 1
                    text = line[:_LOG_LINE_MAX].decode("utf-8", "replace").rstrip()
                    log.info(json.dumps({"event": "child_stderr", "child": self.label, "line": text}))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        if dropped:
            log.warning(json.dumps({"event": "child_stderr_dropped", "child": self.label, "lines": dropped}))

    async def send(self, message: JSON) -> None:
        """Write one message as one line. Raises ChildGone if the child is not there to read it."""
        if not self.alive:
            raise ChildGone(f"MCP server is not running (code {self.returncode})")
        assert self.process is not None and self.process.stdin is not None
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if self._write_at_once(data):
            return
        try:
            async with self._write_lock:
                with anyio.move_on_after(self.write_timeout) as stalled:
                    await self.process.stdin.send(data)
                if stalled.cancelled_caught:
                    # The child has not read its input for a whole request timeout. Left alone, every writer
                    # (a legacy session's reader of client messages among them) would queue behind this one.
                    self.failure = f"MCP server stopped reading its input for {self.write_timeout:g}s"
                    log.warning(json.dumps({"event": "child_not_reading", "child": self.label}))
                    with anyio.CancelScope(shield=True):
                        await self.kill()
                    raise ChildGone(self.failure)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            raise ChildGone(f"MCP server stopped reading its input: {exc}") from exc

    def _write_at_once(self, data: bytes) -> bool:
        """Write a small message without waiting when nothing is queued before it: the common case, and the
        lock, the timeout's cancel scope and the drain of the full path cost more than the write itself (a
        profile under 16 clients). Anything else (a writer waiting, bytes the child has not taken yet, a
        message larger than a pipe's buffer) takes the full path, whose timeout catches a child that stopped
        reading."""
        if len(data) > _WRITE_AT_ONCE_BYTES or self._write_lock.locked():
            return False
        # anyio's process stream wraps an asyncio StreamWriter; its transport says whether bytes are queued.
        writer = getattr(self.process.stdin, "_stream", None) if self.process is not None else None
        transport = getattr(writer, "transport", None)
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return False
        try:
            writer.write(data)  # type: ignore[union-attr]
        except (RuntimeError, OSError):
            return False  # uvloop raises once the pipe is gone: the full path says so in anyio's terms
        return True

    async def request(
        self,
        method: str,
        params: JSON | None,
        *,
        timeout: float,
        notify: Callable[[JSON], Awaitable[None]] | None = None,
        log_opt_in: bool = False,
        on_sent: Callable[[int], None] | None = None,
        on_server_request: Callable[[JSON], Awaitable[None]] | None = None,
    ) -> JSON:
        """Send a request under a fresh id and return the child's response message (``result`` or ``error``).

        Progress notifications for it go to ``notify`` with the caller's own token restored. On timeout
        the child is told to cancel, and a JSON-RPC error is returned; if the child exits first, an error
        is returned at once.
        """
        bridge_id = next(self._ids)
        waiter = Pending(method=method, notify=notify, log_opt_in=log_opt_in, on_server_request=on_server_request)
        params = dict(params) if params is not None else None
        meta = params.get("_meta") if params is not None else None
        if isinstance(meta, dict) and "progressToken" in meta:
            waiter.client_progress_token = meta["progressToken"]
            token = f"mcp-proxy-{bridge_id}"
            params["_meta"] = {**meta, "progressToken": token}  # type: ignore[index]
            self.by_token[token] = bridge_id
        self.pending[bridge_id] = waiter
        message: JSON = {"jsonrpc": "2.0", "id": bridge_id, "method": method}
        if params is not None:
            message["params"] = params
        sent = False
        try:
            with anyio.move_on_after(timeout) as scope:
                await self.send(message)
                sent = True
                if on_sent is not None:
                    on_sent(bridge_id)
                await waiter.done.wait()
            if scope.cancelled_caught:
                await self.cancel(bridge_id, "request timed out in the bridge")
                return rpc_error(bridge_id, REQUEST_TIMEOUT, f"MCP server did not answer {method} within {timeout:g}s")
        except ChildGone as exc:
            return rpc_error(bridge_id, CHILD_EXITED, str(exc))
        except anyio.get_cancelled_exc_class():
            if sent and not waiter.done.is_set():
                with anyio.CancelScope(shield=True):
                    await self.cancel(bridge_id, "the HTTP client went away")
            raise
        finally:
            if self.pending.pop(bridge_id, None) is not None:
                self._forget_token(bridge_id)
        assert waiter.response is not None
        return well_formed_answer(waiter.response)

    async def cancel(self, bridge_id: int, reason: str) -> None:
        """Tell the child to stop working on a request; whoever waits for it gets an error at once."""
        waiter = self.pending.pop(bridge_id, None)
        if waiter is not None:
            self._forget_token(bridge_id)
            waiter.response = rpc_error(bridge_id, REQUEST_CANCELLED, f"request cancelled: {reason}")
            waiter.done.set()
        try:
            with anyio.move_on_after(1.0):
                await self.send(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": bridge_id, "reason": reason},
                    }
                )
        except ChildGone:
            pass

    async def kill_if_unresponsive(self, timeout: float = 5.0) -> bool:
        """After a request timed out: if the child does not answer even a ping (any answer counts; 2026-07-28
        servers reply that ping is gone), it hangs as a whole; kill it so that a fresh one takes its place."""
        response = await self.request("ping", None, timeout=timeout)
        if response.get("error", {}).get("code") in (REQUEST_TIMEOUT, CHILD_EXITED):
            log.warning(json.dumps({"event": "child_hung", "child": self.label}))
            await self.kill()
            return True
        return False

    def _forget_token(self, bridge_id: int) -> None:
        self.by_token.pop(f"mcp-proxy-{bridge_id}", None)

    def _fail_all(self, why: str) -> None:
        for bridge_id, waiter in list(self.pending.items()):
            waiter.response = rpc_error(bridge_id, CHILD_EXITED, why)
            waiter.done.set()
        self.pending.clear()
        self.by_token.clear()

    async def kill(self) -> None:
        """SIGTERM the child's process group, then SIGKILL it after the grace period."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            with anyio.move_on_after(self.shutdown_grace):
                await process.wait()
        # Signal the group again even if the leader is gone: wrappers (npx, sh) may leave grandchildren.
        _signal_group(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with anyio.move_on_after(self.shutdown_grace):
                await process.wait()
        self.returncode = process.returncode
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await stream.aclose()
                    except Exception:  # noqa: BLE001 - closing a dead pipe may fail any way it likes
                        log.debug("closing a pipe of %s failed", self.label)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def well_formed_answer(response: JSON) -> JSON:
    """The child's answer when it is a JSON-RPC result (an object) or error (integer code, text message);
    otherwise an internal error in its place, since an answer the bridge cannot pass on would leave the client
    waiting for ever."""
    error = response.get("error")
    if isinstance(response.get("result"), dict) and error is None:
        return response
    if isinstance(error, dict) and type(error.get("code")) is int and isinstance(error.get("message"), str):
        return response
    return rpc_error(response.get("id"), INTERNAL_ERROR, "MCP server sent an answer that is not valid JSON-RPC")


def _child_environment() -> dict[str, str]:
    # The bridge's own settings (and nothing that looks like a credential the gateway handles) stay out.
    return {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_")}
