"""Every feed format we promise, wrong charsets, and hostile bodies in the parser pool."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from monitor import children
from monitor.feeds import worker
from monitor.feeds.parse import FeedParseError, parse
from monitor.feeds.worker import Parsed, ParsePool

RSS_091 = b"""<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title>
<link>https://a.example/</link><description>d</description><language>en</language>
<item><title>One</title><link>https://a.example/1</link><description>x</description></item>
</channel></rss>"""
RSS_092 = RSS_091.replace(b'"0.91"', b'"0.92"')
RSS_10 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://a.example/"><title>RDF</title><link>https://a.example/</link>
<description>d</description></channel>
<item rdf:about="https://a.example/1"><title>One</title><link>https://a.example/1</link>
<dc:date>2026-01-01T10:00:00Z</dc:date></item></rdf:RDF>"""
RSS_20 = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Two</title><ttl>60</ttl>
<item><guid>g1</guid><title>One</title><link>https://a.example/1</link>
<pubDate>Thu, 01 Jan 2026 10:00:00 GMT</pubDate></item></channel></rss>"""
ATOM_03 = b"""<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#">
<title>A03</title><entry><title>One</title><id>tag:a,2026:1</id>
<link rel="alternate" href="https://a.example/1"/><issued>2026-01-01T10:00:00Z</issued>
<modified>2026-01-01T10:00:00Z</modified></entry></feed>"""
ATOM_10 = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A10</title>
<id>urn:a</id><updated>2026-01-01T10:00:00Z</updated><entry><title>One</title>
<id>urn:a:1</id><link href="https://a.example/1"/><updated>2026-01-01T10:00:00Z</updated>
</entry></feed>"""


def json_feed(version: str) -> bytes:
    item = {"id": "1", "url": "https://a.example/1", "title": "One",
            "content_text": "x", "date_published": "2026-01-01T10:00:00Z"}
    item |= {"authors": [{"name": "Ann"}]} if version == "1.1" else {"author": {"name": "Ann"}}
    return json.dumps({"version": f"https://jsonfeed.org/version/{version}", "title": "J",
                       "items": [item]}).encode()


@pytest.mark.parametrize("body", [RSS_091, RSS_092, RSS_10, RSS_20, ATOM_03, ATOM_10,
                                  json_feed("1"), json_feed("1.1")],
                         ids=["rss0.91", "rss0.92", "rss1.0", "rss2.0", "atom0.3", "atom1.0",
                              "json1.0", "json1.1"])
def test_every_format_gives_its_entry(body: bytes) -> None:
    feed = parse(body)
    [entry] = feed.entries
    assert entry.title == "One" and entry.link == "https://a.example/1"


def test_rss_ttl_is_read() -> None:
    assert parse(RSS_20).ttl_seconds == 3600


def test_wrong_declared_charset_still_reads_the_text() -> None:
    body = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            "<item><title>Caf\u00e9 ouvert</title><link>https://a.example/c</link></item>"
            "</channel></rss>").encode("latin-1")
    [entry] = parse(body).entries
    assert entry.title == "Caf\u00e9 ouvert"


def test_declared_legacy_charset_is_honoured() -> None:
    body = ("<?xml version='1.0' encoding='windows-1251'?><rss version='2.0'><channel>"
            "<title>t</title><item><title>\u041d\u043e\u0432\u043e\u0441\u0442\u0438</title>"
            "</item></channel></rss>").encode("windows-1251")
    assert parse(body).entries[0].title == "\u041d\u043e\u0432\u043e\u0441\u0442\u0438"


def test_not_a_feed_is_an_error() -> None:
    with pytest.raises(FeedParseError):
        parse(b"<html><body>Hello</body></html>")
    with pytest.raises(FeedParseError):
        parse(b'{"version": "nope"}')


def test_entity_expansion_is_not_performed() -> None:
    levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 6))
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{levels}]>'
            '<rss version="2.0"><channel><title>&l5;</title><item><title>a</title></item>'
            "</channel></rss>").encode()
    try:
        feed = parse(body)
    except FeedParseError:
        return
    assert len(feed.title or "") < 1000


QUADRATIC = (b"<rss version='2.0'><channel><title>t</title><item><title>x</title><author>"
             + b"a" * 40_000 + b"</author></item></channel>")
"""Not well-formed (no `</rss>`), so it reaches feedparser and its quadratic e-mail regex."""
NESTED = (b"<rss version='2.0'><channel><title>t</title><item><title>x</title><description>"
          + b"<div>" * 400_000 + b"</description></item></channel></rss>")


@pytest.mark.parametrize("body", [QUADRATIC, NESTED], ids=["author-email", "nested-tags"])
def test_pathological_feed_is_killed_and_loop_keeps_running(body: bytes) -> None:
    async def main() -> tuple[int, Parsed]:
        pool = ParsePool(1, timeout=0.5)
        await pool.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            with pytest.raises(FeedParseError, match="longer than"):
                await pool.parse(body, None)
            assert pool.replaced == 1
            after = await pool.parse(RSS_20, None)  # the replacement worker serves on
        finally:
            task.cancel()
            await pool.close()
        return ticks, after

    ticks, after = asyncio.run(main())
    assert ticks > 5, "the event loop kept running while the parser was stuck"
    assert after.feed.entries[0].title == "One" and after.items[0].title == "One"


def test_parsers_ignore_modules_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`storywatch run` started in a directory holding a `feedparser.py` still parses."""
    (tmp_path / "feedparser.py").write_text("raise ImportError('the working directory')\n")
    monkeypatch.chdir(tmp_path)

    async def main() -> Parsed:
        pool = ParsePool(1, timeout=30)
        await pool.start()
        try:
            return await pool.parse(RSS_20, None)
        finally:
            await pool.close()

    assert asyncio.run(main()).items[0].title == "One"


def test_a_parser_that_dies_starting_is_a_parse_error_not_a_hang(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A parser process that exits before it is ready (a broken install, say)."""
    monkeypatch.setattr(worker, "_CHILD", "raise SystemExit(3)")

    async def main() -> None:
        pool = ParsePool(1, timeout=5)
        await pool.start()
        try:
            with pytest.raises(FeedParseError, match="could not be started"):
                await asyncio.wait_for(pool.parse(RSS_20, None), 60)
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_parser_that_cannot_start_is_a_parse_error_not_a_hang(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers start in the background; one that never gets ready fails its feed's parse."""
    async def main() -> Parsed:
        pool = ParsePool(1, timeout=5)
        monkeypatch.setattr(children, "STARTUP_TIMEOUT", 0.0)  # never ready in time
        await pool.start()
        try:
            with pytest.raises(FeedParseError, match="could not be started"):
                await pool.parse(RSS_20, None)
            monkeypatch.undo()
            return await pool.parse(RSS_20, None)  # the slot is filled on the next parse
        finally:
            await pool.close()

    assert asyncio.run(main()).items[0].title == "One"
