"""Fetching over real HTTP from a local server: every outcome is data, never a crash."""

from __future__ import annotations

import asyncio
import gzip

import httpx

from monitor.feeds import fetch
from tests.servers import Reply, Server


def get(server: Server, path: str, *, etag: str | None = None, max_bytes: int = 1 << 20,
        deadline: float = 5.0) -> fetch.FetchResult:
    async def main() -> fetch.FetchResult:
        async with httpx.AsyncClient(follow_redirects=True) as client:
            return await fetch.fetch(client, fetch.FetchRequest(server.url(path), etag),
                                     max_bytes=max_bytes, deadline=deadline)
    return asyncio.run(main())


def test_ok_then_not_modified(server: Server) -> None:
    server.routes["/f"] = Reply(body=b"<rss/>", headers={"Last-Modified": "x"})
    first = get(server, "/f")
    assert first.outcome == fetch.OK and first.body == b"<rss/>" and first.etag
    again = get(server, "/f", etag=first.etag)
    assert again.outcome == fetch.NOT_MODIFIED and again.body is None
    assert server.hits("/f")[1].headers["if-none-match"] == first.etag


def test_status_outcomes(server: Server) -> None:
    server.routes["/gone"] = Reply(410)
    server.routes["/limited"] = Reply(429, headers={"Retry-After": "120"})
    server.routes["/busy"] = Reply(503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    server.routes["/err"] = Reply(500)
    server.routes["/challenge"] = Reply(403, headers={"cf-mitigated": "challenge"})
    assert get(server, "/gone").outcome == fetch.GONE
    limited = get(server, "/limited")
    assert (limited.outcome, limited.retry_after) == (fetch.RATE_LIMITED, 120)
    busy = get(server, "/busy")
    assert busy.outcome == fetch.RATE_LIMITED and busy.retry_after and busy.retry_after > 1e6
    assert get(server, "/err").outcome == fetch.HTTP_5XX
    assert get(server, "/missing").outcome == fetch.HTTP_4XX
    assert get(server, "/challenge").outcome == fetch.BLOCKED


def test_huge_bodies_are_cut(server: Server) -> None:
    server.routes["/big"] = Reply(body=b"x" * 200_000)
    assert get(server, "/big", max_bytes=100_000).outcome == fetch.TOO_LARGE
    bomb = gzip.compress(b"<" * 5_000_000)
    server.routes["/bomb"] = Reply(body=bomb, headers={"Content-Encoding": "gzip"})
    result = get(server, "/bomb", max_bytes=1_000_000)
    assert result.outcome == fetch.TOO_LARGE


def test_slow_server_hits_the_deadline(server: Server) -> None:
    server.routes["/slow"] = Reply(body=b"<rss>" + b" " * 100, trickle=0.05)
    result = get(server, "/slow", deadline=0.5)
    assert result.outcome == fetch.TIMEOUT


def test_connection_refused_is_a_network_error() -> None:
    async def main() -> fetch.FetchResult:
        async with httpx.AsyncClient() as client:
            return await fetch.fetch(client, fetch.FetchRequest("http://127.0.0.1:9/feed"),
                                     max_bytes=1000, deadline=5)
    assert asyncio.run(main()).outcome == fetch.NETWORK_ERROR
