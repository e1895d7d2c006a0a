"""Parsing RSS, Atom and JSON Feed into entries, and normalising them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.demo.render import Item, render
from monitor.feeds.parse import FeedParseError, RawEntry, parse
from monitor.stories.normalise import canonical_url, clean_text, event_time, normalise

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
ITEMS = [Item("id-1", "First & <best>", "Para one.\n\nPara two.", "https://a.example/1",
              NOW - timedelta(hours=2)),
         Item("id-2", "Second", "Body", None, None)]


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_formats_round_trip(fmt: str) -> None:
    body, ctype = render(fmt, "Outlet", "https://a.example/", ITEMS)
    feed = parse(body, ctype)
    assert feed.title == "Outlet"
    first, second = feed.entries
    assert first.guid == "id-1"
    assert first.title == "First & <best>"
    assert first.link == "https://a.example/1"
    assert first.published == NOW - timedelta(hours=2)
    assert clean_text(first.content or first.summary) == "Para one.\nPara two."
    assert second.guid == "id-2" and second.published is None


def test_rss_ttl_and_rdf() -> None:
    rss_ttl = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><ttl>90</ttl>'
               b"<item><title>x</title><link>https://a.example/x</link></item></channel></rss>")
    assert parse(rss_ttl).ttl_seconds == 5400
    rdf = (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-'
           b'ns#" xmlns="http://purl.org/rss/1.0/"><channel rdf:about="x"><title>R</title>'
           b'</channel><item rdf:about="https://a.example/r"><title>rdf item</title>'
           b"<link>https://a.example/r</link></item></rdf:RDF>")
    assert parse(rdf).entries[0].title == "rdf item"


@pytest.mark.parametrize("body", [
    b"", b"   ", b"<html><body><h1>Welcome</h1></body></html>", b"\x00\xff garbage \x13",
    b'{"not": "a feed"}', b"{broken json", b"Service temporarily unavailable",
])
def test_not_a_feed_is_an_error(body: bytes) -> None:
    with pytest.raises(FeedParseError):
        parse(body)


def test_broken_xml_with_items_still_yields_them() -> None:
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
            b"<item><title>kept</title><guid>k</guid></item><item><title>cut")
    assert [e.title for e in parse(body).entries][:1] == ["kept"]


@pytest.mark.parametrize(("url", "canonical"), [
    ("https://www.a.example/news/1?utm_source=rss&utm_medium=feed",
     "https://a.example/news/1"),
    ("http://m.a.example/news/1/#comments", "https://a.example/news/1"),
    ("https://a.example/news/1/amp/", "https://a.example/news/1"),
    ("https://amp.a.example/news/1.amp.html", "https://a.example/news/1.html"),
    ("https://a.example:443/news/1?b=2&a=1&fbclid=x", "https://a.example/news/1?a=1&b=2"),
    ("HTTPS://A.EXAMPLE/News/1?gclid=1", "https://a.example/News/1"),
    ("https://a.example/?id=5", "https://a.example/?id=5"),
])
def test_canonical_urls(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


def test_identity_prefers_guid_then_link_then_hash() -> None:
    raws = [RawEntry("g1", "https://a.example/1", "One", None, "x"),
            RawEntry(None, "https://a.example/2?utm_source=x", "Two", None, "y"),
            RawEntry(None, None, "Three", None, "z")]
    keys = [e.key for e in normalise(raws, NOW)]
    assert keys[0] == "g:g1"
    assert keys[1].startswith("u:") and keys[2].startswith("h:")


def test_guid_shared_by_every_item_is_not_an_identity() -> None:
    raws = [RawEntry("same", f"https://a.example/{i}", f"T{i}", None, "b") for i in range(3)]
    keys = {e.key for e in normalise(raws, NOW)}
    assert len(keys) == 3 and all(k.startswith("u:") for k in keys)


def test_event_time_is_clamped() -> None:
    assert event_time(NOW + timedelta(days=3), None, NOW) == NOW
    assert event_time(datetime(1970, 1, 1, tzinfo=UTC), None, NOW) == NOW
    assert event_time(None, NOW - timedelta(hours=1), NOW) == NOW - timedelta(hours=1)
    assert event_time(None, None, NOW) == NOW


def test_clean_text_drops_scripts_and_markup() -> None:
    html = "<p>Hello&nbsp;<b>world</b></p><script>evil()</script><p>Next  line</p>"
    assert clean_text(html) == "Hello world\nNext line"
