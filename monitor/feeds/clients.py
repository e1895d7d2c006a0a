"""HTTP connection pools for polling: several small clients instead of one large one.

httpcore examines every pooled connection whenever a request starts or ends
(for an idle one: an attribute lookup with a `getpeername` call, then a socket
poll), so one pool sized for 64 parallel polls spends more time managing itself
than sending requests. Instead each poll slot belongs to one of several small
clients, and a pool never holds more than `PER_CLIENT` connections. Slots are
handed out lowest first, so a lightly loaded daemon reuses the same few pools
and their kept-alive connections.
"""

from __future__ import annotations

import heapq
import math
import ssl
from typing import Any

import httpx

from monitor.feeds import network

PER_CLIENT = 8
KEEPALIVE = 30.0
"""Seconds an idle connection stays open: a host's feeds are often polled close together."""


class SlotClients:
    def __init__(self, slots: int, verify: ssl.SSLContext, **client_args: Any) -> None:
        # Every connection a client may open is kept alive: beyond
        # `max_keepalive_connections` httpcore closes idle ones, and the next
        # poll pays for a new connection.
        limits = httpx.Limits(max_connections=PER_CLIENT, max_keepalive_connections=PER_CLIENT,
                              keepalive_expiry=KEEPALIVE)
        self._clients = [httpx.AsyncClient(transport=network.transport(verify, limits),
                                           verify=verify, **client_args)
                         for _ in range(math.ceil(slots / PER_CLIENT))]
        self._free = list(range(slots))

    def acquire(self) -> int:
        """The lowest free slot; the caller holds at most one request on it at a time."""
        return heapq.heappop(self._free)

    def release(self, slot: int) -> None:
        heapq.heappush(self._free, slot)

    def client(self, slot: int) -> httpx.AsyncClient:
        return self._clients[slot // PER_CLIENT]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
