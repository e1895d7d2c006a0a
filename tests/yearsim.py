"""Simulated months of a deployment on generated data, to show retention bounds the database.

Rows are written straight into the schema (entries with bodies, stories and
their members, an alert now and then with its event and delivery), one day
at a time, and the daemon's own upkeep runs after each day at that day's
time. Used by tests/test_retention.py (small) and bench/retention_year.py (a
year of 1,000 feeds).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from monitor import retention
from monitor.config import RetentionConfig
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert, AlertEvent, Delivery, Entry, Feed, Story, StoryMember

START = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(hours=72)
ENTRIES_PER_STORY = 3
STORIES_PER_ALERT = 20
WORDS = ("port", "strike", "ceasefire", "grid", "election", "court", "flood", "market",
         "minister", "talks", "energy", "rail", "storm", "vote", "union", "protest")


@dataclass(frozen=True)
class Day:
    day: int
    size_bytes: int
    entries: int
    tombstones: int
    stories: int


class _Text:
    """Random word salad by slicing one long generated string: cheap per call."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.corpus = " ".join(rng.choice(WORDS) for _ in range(50_000))

    def __call__(self, size: int) -> str:
        start = self.rng.randrange(len(self.corpus) - size)
        return self.corpus[start:start + size]


def simulate(path: Path, feeds: int, per_day: int, days: int, cfg: RetentionConfig,
             body_bytes: int = 1200, seed: int = 7) -> Iterator[Day]:
    """Yield the database's state after each simulated day's upkeep."""
    text = _Text(random.Random(seed))
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.execute(insert(Feed), [
            {"id": f + 1, "url": f"https://feed{f}.example/rss", "name": f"Feed {f}", "tags": [],
             "enabled": True, "state": "active", "next_check_at": START, "created_at": START,
             "consecutive_failures": 0} for f in range(feeds)])
    entry_id = story_id = alert_id = 0
    for day in range(days):
        now = START + timedelta(days=day)
        entries: list[dict[str, Any]] = []
        members: list[dict[str, Any]] = []
        stories: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        for n in range(feeds * per_day):
            entry_id += 1
            if n % ENTRIES_PER_STORY == 0:
                story_id += 1
                stories.append({"id": story_id, "title": text(60), "first_seen_at": now,
                                "last_seen_at": now, "source_count": ENTRIES_PER_STORY,
                                "entry_count": ENTRIES_PER_STORY, "updated_at": now})
                if story_id % STORIES_PER_ALERT == 0:
                    alert_id += 1
                    alerts.append({"id": alert_id, "story": story_id})
            feed = n % feeds + 1
            url = f"https://feed{feed}.example/{entry_id}"
            entries.append({
                "id": entry_id, "feed_id": feed, "entry_key": f"g:{url}", "guid": url,
                "url": url, "canonical_url": url, "title": text(70),
                "summary": text(body_bytes // 4), "content": text(body_bytes),
                "author": None, "tags": [], "language": "en", "published_at": now,
                "event_at": now, "fetched_at": now, "story_id": story_id, "revision": 1,
                "content_hash": hashlib.sha256(str(entry_id).encode()).hexdigest()})
            members.append({"story_id": story_id, "entry_id": entry_id, "source": f"Feed {feed}",
                            "similarity": 1.0, "reason": "cluster", "detail": {},
                            "joined_at": now})
        with sessions.begin() as s:
            s.execute(insert(Story), stories)
            s.execute(insert(Entry), entries)
            s.execute(insert(StoryMember), members)
            _alerts(s, alerts, now, text)
            s.execute(update(Feed).values(last_checked_at=now, last_outcome="ok"))
        retention.upkeep(engine, sessions, cfg, WINDOW, now + timedelta(hours=23))
        with sessions() as s:
            yield Day(day, path.stat().st_size,
                      s.scalar(select(func.count()).select_from(Entry)) or 0,
                      s.scalar(select(func.count()).where(Entry.tombstone_seen_at.is_not(None)))
                      or 0,
                      s.scalar(select(func.count()).select_from(Story)) or 0)
    engine.dispose()


def _alerts(s: Any, alerts: list[dict[str, Any]], now: datetime, text: _Text) -> None:
    if not alerts:
        return
    s.execute(insert(Alert), [
        {"id": a["id"], "fingerprint": f"{a['id']:032x}", "rule_id": "corroborated-story",
         "group_key": f"story:{a['story']}", "story_id": a["story"], "state": "firing",
         "severity": "info", "title": "Story corroborated", "labels": {}, "seq": 1,
         "sources": ["Feed 1", "Feed 2", "Feed 3"], "first_fired_at": now,
         "last_changed_at": now} for a in alerts])
    s.execute(insert(AlertEvent), [
        {"id": a["id"], "alert_id": a["id"], "seq": 1, "kind": "firing",
         "payload": {"summary": text(800)}, "created_at": now} for a in alerts])
    s.execute(insert(Delivery), [
        {"event_id": a["id"], "notifier": "hook", "idempotency_key": f"{a['id']:040x}",
         "status": "delivered", "attempts": 1, "next_attempt_at": now, "created_at": now,
         "delivered_at": now} for a in alerts])
