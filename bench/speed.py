"""Entries per second, p99 latency and peak memory at a given window size.

Each system runs in a fresh process, so peak RSS is its own (Storywatch's
adds its offload process's). The window is filled through the same code path,
then the next `measured` entries are timed one by one: p99 is of one entry's
time in the clustering thread, waiting for its analysis included.
"""

from __future__ import annotations

import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import IO

from scipy import sparse
from scipy.sparse import linalg
from sklearn.feature_extraction.text import TfidfVectorizer

from bench import production
from bench.labelled import LabelledDoc
from bench.peers import MINHASH_PERM, MINHASH_THRESHOLD, TFIDF_THRESHOLD, _Centroids, shingles
from bench.procfs import cpu_of, kib_field
from bench.synthetic import Stream
from monitor.offload import Offload
from monitor.stories.cluster import Assignment, StoryIndex

PROGRESS_EVERY = 20_000
SPOOL_CHUNK = 1_000


@dataclass(frozen=True)
class Speed:
    system: str
    window_docs: int
    entries_per_s: float
    p99_ms: float
    entries_per_cpu_s: float
    """Entries per second of CPU time (all its processes'): comparable on a busy machine."""
    peak_rss_mb: float
    """Summed over its processes."""
    open_stories: int


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(system: str, window_docs: int, latencies: list[float], cpu_seconds: float,
             open_stories: int, other_rss_mb: float = 0.0) -> Speed:
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    return Speed(system, window_docs, len(latencies) / sum(latencies), p99 * 1000,
                 len(latencies) / cpu_seconds, _peak_rss_mb() + other_rss_mb, open_stories)


def _spool(docs: Iterable[LabelledDoc], spool: IO[bytes]) -> Iterator[LabelledDoc]:
    """Write `docs` into `spool` now; return an iterator reading them back.

    Generating a synthetic document costs about as much as clustering it; done
    inside the timed stream it would be counted (the offload pulls documents
    ahead, inside the time it is waited for). Reading them back costs what
    reading stored entries from the database would.
    """
    for chunk in iter(lambda: list(islice(docs, SPOOL_CHUNK)), []):
        pickle.dump(chunk, spool, pickle.HIGHEST_PROTOCOL)
    spool.seek(0)

    def read() -> Iterator[LabelledDoc]:
        while True:
            try:
                yield from pickle.load(spool)
            except EOFError:
                return
    return read()


def storywatch(windows: tuple[int, ...], measured: int, offload: bool = True) -> list[Speed]:
    """Normalise + dedup + cluster through the production path, default settings.

    One stream, spaced so the time window holds the largest size; until it is
    full the window holds every entry so far, so timing `measured` entries
    right after 10k, 100k, ... entries measures those window sizes in one pass.
    With `offload`, text analysis runs in an offload process as in the
    daemon: entries/s is wall-clock, CPU and peak RSS are both processes' sums.
    Without, everything runs in this one process (the daemon on one CPU).
    """
    index = production.default_index()
    with tempfile.TemporaryFile() as spool:
        docs = _spool(Stream().docs(max(windows) + measured, index.window, max(windows)), spool)
        work = Offload() if offload else None
        try:
            return _timed(production.stream(docs, index, work), windows, measured, index, work)
        finally:
            if work:
                work.close()


def _timed(stream: Iterator[tuple[LabelledDoc, int, Assignment, float]], windows: tuple[int, ...],
           measured: int, index: StoryIndex, offload: Offload | None) -> list[Speed]:
    """A `Speed` for the `measured` entries after each size in `windows`."""
    out = []
    latencies: list[float] = []
    starts = set(windows)
    chunk = cpu = 0.0
    system = "storywatch" if offload else "storywatch, one process"

    def child() -> list[int]:  # started by the stream's first entry
        return [offload.pid] if offload and offload.pid else []

    for i, (*_, seconds) in enumerate(stream):
        chunk += seconds
        if (i + 1) % PROGRESS_EVERY == 0:
            print(f"    ... {i + 1:,} entries: {PROGRESS_EVERY / chunk:.0f} entries/s, "
                  f"peak RSS {_peak_rss_mb():.0f} MB", file=sys.stderr, flush=True)
            chunk = 0.0
        if i in starts:
            cpu = -(time.process_time() + cpu_of(child()))
        if i in starts or latencies:
            latencies.append(seconds)
        if len(latencies) == measured:
            cpu += time.process_time() + cpu_of(child())
            out.append(_summary(system, i + 1 - measured, latencies, cpu,
                                index.open_stories,
                                sum(kib_field(f"/proc/{p}/status", "VmHWM:")
                                    for p in child()) / 2**20))
            latencies = []
    return out


def peer(window_docs: int, measured: int) -> list[Speed]:
    """MinHashLSH near-copies + scikit-learn TF-IDF with brute-force cosine to centroids.

    The window is bulk-loaded (each warm-up entry its own story, the vectorizer
    fitted on the warm-up text) because filling it one entry at a time at the
    peer's speed would take hours; only the measured entries are timed.
    """
    from datasketch import MinHash, MinHashLSH

    window = timedelta(hours=72)
    docs = list(Stream().docs(window_docs + measured, window, window_docs))
    warm, timed = docs[:window_docs], docs[window_docs:]
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    warm_vectors = vectorizer.fit_transform([f"{d.title}\n{d.text}" for d in warm])
    cents = _Centroids()
    for i in range(window_docs):
        cents.put(i, warm_vectors[i])
    lsh = MinHashLSH(threshold=MINHASH_THRESHOLD, num_perm=MINHASH_PERM)
    for d in warm:
        mh = MinHash(num_perm=MINHASH_PERM)
        mh.update_batch(list(shingles(f"{d.title}\n{d.text}")))
        lsh.insert(d.doc_id, mh)
    sums: dict[int, sparse.csr_matrix] = {}
    latencies = []
    cpu_start = time.process_time()
    for n, d in enumerate(timed, window_docs):
        started = time.perf_counter()
        text = f"{d.title}\n{d.text}"
        mh = MinHash(num_perm=MINHASH_PERM)
        mh.update_batch(list(shingles(text)))
        lsh.query(mh)
        lsh.insert(d.doc_id, mh)
        vec = vectorizer.transform([text])
        scores = cents.scores(vec)
        best = int(scores.argmax()) if scores.size else -1
        story = cents.row_story[best] if best >= 0 and scores[best] >= TFIDF_THRESHOLD else n
        sums[story] = sums.get(story, warm_vectors[story] if story < window_docs else vec) + vec
        cents.put(story, sums[story] / (linalg.norm(sums[story]) or 1.0))
        latencies.append(time.perf_counter() - started)
    return [_summary("peer (datasketch + scikit-learn)", window_docs, latencies,
                     time.process_time() - cpu_start, len(cents.current))]
