"""Retention keeps the database bounded without letting pruned entries come back as new."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from monitor import retention
from monitor.config import RetentionConfig
from monitor.daemon import Daemon
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Base, Entry, Feed, Story
from monitor.demo.render import Item, rss
from monitor.feeds.parse import parse
from monitor.stories.normalise import normalise
from tests.helpers import count, run_daemon, settings
from tests.servers import Reply, Server
from tests.yearsim import simulate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(hours=72)
CFG = RetentionConfig()
ITEMS = [Item(f"item-{i}", f"Harbour crane collapses at pier {i}", f"Workers evacuated {i}.",
              f"https://port.example/{i}", T0) for i in range(3)]


def database(tmp_path: Path) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'storywatch.db'}")
    upgrade(engine)
    return engine, session_factory(engine)


def fetch(sessions: sessionmaker[Session], feed_id: int, at: datetime) -> list[bool]:
    """Store ITEMS as one parsed fetch at `at`, as ingest does; returns `new` per entry."""
    entries = normalise(parse(rss("Port", "https://port.example/", ITEMS)).entries, at)
    with sessions.begin() as s:
        known = {key: i for key, i in s.execute(select(Entry.entry_key, Entry.id)
                                                .where(Entry.feed_id == feed_id))}
        stored = [queries.store_entry(s, feed_id, e, e.key, known.get(e.key), at).new
                  for e in entries]
    checked(sessions, feed_id, at, "ok")
    return stored


def checked(sessions: sessionmaker[Session], feed_id: int, at: datetime, outcome: str) -> None:
    """Record that the feed's latest fetch happened at `at` and ended in `outcome`."""
    with sessions.begin() as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None
        feed.last_checked_at, feed.last_outcome = at, outcome


def add_feed(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as s:
        return queries.upsert_feed(s, "https://port.example/rss", "Port", [], None, True, T0).id


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine, _ = database(tmp_path)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_pruned_entries_never_come_back_as_new(tmp_path: Path, server: Server) -> None:
    """The real daemon polls, retention prunes, the daemon polls the same feed again."""
    server.routes["/port.xml"] = Reply(body=rss("Port", "https://port.example/", ITEMS),
                                       headers={"Content-Type": "application/rss+xml"})
    cfg = settings(tmp_path, feeds=[{"url": server.url("/port.xml"), "interval": 0.2}])
    db = cfg.resolved_database_url()
    run_daemon(Daemon(cfg), lambda: count(db, Entry) == 3)
    engine = make_engine(db)
    done = retention.prune(session_factory(engine), CFG, WINDOW,
                           datetime.now(UTC) + timedelta(days=100))
    engine.dispose()
    assert done["entries"] == 3 and done["stories"] >= 1
    assert count(db, Story) == 0 and count(db, Entry, Entry.tombstone_seen_at.is_(None)) == 0

    server.routes["/port.xml"] = Reply(  # same items, new body: parsed again, not a 304
        body=rss("Port (mirror)", "https://port.example/", ITEMS),
        headers={"Content-Type": "application/rss+xml"})
    hits = len(server.hits("/port.xml"))
    run_daemon(Daemon(cfg), lambda: len(server.hits("/port.xml")) >= hits + 3)
    assert count(db, Entry) == 3 and count(db, Story) == 0
    assert count(db, Entry, Entry.title == "") == 3


def test_tombstone_outlives_the_feed_serving_it_and_goes_after(tmp_path: Path) -> None:
    engine, sessions = database(tmp_path)
    feed_id = add_feed(sessions)
    assert fetch(sessions, feed_id, T0) == [True, True, True]
    pruned_at = T0 + timedelta(days=91)
    retention.prune(sessions, CFG, WINDOW, pruned_at)

    # The feed keeps serving the items for months: the tombstones stay, nothing is new.
    for week in range(1, 20):
        assert fetch(sessions, feed_id, pruned_at + timedelta(weeks=week)) == [False] * 3
        retention.prune(sessions, CFG, WINDOW, pruned_at + timedelta(weeks=week, hours=1))
    assert len(query_tombstones(sessions)) == 3

    # Then the feed drops them: a parsed body without them, and the grace period passes.
    last = pruned_at + timedelta(weeks=19)
    checked(sessions, feed_id, last + timedelta(hours=1), "ok")
    retention.prune(sessions, CFG, WINDOW, last + timedelta(days=29))
    assert len(query_tombstones(sessions)) == 3
    retention.prune(sessions, CFG, WINDOW, last + timedelta(days=31))
    assert query_tombstones(sessions) == []
    engine.dispose()


def test_tombstones_of_a_feed_answering_304_are_kept(tmp_path: Path) -> None:
    engine, sessions = database(tmp_path)
    feed_id = add_feed(sessions)
    fetch(sessions, feed_id, T0)
    retention.prune(sessions, CFG, WINDOW, T0 + timedelta(days=91))
    checked(sessions, feed_id, T0 + timedelta(days=300), "not_modified")
    retention.prune(sessions, CFG, WINDOW, T0 + timedelta(days=301))
    assert len(query_tombstones(sessions)) == 3
    engine.dispose()


def test_nothing_inside_the_clustering_window_is_pruned() -> None:
    tiny = RetentionConfig(entry_bodies=60, entries=60, stories=60, alerts=60)
    c = retention.cutoffs(tiny, WINDOW, T0)
    assert c.entries == c.stories == T0 - WINDOW - retention.WINDOW_MARGIN


def test_upkeep_gives_freed_pages_back(tmp_path: Path) -> None:
    engine, sessions = database(tmp_path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental
    feed_id = add_feed(sessions)
    with sessions.begin() as s:
        for i in range(1500):
            s.add(Entry(feed_id=feed_id, entry_key=f"g:{i}", title="t", content="x" * 4000,
                        tags=[], event_at=T0, fetched_at=T0, content_hash=f"{i:064x}"))
    before = size(sessions)
    done = retention.upkeep(engine, sessions, CFG, WINDOW, T0 + timedelta(days=91))
    assert done["entries"] == 1500
    assert size(sessions) < before / 4
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
    engine.dispose()


def test_months_of_polling_stay_bounded(tmp_path: Path) -> None:
    """20 feeds × 5 entries a day for 80 days, 10-day retention: size plateaus."""
    cfg = RetentionConfig(entry_bodies=7 * 86400, entries=10 * 86400, stories=10 * 86400,
                          alerts=10 * 86400, tombstones=5 * 86400)
    days = list(simulate(tmp_path / "sim.db", feeds=20, per_day=5, days=80, cfg=cfg))
    plateau = max(d.size_bytes for d in days[30:40])
    assert max(d.size_bytes for d in days[40:]) <= plateau * 1.1
    assert days[-1].entries == days[40].entries  # rows: steady state, not growth
    assert days[-1].entries < 80 * 100 / 3


def query_tombstones(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as s:
        return list(s.scalars(select(Entry.id).where(Entry.tombstone_seen_at.is_not(None))))


def size(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return queries.database_size_bytes(s)


def test_db_upkeep_command(tmp_path: Path) -> None:
    def storywatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor", "--database",
                               f"sqlite:///{tmp_path / 'sw.db'}", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    refused = storywatch("db", "upkeep")
    assert refused.returncode != 0 and "storywatch db upgrade" in refused.stderr
    assert storywatch("db", "upgrade").returncode == 0
    (tmp_path / "rules").mkdir()
    done = storywatch("db", "upkeep")
    assert done.returncode == 0, done.stderr
    assert "entries: 0" in done.stdout and "tombstones: 0" in done.stdout
    assert "rule_state: 0" in done.stdout
    (tmp_path / "rules" / "bad.yaml").write_text("id: x\ntitle: [unclosed\n")
    broken = storywatch("db", "upkeep")
    assert broken.returncode == 0 and "entries: 0" in broken.stdout, broken.stderr
    assert "rule state is not pruned" in broken.stderr and "bad.yaml:3:1" in broken.stderr
