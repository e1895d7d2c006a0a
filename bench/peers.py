"""Peers measured beside Storywatch: straightforward designs on well-known libraries.

- `TfidfCentroidPeer`: scikit-learn TF-IDF, single pass, brute-force cosine
  against every open story's centroid (the textbook online clusterer).
- `MinHashPeer`: datasketch MinHashLSH on word 3-shingles (near-duplicate
  detection used as story clustering).

Both see the same stream and the same time window as Storywatch. The TF-IDF
peer is fitted on the whole stream up front: an offline IDF, an advantage
Storywatch's streaming IDF does not have.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from bench.labelled import LabelledDoc

TFIDF_THRESHOLD = 0.25
"""Cosine to join a story; the best of a sweep on neus_train (bench/stories --tune-peers)."""
MINHASH_THRESHOLD = 0.5
"""LSH Jaccard threshold: datasketch's documented default operating point."""
MINHASH_PERM = 128
_BLOCK = 256


@dataclass
class PeerRun:
    stories: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def _text(doc: LabelledDoc) -> str:
    return f"{doc.title}\n{doc.text}"


class _Centroids:
    """Story centroids as appendable CSR blocks; a changed centroid is a new row."""

    def __init__(self) -> None:
        self.blocks: list[sparse.csr_matrix] = []
        self.pending: list[sparse.csr_matrix] = []
        self.row_story: list[int] = []
        self.alive: list[bool] = []
        self.current: dict[int, int] = {}

    def put(self, story: int, row: sparse.csr_matrix) -> None:
        if story in self.current:
            self.kill(story)
        self.current[story] = len(self.row_story)
        self.row_story.append(story)
        self.alive.append(True)
        self.pending.append(row)
        if len(self.pending) >= _BLOCK:
            self.blocks.append(sparse.vstack(self.pending, format="csr"))
            self.pending = []

    def kill(self, story: int) -> None:
        """Retire a story's row; compact when most rows are dead."""
        self.alive[self.current.pop(story)] = False
        if len(self.alive) > _BLOCK and 2 * len(self.current) < len(self.alive):
            rows = self._rows()
            live = sorted(self.current.items(), key=lambda kv: kv[1])
            self.blocks, self.pending, self.row_story, self.alive = [], [], [], []
            self.current = {}
            for s, index in live:
                self.put(s, rows[index])

    def _rows(self) -> sparse.csr_matrix:
        return sparse.vstack(self.blocks + self.pending, format="csr")

    def scores(self, vec: sparse.csr_matrix) -> np.ndarray:
        """Cosine of `vec` with every row ever put (dead rows included; masked by caller)."""
        parts = [np.asarray((b @ vec.T).todense()).ravel() for b in self.blocks]
        if self.pending:
            stacked = sparse.vstack(self.pending, format="csr")
            parts.append(np.asarray((stacked @ vec.T).todense()).ravel())
        return np.concatenate(parts) if parts else np.zeros(0)


class TfidfCentroidPeer:
    def __init__(self, window: timedelta, threshold: float = TFIDF_THRESHOLD) -> None:
        self.window = window
        self.threshold = threshold

    def run(self, docs: Sequence[LabelledDoc]) -> PeerRun:
        vectors = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(
            [_text(d) for d in docs])
        out = PeerRun()
        cents = _Centroids()
        sums: dict[int, sparse.csr_matrix] = {}
        last: dict[int, datetime] = {}
        for i, doc in enumerate(docs):
            started = time.perf_counter()
            if i % _BLOCK == 0:
                for old in [s for s in cents.current if doc.published - last[s] > self.window]:
                    cents.kill(old)
            vec = vectors[i]
            story = self._best(cents, vec, last, doc.published)
            if story is None:
                story = len(sums) + 1
                sums[story] = vec
            else:
                sums[story] = sums[story] + vec
            norm = float(np.sqrt(sums[story].multiply(sums[story]).sum())) or 1.0
            cents.put(story, sums[story] / norm)
            last[story] = doc.published
            out.latencies.append(time.perf_counter() - started)
            out.stories[doc.doc_id] = story
        return out

    def _best(self, cents: _Centroids, vec: sparse.csr_matrix, last: dict[int, datetime],
              now: datetime) -> int | None:
        scores = cents.scores(vec)
        best, best_story = self.threshold, None
        for row in np.flatnonzero(scores >= self.threshold):
            story = cents.row_story[row]
            if (cents.alive[row] and now - last[story] <= self.window
                    and scores[row] >= best):
                best, best_story = float(scores[row]), story
        return best_story


def shingles(text: str, size: int = 3) -> set[bytes]:
    words = text.lower().split()
    return {" ".join(words[i:i + size]).encode() for i in range(max(1, len(words) - size + 1))}


class MinHashPeer:
    def __init__(self, window: timedelta, threshold: float = MINHASH_THRESHOLD) -> None:
        self.window = window
        self.threshold = threshold

    def run(self, docs: Sequence[LabelledDoc]) -> PeerRun:
        lsh = MinHashLSH(threshold=self.threshold, num_perm=MINHASH_PERM)
        out = PeerRun()
        inserted: list[tuple[datetime, str]] = []
        expired = 0
        story_of: dict[str, int] = {}
        stories = 0
        for doc in docs:
            started = time.perf_counter()
            while expired < len(inserted) and doc.published - inserted[expired][0] > self.window:
                lsh.remove(inserted[expired][1])
                expired += 1
            mh = MinHash(num_perm=MINHASH_PERM)
            mh.update_batch(list(shingles(_text(doc))))
            hits = lsh.query(mh)
            if hits:
                story = story_of[min(hits)]
            else:
                story = stories = stories + 1
            lsh.insert(doc.doc_id, mh)
            inserted.append((doc.published, doc.doc_id))
            story_of[doc.doc_id] = story
            out.latencies.append(time.perf_counter() - started)
            out.stories[doc.doc_id] = story
        return out
