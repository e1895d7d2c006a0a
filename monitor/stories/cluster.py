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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np

from monitor.stories import nearcopy
from monitor.stories.features import Analysis, analyse
from monitor.stories.keytable import KeyTable
from monitor.stories.packing import flatten, pack_ids, unflatten, unpack_ids
from monitor.stories.storytable import StoryTable
from monitor.stories.tally import SlotTally

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
WEIGHT_BITS = 16
"""Bits of a centroid weight: a weight w from 0 to 1 is kept as round(w * WEIGHT_SCALE).

Scores are thresholded to two decimals, and 16 bits give each weight to 1e-5;
a centroid's weights then take half the room of 32-bit floats."""
WEIGHT_SCALE = (1 << WEIGHT_BITS) - 1
TRIM_RECORDS = 1024
"""Expired records a `_Log` lets pile up before it moves the live ones to the front."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
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
    ids: tuple[int | None, ...] = ()
    """The id of each of `terms` (None: not in the window) when the features were made."""
    vector_ids: tuple[int | None, ...] = ()
    """The id of each term of `vector`, likewise."""
    epoch: int = -1
    """The index's `_epoch` then: while it is unchanged, `ids` and `vector_ids` hold.
    Looking an id up in the window's large term map is a cache miss; a document
    is placed right after its features are made, so it is looked up once."""


@dataclass(frozen=True)
class Assignment:
    story_id: int | None
    """None: the entry starts a new story."""
    reason: str
    similarity: float
    detail: dict[str, Any] = field(default_factory=dict)


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


_LN = [0.0]
"""`_LN[k]` = ln(k + 1), for document frequencies k: a list lookup costs less than a log."""


def _ln(most: int) -> list[float]:
    """`_LN`, extended to hold every document frequency up to `most`."""
    if len(_LN) <= most:
        _LN.extend(math.log(k + 1) for k in range(len(_LN), 2 * most + 1))
    return _LN


def _posted(slot: int, weight: int) -> int:
    """A story's slot and its (scaled) weight for a term as one integer: 8 bytes in a posting."""
    return slot << WEIGHT_BITS | weight


def _posts(slot: int, terms: array[int], weights: array[int]) -> dict[int, int]:
    """Term id → the story's posting under it, for its INDEX_TERMS strongest terms."""
    return {i: _posted(slot, w) for i, w in zip(terms[:INDEX_TERMS], weights, strict=False)}


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
    stories of one, it holds no object per document or story: terms are
    integer ids, open stories are rows of columns (`StoryTable`), documents'
    term ids and members are flat logs, postings are arrays of (story, weight)
    pairs packed into integers, exact keys are in a `KeyTable`, and times are
    integer microseconds. Everything is plain data (picklable, the same in any
    process).
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
        self._epoch = 0
        """Counts ids given and freed: `Features` made at the same count hold valid ids."""
        self._seen = _Log("H")
        """Each document's term ids (`pack_ids`), for the document frequencies."""
        self._stories = StoryTable()
        """The open stories. A centroid's first INDEX_TERMS terms are in the postings."""
        self._postings: dict[int, array[int]] = {}
        """term id → the slot of each story posted under it with its weight for the term
        (`_posted`), least recently updated first.
        A posted term is in its stories' centroids, so its id is not freed while posted."""
        self._members = _Log("q")
        """Entry id, story id and exact-key hashes of each member."""
        self._exact = KeyTable()
        """Exact-key hash → sequence number of the first member in `_members` with that key."""
        self._tally = SlotTally()
        """Scratch for the candidate search (not pickled)."""
        self._scratch = np.zeros(0)
        """A document's weights by term id while its candidates are scored, else zeros
        (not pickled)."""

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

    def features(self, doc: Doc, analysed: Analysis | None = None) -> Features:
        """The document's features; `analysed`: `analyse(doc.title, doc.text)` if done already
        (by `offload.Offload`, in another process)."""
        found, simhash = analysed or analyse(doc.title, doc.text)
        counts = found.weights
        terms = tuple(counts)
        ids = tuple(map(self._ids.get, terms))
        df, log, ln = self._df, math.log, _ln(self.docs_seen)
        log_n = log(max(self.docs_seen, MIN_DF_DOCS) + 1) + 1.0
        raw = {t: (1.0 + log(c)) * (log_n if i is None else log_n - ln[df[i]])
               for t, c, i in zip(terms, counts.values(), ids, strict=True) if c > 0}
        vector = _top_normalised(raw, DOC_TERMS)
        id_of = dict(zip(terms, ids, strict=True))
        return Features(doc, vector, terms, simhash, found.names,
                        tuple((reason, key, key_hash(key)) for reason, key in _exact_keys(doc)),
                        _micros(doc.at), ids, tuple(map(id_of.__getitem__, vector)),
                        self._epoch)

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
        postings = self._postings
        vector_ids = (feats.vector_ids if feats.epoch == self._epoch
                      else map(self._ids.get, feats.vector))
        by_id: dict[int, float] = {}
        """The document's vector over term ids (a term without an id is in no story)."""
        indexed: list[tuple[float, str, int]] = []
        for (term, w), i in zip(feats.vector.items(), vector_ids, strict=True):
            if i is not None:
                by_id[i] = w
                if i in postings:
                    indexed.append((w, term, i))
        last_at = self._stories.last_at
        candidates = [slot for slot in self._candidates(indexed)
                      if abs(feats.at - last_at[slot]) <= self._window_us]
        return (self._near_copy(feats, candidates)
                or self._cluster(feats, by_id, candidates))

    def _near_copy(self, feats: Features, candidates: list[int]) -> Assignment | None:
        """A copy shares nearly every term, so its story is among the candidates."""
        if feats.simhash is None:
            return None
        best: tuple[int, int, int] | None = None
        for slot in candidates:
            copies = self._stories.copies(slot)
            for signature, entry_id in zip(copies[::2], copies[1::2], strict=True):
                d = nearcopy.distance(feats.simhash, signature)
                if d <= nearcopy.MAX_DISTANCE and (best is None or d < best[0]):
                    best = (d, entry_id, slot)
        if best is None:
            return None
        d, entry_id, slot = best
        return Assignment(self._stories.story_id[slot], "near_copy",
                          round(1 - d / nearcopy.BITS, 4), {"entry": entry_id, "bits_differing": d})

    def _cluster(self, feats: Features, by_id: dict[int, float],
                 candidates: list[int]) -> Assignment:
        best: tuple[float, float, int] | None = None
        scale = TIME_SCALE.total_seconds()
        stories = self._stories
        for slot, cosine in zip(candidates, self._cosines(by_id, candidates), strict=True):
            gap = abs(feats.at - stories.last_at[slot]) / 1_000_000  # timedelta.total_seconds
            score = cosine * math.exp(-0.5 * (gap / scale) ** 2)
            names = stories.names[slot]
            if feats.names and names and feats.names.isdisjoint(names):
                score *= NO_SHARED_NAME
            if best is None or score > best[0]:
                best = (score, cosine, slot)
        if best and best[0] >= self.threshold:
            score, cosine, slot = best
            return Assignment(stories.story_id[slot], "cluster", round(score, 4),
                              {"cosine": round(cosine, 4),
                               **self._shared(feats.vector, self._vector(slot))})
        return Assignment(None, "new_story", 1.0,
                          {"best": round(best[0], 4) if best else 0.0})

    def _cosines(self, by_id: dict[int, float], slots: list[int]) -> list[float]:
        """Cosine of the document (`by_id`) with each story's centroid, in one pass.

        The document's weights are scattered into a scratch vector by term id and
        the centroids read through it; `np.bincount` adds each centroid's products
        in its term order, as a loop would (terms it lacks add exact zeros)."""
        if not slots:
            return []
        terms, weights, lengths = array("I"), array("H"), []
        for slot in slots:
            t, w = self._stories.centroid(slot)
            terms += t
            weights += w
            lengths.append(len(t))
        if len(self._scratch) < len(self._terms):
            self._scratch = np.zeros(2 * len(self._terms))
        scratch = self._scratch
        ids = np.fromiter(by_id, np.int64, len(by_id))
        scratch[ids] = np.fromiter(by_id.values(), np.float64, len(by_id))
        products = scratch[np.frombuffer(terms, np.uint32)] * np.frombuffer(weights, np.uint16)
        scratch[ids] = 0.0
        sums = np.bincount(np.repeat(np.arange(len(slots)), lengths), products, len(slots))
        cosines: list[float] = (sums / WEIGHT_SCALE).tolist()
        return cosines

    def _candidates(self, indexed: list[tuple[float, str, int]]) -> list[int]:
        """Stories with the largest partial dot product over indexed terms.

        `indexed`: (weight, term, id) of the document's terms that have postings;
        the strongest come first, ties by term."""
        query = sorted(indexed, reverse=True)[:QUERY_TERMS]
        if not query:
            return []
        lists = [np.frombuffer(self._postings[i], np.int64)[-POSTING_SCAN:][::-1]
                 for _, _, i in query]  # newest first
        posted = np.concatenate(lists)
        weight = np.repeat([w for w, _, _ in query], [len(a) for a in lists])
        # Strongest first; among equals, the first met (newest under the strongest term).
        return self._tally.top(posted >> WEIGHT_BITS, (posted & WEIGHT_SCALE) * weight,
                               self._stories.capacity, CANDIDATES)

    def _vector(self, slot: int) -> dict[str, float]:
        terms, weights = self._stories.centroid(slot)
        return {self._terms[i]: w / WEIGHT_SCALE for i, w in zip(terms, weights, strict=True)}

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
        if feats.epoch == self._epoch:
            found = [self._id(t) if i is None else i
                     for t, i in zip(feats.terms, feats.ids, strict=True)]
        else:
            found = list(map(self._id, feats.terms))
        df = self._df
        for i in found:
            df[i] += 1
        self._seen.append(feats.at, pack_ids(found))

    def _id(self, term: str) -> int:
        """The term's id, a new one (nothing holding it yet) if the term has none."""
        i = self._ids.get(term)
        if i is not None:
            return i
        self._epoch += 1
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

    def _release(self, ids: Iterable[int], counts: list[int], other: list[int]) -> None:
        """Decrement `counts` (`_df` or `_held`) of `ids`; free those neither holds any more."""
        terms = self._terms
        for i in ids:
            left = counts[i] - 1
            counts[i] = left
            if not left and not other[i]:
                self._epoch += 1
                del self._ids[terms[i]]
                terms[i] = ""
                self._free.append(i)

    def add(self, feats: Features, story_id: int) -> None:
        """Record that the document (already `observe`d) joined (or started) `story_id`."""
        doc, stories = feats.doc, self._stories
        slot = stories.update(story_id, feats.at)
        old, old_weights = stories.centroid(slot)
        size = stories.size[slot]
        merged = {i: w * size / WEIGHT_SCALE for i, w in zip(old, old_weights, strict=True)}
        ids = self._ids
        for term, w in feats.vector.items():
            i = ids[term]
            merged[i] = merged.get(i, 0.0) + w
        centroid = _top_normalised(merged, CENTROID_TERMS)
        terms = array("I", centroid)
        weights = array("H", [round(w * WEIGHT_SCALE) for w in centroid.values()])
        stories.set_centroid(slot, terms, weights)
        held = self._held
        for i in terms:
            held[i] += 1
        self._reindex(_posts(slot, old, old_weights), _posts(slot, terms, weights))
        self._release(old, held, self._df)
        stories.size[slot] = size + 1
        names = stories.names[slot]
        if len(names) < STORY_NAMES:
            stories.names[slot] = (*names, *sorted(feats.names - set(names)))[:STORY_NAMES]
        stories.last_at[slot] = max(stories.last_at[slot], feats.at)
        if feats.simhash is not None:
            copies = stories.copies(slot)
            copies.extend((feats.simhash, doc.entry_id))
            stories.set_copies(slot, copies[-2 * COPIES_KEPT:])
        seq = self._members.append(feats.at, array(
            "q", (doc.entry_id, story_id, *(digest for *_, digest in feats.exact))))
        for *_, digest in feats.exact:
            self._exact.setdefault(digest, seq)

    def _reindex(self, before: dict[int, int], after: dict[int, int]) -> None:
        """Move a story's postings from `before` to `after` (`_posts`); re-entering a
        term moves the story to the recent end of its posting list."""
        for i in before.keys() - after.keys():
            self._unpost(i, before[i])
        postings = self._postings
        for i, posted in after.items():
            posting = postings.get(i)
            if posting is None:
                postings[i] = array("q", (posted,))
                continue
            if i in before:
                posting.remove(before[i])
            posting.append(posted)

    def _unpost(self, term: int, posted: int) -> None:
        posting = self._postings[term]
        posting.remove(posted)
        if not posting:
            del self._postings[term]

    def expire(self, now: datetime) -> int:
        """Forget documents and stories older than the window; returns stories dropped."""
        cutoff = _micros(now) - self._window_us
        for _, found in self._seen.drop(cutoff):
            self._release(unpack_ids(found), self._df, self._held)
        exact = self._exact
        for seq, record in self._members.drop(cutoff):
            for digest in record[2:]:
                exact.discard(digest, seq)
        stories = self._stories
        old = []
        for sid, slot in stories.order.items():  # least recently updated first
            if stories.last_at[slot] >= cutoff:
                break
            old.append((sid, slot))
        for sid, slot in old:
            terms, weights = stories.centroid(slot)
            for i, posted in _posts(slot, terms, weights).items():
                self._unpost(i, posted)
            self._release(terms, self._held, self._df)
            stories.close(sid)
        return len(old)

    @property
    def open_stories(self) -> int:
        return len(self._stories)

    # -- pickling (the snapshot) -------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The postings as two long columns (`flatten`); the stories are columns already."""
        state = dict(self.__dict__)
        del state["_ids"], state["_tally"], state["_scratch"]  # `_terms` inverted; scratch
        state["_postings"] = (array("q", self._postings),
                              flatten(self._postings.values(), "q"))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        posted, postings = state.pop("_postings")
        self.__dict__.update(state)
        free = set(self._free)
        self._ids = {t: i for i, t in enumerate(self._terms) if i not in free}
        self._postings = dict(zip(posted, unflatten(*postings), strict=True))
        self._tally = SlotTally()
        self._scratch = np.zeros(0)


def _exact_keys(doc: Doc) -> list[tuple[str, str]]:
    keys = []
    if doc.guid:
        keys.append(("exact_guid", "g:" + doc.guid))
    if doc.canonical_url:
        keys.append(("exact_url", "u:" + doc.canonical_url))
    if doc.content_hash:
        keys.append(("exact_content", "h:" + doc.content_hash))
    return keys
