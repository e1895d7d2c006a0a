"""SSRF guard: refuse feeds whose host resolves to a non-public address.

A feed URL is user input; without this, adding `http://169.254.169.254/` or
`http://localhost:9810/` would let anyone who can add feeds read internal
services through Storywatch. Networks listed in `polling.allowed_networks`
(for example `127.0.0.0/8` in tests) are let through on purpose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """The host resolves to an address Storywatch must not contact."""


def _kind(addr: IPAddress) -> str | None:
    """Why an address is not public, or None when it is."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for kind, flag in (("loopback", addr.is_loopback), ("link-local", addr.is_link_local),
                       ("private", addr.is_private), ("multicast", addr.is_multicast),
                       ("unspecified", addr.is_unspecified), ("reserved", addr.is_reserved)):
        if flag:
            return kind
    return None


class AddressGuard:
    """Checks every address a host name resolves to before each request (and hop)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed)

    def refusal(self, addr: IPAddress) -> str | None:
        kind = _kind(addr)
        if kind is None or any(addr in net for net in self.allowed):
            return None
        return (f"{addr} is a {kind} address; list it in polling.allowed_networks "
                "to poll it on purpose")

    async def check(self, host: str, port: int) -> None:
        """Raise AddressRefused when `host` resolves to any refused address."""
        try:
            addrs: Iterable[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for addr in addrs:
            why = self.refusal(addr)
            if why:
                raise AddressRefused(f"refused {host}: {why}")
