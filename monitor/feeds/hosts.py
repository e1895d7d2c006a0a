"""Per-host politeness inside one daemon: a concurrency cap and a minimum spacing.

Site operators see hosts, not feeds: fifty feeds on one site polled at once
look like an attack. The dispatcher asks `room()` before claiming a feed and
every fetch waits for `wait_turn()`, so requests to one host never exceed the cap
and starts are at least `spacing` seconds apart. `Retry-After` for a host
lives in the database instead (see `queries.hold_host`), so it survives restarts.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


def host_of(url: str) -> str:
    """The politeness key of a URL: its lower-cased host name (port ignored)."""
    try:
        return (urlsplit(url).hostname or "").lower()[:255]
    except ValueError:
        return ""


class HostGate:
    def __init__(self, concurrency: int, spacing: float) -> None:
        self.concurrency = concurrency
        self.spacing = spacing
        self.inflight: dict[str, int] = {}
        self._next_start: dict[str, float] = {}

    def room(self, host: str) -> int:
        """How many more fetches this host may have in flight now."""
        return self.concurrency - self.inflight.get(host, 0)

    def reserve(self, host: str) -> None:
        self.inflight[host] = self.inflight.get(host, 0) + 1

    def release(self, host: str) -> None:
        left = self.inflight.get(host, 0) - 1
        if left > 0:
            self.inflight[host] = left
        else:
            self.inflight.pop(host, None)
            if self._next_start.get(host, 0.0) <= time.monotonic():
                self._next_start.pop(host, None)

    async def wait_turn(self, host: str) -> None:
        """Wait until this host's next start slot (a reservation must be held)."""
        now = time.monotonic()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + self.spacing
        if start > now:
            await asyncio.sleep(start - now)
