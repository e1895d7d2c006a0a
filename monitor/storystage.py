"""The story stage: stored entries become story members, rule events and alerts.

Storing a fetch (`monitor/ingest.py`) and analysing it are separate steps.
This stage takes entries that are stored but in no story yet, in id order and
in batches, clusters them, and commits each batch in one transaction: the
members, the stories' counts, the rule state and the alerts with their outbox
rows. An alert is therefore never written without the story change that caused
it. Membership is the only "done" mark (`story_members.entry_id` is unique and
sets the entry's `story_id` in the same transaction), so a batch lost to a
crash is simply taken again, and no entry is ever clustered twice.

Several instances on one PostgreSQL take batches under `INGEST_LOCK` and
first replay what the others added (see docs/scaleout.md).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from monitor import heap, metrics
from monitor.db import queries
from monitor.offload import Offload
from monitor.rules.live import RuleRunner, entry_event, story_event
from monitor.stories import snapshot
from monitor.stories.cluster import Doc, StoryIndex
from monitor.stories.features import Analysis, analyse

REBUILD_CHUNK = 500
"""Entries replayed between two `pace` calls of a rebuild."""
BATCH = 500
"""Entries per transaction: large enough to amortise the queries, small enough
that a batch holds the write lock for well under a second."""


@dataclass
class StageReport:
    entries: int = 0
    stories_created: int = 0
    alerts: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    """One readable line per story change, for logs and the demo."""


Change = tuple[int, int, str]
"""(story id, entry id, change) for one clustered entry."""


@dataclass
class Batch:
    """Entries clustered in memory, waiting to be committed in their open transaction."""

    session: Session
    now: datetime
    report: StageReport
    stories: dict[int, queries.Tally] = field(default_factory=dict)
    """Every story the batch creates (with a title) or adds to."""
    members: list[dict[str, Any]] = field(default_factory=list)
    fetches: dict[tuple[int, datetime], list[Change]] = field(default_factory=dict)
    """Each fetch's changes: rules see one fetch at a time, as it was stored."""
    last_new: int | None = None
    """The last story id reserved for this batch."""


def doc(row: Any, source: str) -> Doc:
    """What clustering reads of a stored entry (a row starting with `queries.DOC_COLUMNS`)."""
    return Doc(row[0], source, *_texts(row), row[3], row[4], row[5], row[6])


def _texts(row: Any) -> tuple[str, str]:
    """A stored entry's title and text: `analyse`'s arguments, and what `doc` holds."""
    return row[1], row[2] or ""


class StoryStage:
    """Owns the in-memory story index; clusters the backlog one batch at a time."""

    def __init__(self, sessions: sessionmaker[Session], index: StoryIndex, runner: RuleRunner,
                 batch: int = BATCH, offload: Offload | None = None) -> None:
        self.sessions = sessions
        self.index = index
        self.runner = runner
        self.batch = batch
        self.offload = offload
        """Where entries' texts are analysed ahead of their placing; None: in this thread."""
        self.ready = False
        """False until the index is rebuilt, and again after a failed batch."""
        self.seen_member = 0
        """The newest story member the index holds (see `_catch_up`)."""

    def rebuild(self, now: datetime, pace: snapshot.Pace = lambda _seconds: True) -> int | None:
        """Reload the clustering state from the members inside the window.

        Needs no lock: members are only added under the ingest lock, so every
        member up to the newest id read here is committed, and later ones
        (this or another instance's) arrive through `_catch_up`. `pace` is told
        how long each chunk of REBUILD_CHUNK entries took; returning False stops
        the rebuild. Returns the entries replayed, or None when stopped.
        """
        fresh = StoryIndex(self.index.window, self.index.threshold)
        with self.sessions() as session:
            upto = queries.last_member_id(session)
            done = self._replay(fresh, queries.window_docs(session, now - fresh.window, upto),
                                pace)
        if done is None:
            return None
        self._install(fresh, upto)
        return done[0]

    def restore(self, path: Path, now: datetime,
                pace: snapshot.Pace = lambda _seconds: True) -> int | None:
        """Load the index saved at `path`, then replay the members added since it was saved.

        Raises `snapshot.Refused` (or OSError) when the file is damaged, or was
        saved with other settings or code or for another database (or another
        history of this one: its newest member must still be there, unchanged),
        or longer ago than the window; the caller then rebuilds. Returns the
        members replayed, or None when stopped.
        """
        expected = snapshot.built_with(self.index)
        oldest = now - self.index.window
        with self.sessions() as session:
            def check(header: snapshot.Header) -> None:
                why = snapshot.mismatch(header, expected)
                if why is None and datetime.fromisoformat(header.saved_at) < oldest:
                    why = "saved longer ago than the window: rebuilding replays less"
                if why is None and header.database != queries.database_id(session):
                    why = "saved for another database"
                if why is None and header.member and queries.member_ids(
                        session, header.member) != (header.entry, header.story):
                    why = f"story member {header.member} is not in the database as it was saved"
                if why:
                    raise snapshot.Refused(why)

            try:
                header, loaded = snapshot.read(path, check, pace)
            except snapshot.Stopped:
                return None
            loaded.expire(now)
            done = self._replay(loaded, queries.members_since(session, header.member), pace)
        if done is None:
            return None
        n, last = done
        self._install(loaded, header.member if last is None else last.id)
        return n

    def _install(self, index: StoryIndex, seen_member: int) -> None:
        self.index, self.seen_member, self.ready = index, seen_member, True
        # The index is long-lived and acyclic: out of the collector's full passes, which
        # would otherwise walk all of it holding the interpreter. Its objects are still
        # freed by reference counting as they expire.
        gc.freeze()
        heap.trim()  # the load's or rebuild's transient buffers
        metrics.OPEN_STORIES.set(index.open_stories)

    def snapshot_header(self, now: datetime) -> snapshot.Header:
        """What a snapshot of the index as it is now records (call between batches)."""
        with self.sessions() as session:
            ids = queries.member_ids(session, self.seen_member) if self.seen_member else None
            database = queries.database_id(session)
        entry, story = ids or (0, 0)
        return snapshot.Header(snapshot.FORMAT, snapshot.built_with(self.index), database,
                               self.seen_member, entry, story, now.isoformat(),
                               self.index.docs_seen, self.index.open_stories)

    def _catch_up(self, session: Session) -> None:
        """Replay members other instances added since we last looked (we hold the lock).

        Every instance thus clusters against the same index a single instance
        would hold after the same sequence of members: one total order, many fetchers.
        """
        for row, analysed in self.analysed(queries.members_since(session, self.seen_member)):
            _remember(self.index, doc(row, row.source), row.story_id, analysed)
            self.seen_member = row.id

    def analysed(self, rows: Iterable[Any]) -> Iterator[tuple[Any, Analysis | None]]:
        """Each stored entry with its text analysed (in the offload process, ahead), or None."""
        if self.offload is None:
            return ((row, None) for row in rows)
        return self.offload.run(analyse, rows, _texts)

    def _replay(self, index: StoryIndex, rows: Iterable[Any],
                pace: snapshot.Pace) -> tuple[int, Any] | None:
        """Remember stored members (rows as `queries.window_docs`), pacing every REBUILD_CHUNK.

        Returns how many and the last row, or None when `pace` stopped it.
        """
        n, last, started = 0, None, time.monotonic()
        for last, analysed in self.analysed(rows):
            _remember(index, doc(last, last.source), last.story_id, analysed)
            n += 1
            if n % REBUILD_CHUNK == 0:
                if not pace(time.monotonic() - started):
                    return None
                started = time.monotonic()
        return n, last

    def run_batch(self, now: datetime) -> StageReport:
        """Cluster the next batch of the backlog and commit it with its rule results."""
        batch = self.cluster(now)
        return StageReport() if batch is None else self.commit(batch)

    def cluster(self, now: datetime) -> Batch | None:
        """Take the next batch and decide every entry's story, writing nothing yet.

        The batch's transaction stays open (on PostgreSQL it holds the ingest
        lock) until `commit`. Story ids are reserved, not inserted, so the
        database's write lock is only taken by `commit`. On any error the index,
        which may hold part of the batch, is marked for a rebuild (`ready` False).
        """
        assert self.ready, "rebuild() first"
        session = self.sessions()
        try:
            session.begin()
            queries.serialise(session, queries.INGEST_LOCK)
            self._catch_up(session)
            rows = queries.unclustered(session, self.batch)
            if not rows:
                session.close()
                return None
            batch = Batch(session, now, StageReport(entries=len(rows)))
            for row, analysed in self.analysed(rows):
                self._place(batch, row, analysed)
        except BaseException:
            self.ready = False
            session.close()
            raise
        return batch

    def _place(self, batch: Batch, row: Any, analysed: Analysis | None) -> None:
        """Decide one entry's story and record it in the batch and the index."""
        started = time.perf_counter()
        source, report = row.name, batch.report
        feats = self.index.features(doc(row, source), analysed)
        decision = self.index.assign(feats)
        story_id = decision.story_id
        if story_id is None:
            story_id = batch.last_new = queries.reserve_story_id(batch.session, batch.last_new)
            tally = batch.stories[story_id] = queries.Tally(
                story_id, 0, row.event_at, row.event_at, set(), row.title or "(untitled)")
            change = "created"
            report.stories_created += 1
            metrics.STORIES.labels("created").inc()
        else:
            found = batch.stories.get(story_id) or queries.story_tally(batch.session, story_id)
            assert found is not None, "index refers to a story the database lacks"
            tally = batch.stories[story_id] = found
            change = "updated" if source in tally.sources else "source_added"
            metrics.STORIES.labels("joined").inc()
            if change == "source_added":
                metrics.STORIES.labels("source_added").inc()
        tally.entry_count += 1
        tally.sources.add(source)
        tally.first_seen_at = min(tally.first_seen_at, row.event_at)
        tally.last_seen_at = max(tally.last_seen_at, row.event_at)
        report.events.append(
            f"new story #{story_id} [{source}] {row.title}" if change == "created" else
            f"story #{story_id} +[{source}] ({len(tally.sources)} sources; "
            f"{decision.reason} {decision.similarity:.2f}) {row.title}")
        batch.members.append({"story_id": story_id, "entry_id": row.id, "source": source,
                              "similarity": decision.similarity, "reason": decision.reason,
                              "detail": decision.detail, "joined_at": batch.now})
        batch.fetches.setdefault((row.feed_id, row.fetched_at), []).append(
            (story_id, row.id, change))
        self.index.observe(feats)
        self.index.add(feats, story_id)
        metrics.CLUSTER_REASONS.labels(decision.reason).inc()
        metrics.CLUSTER_DURATION.observe(time.perf_counter() - started)

    def commit(self, batch: Batch) -> StageReport:
        """Write the batch's stories and members, evaluate the rules, commit: one transaction."""
        session, report = batch.session, batch.report
        try:
            tallies = batch.stories.values()
            queries.save_stories(session, [t for t in tallies if t.title],
                                 [t for t in tallies if not t.title], batch.now)
            queries.insert_members(session, batch.members)
            stories = queries.members_of(session, batch.stories)
            for changes in batch.fetches.values():
                self._evaluate(session, changes, stories, batch.now, report)
            self.seen_member = queries.last_member_id(session)
            session.commit()
        except BaseException:
            self.ready = False
            raise
        finally:
            session.close()
        metrics.OPEN_STORIES.set(self.index.open_stories)
        return report

    def _evaluate(self, session: Session, changes: list[Change],
                  stories: dict[int, list[queries.MemberRow]], now: datetime,
                  report: StageReport) -> None:
        """Every new entry is an entry event and a change of its story, as of that entry."""
        events = []
        for story_id, entry_id, change in changes:
            rows = stories[story_id]
            trigger = next(r for r in rows if r.entry.id == entry_id)
            upto = [r for r in rows if r.member.id <= trigger.member.id]
            events += [entry_event(trigger), story_event(upto, change, trigger)]
        report.alerts += self.runner.process(session, events, now)

    def backlog(self) -> int:
        with self.sessions() as session:
            return queries.backlog(session)

    def has_backlog(self) -> bool:
        with self.sessions() as session:
            return queries.has_backlog(session)


def _remember(index: StoryIndex, d: Doc, story_id: int, analysed: Analysis | None) -> None:
    feats = index.features(d, analysed)
    index.observe(feats)
    index.add(feats, story_id)
