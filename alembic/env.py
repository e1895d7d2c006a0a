"""Alembic environment: runs on a connection handed in by Storywatch, or on a URL."""

from __future__ import annotations

import os

from sqlalchemy import create_engine

from alembic import context
from monitor.db.engine import normalise_url
from monitor.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("STORYWATCH_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set STORYWATCH_DATABASE_URL or sqlalchemy.url")
    engine = create_engine(normalise_url(url))  # postgres:// → psycopg 3, as the daemon
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
