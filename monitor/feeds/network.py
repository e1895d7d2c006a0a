"""httpcore's network backend for polling, with a cheap idle-connection check.

Whenever a request starts or ends, httpcore asks every pooled connection
whether it has expired; for an idle one that means `get_extra_info("is_readable")`,
which the anyio backend answers by building a dict of the socket's attributes
(with a `getpeername` system call) only to fetch the socket from it, then polling
the socket. That was a tenth of the daemon's Python time in a cycle of 304s.
These streams keep their socket from the start and only poll it; everything
else is httpcore's own anyio backend.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx

SocketOption = (tuple[int, int, int] | tuple[int, int, bytes | bytearray]
                | tuple[int, int, None, int])


def _readable(sock: socket.socket | None) -> bool:
    """True when the socket is closed or has data: for an idle HTTP/1.1 connection,
    only the server closing it (httpcore's own rule)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address,
                                                     socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def transport(verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a connection pool that uses `Backend`.

    httpx does not take a network backend, so its pool is replaced by one built with
    the same settings (`tests/test_network.py` fails if an httpx release renames it).
    """
    made = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    made._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, network_backend=Backend())
    return made
