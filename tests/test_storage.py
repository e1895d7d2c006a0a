"""The database: created only by migrations, SQLite in WAL mode, entries stored once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from monitor.db import queries
from monitor.db.engine import (
    HEAD,
    alembic_config,
    is_current,
    make_engine,
    session_factory,
    upgrade,
)
from monitor.feeds.parse import RawEntry
from monitor.stories.normalise import normalise

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)


def test_migrations_create_the_schema_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    assert not is_current(engine)
    upgrade(engine)
    upgrade(engine)
    assert is_current(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"feeds", "entries", "stories", "story_members", "alerts", "alert_events",
            "deliveries", "rule_state", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_head_is_the_newest_migration(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == HEAD


def test_a_daemon_on_a_current_database_never_imports_alembic(tmp_path: Path) -> None:
    """Only a database that needs migrating loads Alembic (and Mako) into the process."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    script = ("import sys; import monitor.daemon; from monitor.db.engine import make_engine, "
              f"upgrade; upgrade(make_engine({url!r})); "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))")
    first, again = (subprocess.run([sys.executable, "-c", script], capture_output=True,
                                   text=True, check=True).stdout.strip() for _ in range(2))
    assert (first, again) == ("['alembic', 'mako']", "[]")


def test_an_entry_is_stored_once_and_changes_are_updates(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    raw = RawEntry("g1", "https://a.example/1", "Title", None, "Body one")
    changed = RawEntry("g1", "https://a.example/1", "Title", None, "Body two")
    with sessions.begin() as session:
        feed = queries.upsert_feed(session, "https://a.example/feed", "A", [], None, True, NOW)
        (entry,) = normalise([raw], NOW)
        first = queries.store_entry(session, feed.id, entry, entry.key, None, NOW)
        # Which stored entry an item is gets decided by monitor.feeds.identity.
        again = queries.store_entry(session, feed.id, entry, entry.key, first.entry.id, NOW)
        (edited,) = normalise([changed], NOW)
        update = queries.store_entry(session, feed.id, edited, edited.key, first.entry.id,
                                     NOW)
    assert (first.new, again.new, again.updated) == (True, False, False)
    assert (update.new, update.updated, update.entry.revision) == (False, True, 2)
    assert update.entry.id == first.entry.id
