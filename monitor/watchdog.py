"""The systemd watchdog: ping only while the daemon is really working.

A ping proves three things at once: the event loop runs (this coroutine got
scheduled), the scheduler still ticks (the dispatch job recorded a tick
recently) and the database answers a write-lock round trip in time. When any
of them fails the pings stop and systemd restarts the service after
`WatchdogSec=`; a stuck daemon never reports itself healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from monitor.sdnotify import Notifier

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, notifier: Notifier, interval: float, last_tick: Callable[[], float],
                 stall_limit: float, ping_db: Callable[[], None]) -> None:
        self.notifier = notifier
        self.interval = interval
        self.last_tick = last_tick
        self.stall_limit = stall_limit
        self.ping_db = ping_db
        self._ping: asyncio.Future[None] | None = None
        self.problem: str | None = None

    async def check(self) -> str | None:
        """None when healthy, else a one-line reason."""
        idle = time.monotonic() - self.last_tick()
        if idle > self.stall_limit:
            return f"scheduler has not ticked for {idle:.1f}s"
        # One ping at a time: a hung database must not pile up threads and connections.
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(asyncio.to_thread(self.ping_db))
        done, _ = await asyncio.wait({self._ping}, timeout=self.interval)
        if not done:
            return "database did not answer in time"
        exc = self._ping.exception()
        if exc is not None:
            return f"database error: {type(exc).__name__}: {exc}"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            problem = await self.check()
            if problem is None:
                self.notifier.send("WATCHDOG=1")
            if problem != self.problem:
                if problem:
                    log.error("watchdog withheld: daemon is not making progress",
                              extra={"reason": problem})
                else:
                    log.info("watchdog resumed")
                self.problem = problem
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
