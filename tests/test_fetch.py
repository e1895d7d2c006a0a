"""fetch() against a real HTTP server on 127.0.0.1: every status and header it handles."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import brotli
import httpx
import pytest

from monitor.feeds import fetch
from monitor.feeds.guard import AddressGuard
from tests.servers import Reply, Server

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
LOOPBACK = AddressGuard(["127.0.0.0/8"])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One server for the module (each test uses its own paths): keeps the suite fast."""
    srv = Server()
    yield srv
    srv.close()


def get(url: str, etag: str | None = None, guard: AddressGuard = LOOPBACK,
        **limits: float) -> fetch.FetchResult:
    lim = fetch.Limits(**{"max_bytes": 1_000_000, "max_compressed_bytes": 1_000_000,
                          "deadline": 5.0, **limits})  # type: ignore[arg-type]

    async def go() -> fetch.FetchResult:
        async with httpx.AsyncClient(headers={"User-Agent": "test"}) as client:
            return await fetch.fetch(client, fetch.FetchRequest(url, etag), lim, guard)

    return asyncio.run(go())


def test_ok_then_conditional_304(server: Server) -> None:
    modified = "Mon, 01 Jan 2024 00:00:00 GMT"
    server.routes["/f"] = Reply(body=FEED, headers={"Last-Modified": modified})
    first = get(server.url("/f"))
    assert first.outcome == fetch.OK and first.body == FEED and first.body_hash
    assert first.last_modified == modified
    second = get(server.url("/f"), etag=first.etag)
    assert second.outcome == fetch.NOT_MODIFIED and second.body is None
    assert server.hits("/f")[-1].headers["if-none-match"] == first.etag


@pytest.mark.parametrize(("codes", "permanent"), [
    ((301,), True), ((308,), True), ((301, 308), True), ((302,), False), ((303,), False),
    ((307,), False), ((301, 302), False), ((307, 301), False)])
def test_redirect_chains_report_permanence(server: Server, codes: tuple[int, ...],
                                           permanent: bool) -> None:
    for i, code in enumerate(codes):
        server.routes[f"/r{i}"] = Reply(code, headers={"Location": f"/r{i + 1}"})
    server.routes[f"/r{len(codes)}"] = Reply(body=FEED)
    result = get(server.url("/r0"))
    assert result.outcome == fetch.OK
    assert result.final_url == server.url(f"/r{len(codes)}")
    assert result.permanent_redirect is permanent


def test_redirect_loop_and_too_many_hops(server: Server) -> None:
    server.routes["/a"] = Reply(301, headers={"Location": "/b"})
    server.routes["/b"] = Reply(301, headers={"Location": "/a"})
    assert get(server.url("/a")).outcome == fetch.REDIRECT
    for i in range(10):
        server.routes[f"/h{i}"] = Reply(302, headers={"Location": f"/h{i + 1}"})
    result = get(server.url("/h0"))
    assert result.outcome == fetch.REDIRECT and "more than 5" in (result.error or "")


def test_redirect_to_private_address_refused_per_hop(server: Server) -> None:
    server.routes["/out"] = Reply(301, headers={"Location": "http://10.1.2.3/feed"})
    result = get(server.url("/out"), guard=AddressGuard(["127.0.0.0/8"]))
    assert result.outcome == fetch.NETWORK_ERROR and "private" in (result.error or "")


def test_loopback_refused_unless_allowed(server: Server) -> None:
    server.routes["/private"] = Reply(body=FEED)
    refused = get(server.url("/private"), guard=AddressGuard())
    assert refused.outcome == fetch.NETWORK_ERROR and "loopback" in (refused.error or "")
    assert server.hits("/private") == []
    assert get(server.url("/private")).outcome == fetch.OK


@pytest.mark.parametrize(("status", "headers", "outcome"), [
    (410, {}, fetch.GONE),
    (429, {}, fetch.RATE_LIMITED),
    (503, {"Retry-After": "120"}, fetch.RATE_LIMITED),
    (503, {}, fetch.HTTP_5XX),
    (500, {}, fetch.HTTP_5XX),
    (404, {}, fetch.HTTP_4XX),
    (403, {}, fetch.HTTP_4XX),
    (403, {"cf-mitigated": "challenge"}, fetch.BLOCKED),
])
def test_status_outcomes(server: Server, status: int, headers: dict[str, str],
                         outcome: str) -> None:
    server.routes["/s"] = Reply(status, b"nope", headers=headers)
    result = get(server.url("/s"))
    assert result.outcome == outcome and result.status == status


def test_retry_after_seconds_and_http_date(server: Server) -> None:
    server.routes["/secs"] = Reply(429, headers={"Retry-After": "120"})
    assert get(server.url("/secs")).retry_after == 120
    when = datetime.now(UTC) + timedelta(hours=2)
    server.routes["/date"] = Reply(503, headers={"Retry-After": format_datetime(when, True)})
    retry = get(server.url("/date")).retry_after
    assert retry is not None and 7000 < retry <= 7200
    assert fetch.parse_retry_after("soon") is None


def test_cache_headers_give_freshness(server: Server) -> None:
    server.routes["/cc"] = Reply(body=FEED, headers={"Cache-Control": "public, max-age=3600"})
    assert get(server.url("/cc")).fresh_for == 3600
    now = datetime.now(UTC)
    server.routes["/exp"] = Reply(body=FEED, headers={
        "Date": format_datetime(now, True),
        "Expires": format_datetime(now + timedelta(minutes=30), True)})
    fresh = get(server.url("/exp")).fresh_for
    assert fresh is not None and 1790 <= fresh <= 1800


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ("br", brotli.compress)])
def test_compressed_bodies(server: Server, encoding: str, encode: object) -> None:
    assert callable(encode)
    path = f"/z-{encoding}-{len(encode(FEED))}"
    server.routes[path] = Reply(body=encode(FEED), headers={"Content-Encoding": encoding})
    result = get(server.url(path))
    assert result.outcome == fetch.OK and result.body == FEED
    assert "br" in server.hits(path)[0].headers["accept-encoding"]


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress), ("br", lambda b: brotli.compress(b, quality=1))])
def test_compression_bomb_is_too_large(server: Server, encoding: str, encode: object) -> None:
    assert callable(encode)
    bomb = encode(b"<" + b"a" * 50_000_000)
    assert len(bomb) < 200_000
    server.routes["/bomb"] = Reply(body=bomb, headers={"Content-Encoding": encoding})
    result = get(server.url("/bomb"), max_bytes=2_000_000)
    assert result.outcome == fetch.TOO_LARGE and "decoded" in (result.error or "")


def test_oversized_body_refused_on_the_wire(server: Server) -> None:
    server.routes["/big"] = Reply(body=b"x" * 300_000)
    result = get(server.url("/big"), max_compressed_bytes=100_000)
    assert result.outcome == fetch.TOO_LARGE


def test_bad_encoding_is_an_error_not_a_crash(server: Server) -> None:
    server.routes["/bad"] = Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert get(server.url("/bad")).outcome == fetch.NETWORK_ERROR
    server.routes["/zstd"] = Reply(body=b"x", headers={"Content-Encoding": "zstd"})
    assert get(server.url("/zstd")).outcome == fetch.NETWORK_ERROR


def test_slow_loris_body_times_out(server: Server) -> None:
    server.routes["/slow"] = Reply(body=FEED, trickle=0.05)
    result = get(server.url("/slow"), deadline=0.5)
    assert result.outcome == fetch.TIMEOUT


def test_unused_bodies_are_read_so_the_connection_is_kept(server: Server) -> None:
    """304s, redirects and error pages reuse one connection: no new handshake per poll."""
    server.routes["/keep"] = Reply(body=FEED)
    server.routes["/keep-moved"] = Reply(302, b"moved", headers={"Location": "/keep"})
    server.routes["/keep-error"] = Reply(503, b"<html>" + b"x" * 5000 + b"</html>")
    lim = fetch.Limits(max_bytes=1_000_000, max_compressed_bytes=1_000_000, deadline=5.0)

    async def go() -> list[str]:
        async with httpx.AsyncClient() as client:
            first = await fetch.fetch(client, fetch.FetchRequest(server.url("/keep")), lim,
                                      LOOPBACK)
            outcomes = [first.outcome]
            for path, etag in (("/keep", first.etag), ("/keep-moved", first.etag),
                               ("/keep-error", None), ("/keep", first.etag)):
                req = fetch.FetchRequest(server.url(path), etag)
                outcomes.append((await fetch.fetch(client, req, lim, LOOPBACK)).outcome)
            return outcomes

    assert asyncio.run(go()) == [fetch.OK, fetch.NOT_MODIFIED, fetch.NOT_MODIFIED,
                                 fetch.HTTP_5XX, fetch.NOT_MODIFIED]
    ports = {r.port for path in ("/keep", "/keep-moved", "/keep-error")
             for r in server.hits(path)}
    assert len(ports) == 1


def test_slow_or_large_error_page_keeps_its_status(server: Server) -> None:
    server.routes["/slow-error"] = Reply(500, b"e" * 200, trickle=0.02)
    assert get(server.url("/slow-error"), deadline=10).outcome == fetch.HTTP_5XX
    server.routes["/big-error"] = Reply(404, b"e" * (fetch.DRAIN_BYTES * 4))
    assert get(server.url("/big-error")).outcome == fetch.HTTP_4XX


def test_connection_refused_is_network_error() -> None:
    srv = Server()
    url = srv.url("/gone")
    srv.close()
    assert get(url).outcome == fetch.NETWORK_ERROR
