"""What a parsed feed is, whichever parser read it (feedparser, the fast XML path, JSON)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class FeedParseError(Exception):
    """The body is not a feed we can read."""


@dataclass(frozen=True)
class RawEntry:
    guid: str | None
    link: str | None
    title: str
    summary: str | None
    content: str | None
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    tags: tuple[str, ...] = ()
    language: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[RawEntry] = field(default_factory=list)
    ttl_seconds: float | None = None
    language: str | None = None


def struct_time(struct: Any) -> datetime | None:
    """A feedparser date (a UTC `time.struct_time`) as an aware datetime."""
    if not struct:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def ttl_seconds(ttl: Any) -> float | None:
    """RSS `<ttl>` (minutes) in seconds, when it is a plain number ("²" is a digit, not decimal)."""
    return float(ttl) * 60 if isinstance(ttl, str) and ttl.strip().isdecimal() else None
