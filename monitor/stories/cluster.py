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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from itertools import accumulate, chain
from operator import itemgetter
from typing import Any, TypeVar

from monitor.stories import nearcopy
from monitor.stories.features import analyse
from monitor.stories.keytable import KeyTable

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
WEIGHT_BITS = 20
"""Bits of a centroid weight (0 to 1) in a posting, beside the story id (see `_posted`)."""
TRIM_RECORDS = 1024
"""Expired records a `_Log` lets pile up before it moves the live ones to the front."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_WEIGHT_MASK = (1 << WEIGHT_BITS) - 1
K = TypeVar("K")


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
    exact: tuple[tuple[str, str, int], ...] = ()
    """(reason, key, stable 64-bit hash of the key) of each exact-duplicate key."""
    at: int = 0
    """`doc.at` in microseconds since the epoch (see `_micros`)."""


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
    terms: array[int]
    """Ids of the centroid's terms, strongest first; the first INDEX_TERMS are in the postings."""
    weights: array[float]
    last_at: int
    """Microseconds since the epoch of the latest member."""
    size: int = 0
    names: tuple[str, ...] = ()
    copies: array[int] = field(default_factory=lambda: array("Q"))
    """SimHash and entry id of the latest members, interleaved, for the near-copy test."""


class _Log:
    """Per-document records in arrival order as flat arrays, oldest dropped first.

    A window holds hundreds of thousands of documents; a tuple or an object
    per document costs more than its content, so each record is its time, the
    end of its items in one shared `items` array, and a sequence number.
    """

    __slots__ = ("at", "ends", "first", "head", "items", "offset")

    def __init__(self, typecode: str) -> None:
        self.at = array("q")
        """Microseconds since the epoch of each record, in arrival order."""
        self.ends = array("q")
        """Where each record's items end, counted from the first item ever appended."""
        self.items = array(typecode)
        self.first = 0
        """Sequence number of `at[0]`."""
        self.head = 0
        """Index of the oldest record still in the window (those before await trimming)."""
        self.offset = 0
        """Item count trimmed from the front of `items`."""

    def __len__(self) -> int:
        return len(self.at) - self.head

    def append(self, at: int, items: array[int]) -> int:
        """Add a record; returns its sequence number."""
        self.at.append(at)
        self.items.extend(items)
        self.ends.append(self.offset + len(self.items))
        return self.first + len(self.at) - 1

    def record(self, seq: int) -> array[int]:
        i = seq - self.first
        start = self.ends[i - 1] if i > 0 else self.offset
        return self.items[start - self.offset:self.ends[i] - self.offset]

    def drop(self, cutoff: int) -> list[tuple[int, array[int]]]:
        """Forget records from the oldest up to the first at or after `cutoff`; returns them."""
        at, head = self.at, self.head
        stop = head
        while stop < len(at) and at[stop] < cutoff:
            stop += 1
        out = [(self.first + i, self.record(self.first + i)) for i in range(head, stop)]
        self.head = stop
        if stop >= TRIM_RECORDS and 2 * stop >= len(at):  # amortised: each record moves once
            trimmed = self.ends[stop - 1]
            del self.items[:trimmed - self.offset], at[:stop], self.ends[:stop]
            self.first, self.head, self.offset = self.first + stop, 0, trimmed
        return out


def _micros(at: datetime) -> int:
    """Microseconds since the epoch: integer differences equal datetime subtraction exactly."""
    return (at - (_EPOCH if at.tzinfo else _NAIVE_EPOCH)) // _MICROSECOND


def key_hash(key: str) -> int:
    """A 64-bit hash of an exact key, the same in every process (unlike `hash()` of a
    string), so a saved index still finds its keys after a restart (`snapshot.py`)."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _posted(story_id: int, weight: float) -> int:
    """A story and its weight for a term as one 64-bit integer: half the size of the pair.

    Candidate ranking needs weights only to a part in a million; the score is
    computed from the centroid itself."""
    return story_id << WEIGHT_BITS | round(weight * _WEIGHT_MASK)


def _dot(vec: dict[int, float], story: _Story) -> float:
    """Sum over the shared terms in the story's order (terms it lacks add exact zeros)."""
    total = 0.0
    weights = story.weights
    for k, i in enumerate(story.terms):
        w = vec.get(i)
        if w is not None:
            total += weights[k] * w
    return total


def _top_normalised(vec: dict[K, float], keep: int) -> dict[K, float]:
    top = sorted(vec.items(), key=itemgetter(1), reverse=True)[:keep]
    norm = 0.0
    for _, w in top:
        norm += w * w
    norm = math.sqrt(norm) or 1.0
    return {t: w / norm for t, w in top}


class StoryIndex:
    """The in-memory clustering state; rebuilt from the database at start.

    Sized for a window of hundreds of thousands of documents, most of them
    stories of one: terms are integer ids in arrays (the window's documents'
    in one flat array), postings are arrays of (story, weight) pairs packed
    into integers rather than dicts, exact keys are in a `KeyTable`, and times
    are integer microseconds. Everything is plain data (picklable, the same in
    any process).
    """

    def __init__(self, window: timedelta, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.window = window
        self.threshold = threshold or DEFAULT_THRESHOLD
        self._window_us = window // _MICROSECOND
        self._ids: dict[str, int] = {}
        """Id of each term a document in the window or an open story's centroid contains."""
        self._terms: list[str] = []
        """Term of each id ("" for a free id)."""
        self._df: list[int] = []
        """Document frequency of each id."""
        self._held: list[int] = []
        """Open stories whose centroid holds each id; when it and the DF are 0, the id is free."""
        self._free: list[int] = []
        self._seen = _Log("I")
        """Each document's term ids, for the document frequencies."""
        self._stories: dict[int, _Story] = {}
        self._postings: dict[int, array[int]] = {}
        """term id → each story posted under it with its weight for the term (`_posted`),
        least recently updated first.
        A posted term is in its stories' centroids, so its id is not freed while posted."""
        self._members = _Log("q")
        """Entry id, story id and exact-key hashes of each member."""
        self._exact = KeyTable()
        """Exact-key hash → sequence number of the first member in `_members` with that key."""

    # -- features -------------------------------------------------------------
    @property
    def docs_seen(self) -> int:
        """Documents inside the window: the N of the streaming IDF."""
        return len(self._seen)

    @property
    def df(self) -> dict[str, int]:
        """Documents inside the window containing each term (a copy, for inspection)."""
        df = self._df
        return {t: df[i] for t, i in self._ids.items() if df[i]}

    def features(self, doc: Doc) -> Features:
        found, simhash = analyse(doc.title, doc.text)
        counts = found.weights
        ids, df, log = self._ids, self._df, math.log
        log_n = log(max(self.docs_seen, MIN_DF_DOCS) + 1) + 1.0
        raw: dict[str, float] = {}
        for t, c in counts.items():
            if c > 0:
                i = ids.get(t)
                raw[t] = (1.0 + log(c)) * (log_n - log((0 if i is None else df[i]) + 1))
        return Features(doc, _top_normalised(raw, DOC_TERMS), tuple(counts),
                        simhash, found.names,
                        tuple((reason, key, key_hash(key)) for reason, key in _exact_keys(doc)),
                        _micros(doc.at))

    # -- decisions ------------------------------------------------------------
    def assign(self, feats: Features) -> Assignment:
        """Pick the story for a document (or none) and say why."""
        for reason, key, digest in feats.exact:
            seq = self._exact.get(digest)
            if seq is not None:
                entry_id, story_id = self._members.record(seq)[:2]
                if story_id in self._stories:
                    return Assignment(story_id, reason, 1.0,
                                      {"key": key[2:][:200], "entry": entry_id})
        ids, postings = self._ids, self._postings
        by_id: dict[int, float] = {}
        """The document's vector over term ids (a term without an id is in no story)."""
        indexed: list[tuple[float, str, int]] = []
        for term, w in feats.vector.items():
            i = ids.get(term)
            if i is not None:
                by_id[i] = w
                if i in postings:
                    indexed.append((w, term, i))
        candidates = [story for story in self._candidates(indexed)
                      if abs(feats.at - story.last_at) <= self._window_us]
        return (self._near_copy(feats, candidates)
                or self._cluster(feats, by_id, candidates))

    @staticmethod
    def _near_copy(feats: Features, candidates: list[_Story]) -> Assignment | None:
        """A copy shares nearly every term, so its story is among the candidates."""
        if feats.simhash is None:
            return None
        best: tuple[int, int, _Story] | None = None
        for story in candidates:
            copies = story.copies
            for signature, entry_id in zip(copies[::2], copies[1::2], strict=True):
                d = nearcopy.distance(feats.simhash, signature)
                if d <= nearcopy.MAX_DISTANCE and (best is None or d < best[0]):
                    best = (d, entry_id, story)
        if best is None:
            return None
        d, entry_id, story = best
        return Assignment(story.story_id, "near_copy", round(1 - d / nearcopy.BITS, 4),
                          {"entry": entry_id, "bits_differing": d})

    def _cluster(self, feats: Features, by_id: dict[int, float],
                 candidates: list[_Story]) -> Assignment:
        best: tuple[float, float, _Story] | None = None
        scale = TIME_SCALE.total_seconds()
        for story in candidates:
            gap = abs(feats.at - story.last_at) / 1_000_000  # exactly timedelta.total_seconds
            cosine = _dot(by_id, story)
            score = cosine * math.exp(-0.5 * (gap / scale) ** 2)
            if feats.names and story.names and feats.names.isdisjoint(story.names):
                score *= NO_SHARED_NAME
            if best is None or score > best[0]:
                best = (score, cosine, story)
        if best and best[0] >= self.threshold:
            score, cosine, story = best
            return Assignment(story.story_id, "cluster", round(score, 4),
                              {"cosine": round(cosine, 4),
                               **self._shared(feats.vector, self._vector(story))})
        return Assignment(None, "new_story", 1.0,
                          {"best": round(best[0], 4) if best else 0.0})

    def _candidates(self, indexed: list[tuple[float, str, int]]) -> Iterator[_Story]:
        """Stories with the largest partial dot product over indexed terms.

        `indexed`: (weight, term, id) of the document's terms that have postings;
        the strongest come first, ties by term."""
        postings = self._postings
        partial: dict[int, float] = {}
        for w, _, i in sorted(indexed, reverse=True)[:QUERY_TERMS]:
            for posted in reversed(postings[i][-POSTING_SCAN:]):  # newest first
                sid = posted >> WEIGHT_BITS
                partial[sid] = partial.get(sid, 0.0) + w * (posted & _WEIGHT_MASK)
        top = sorted(partial, key=partial.__getitem__, reverse=True)[:CANDIDATES]
        return (self._stories[sid] for sid in top)

    def _vector(self, story: _Story) -> dict[str, float]:
        return dict(zip(map(self._terms.__getitem__, story.terms), story.weights, strict=True))

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
        found = [self._id(t) for t in feats.terms]
        df = self._df
        for i in found:
            df[i] += 1
        self._seen.append(feats.at, array("I", found))

    def _id(self, term: str) -> int:
        """The term's id, a new one (nothing holding it yet) if the term has none."""
        i = self._ids.get(term)
        if i is not None:
            return i
        if self._free:
            i = self._free.pop()
            self._terms[i] = term
        else:
            i = len(self._terms)
            self._terms.append(term)
            self._df.append(0)
            self._held.append(0)
        self._ids[term] = i
        return i

    def _release(self, ids: array[int], counts: list[int], other: list[int]) -> None:
        """Decrement `counts` (`_df` or `_held`) of `ids`; free those neither holds any more."""
        terms = self._terms
        for i in ids:
            left = counts[i] - 1
            counts[i] = left
            if not left and not other[i]:
                del self._ids[terms[i]]
                terms[i] = ""
                self._free.append(i)

    def add(self, feats: Features, story_id: int) -> None:
        """Record that the document (already `observe`d) joined (or started) `story_id`."""
        doc = feats.doc
        story = self._stories.pop(story_id, None)
        if story is None:
            story = _Story(story_id, array("I"), array("f"), feats.at)
        self._stories[story_id] = story  # most recently updated last, for expiry
        merged: dict[int, float] = {}
        size, weights = story.size, story.weights
        for k, i in enumerate(story.terms):
            merged[i] = weights[k] * size
        ids = self._ids
        for term, w in feats.vector.items():
            i = ids[term]
            merged[i] = merged.get(i, 0.0) + w
        centroid = _top_normalised(merged, CENTROID_TERMS)
        old, old_weights = story.terms, story.weights
        story.terms, story.weights = array("I", centroid), array("f", centroid.values())
        held = self._held
        for i in story.terms:
            held[i] += 1
        self._reindex(story, dict(zip(old[:INDEX_TERMS], old_weights, strict=False)))
        self._release(old, held, self._df)
        story.size += 1
        if len(story.names) < STORY_NAMES:
            story.names = (*story.names, *sorted(feats.names - set(story.names)))[:STORY_NAMES]
        story.last_at = max(story.last_at, feats.at)
        if feats.simhash is not None:
            story.copies.extend((feats.simhash, doc.entry_id))
            del story.copies[:-2 * COPIES_KEPT]
        seq = self._members.append(feats.at, array(
            "q", (doc.entry_id, story_id, *(digest for *_, digest in feats.exact))))
        for *_, digest in feats.exact:
            self._exact.setdefault(digest, seq)

    def _reindex(self, story: _Story, indexed: dict[int, float]) -> None:
        """Index the story's top terms; re-entering moves it to the recent end of postings.

        `indexed`: the weight of each term the story was posted under until now."""
        top = story.terms[:INDEX_TERMS]
        sid = story.story_id
        for i in set(indexed) - set(top):
            self._unpost(i, _posted(sid, indexed[i]))
        postings = self._postings
        for i, weight in zip(top, story.weights, strict=False):
            posting = postings.get(i)
            if posting is None:
                postings[i] = array("q", (_posted(sid, weight),))
                continue
            if i in indexed:
                posting.remove(_posted(sid, indexed[i]))
            posting.append(_posted(sid, weight))

    def _unpost(self, term: int, posted: int) -> None:
        posting = self._postings[term]
        posting.remove(posted)
        if not posting:
            del self._postings[term]

    def expire(self, now: datetime) -> int:
        """Forget documents and stories older than the window; returns stories dropped."""
        cutoff = _micros(now) - self._window_us
        for _, found in self._seen.drop(cutoff):
            self._release(found, self._df, self._held)
        exact = self._exact
        for seq, record in self._members.drop(cutoff):
            for digest in record[2:]:
                exact.discard(digest, seq)
        old = []
        for sid, story in self._stories.items():
            if story.last_at >= cutoff:
                break
            old.append(sid)
        for sid in old:
            story = self._stories.pop(sid)
            for i, weight in zip(story.terms[:INDEX_TERMS], story.weights, strict=False):
                self._unpost(i, _posted(sid, weight))
            self._release(story.terms, self._held, self._df)
        return len(old)

    @property
    def open_stories(self) -> int:
        return len(self._stories)

    # -- pickling (the snapshot) -------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The stories and postings as a few long columns.

        Pickled as they live, each of the window's hundreds of thousands of small
        arrays becomes a bytes copy that the unpickler keeps until the load ends: the
        load then peaks at twice the index and leaves the heap too fragmented to
        shrink back (docs/stories.md, "The snapshot").
        """
        state = dict(self.__dict__)
        del state["_ids"]  # the inverse of `_terms`
        stories = self._stories.values()
        state["_stories"] = (
            array("q", (s.story_id for s in stories)), array("q", (s.last_at for s in stories)),
            array("q", (s.size for s in stories)), [s.names for s in stories],
            (_ends(s.terms for s in stories), _joined((s.terms for s in stories), "I")),
            _joined((s.weights for s in stories), "f"),  # ends as the terms'
            (_ends(s.copies for s in stories), _joined((s.copies for s in stories), "Q")))
        postings = self._postings.values()
        state["_postings"] = (array("q", self._postings),
                              (_ends(postings), _joined(postings, "q")))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids, last_at, sizes, names, (ends, terms), weights, copies = state.pop("_stories")
        # Each column is let go once split, so the load peaks at little above the index.
        terms_of = _split(ends, terms)
        del terms
        weights_of = _split(ends, weights)
        del weights
        copies_of = _split(*copies)
        del copies
        posted, postings = state.pop("_postings")
        self.__dict__.update(state)
        free = set(self._free)
        self._ids = {t: i for i, t in enumerate(self._terms) if i not in free}
        self._stories = {sid: _Story(sid, *story) for sid, *story in zip(
            ids, terms_of, weights_of, last_at, sizes, names, copies_of, strict=True)}
        self._postings = dict(zip(posted, _split(*postings), strict=True))


def _ends(arrays: Iterable[array[Any]]) -> array[int]:
    """Where each array ends in their concatenation."""
    return array("q", accumulate(map(len, arrays)))


def _joined(arrays: Iterable[array[Any]], typecode: str) -> array[Any]:
    items = array(typecode)
    for a in arrays:
        items.extend(a)
    return items


def _split(ends: array[int], items: array[Any]) -> list[array[Any]]:
    return [items[a:b] for a, b in zip(chain((0,), ends), ends, strict=False)]


def _exact_keys(doc: Doc) -> list[tuple[str, str]]:
    keys = []
    if doc.guid:
        keys.append(("exact_guid", "g:" + doc.guid))
    if doc.canonical_url:
        keys.append(("exact_url", "u:" + doc.canonical_url))
    if doc.content_hash:
        keys.append(("exact_content", "h:" + doc.content_hash))
    return keys
