"""What the rule engine consumes: story changes and new entries, as plain data.

A story event carries the whole story as it stands after the change (every
title, text and outlet), because rules speak about stories; an entry event
carries one entry. Field values are computed lazily and cached, so a rule set
that never asks for `countries` never pays for it; countries and entities are
found per entry text and remembered, so a growing story costs only its new entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from monitor.stories.features import entities
from monitor.stories.places import countries

MEMO_PARTS = 20_000
"""Entry texts whose countries and entities are remembered."""


@lru_cache(maxsize=MEMO_PARTS)
def _countries(text: str) -> tuple[str, ...]:
    """Countries of one entry text: a story's are its entries', so each is read once."""
    return tuple(countries(text))


@lru_cache(maxsize=MEMO_PARTS)
def _entities(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.split(":", 1)[1] for e in entities(text)))


@dataclass(frozen=True)
class RuleEvent:
    scope: str
    """"story" or "entry"."""
    change: str
    """For stories: created | source_added | updated; for entries: new."""
    at: datetime
    """Event time: the (clamped) publication time of the entry behind the change."""
    story_id: int | None
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    source: str
    """The outlet of the entry behind this change."""
    sources: tuple[str, ...]
    """Every outlet of the story (one for entry events)."""
    tags: tuple[str, ...] = ()
    feed_tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    summary: str = ""
    entry_count: int = 1
    story_title: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def source_count(self) -> int:
        return len(set(self.sources))

    @cached_property
    def title_text(self) -> str:
        return "\n".join(self.titles)

    @cached_property
    def body_text(self) -> str:
        return "\n".join(self.texts)

    def raw(self, name: str) -> str:
        """The field as one string (case preserved) for text operators."""
        if name == "title":
            return self.title_text
        if name == "text":
            return self.body_text
        if name == "any":
            return f"{self.title_text}\n{self.body_text}"
        if name == "summary":
            return self.summary
        if name in ("source", "feed", "change"):
            return {"source": self.source, "feed": self.source, "change": self.change}[name]
        return "\n".join(self.values(name))

    def parts(self, name: str) -> tuple[str, ...]:
        """The field as its entries' separate texts (a story's title is all its titles)."""
        if name == "title":
            return self.titles
        if name == "text":
            return self.texts
        if name == "any":
            return self.titles + self.texts
        return (self.raw(name),)

    def values(self, name: str) -> tuple[str, ...]:
        """The field as discrete values (for equals, in, exists, group_by, distinct)."""
        key = "values:" + name
        if key in self._cache:
            cached: tuple[str, ...] = self._cache[key]
            return cached
        out: tuple[str, ...]
        if name in ("source", "feed"):
            out = (self.source,)
        elif name == "sources":
            out = tuple(dict.fromkeys(self.sources))
        elif name == "tags":
            out = tuple(dict.fromkeys((*self.feed_tags, *self.tags)))
        elif name == "feed_tags":
            out = self.feed_tags
        elif name == "language":
            out = tuple(dict.fromkeys(self.languages))
        elif name == "url":
            out = self.urls
        elif name == "change":
            out = (self.change,)
        elif name == "countries":
            out = tuple(dict.fromkeys(c for part in self.parts("any")
                                      for c in _countries(part)))
        elif name == "entities":
            out = tuple(dict.fromkeys(e for part in self.parts("any")
                                      for e in _entities(part)))
        elif name in ("source_count", "entry_count", "story_id"):
            number = self.number(name)
            out = () if number is None else (str(int(number)),)
        else:
            text = self.raw(name)
            out = (text,) if text else ()
        self._cache[key] = out
        return out

    def number(self, name: str) -> float | None:
        if name == "source_count":
            return float(self.source_count)
        if name == "entry_count":
            return float(self.entry_count)
        if name == "story_id":
            return None if self.story_id is None else float(self.story_id)
        return None
