"""Turn a fetched body into plain entries: RSS/Atom via feedparser (well-formed common
feeds via its faithful fast path, `fastxml`), JSON Feed by hand.

feedparser does not read JSON Feed, and it happily "parses" an HTML page or
garbage into zero entries; both are told apart here so a broken feed is an
error the operator sees, not a silent quiet feed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import feedparser

from monitor.feeds import fastxml
from monitor.feeds.model import FeedParseError, ParsedFeed, RawEntry, struct_time, ttl_seconds

__all__ = ["FeedParseError", "ParsedFeed", "RawEntry", "parse"]

_PROLOG_LIMIT = 1 << 20
_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^\[>]*\[.*?\]\s*>", re.DOTALL)
_DOCTYPE_PLAIN = re.compile(rb"<!DOCTYPE[^\[>]*>")


def parse(body: bytes, content_type: str | None = None) -> ParsedFeed:
    """Parse a feed body; raise FeedParseError when it is not a feed."""
    head = body.lstrip()[:1]
    if head in (b"{", b"[") or (content_type and "json" in content_type.lower()):
        return _parse_json_feed(body)
    return _parse_xml(body)


def _defuse(body: bytes) -> bytes:
    """Drop a DOCTYPE's internal subset, so no entity can expand ("billion laughs").

    Undeclared entity references then stay literal text; feeds never need
    their own entity declarations (a plain `<!DOCTYPE rss PUBLIC ...>` stays).
    """
    head = body[:_PROLOG_LIMIT]
    start = head.find(b"<!DOCTYPE")
    if start < 0:
        return body
    match = _DOCTYPE_SUBSET.match(head, start)
    if match is not None:
        return body[:match.start()] + body[match.end():]
    if _DOCTYPE_PLAIN.match(head, start) is None:
        raise FeedParseError("a DOCTYPE with an internal subset that is too large or malformed")
    return body


def _parse_xml(body: bytes) -> ParsedFeed:
    if not body.strip():
        raise FeedParseError("empty body")
    body = _defuse(body)
    return fastxml.read(body) or _parse_with_feedparser(body)


def _parse_with_feedparser(body: bytes) -> ParsedFeed:
    """The general path: any RSS/Atom/RDF dialect, broken XML, odd encodings."""
    # Never let feedparser fetch anything itself: we hand it bytes only.
    doc = feedparser.parse(body, sanitize_html=True, resolve_relative_uris=False)
    version = doc.get("version") or ""
    if not version and not doc.entries:
        reason = doc.get("bozo_exception")
        raise FeedParseError(f"not a feed ({type(reason).__name__}: {reason})" if reason
                             else "not a feed (no RSS, Atom or RDF root element)")
    feed = doc.get("feed", {})
    entries = [_xml_entry(e, feed.get("language")) for e in doc.entries]
    return ParsedFeed(title=feed.get("title"), entries=entries,
                      ttl_seconds=ttl_seconds(feed.get("ttl")), language=feed.get("language"))


def _xml_entry(e: Any, feed_language: str | None) -> RawEntry:
    content = None
    if e.get("content"):
        content = "\n".join(c.get("value", "") for c in e["content"] if c.get("value"))
    tags = tuple(t.get("term") for t in e.get("tags", []) if t.get("term"))
    return RawEntry(
        guid=e.get("id") or None,
        link=e.get("link") or None,
        title=e.get("title", "") or "",
        summary=e.get("summary") or None,
        content=content or None,
        author=e.get("author") or None,
        published=struct_time(e.get("published_parsed")),
        updated=struct_time(e.get("updated_parsed")),
        tags=tags,
        language=e.get("language") or feed_language,
    )


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(
            "https://jsonfeed.org/version/"):
        raise FeedParseError("JSON body is not a JSON Feed (missing jsonfeed.org version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedParseError("JSON Feed has no items list")
    language = doc.get("language") if isinstance(doc.get("language"), str) else None
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        author = next((a.get("name") for a in authors if isinstance(a, dict) and a.get("name")),
                      None)
        tags = tuple(str(t) for t in item.get("tags", []) if isinstance(t, str | int))
        entries.append(RawEntry(
            guid=str(item["id"]) if item.get("id") is not None else None,
            link=item.get("url") if isinstance(item.get("url"), str) else None,
            title=str(item.get("title") or ""),
            summary=item.get("summary") if isinstance(item.get("summary"), str) else None,
            content=(item.get("content_html") or item.get("content_text") or None),
            author=author,
            published=_iso(item.get("date_published")),
            updated=_iso(item.get("date_modified")),
            tags=tags,
            language=item.get("language") if isinstance(item.get("language"), str) else language,
        ))
    title = doc.get("title") if isinstance(doc.get("title"), str) else None
    return ParsedFeed(title=title, entries=entries, language=language)
