"""Entry identity end to end through the ingestor and a real SQLite file.

Each entry is stored exactly once whatever order and however often a feed
repeats it; repeated GUIDs, unstable GUIDs and pruned entries included.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Entry, EntryKey, Feed
from monitor.feeds import fetch
from monitor.feeds.parse import ParsedFeed, RawEntry
from monitor.feeds.schedule import Policy
from monitor.ingest import Ingestor
from monitor.stories.normalise import LINK

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy(900, 900, 86400, 300, 86400)
OK = fetch.FetchResult(fetch.OK, status=200)


@dataclass
class Store:
    ingestor: Ingestor
    feed_id: int
    clock: Iterator[int]

    def poll(self, entries: list[RawEntry]) -> None:
        now = NOW + timedelta(minutes=next(self.clock))
        self.ingestor.apply(self.feed_id, OK, ParsedFeed("t", entries), None, now)

    def entries(self) -> list[Entry]:
        with self.ingestor.sessions() as s:
            return list(s.scalars(select(Entry).where(Entry.feed_id == self.feed_id)))

    def feed(self) -> Feed:
        with self.ingestor.sessions() as s:
            feed = s.get(Feed, self.feed_id)
            assert feed is not None
            return feed


@functools.cache
def migrated() -> Path:
    """One migrated database, copied for each store: migrations run once per session."""
    path = Path(tempfile.mkdtemp(prefix="identity-")) / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def make_store(tmp: Path) -> Store:
    shutil.copyfile(migrated(), tmp / "identity.db")
    engine = make_engine(f"sqlite:///{tmp / 'identity.db'}")
    sessions = session_factory(engine)
    with sessions.begin() as s:
        feed_id = queries.upsert_feed(s, "http://127.0.0.1/f", "F", [], None, True, NOW).id
    ingestor = Ingestor(sessions, POLICY)
    return Store(ingestor, feed_id, itertools.count())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path)


def raw(i: int, guid: str | None = "auto", link: str | None = "auto", body: str = "body",
        dated: bool = True) -> RawEntry:
    return RawEntry(
        guid=f"guid-{i}" if guid == "auto" else guid,
        link=f"https://example.org/a/{i}" if link == "auto" else link,
        title=f"Article number {i}", summary=f"{body} {i}", content=None,
        published=NOW - timedelta(hours=i) if dated else None)


def test_guid_repeated_for_every_item_falls_back_to_links(store: Store) -> None:
    items = [raw(i, guid="same-for-all") for i in range(4)]
    store.poll(items)
    store.poll(items[1:3])
    store.poll(list(reversed(items)))
    assert len(store.entries()) == 4


def test_homepage_link_for_every_item_uses_guids(store: Store) -> None:
    items = [raw(i, link="https://example.org/") for i in range(3)]
    store.poll(items)
    store.poll(items[:1])
    assert len(store.entries()) == 3


def test_unstable_guids_degrade_to_links(store: Store) -> None:
    for n in range(4):
        store.poll([raw(i, guid=f"session-{n}-{i}") for i in range(3)])
    assert len(store.entries()) == 3
    assert store.feed().identity_level == LINK


def test_no_guid_no_link_uses_title_and_date_then_text(store: Store) -> None:
    store.poll([raw(0, guid=None, link=None), raw(1, guid=None, link=None, dated=False)])
    store.poll([raw(1, guid=None, link=None, dated=False), raw(0, guid=None, link=None)])
    assert len(store.entries()) == 2


def test_changed_content_is_an_update_not_a_new_entry(store: Store) -> None:
    store.poll([raw(0)])
    store.poll([raw(0, body="corrected")])
    [entry] = store.entries()
    assert entry.revision == 2 and "corrected" in (entry.content or "")


def test_pruned_entries_are_not_resurrected(store: Store) -> None:
    store.poll([raw(0), raw(1)])
    with store.ingestor.sessions.begin() as s:
        s.execute(delete(Entry).where(Entry.title == "Article number 0"))
    store.poll([raw(0), raw(1)])
    assert [e.title for e in store.entries()] == ["Article number 1"]
    with store.ingestor.sessions() as s:
        tombstones = s.scalar(select(func.count()).select_from(EntryKey)
                              .where(EntryKey.entry_id.is_(None)))
    assert tombstones and tombstones > 0


ARTICLE = st.tuples(st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(ARTICLE, min_size=1, max_size=8),
       polls=st.lists(st.lists(st.integers(0, 7), max_size=10), min_size=1, max_size=5),
       shared_guid=st.booleans())
def test_any_order_any_number_of_polls_stores_each_once(
        kinds: list[tuple[bool, bool, bool]], polls: list[list[int]],
        shared_guid: bool) -> None:
    """The invariant: an entry seen in any poll is stored once, never twice."""
    articles = [raw(i, guid=("shared" if shared_guid else "auto") if g else None,
                    link="auto" if has_link else None, dated=d)
                for i, (g, has_link, d) in enumerate(kinds)]
    sharing = [i for i, (g, _, _) in enumerate(kinds) if g][:2]
    if shared_guid and len(sharing) == 2:
        # A feed repeating one GUID shows it on several items in every fetch. (Shown on
        # one item per fetch, it is that item's GUID: a new item under it is an update.)
        polls = [[*p, *sharing] for p in polls]
    with tempfile.TemporaryDirectory() as tmp:
        s = make_store(Path(tmp))
        seen: set[int] = set()
        for poll in polls:
            batch = [articles[i % len(articles)] for i in poll]
            s.poll(batch)
            seen |= {i % len(articles) for i in poll}
        titles = sorted(e.title for e in s.entries())
        s.ingestor.sessions.kw["bind"].dispose()
    assert titles == sorted(f"Article number {i}" for i in seen)
