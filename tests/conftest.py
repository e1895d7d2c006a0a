"""Shared fixtures: real local servers, temporary SQLite files, the seeds, the daemon."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip locally when a service or data set is missing; under CI it is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (apt-get install; .ci/run does)")
    assert path is not None
    return path


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def receiver() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


PG_ADMIN = os.environ.get("STORYWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    import uuid

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        need(False, f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
        raise
    name = f"storywatch_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        # A fresh connection: the test may have restarted the server meanwhile.
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def seeds() -> list[tuple[str, str]]:
    """The five seed reports as (headline, body)."""
    need(SEEDS.is_dir(), f"seed reports not found at {SEEDS}")
    out = []
    for path in sorted(SEEDS.glob("0*.txt")):
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln and ln != "spot_img"]
        out.append((lines[0], "\n\n".join(lines[1:])))
    assert len(out) == 5
    return out
