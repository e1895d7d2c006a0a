"""Online story clustering: exact duplicates first, then TF-IDF + entities within a window.

Each open story keeps a centroid of its members' term vectors; an inverted
index from a story's top terms to the story finds candidates without scanning
the window, so cost per entry stays flat as the window grows. IDF is learned
as documents stream in. `assign` decides without mutating; `add` commits the
decision, so a rolled-back transaction never leaves phantom members behind.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.stories.features import term_counts

DEFAULT_THRESHOLD = 0.22
DOC_TERMS = 80
"""Terms kept per document vector (by weight)."""
CENTROID_TERMS = 120
"""Terms kept per story centroid."""
QUERY_TERMS = 25
"""A document's strongest terms used to look up candidate stories."""
INDEX_TERMS = 40
"""A story's strongest terms entered into the inverted index."""
MIN_DF_DOCS = 50
"""Below this many documents the IDF is too noisy; a prior keeps it sane."""


@dataclass(frozen=True)
class Doc:
    """What clustering needs to know about one entry."""

    entry_id: int
    source: str
    title: str
    text: str
    at: datetime
    guid: str | None = None
    canonical_url: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True)
class Features:
    doc: Doc
    vector: dict[str, float]
    """L2-normalised TF-IDF weights of the document's strongest terms."""
    terms: frozenset[str]


@dataclass(frozen=True)
class Assignment:
    story_id: int | None
    """None: the entry starts a new story."""
    reason: str
    similarity: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Story:
    story_id: int
    centroid: dict[str, float]
    last_at: datetime
    first_at: datetime
    size: int = 0
    indexed: frozenset[str] = frozenset()


def _normalise(vec: dict[str, float], keep: int) -> dict[str, float]:
    top = sorted(vec.items(), key=lambda kv: kv[1], reverse=True)[:keep]
    norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
    return {t: w / norm for t, w in top}


class StoryIndex:
    """The in-memory clustering state; rebuilt from the database at start."""

    def __init__(self, window: timedelta, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.window = window
        self.threshold = threshold or DEFAULT_THRESHOLD
        self.df: dict[str, int] = defaultdict(int)
        self.docs_seen = 0
        self._stories: dict[int, _Story] = {}
        self._postings: dict[str, set[int]] = defaultdict(set)
        self._exact: dict[str, tuple[int, datetime]] = {}

    # -- features -------------------------------------------------------------
    def idf(self, term: str) -> float:
        n = max(self.docs_seen, MIN_DF_DOCS)
        return math.log((n + 1) / (self.df.get(term, 0) + 1)) + 1.0

    def features(self, doc: Doc) -> Features:
        counts = term_counts(doc.title, doc.text).weights
        raw = {t: (1.0 + math.log(c)) * self.idf(t) for t, c in counts.items() if c > 0}
        return Features(doc, _normalise(raw, DOC_TERMS), frozenset(counts))

    # -- decisions ------------------------------------------------------------
    def _exact_keys(self, doc: Doc) -> list[tuple[str, str]]:
        keys = []
        if doc.guid:
            keys.append(("exact_guid", "g:" + doc.guid))
        if doc.canonical_url:
            keys.append(("exact_url", "u:" + doc.canonical_url))
        if doc.content_hash:
            keys.append(("exact_content", "h:" + doc.content_hash))
        return keys

    def assign(self, feats: Features) -> Assignment:
        """Pick the story for a document (or none) and say why."""
        doc = feats.doc
        for reason, key in self._exact_keys(doc):
            hit = self._exact.get(key)
            if hit and hit[0] in self._stories:
                return Assignment(hit[0], reason, 1.0, {"key": key[2:][:200]})
        best: tuple[float, int] | None = None
        for story_id in self._candidates(feats):
            story = self._stories[story_id]
            if abs((doc.at - story.last_at).total_seconds()) > self.window.total_seconds():
                continue
            score = self._similarity(feats.vector, story.centroid)
            if best is None or score > best[0]:
                best = (score, story_id)
        if best and best[0] >= self.threshold:
            shared = self._shared_terms(feats.vector, self._stories[best[1]].centroid)
            return Assignment(best[1], "cluster", round(best[0], 4), {"shared": shared})
        return Assignment(None, "new_story", 1.0,
                          {"best": round(best[0], 4) if best else 0.0})

    def _candidates(self, feats: Features) -> set[int]:
        query = sorted(feats.vector.items(), key=lambda kv: kv[1], reverse=True)[:QUERY_TERMS]
        found: set[int] = set()
        for term, _ in query:
            found |= self._postings.get(term, set())
        return found

    @staticmethod
    def _similarity(a: dict[str, float], b: dict[str, float]) -> float:
        if len(a) > len(b):
            a, b = b, a
        return sum(w * b[t] for t, w in a.items() if t in b)

    @staticmethod
    def _shared_terms(a: dict[str, float], b: dict[str, float], n: int = 8) -> list[str]:
        contrib = sorted(((w * b[t], t) for t, w in a.items() if t in b), reverse=True)[:n]
        return [t for _, t in contrib]

    # -- state changes -----------------------------------------------------------
    def observe(self, feats: Features) -> None:
        """Count the document into the streaming document frequencies."""
        self.docs_seen += 1
        for term in feats.terms:
            self.df[term] += 1

    def add(self, feats: Features, story_id: int) -> None:
        """Record that the document joined (or started) `story_id`."""
        doc = feats.doc
        story = self._stories.get(story_id)
        if story is None:
            story = _Story(story_id, {}, doc.at, doc.at)
            self._stories[story_id] = story
        merged = dict(story.centroid)
        scale = story.size
        for t in merged:
            merged[t] *= scale
        for t, w in feats.vector.items():
            merged[t] = merged.get(t, 0.0) + w
        story.size += 1
        story.centroid = _normalise(merged, CENTROID_TERMS)
        story.last_at = max(story.last_at, doc.at)
        story.first_at = min(story.first_at, doc.at)
        self._reindex(story)
        for _, key in self._exact_keys(doc):
            self._exact.setdefault(key, (story_id, doc.at))

    def _reindex(self, story: _Story) -> None:
        top = frozenset(sorted(story.centroid, key=story.centroid.__getitem__,
                               reverse=True)[:INDEX_TERMS])
        for term in story.indexed - top:
            self._postings[term].discard(story.story_id)
            if not self._postings[term]:
                del self._postings[term]
        for term in top - story.indexed:
            self._postings[term].add(story.story_id)
        story.indexed = top

    def expire(self, now: datetime) -> int:
        """Forget stories and exact keys older than the window; returns stories dropped."""
        cutoff = now - self.window
        old = [sid for sid, s in self._stories.items() if s.last_at < cutoff]
        for sid in old:
            story = self._stories.pop(sid)
            for term in story.indexed:
                posting = self._postings.get(term)
                if posting is not None:
                    posting.discard(sid)
                    if not posting:
                        del self._postings[term]
        for key in [k for k, (_, at) in self._exact.items() if at < cutoff]:
            del self._exact[key]
        return len(old)

    @property
    def open_stories(self) -> int:
        return len(self._stories)
