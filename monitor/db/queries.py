"""Every query Storywatch runs, in one place.

Callers pass a Session and plain values; the transaction boundary belongs to
the caller so that a story change and the alert it raises commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.db.models import Alert, AlertEvent, Delivery, Entry, Feed, Story, StoryMember
from monitor.stories.normalise import NormalisedEntry


# -- feeds ---------------------------------------------------------------------
def upsert_feed(session: Session, url: str, name: str, tags: list[str],
                interval: float | None, enabled: bool, now: datetime) -> Feed:
    """Create the feed or update its configured fields (fetch state is kept)."""
    feed = session.scalar(select(Feed).where(Feed.url == url))
    if feed is None:
        feed = Feed(url=url, name=name, tags=tags, interval_seconds=interval, enabled=enabled,
                    next_check_at=now, created_at=now, consecutive_failures=0, state="active")
        session.add(feed)
    else:
        feed.name, feed.tags, feed.interval_seconds = name, tags, interval
        if feed.enabled != enabled:
            feed.enabled = enabled
            feed.state = "active" if enabled else "disabled"
            if enabled:
                feed.next_check_at = now
    session.flush()
    return feed


def claim_due_feeds(session: Session, owner: str, now: datetime, limit: int,
                    lease: timedelta) -> list[Feed]:
    """Lease up to `limit` due feeds, oldest due first.

    `FOR UPDATE SKIP LOCKED` lets several instances claim disjoint sets on
    PostgreSQL; SQLite ignores it (one process owns an SQLite database).
    """
    stmt: Select[tuple[Feed]] = (
        select(Feed)
        .where(Feed.enabled.is_(True), Feed.next_check_at <= now,
               or_(Feed.lease_expires_at.is_(None), Feed.lease_expires_at < now))
        .order_by(Feed.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    feeds = list(session.scalars(stmt))
    for feed in feeds:
        feed.lease_owner = owner
        feed.lease_expires_at = now + lease
    session.flush()
    return feeds


def release_leases(session: Session, owner: str) -> None:
    session.execute(update(Feed).where(Feed.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None))


# -- entries -------------------------------------------------------------------
@dataclass(frozen=True)
class StoredEntry:
    entry: Entry
    new: bool
    updated: bool


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def store_entry(session: Session, feed_id: int, e: NormalisedEntry,
                fetched_at: datetime) -> StoredEntry:
    """Insert an entry once per (feed, key); a changed body is an update, not a new entry."""
    values = {
        "feed_id": feed_id, "entry_key": e.key, "guid": e.guid, "url": e.url,
        "canonical_url": e.canonical_url, "title": e.title, "summary": e.summary,
        "content": e.text, "author": e.author, "tags": list(e.tags), "language": e.language,
        "published_at": e.published, "event_at": e.event_at, "fetched_at": fetched_at,
        "content_hash": e.content_hash, "revision": 1,
    }
    stmt = (_insert(session)(Entry).values(**values)
            .on_conflict_do_nothing(index_elements=["feed_id", "entry_key"])
            .returning(Entry.id))
    new_id = session.scalar(stmt)
    if new_id is not None:
        entry = session.get(Entry, new_id)
        assert entry is not None
        return StoredEntry(entry, new=True, updated=False)
    existing = session.scalar(select(Entry).where(Entry.feed_id == feed_id,
                                                  Entry.entry_key == e.key))
    assert existing is not None
    if existing.tombstone_seen_at is not None:  # pruned: its key keeps it from coming back
        existing.tombstone_seen_at = fetched_at
        return StoredEntry(existing, new=False, updated=False)
    if existing.content_hash == e.content_hash or existing.content is None:
        return StoredEntry(existing, new=False, updated=False)
    existing.title, existing.summary, existing.content = e.title, e.summary, e.text
    existing.content_hash = e.content_hash
    existing.revision += 1
    return StoredEntry(existing, new=False, updated=True)


# -- stories -------------------------------------------------------------------
def create_story(session: Session, title: str, at: datetime, now: datetime) -> Story:
    story = Story(title=title, first_seen_at=at, last_seen_at=at, source_count=0,
                  entry_count=0, updated_at=now)
    session.add(story)
    session.flush()
    return story


def add_member(session: Session, story: Story, entry: Entry, source: str, similarity: float,
               reason: str, detail: dict[str, Any], now: datetime) -> bool:
    """Add an entry to a story; returns True when it brings a new source."""
    sources = set(session.scalars(select(StoryMember.source)
                                  .where(StoryMember.story_id == story.id)))
    session.add(StoryMember(story_id=story.id, entry_id=entry.id, source=source,
                            similarity=similarity, reason=reason, detail=detail, joined_at=now))
    entry.story_id = story.id
    new_source = source not in sources
    story.entry_count += 1
    story.source_count = len(sources | {source})
    story.first_seen_at = min(story.first_seen_at, entry.event_at)
    story.last_seen_at = max(story.last_seen_at, entry.event_at)
    story.updated_at = now
    session.flush()
    return new_source


@dataclass(frozen=True)
class MemberRow:
    entry: Entry
    member: StoryMember
    feed_name: str
    feed_tags: list[Any]


def story_members(session: Session, story_id: int) -> list[MemberRow]:
    rows = session.execute(
        select(Entry, StoryMember, Feed.name, Feed.tags)
        .join(StoryMember, StoryMember.entry_id == Entry.id)
        .join(Feed, Feed.id == Entry.feed_id)
        .where(StoryMember.story_id == story_id)
        .order_by(Entry.event_at, Entry.id))
    return [MemberRow(e, m, name, tags) for e, m, name, tags in rows]


def window_entries(session: Session, since: datetime) -> Iterable[tuple[Entry, str]]:
    """Entries with a story since `since`, in time order: the clustering state to rebuild."""
    return session.execute(  # type: ignore[return-value]
        select(Entry, StoryMember.source)
        .join(StoryMember, StoryMember.entry_id == Entry.id)
        .where(Entry.event_at >= since)
        .order_by(Entry.event_at, Entry.id)
        .execution_options(yield_per=1000))


# -- alerts and the outbox -----------------------------------------------------
def alert_by_fingerprint(session: Session, fingerprint: str) -> Alert | None:
    return session.scalar(select(Alert).where(Alert.fingerprint == fingerprint))


def add_alert_event(session: Session, alert: Alert, kind: str, payload: dict[str, Any],
                    notifiers: Sequence[str], keys: Sequence[str], now: datetime) -> AlertEvent:
    """Record an alert change and its outbox rows in the caller's transaction."""
    event = AlertEvent(alert_id=alert.id, seq=alert.seq, kind=kind, payload=payload,
                       created_at=now)
    session.add(event)
    session.flush()
    for name, key in zip(notifiers, keys, strict=True):
        session.add(Delivery(event_id=event.id, notifier=name, idempotency_key=key,
                             status="pending", attempts=0, next_attempt_at=now, created_at=now))
    session.flush()
    return event


def claim_deliveries(session: Session, owner: str, now: datetime, limit: int,
                     lease: timedelta) -> list[tuple[Delivery, AlertEvent]]:
    """Lease due outbox rows (oldest first), skipping rows another worker holds."""
    rows = session.execute(
        select(Delivery, AlertEvent)
        .join(AlertEvent, AlertEvent.id == Delivery.event_id)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now,
               or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)).all()
    for delivery, _ in rows:
        delivery.lease_owner = owner
        delivery.lease_expires_at = now + lease
    session.flush()
    return [(d, ev) for d, ev in rows]


def outbox_stats(session: Session, now: datetime) -> tuple[int, float, int]:
    """(pending rows, age in seconds of the oldest pending row, dead letters)."""
    pending, oldest = session.execute(
        select(func.count(), func.min(Delivery.created_at))
        .where(Delivery.status == "pending")).one()
    dead = session.scalar(select(func.count()).where(Delivery.status == "dead")) or 0
    age = (now - oldest).total_seconds() if oldest else 0.0
    return int(pending), max(0.0, age), int(dead)


def counts(session: Session) -> dict[str, int]:
    """Headline numbers for status lines and `/readyz`."""
    return {
        "feeds": session.scalar(select(func.count()).select_from(Feed)) or 0,
        "entries": session.scalar(select(func.count()).select_from(Entry)) or 0,
        "stories": session.scalar(select(func.count()).select_from(Story)) or 0,
        "alerts": session.scalar(select(func.count()).select_from(Alert)) or 0,
        "pending_deliveries": session.scalar(
            select(func.count()).where(Delivery.status == "pending")) or 0,
    }


def feeds_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Feed.state, func.count()).group_by(Feed.state))
    return {state: n for state, n in rows}


def list_feeds(session: Session) -> list[Feed]:
    return list(session.scalars(select(Feed).order_by(Feed.id)))


def list_stories(session: Session, limit: int, min_sources: int = 1) -> list[Story]:
    return list(session.scalars(
        select(Story).where(Story.source_count >= min_sources)
        .order_by(Story.last_seen_at.desc(), Story.id.desc()).limit(limit)))


def list_alerts(session: Session, limit: int) -> list[tuple[Alert, int, int, int]]:
    """Alerts with their delivery counts: (alert, delivered, pending, dead)."""
    def count_of(status: str) -> Any:
        return func.coalesce(func.sum(case((Delivery.status == status, 1), else_=0)), 0)

    rows = session.execute(
        select(Alert, count_of("delivered"), count_of("pending"), count_of("dead"))
        .outerjoin(AlertEvent, AlertEvent.alert_id == Alert.id)
        .outerjoin(Delivery, Delivery.event_id == AlertEvent.id)
        .group_by(Alert.id)
        .order_by(Alert.last_changed_at.desc(), Alert.id.desc()).limit(limit))
    return [(a, int(d), int(p), int(x)) for a, d, p, x in rows]



# -- operations ----------------------------------------------------------------
def alerts_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Alert.state, func.count()).group_by(Alert.state))
    return {state: n for state, n in rows}


def last_successful_poll(session: Session) -> datetime | None:
    """When any feed last fetched successfully: survives restarts, unlike a counter."""
    return session.scalar(select(func.max(Feed.last_success_at)))


def database_size_bytes(session: Session) -> int:
    """Bytes the database occupies (SQLite: its pages; PostgreSQL: pg_database_size)."""
    if session.get_bind().dialect.name == "postgresql":
        return int(session.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    pages = session.scalar(text("PRAGMA page_count")) or 0
    size = session.scalar(text("PRAGMA page_size")) or 0
    return int(pages) * int(size)


def ping(session: Session) -> None:
    """A round trip that would block where writes block (SQLite: the write lock).

    The caller rolls back; nothing is written.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    session.execute(text("SELECT count(*) FROM alembic_version"))


# -- retention -----------------------------------------------------------------
def prune_entry_bodies(session: Session, before: datetime, limit: int) -> int:
    """Drop summary and text of entries fetched before `before`; returns rows changed."""
    ids = select(Entry.id).where(Entry.fetched_at < before, Entry.tombstone_seen_at.is_(None),
                                 or_(Entry.content.is_not(None), Entry.summary.is_not(None))
                                 ).limit(limit).scalar_subquery()
    result = session.execute(update(Entry).where(Entry.id.in_(ids))
                             .values(content=None, summary=None)
                             .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def tombstone_entries(session: Session, before: datetime, stories_before: datetime,
                      now: datetime, limit: int) -> int:
    """Reduce old entries outside any live story to their dedup key (feed, entry_key)."""
    closed = select(Story.id).where(Story.updated_at < stories_before)
    ids = list(session.scalars(
        select(Entry.id).where(Entry.fetched_at < before, Entry.tombstone_seen_at.is_(None),
                               or_(Entry.story_id.is_(None), Entry.story_id.in_(closed)))
        .limit(limit)))
    if not ids:
        return 0
    session.execute(delete(StoryMember).where(StoryMember.entry_id.in_(ids)))
    session.execute(update(Entry).where(Entry.id.in_(ids)).values(
        title="", guid=None, url=None, canonical_url=None, summary=None, content=None,
        author=None, tags=[], language=None, published_at=None, story_id=None,
        tombstone_seen_at=now).execution_options(synchronize_session=False))
    return len(ids)


def delete_old_alerts(session: Session, before: datetime, limit: int) -> int:
    """Alerts unchanged since `before` with nothing left to deliver (events cascade)."""
    pending = select(AlertEvent.alert_id).join(Delivery, Delivery.event_id == AlertEvent.id
                                               ).where(Delivery.status == "pending")
    ids = list(session.scalars(select(Alert.id).where(Alert.last_changed_at < before,
                                                      Alert.id.not_in(pending)).limit(limit)))
    if ids:
        session.execute(delete(Alert).where(Alert.id.in_(ids)))
    return len(ids)


def delete_closed_stories(session: Session, before: datetime, limit: int) -> int:
    """Stories unchanged since `before` that no entry or alert refers to any more."""
    members = select(StoryMember.story_id).where(StoryMember.story_id == Story.id).exists()
    entries = select(Entry.id).where(Entry.story_id == Story.id).exists()
    alerts = select(Alert.id).where(Alert.story_id == Story.id).exists()
    ids = list(session.scalars(select(Story.id).where(Story.updated_at < before, ~members,
                                                      ~entries, ~alerts).limit(limit)))
    if ids:
        session.execute(delete(Story).where(Story.id.in_(ids)))
    return len(ids)


def delete_tombstones(session: Session, before: datetime, limit: int) -> int:
    """Tombstones their feed has provably stopped serving, seen last before `before`.

    Proof: the feed's latest fetch parsed a body (`ok`) after the tombstone was
    last seen, and that body did not bump it. Feeds answering 304 keep theirs.
    """
    dropped = select(Feed.id).where(Feed.id == Entry.feed_id, Feed.last_outcome == "ok",
                                    Feed.last_checked_at > Entry.tombstone_seen_at).exists()
    ids = list(session.scalars(select(Entry.id).where(Entry.tombstone_seen_at < before, dropped)
                               .limit(limit)))
    if ids:
        session.execute(delete(Entry).where(Entry.id.in_(ids)))
    return len(ids)


def compact(conn: Connection) -> None:
    """SQLite upkeep on an autocommit connection: reclaim free pages, refresh statistics.

    New databases use incremental auto-vacuum (see engine.py); an older one is
    converted by one full VACUUM once a fifth of it is free pages.
    PostgreSQL leaves this to autovacuum.
    """
    if conn.dialect.name != "sqlite":
        return
    mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
    if mode == 2:
        # executescript steps the pragma to the end; execute() frees a single page.
        raw: Any = conn.connection.driver_connection
        raw.executescript("PRAGMA incremental_vacuum;")
    else:
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
        if free * 5 > pages:
            conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            conn.exec_driver_sql("VACUUM")
    conn.exec_driver_sql("PRAGMA analysis_limit=1000")
    conn.exec_driver_sql("ANALYZE")
    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
