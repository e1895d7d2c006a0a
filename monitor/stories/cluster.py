"""Online story clustering: exact duplicates, near copies, then TF-IDF + entities in a window.

Each open story keeps a centroid of its members' term vectors; an inverted
index from a story's top terms to the story finds candidates without scanning
the window, so cost per entry stays flat as the window grows. Document
frequencies count the documents inside the window only, so IDF follows the
news of the moment and memory is bounded by the window. `assign` decides
without mutating; `observe` and `add` commit the decision, so a rolled-back
transaction never leaves phantom members behind.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from hashlib import blake2b
from itertools import islice, repeat
from operator import add as plus
from operator import itemgetter, mul, truediv
from typing import Any

from monitor.stories import nearcopy
from monitor.stories.features import term_counts

DEFAULT_THRESHOLD = 0.15
"""Time-weighted cosine from which a document joins a story (see docs/stories.md)."""
DOC_TERMS = 40
"""Terms kept per document vector (by weight)."""
CENTROID_TERMS = 60
"""Terms kept per story centroid."""
QUERY_TERMS = 8
"""A document's strongest indexed terms used to look up candidate stories."""
INDEX_TERMS = 12
"""A story's strongest terms entered into the inverted index."""
POSTING_SCAN = 64
"""Most recent stories read per posting list: a term shared by more is not distinctive."""
CANDIDATES = 8
"""Stories, ranked by partial dot product, that get a full similarity."""
MIN_DF_DOCS = 10
"""Floor of N in the IDF, so a stream's first documents do not all look equally rare."""
TIME_SCALE = timedelta(hours=12)
"""Width of the Gaussian time kernel between a document and a story's latest member."""
NO_SHARED_NAME = 0.8
"""Score factor when both sides name people or places but none in common: another event."""
STORY_NAMES = 24
"""Names remembered per story for that test."""
COPIES_KEPT = 8
"""Latest members per story whose SimHash a near copy is compared with."""
SHARED_SHOWN = 8
"""Top shared terms and entities stored with a decision, to explain it."""


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
    terms: tuple[str, ...]
    """Every distinct term, for the document frequencies (a tuple: 4x smaller than a set)."""
    simhash: int | None = None
    names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Assignment:
    story_id: int | None
    """None: the entry starts a new story."""
    reason: str
    similarity: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Story:
    story_id: int
    terms: tuple[str, ...]
    weights: array[float]
    last_at: datetime
    size: int = 0
    indexed: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    copies: tuple[tuple[int, int], ...] = ()
    """(SimHash, entry id) of the latest members, for the near-copy test."""

    def vector(self) -> dict[str, float]:
        return dict(zip(self.terms, self.weights, strict=True))


@dataclass(slots=True)
class _Member:
    """What the window remembers of one document until it expires."""

    at: datetime
    entry_id: int
    story_id: int
    keys: tuple[int, ...]


def key_hash(key: str) -> int:
    """A 64-bit hash of an exact key, the same in every process (unlike `hash()` of a
    string), so a saved index still finds its keys after a restart (`snapshot.py`)."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _top_normalised(vec: dict[str, float], keep: int) -> dict[str, float]:
    if not vec:
        return {}
    terms, weights = zip(*sorted(vec.items(), key=itemgetter(1), reverse=True)[:keep],
                          strict=True)
    norm = math.sqrt(sum(map(mul, weights, weights))) or 1.0
    return dict(zip(terms, map(truediv, weights, repeat(norm)), strict=True))


class StoryIndex:
    """The in-memory clustering state; rebuilt from the database at start."""

    def __init__(self, window: timedelta, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.window = window
        self.threshold = threshold or DEFAULT_THRESHOLD
        self.df: Counter[str] = Counter()
        self._seen: deque[tuple[datetime, tuple[str, ...]]] = deque()
        self._stories: dict[int, _Story] = {}
        self._postings: dict[str, dict[int, float]] = {}
        """term → {story: the term's weight in its centroid}, least recently updated first."""
        self._members: deque[_Member] = deque()
        self._exact: dict[int, _Member] = {}

    # -- features -------------------------------------------------------------
    @property
    def docs_seen(self) -> int:
        """Documents inside the window: the N of the streaming IDF."""
        return len(self._seen)

    def features(self, doc: Doc) -> Features:
        found = term_counts(doc.title, doc.text)
        counts = found.weights
        df, log = self.df, math.log
        log_n = log(max(self.docs_seen, MIN_DF_DOCS) + 1) + 1.0
        raw = {t: (1.0 + log(c)) * (log_n - log(df.get(t, 0) + 1)) for t, c in counts.items()
               if c > 0}
        return Features(doc, _top_normalised(raw, DOC_TERMS), tuple(counts),
                        nearcopy.simhash(doc.title, doc.text), found.names)

    # -- decisions ------------------------------------------------------------
    @staticmethod
    def _exact_keys(doc: Doc) -> list[tuple[str, str]]:
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
        for reason, key in self._exact_keys(feats.doc):
            hit = self._exact.get(key_hash(key))
            if hit and hit.story_id in self._stories:
                return Assignment(hit.story_id, reason, 1.0,
                                  {"key": key[2:][:200], "entry": hit.entry_id})
        candidates = [story for story in self._candidates(feats)
                      if abs(feats.doc.at - story.last_at) <= self.window]
        return self._near_copy(feats, candidates) or self._cluster(feats, candidates)

    @staticmethod
    def _near_copy(feats: Features, candidates: list[_Story]) -> Assignment | None:
        """A copy shares nearly every term, so its story is among the candidates."""
        if feats.simhash is None:
            return None
        best: tuple[int, int, _Story] | None = None
        for story in candidates:
            for signature, entry_id in story.copies:
                d = nearcopy.distance(feats.simhash, signature)
                if d <= nearcopy.MAX_DISTANCE and (best is None or d < best[0]):
                    best = (d, entry_id, story)
        if best is None:
            return None
        d, entry_id, story = best
        return Assignment(story.story_id, "near_copy", round(1 - d / nearcopy.BITS, 4),
                          {"entry": entry_id, "bits_differing": d})

    def _cluster(self, feats: Features, candidates: list[_Story]) -> Assignment:
        best: tuple[float, float, _Story] | None = None
        for story in candidates:
            gap = abs((feats.doc.at - story.last_at).total_seconds())
            cosine = self._dot(feats.vector, story)
            score = cosine * math.exp(-0.5 * (gap / TIME_SCALE.total_seconds()) ** 2)
            if feats.names and story.names and feats.names.isdisjoint(story.names):
                score *= NO_SHARED_NAME
            if best is None or score > best[0]:
                best = (score, cosine, story)
        if best and best[0] >= self.threshold:
            score, cosine, story = best
            return Assignment(story.story_id, "cluster", round(score, 4),
                              {"cosine": round(cosine, 4),
                               **self._shared(feats.vector, story.vector())})
        return Assignment(None, "new_story", 1.0,
                          {"best": round(best[0], 4) if best else 0.0})

    def _candidates(self, feats: Features) -> Iterator[_Story]:
        """Stories with the largest partial dot product over indexed terms."""
        postings = self._postings
        indexed = [(w, t) for t, w in feats.vector.items() if t in postings]
        partial: dict[int, float] = {}
        get = partial.get
        for w, term in sorted(indexed, reverse=True)[:QUERY_TERMS]:
            posting = postings[term]
            for sid in islice(reversed(posting), POSTING_SCAN):
                partial[sid] = get(sid, 0.0) + w * posting[sid]
        top = sorted(partial, key=partial.__getitem__, reverse=True)[:CANDIDATES]
        return (self._stories[sid] for sid in top)

    @staticmethod
    def _dot(vec: dict[str, float], story: _Story) -> float:
        """Sum over the shared terms in the story's order (terms it lacks add exact zeros)."""
        shared = list(filter(vec.__contains__, story.terms))
        return float(sum(map(mul, map(story.weights.__getitem__, map(story.terms.index, shared)),
                             map(vec.__getitem__, shared))))

    @staticmethod
    def _shared(a: dict[str, float], b: dict[str, float]) -> dict[str, list[str]]:
        """Top shared terms by contribution to the score (`shared`, as the CLI prints)."""
        ranked = [t for _, t in sorted(((w * b[t], t) for t, w in a.items() if t in b),
                                       reverse=True)]
        return {"shared": ranked[:SHARED_SHOWN],
                "entities": [t for t in ranked if t[:2] in ("e:", "n:")][:SHARED_SHOWN]}

    # -- state changes -----------------------------------------------------------
    def observe(self, feats: Features) -> None:
        """Count the document into the window's document frequencies."""
        self._seen.append((feats.doc.at, feats.terms))
        self.df.update(feats.terms)

    def add(self, feats: Features, story_id: int) -> None:
        """Record that the document joined (or started) `story_id`."""
        doc = feats.doc
        story = self._stories.pop(story_id, None)
        if story is None:
            story = _Story(story_id, (), array("f"), doc.at)
        self._stories[story_id] = story  # most recently updated last, for expiry
        merged = dict(zip(story.terms, map(mul, story.weights, repeat(story.size)), strict=True))
        vec = feats.vector
        merged.update(zip(vec, map(plus, map(merged.get, vec, repeat(0.0)), vec.values()),
                          strict=True))
        centroid = _top_normalised(merged, CENTROID_TERMS)
        story.terms, story.weights = tuple(centroid), array("f", centroid.values())
        story.size += 1
        if len(story.names) < STORY_NAMES:
            story.names = (*story.names, *sorted(feats.names - set(story.names)))[:STORY_NAMES]
        story.last_at = max(story.last_at, doc.at)
        self._reindex(story)
        if feats.simhash is not None:
            story.copies = (*story.copies, (feats.simhash, doc.entry_id))[-COPIES_KEPT:]
        member = _Member(doc.at, doc.entry_id, story_id,
                         tuple(key_hash(k) for _, k in self._exact_keys(doc)))
        self._members.append(member)
        for key in member.keys:
            self._exact.setdefault(key, member)

    def _reindex(self, story: _Story) -> None:
        """Index the story's top terms; re-entering moves it to the recent end of postings."""
        top = story.terms[:INDEX_TERMS]
        for term in set(story.indexed) - set(top):
            self._unpost(term, story.story_id)
        for term, weight in zip(top, story.weights, strict=False):
            posting = self._postings.setdefault(term, {})
            posting.pop(story.story_id, None)
            posting[story.story_id] = weight
        story.indexed = top

    def _unpost(self, term: str, story_id: int) -> None:
        posting = self._postings.get(term)
        if posting is not None:
            posting.pop(story_id, None)
            if not posting:
                del self._postings[term]

    def expire(self, now: datetime) -> int:
        """Forget documents and stories older than the window; returns stories dropped."""
        cutoff = now - self.window
        while self._seen and self._seen[0][0] < cutoff:
            for term in self._seen.popleft()[1]:
                left = self.df[term] - 1
                if left:
                    self.df[term] = left
                else:
                    del self.df[term]
        while self._members and self._members[0].at < cutoff:
            self._forget(self._members.popleft())
        old = []
        for sid, story in self._stories.items():
            if story.last_at >= cutoff:
                break
            old.append(sid)
        for sid in old:
            for term in self._stories.pop(sid).indexed:
                self._unpost(term, sid)
        return len(old)

    def _forget(self, member: _Member) -> None:
        for key in member.keys:
            if self._exact.get(key) is member:
                del self._exact[key]

    @property
    def open_stories(self) -> int:
        return len(self._stories)
