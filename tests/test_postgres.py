"""PostgreSQL as a first-class backend: same migrations, same schema, same results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from monitor.daemon import Daemon, StartupError
from monitor.db.engine import is_current, make_engine, upgrade
from monitor.db.models import Alert, Base, Entry, Story
from tests.helpers import ROOT, count, query, run_daemon, seed_feeds, settings
from tests.servers import Server


def schema(url: str) -> dict[str, tuple[set[str], set[str]]]:
    """Tables with their column names and unique/index names."""
    engine = make_engine(url)
    insp = inspect(engine)
    out = {}
    for table in insp.get_table_names():
        cols = {c["name"] for c in insp.get_columns(table)}
        idx = {i["name"] or "" for i in insp.get_indexes(table)}
        idx |= {u["name"] or "" for u in insp.get_unique_constraints(table)}
        out[table] = (cols, idx)
    engine.dispose()
    return out


def drift(url: str) -> list[object]:
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return list(diff)


def test_same_migrations_give_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'a.db'}"
    for url in (sqlite_url, pg_url):
        engine = make_engine(url)
        upgrade(engine)
        assert is_current(engine)
        engine.dispose()
        assert drift(url) == [], f"models and migrations disagree on {url.split(':')[0]}"
        check = subprocess.run([sys.executable, "-m", "alembic", "-c", "alembic.ini", "check"],
                               cwd=ROOT, env={**os.environ, "STORYWATCH_DATABASE_URL": url},
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "No new upgrade operations detected" in check.stdout + check.stderr
    assert schema(sqlite_url) == schema(pg_url)


def test_seeds_on_postgres_match_sqlite(tmp_path: Path, server: Server, receiver: Server,
                                        seeds: list[tuple[str, str]], pg_url: str) -> None:
    feeds = seed_feeds(server, seeds)
    cfg = settings(tmp_path, feeds=feeds, receiver=receiver, database_url=pg_url)
    daemon = Daemon(cfg)

    def done() -> bool:
        energy = {r.json()["seq"] for r in receiver.hits("/hook")
                  if r.json()["rule"]["id"] == "energy-strike-after-ceasefire"}
        return len(energy) >= 4 and all(len(server.hits(f"/seed{i}.xml")) >= 2
                                        for i in range(5))

    run_daemon(daemon, done, timeout=60)
    assert count(pg_url, Entry) == 5
    assert [(s, e) for s, e in query(pg_url, select(Story.source_count, Story.entry_count))] \
        == [(5, 5)]
    assert len(query(pg_url, select(Alert).where(
        Alert.rule_id == "energy-strike-after-ceasefire"))) == 1


def test_second_instance_on_one_sqlite_file_refuses(tmp_path: Path) -> None:
    first = Daemon(settings(tmp_path))
    first.prepare()
    second = Daemon(settings(tmp_path))
    try:
        second.prepare()
    except StartupError as exc:
        assert "another Storywatch instance (pid " in str(exc)
        assert "use PostgreSQL" in str(exc)
    else:
        raise AssertionError("second instance started on the same SQLite file")
    finally:
        if first._lock:
            first._lock.close()
