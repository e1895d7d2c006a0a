"""Retention and upkeep: months of polling must not fill the disk.

Old entry bodies are dropped, old entries of closed stories shrink to
tombstones that keep only their dedup key (so a feed that still serves them
never makes them new again), closed stories, finished alerts and spent rule
state go, and the SQLite file gives the freed pages back. Each step works in
small batches, one transaction each, so ingest waits at most one batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from monitor import metrics
from monitor.config import RetentionConfig
from monitor.db import queries
from monitor.rules.live import RuleRunner

log = logging.getLogger(__name__)

WINDOW_MARGIN = timedelta(days=1)
"""Nothing the clustering window still looks at is ever pruned."""


@dataclass(frozen=True)
class Cutoffs:
    entry_bodies: datetime
    entries: datetime
    stories: datetime
    alerts: datetime
    tombstones: datetime


def cutoffs(cfg: RetentionConfig, window: timedelta, now: datetime) -> Cutoffs:
    floor = window + WINDOW_MARGIN

    def before(seconds: float) -> datetime:
        return now - max(timedelta(seconds=seconds), floor)

    return Cutoffs(before(cfg.entry_bodies), before(cfg.entries), before(cfg.stories),
                   before(cfg.alerts), now - timedelta(seconds=cfg.tombstones))


def _drain(sessions: sessionmaker[Session], step: Callable[[Session], int], batch: int) -> int:
    """Run one pruning step batch after batch until a batch comes back short."""
    total = 0
    while True:
        with sessions.begin() as session:
            n = step(session)
        total += n
        if n < batch:
            return total


def _prune_rule_state(sessions: sessionmaker[Session], runner: RuleRunner, now: datetime,
                      batch: int) -> int:
    """Spent rule state (`RuleRunner.prune`), a batch of rows at a time."""
    total, after = 0, 0
    while True:
        with sessions.begin() as session:
            queries.serialise(session, queries.INGEST_LOCK)  # rule state has one writer
            n, after = runner.prune(session, now, after, batch)
        total += n
        if not after:
            return total


def prune(sessions: sessionmaker[Session], cfg: RetentionConfig, window: timedelta,
          now: datetime, runner: RuleRunner | None = None) -> dict[str, int]:
    """Apply every retention rule once; returns rows affected per kind.

    With the daemon's `runner`, rule state no alert can need any more goes too."""
    c, n = cutoffs(cfg, window, now), cfg.batch
    steps: dict[str, Callable[[Session], int]] = {
        "entry_bodies": lambda s: queries.prune_entry_bodies(s, c.entry_bodies, n),
        "entries": lambda s: queries.tombstone_entries(s, c.entries, c.stories, now, n),
        "alerts": lambda s: queries.delete_old_alerts(s, c.alerts, n),
        "stories": lambda s: queries.delete_closed_stories(s, c.stories, n),
        "tombstones": lambda s: queries.delete_tombstones(s, c.tombstones, n),
    }
    done = {kind: _drain(sessions, step, n) for kind, step in steps.items()}
    if runner is not None:
        done["rule_state"] = _prune_rule_state(sessions, runner, now, n)
    for kind, count in done.items():
        metrics.PRUNED.labels(kind).inc(count)
    return done


def compact(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        queries.compact(conn)


def upkeep(engine: Engine, sessions: sessionmaker[Session], cfg: RetentionConfig,
           window: timedelta, now: datetime, runner: RuleRunner | None = None) -> dict[str, int]:
    """Prune, then VACUUM/ANALYZE; the daemon runs this every `retention.interval`."""
    started = time.perf_counter()
    done = prune(sessions, cfg, window, now, runner) if cfg.enabled else {}
    compact(engine)
    metrics.UPKEEP_DURATION.observe(time.perf_counter() - started)
    metrics.LAST_UPKEEP.set(time.time())
    with sessions() as session:
        metrics.DB_SIZE.set(queries.database_size_bytes(session))
    log.info("upkeep done", extra={**done, "seconds": round(time.perf_counter() - started, 2)})
    return done
