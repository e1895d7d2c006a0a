"""The polling clients' network backend: kept-alive connections are reused, and one the
server closed while idle is noticed before a request is sent on it (HTTP and HTTPS)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.feeds import network
from monitor.feeds.clients import SlotClients

BODY = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


class KeepAliveServer:
    """HTTP/1.1 on 127.0.0.1 that counts connections; with `close_idle`, it closes each
    connection right after its answer without saying so (no `Connection: close`)."""

    def __init__(self, close_idle: bool, tls: ssl.SSLContext | None = None) -> None:
        self.close_idle, self.tls = close_idle, tls
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                pending = pending.split(b"\r\n\r\n", 1)[1]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                if self.close_idle:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


async def get_twice(url: str, verify: ssl.SSLContext) -> list[int]:
    pools = SlotClients(8, verify=verify, timeout=5.0)
    client = pools.client(pools.acquire())
    statuses = []
    try:
        for _ in range(2):
            statuses.append((await client.get(url)).status_code)
            await asyncio.sleep(0.2)  # the server's close (if any) arrives meanwhile
    finally:
        await pools.aclose()
    return statuses


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    yield cert, key


def test_polling_clients_use_the_backend() -> None:
    """If an httpx release moves its pool, this fails instead of polling silently changing."""
    pools = SlotClients(16, verify=httpx.create_ssl_context())
    transport = pools.client(0)._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    assert isinstance(transport._pool._network_backend, network.Backend)
    asyncio.run(pools.aclose())


@pytest.mark.parametrize("close_idle, connections", [(False, 1), (True, 2)])
def test_idle_connections_are_reused_unless_the_server_closed_them(
        close_idle: bool, connections: int) -> None:
    server = KeepAliveServer(close_idle)
    try:
        url = f"http://127.0.0.1:{server.port}/feed.xml"
        assert asyncio.run(get_twice(url, httpx.create_ssl_context())) == [200, 200]
        assert server.connections == connections
    finally:
        server.close()


@pytest.mark.parametrize("close_idle, connections", [(False, 1), (True, 2)])
def test_https_goes_through_the_backend_too(certificate: tuple[Path, Path], close_idle: bool,
                                            connections: int) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    server = KeepAliveServer(close_idle, served)
    try:
        url = f"https://127.0.0.1:{server.port}/feed.xml"
        assert asyncio.run(get_twice(url, trusted)) == [200, 200]
        assert server.connections == connections
    finally:
        server.close()
