"""Answer a handshake-era POST with plain JSON when its SSE stream would carry nothing but the answer.

The SDK transport answers every request POST with an SSE stream. When the child answers before it sends
anything else for that request, the stream is just one event (after a priming event), and clients pay for
SSE with no gain; some refuse large events (the SDK client caps them at 1 MiB by default). This ASGI
``send`` wrapper holds the SSE response back until it knows: if the stream ends with only the priming
event and the answer, the answer goes out as ``application/json`` (the transport rules allow either);
as soon as anything else appears (a notification, a server request, a keep-alive comment because the
child is slow), everything held back is sent as the SSE stream it was. Resuming a request whose answer
was delivered is never needed, so dropping the priming event loses nothing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message, Send


def _event_data(chunk: bytes) -> tuple[bool, bytes | None]:
    """(is an event rather than a comment, its data) for one SSE chunk as sse-starlette writes it."""
    lines = chunk.replace(b"\r\n", b"\n").split(b"\n")
    data = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
    is_event = any(line and not line.startswith(b":") for line in lines)
    return is_event, b"\n".join(data) if data else None


def _is_answer(data: bytes) -> bool:
    try:
        message: Any = json.loads(data)
    except ValueError:
        return False
    return isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)


class JsonWhenPossible:
    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.held: list[Message] = []
        self.answer: bytes | None = None
        self.streaming = False

    async def __call__(self, message: Message) -> None:
        if self.streaming:
            await self.send(message)
            return
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if not content_type.startswith(b"text/event-stream") or message.get("status") != 200:
                self.streaming = True
                await self.send(message)
                return
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self._flush(message)
            return
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk:
            is_event, data = _event_data(chunk)
            if not is_event or self.answer is not None:
                await self._flush(message)  # a keep-alive comment (slow child) or something after the answer
                return
            if data and _is_answer(data):
                self.answer = data
            elif data:
                await self._flush(message)  # a notification or a server request: this is a real stream
                return
            self.held.append(message)  # the priming event, or the answer
        if not more:
            if self.answer is None:
                await self._flush(message)
                return
            headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() not in _SSE_ONLY]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(self.answer)).encode())]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
            await self.send({"type": "http.response.body", "body": self.answer, "more_body": False})
            self.streaming = True  # anything after this (nothing, normally) passes untouched

    async def _flush(self, message: Message) -> None:
        self.streaming = True
        if self.start is not None:
            await self.send(self.start)
        for held in self.held:
            await self.send(held)
        self.held.clear()
        if not (message["type"] == "http.response.body" and not message.get("body") and message.get("more_body")):
            await self.send(message)


_SSE_ONLY = {
    b"content-type",
    b"content-length",
    b"cache-control",
    b"connection",
    b"x-accel-buffering",
    b"transfer-encoding",
}
