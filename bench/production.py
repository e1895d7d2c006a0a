"""Stream labelled documents through the production story path, as the daemon does.

Each document becomes a feed entry, is normalised by `normalise` and clustered
by a `StoryIndex` with the daemon's default settings, the `Doc` built exactly
as `Ingestor` builds it; expiry runs as the housekeeping tick would.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bench.labelled import LabelledDoc
from monitor.config import StoriesConfig
from monitor.feeds.parse import RawEntry
from monitor.stories.cluster import Assignment, Doc, StoryIndex
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


@dataclass
class Run:
    stories: dict[str, int] = field(default_factory=dict)
    """doc_id → story id."""
    decisions: dict[str, Assignment] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    """Seconds per entry through normalise + dedup + cluster."""


def stream(docs: Iterable[LabelledDoc],
           index: StoryIndex) -> Iterator[tuple[LabelledDoc, int, Assignment, float, float]]:
    """Cluster `docs` (in time order); yield each story id, decision, wall and CPU seconds."""
    next_story = 1
    last_expire: datetime | None = None
    for entry_id, labelled in enumerate(docs, 1):
        started, cpu = time.perf_counter(), time.process_time()
        doc = to_doc(entry_id, labelled)
        if last_expire is None or doc.at - last_expire >= EXPIRE_EVERY:
            index.expire(doc.at)
            last_expire = doc.at
        feats = index.features(doc)
        decision = index.assign(feats)
        story = decision.story_id
        if story is None:
            story, next_story = next_story, next_story + 1
        index.observe(feats)
        index.add(feats, story)
        yield (labelled, story, decision, time.perf_counter() - started,
               time.process_time() - cpu)


def run(docs: Iterable[LabelledDoc], index: StoryIndex | None = None) -> Run:
    """Cluster `docs` (in time order) and record every decision and its cost."""
    out = Run()
    for labelled, story, decision, seconds, _ in stream(docs, index or default_index()):
        out.latencies.append(seconds)
        out.stories[labelled.doc_id] = story
        out.decisions[labelled.doc_id] = decision
    return out
