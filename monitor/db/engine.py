"""Engine and session set-up, and bringing a database to the head migration."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from monitor.db.queries import SETUP_LOCK
from monitor.resources import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

HEAD = "0008_leased_feeds"
"""The newest migration. A database at it needs no Alembic: the daemon then never imports
it, which with its template engine would be 12 MB carried for the process's lifetime
(`tests/test_storage.py` holds this to Alembic's own head)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_STATEMENT_TIMEOUT_MS = 60_000


def normalise_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3, the driver Storywatch ships with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    PostgreSQL connections are checked before use (so a server restart costs one
    failed ping, not a failed transaction) and carry a statement timeout so a
    stuck query cannot hang a tick forever.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on new databases
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_recycle", 1800)
        kwargs.setdefault("connect_args", {
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
            "application_name": application_name(), "connect_timeout": 10})
    return create_engine(url, pool_pre_ping=True, **kwargs)


def application_name() -> str:
    """`storywatch HOST:PID`: in `pg_stat_activity`, which instance of a fleet holds a
    connection, a lock (the ingest lock, say) or a slow query."""
    return f"storywatch {socket.gethostname()}:{os.getpid()}"[:63]  # NAMEDATALEN - 1


class InstanceLocked(Exception):
    """Another process already runs Storywatch on this SQLite database."""


def lock_sqlite(engine: Engine) -> IO[str] | None:
    """Hold an exclusive lock next to an SQLite database for the process lifetime.

    SQLite is the embedded, one-instance backend: a second daemon on the same
    file would poll every feed twice. Returns the open lock file (keep it
    referenced) or None for other backends.
    """
    if engine.url.get_backend_name() != "sqlite" or not engine.url.database:
        return None
    if engine.url.database == ":memory:":
        return None
    path = Path(engine.url.database).with_suffix(Path(engine.url.database).suffix + ".lock")
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InstanceLocked(
            f"another Storywatch instance ({holder}) is using {engine.url.database}; "
            "SQLite supports one instance - use PostgreSQL to run several") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config  # only when migrating (see HEAD)

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest migration (idempotent)."""
    if is_current(engine):
        return
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # instances starting together: one migrates
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETUP_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
