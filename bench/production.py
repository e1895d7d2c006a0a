"""Stream labelled documents through the production story path, as the daemon does.

Each document becomes a feed entry, is normalised by `normalise` and clustered
by a `StoryIndex` with the daemon's default settings, the `Doc` built exactly
as `Ingestor` builds it; expiry runs as the housekeeping tick would. With an
`Offload`, normalising and analysing the text run in its process, ahead of
the clustering, as in the daemon (which normalises in its parser processes
and analyses in the story stage's offload process).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bench.labelled import LabelledDoc
from monitor.config import StoriesConfig
from monitor.feeds.parse import RawEntry
from monitor.offload import Offload
from monitor.stories.cluster import Assignment, Doc, StoryIndex
from monitor.stories.features import Analysis, analyse
from monitor.stories.normalise import normalise

EXPIRE_EVERY = timedelta(minutes=15)
"""How often (in stream time) expiry runs; the daemon's housekeeping is more eager."""


def default_index() -> StoryIndex:
    settings = StoriesConfig()
    return StoryIndex(timedelta(seconds=settings.window), settings.threshold)


def to_doc(entry_id: int, doc: LabelledDoc) -> Doc:
    """Feed entry → normalised entry → clustering `Doc`, the way ingest does it."""
    raw = RawEntry(guid=doc.url or doc.doc_id, link=doc.url, title=doc.title, summary=None,
                   content=doc.text, published=doc.published)
    (item,) = normalise([raw], doc.published)
    return Doc(entry_id, doc.outlet, item.title, item.text, item.event_at, item.guid,
               item.canonical_url, item.content_hash)


def prepare(entry_id: int, doc: LabelledDoc) -> tuple[Doc, Analysis]:
    """The entry's `Doc` and its text's analysis: all of its work that needs no index."""
    entry = to_doc(entry_id, doc)
    return entry, analyse(entry.title, entry.text)


@dataclass
class Run:
    stories: dict[str, int] = field(default_factory=dict)
    """doc_id → story id."""
    decisions: dict[str, Assignment] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    """Seconds per entry through normalise + dedup + cluster."""


def stream(docs: Iterable[LabelledDoc], index: StoryIndex, offload: Offload | None = None
           ) -> Iterator[tuple[LabelledDoc, int, Assignment, float]]:
    """Cluster `docs` (in time order); yield each story id, decision and this thread's seconds.

    The seconds include waiting for `offload`'s results, so their sum is the
    stream's wall time, less the caller's own.
    """
    numbered = enumerate(docs, 1)
    prepared = (offload.run(prepare, numbered, lambda item: item) if offload
                else ((item, prepare(*item)) for item in numbered))
    next_story = 1
    last_expire: datetime | None = None
    while True:
        started = time.perf_counter()
        got = next(prepared, None)
        if got is None:
            return
        (_, labelled), (doc, analysed) = got
        if last_expire is None or doc.at - last_expire >= EXPIRE_EVERY:
            index.expire(doc.at)
            last_expire = doc.at
        feats = index.features(doc, analysed)
        decision = index.assign(feats)
        story = decision.story_id
        if story is None:
            story, next_story = next_story, next_story + 1
        index.observe(feats)
        index.add(feats, story)
        yield labelled, story, decision, time.perf_counter() - started


def run(docs: Iterable[LabelledDoc], index: StoryIndex | None = None) -> Run:
    """Cluster `docs` (in time order) and record every decision and its cost."""
    out = Run()
    for labelled, story, decision, seconds in stream(docs, index or default_index()):
        out.latencies.append(seconds)
        out.stories[labelled.doc_id] = story
        out.decisions[labelled.doc_id] = decision
    return out
