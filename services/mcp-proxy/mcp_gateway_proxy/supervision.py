"""When to start a child again after one exited: one rule for the pool, the sessions and the spares.

A server that dies at once (a bad command line, a missing dependency) must not be restarted in a tight
loop, so each quick exit doubles the wait. But a child that served well for a long time and then crashed
once is not in such a loop: it gets the short wait again, whatever happened before it started.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .child import Child

log = logging.getLogger("mcp_gateway_proxy.supervision")

FIRST_DELAY = 0.2  # seconds before the first restart: long enough not to spin, short enough to go unnoticed
LONGEST_DELAY = 5.0  # the wait never grows beyond this, so a server that comes back is used soon


class RestartBackoff:
    """The wait before each restart of one supervised child slot.

    It grows (doubling, up to ``LONGEST_DELAY``) with each consecutive exit of a child that ran for less than
    ``reset_after`` seconds, and starts over at ``FIRST_DELAY`` when the child that exited had run well for
    ``reset_after`` seconds or more.
    """

    def __init__(self, reset_after: float) -> None:
        self.reset_after = reset_after
        self._next = FIRST_DELAY

    def after_exit(self, ran_for: float) -> float:
        """Seconds to wait before starting the next child, given how long the one that exited ran well
        (0 for one that could not even be started or made ready)."""
        if ran_for >= self.reset_after:
            self._next = FIRST_DELAY
        delay = self._next
        self._next = min(self._next * 2, LONGEST_DELAY)
        return delay

    async def pause(self, child: Child, *, ran_well: bool = True) -> None:
        """Wait as long as the rule says before the slot of ``child`` (which has exited) gets a new child.
        ``ran_well`` is False for a child that never became ready to serve: however long that took, it counts
        as a quick crash."""
        delay = self.after_exit(child.ran_for if ran_well else 0.0)
        # The operator's view of a crash loop: how long the child lasted and how long its slot now waits.
        log.info(
            json.dumps(
                {
                    "event": "child_restart_delayed",
                    "child": child.label,
                    "ran_s": round(child.ran_for, 3),
                    "delay_s": delay,
                }
            )
        )
        await anyio.sleep(delay)
