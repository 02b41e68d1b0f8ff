"""Requests being answered at once: at most ``--max-inflight`` in each era, and at most
``--max-inflight-per-user`` for one user, both eras together.

The per-user count spans both eras because what it protects is shared by both: the bridge's memory and tasks,
and the slots of the global caps. A user who could hold a full allowance in each era would get twice the share
by mixing clients. Only requests that wait for an answer count against the user: a notification or a client's
answer to a server request is handed to the child at once, and refusing it could deadlock a user at the cap
(their calls wait for the very answers that would be refused).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Send

from .config import Settings
from .jsonrpc import CHILD_EXITED, respond_rpc, rpc_error
from .metrics import Metrics

log = logging.getLogger("mcp_gateway_proxy")

ERAS = ("legacy", "2026-07-28")


class InFlight:
    """The counts of requests being answered, shared by both eras' handlers."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.by_era = dict.fromkeys(ERAS, 0)
        # Only users with a request in flight have an entry: it goes with their last request, so the map
        # never grows with the number of users seen.
        self.by_user: dict[str, int] = {}

    def most_held_by_one_user(self) -> int:
        return max(self.by_user.values(), default=0)

    async def serve(
        self,
        era: str,
        user: str,
        send: Send,
        request_id: Any,
        serve: Callable[[Send], Awaitable[None]],
        *,
        awaits_answer: bool = True,
    ) -> None:
        """Run ``serve`` holding one of the era's slots and, when the request waits for an answer, one of the
        user's; or answer 503 with Retry-After when either cap is reached.

        ``serve`` answers through the ``send`` it is given, which gives the slots back as the last part of the
        answer goes out: a client that sends its next request as soon as it has the answer must not find its
        own finished request still counted. ``finally`` gives them back whatever else ends the request (an
        error, a timeout, a cancellation, a client that went away)."""
        held = self.by_user.get(user, 0)
        if awaits_answer and held >= self.settings.inflight_per_user:
            self.metrics.requests_refused_per_user += 1
            await self._refuse(send, request_id, "per_user", era, user, held, self.settings.inflight_per_user)
            return
        if self.by_era[era] >= self.settings.max_inflight:
            await self._refuse(send, request_id, "global", era, user, self.by_era[era], self.settings.max_inflight)
            return
        self.by_era[era] += 1
        if awaits_answer:
            self.by_user[user] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.by_era[era] -= 1
            if awaits_answer:
                left = self.by_user[user] - 1
                if left:
                    self.by_user[user] = left
                else:
                    del self.by_user[user]

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await serve(answer)
        finally:
            release()

    async def _refuse(
        self, send: Send, request_id: Any, reason: str, era: str, user: str, held: int, limit: int
    ) -> None:
        log.warning(
            json.dumps(
                {"event": "request_refused", "reason": reason, "era": era, "user": user, "held": held, "limit": limit}
            )
        )
        if reason == "per_user":
            message = f"Too many requests in flight for this user ({limit}); retry when one is answered"
        else:
            message = "Too many requests in flight"
        # The same answer at either cap: 503, JSON-RPC -32000, Retry-After.
        await respond_rpc(send, 503, rpc_error(request_id, CHILD_EXITED, message), retry_after=1)
