"""SQLAlchemy models: the database is the source of truth for every stage.

Schedules, story state, rule state and the alert outbox all live here, so a
restart (or a second instance) continues where the last one stopped. The
schema itself is created only by Alembic migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Id = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; INTEGER on SQLite so it stays an alias of rowid."""

_JSON_TYPES = {dict[str, Any]: JSON, list[Any]: JSON}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        from datetime import UTC

        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint named the same way on every backend, so schemas compare equal."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), **_JSON_TYPES}


class DatabaseInfo(Base):
    """One row: the database's random id, set by its first migration (a copy keeps it)."""

    __tablename__ = "database_info"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)


LEASED = text("lease_expires_at IS NOT NULL")
"""Feeds claimed by an instance whose poll has not been stored yet."""


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    state: Mapped[str] = mapped_column(String(20), default="active")
    """active | failing | suspended | disabled | gone | blocked"""
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    next_check_at: Mapped[datetime]
    last_checked_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_outcome: Mapped[str | None] = mapped_column(String(30))
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime | None]
    etag: Mapped[str | None] = mapped_column(String(1024))
    last_modified: Mapped[str | None] = mapped_column(String(200))
    body_hash: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(255), default="", index=True)
    """Politeness unit: per-host concurrency, spacing and `Retry-After` apply here."""
    original_url: Mapped[str | None] = mapped_column(String(2048))
    """The URL as first added, kept after a permanent redirect is adopted."""
    redirect_candidate: Mapped[str | None] = mapped_column(String(2048))
    redirect_seen: Mapped[int] = mapped_column(default=0)
    poll_interval: Mapped[float | None] = mapped_column(Float)
    """The interval last chosen (adaptive, raised by cache hints), reused on 304s."""
    identity_level: Mapped[int] = mapped_column(default=0)
    """Lowest identity key kind trusted: 0 GUID, 1 link, 2 title+date, 3 title+content."""
    identity_strikes: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        Index("ix_feeds_due", "enabled", "next_check_at"),
        # Feeds in flight (leased), per host: every claim counts them, and a lease is
        # cleared when its poll is stored, so this index holds only the fetches under way.
        Index("ix_feeds_leased", "host", "lease_expires_at", sqlite_where=LEASED,
              postgresql_where=LEASED),
    )


class Host(Base):
    """Per-host politeness state that must survive restarts (`Retry-After`)."""

    __tablename__ = "hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    retry_after_until: Mapped[datetime | None]
    last_status: Mapped[int | None]
    updated_at: Mapped[datetime]


class EntryKey(Base):
    """Every identity key an entry was seen under; outlives the entry (tombstone).

    `entry_id` NULL with `ambiguous` false is a tombstone of a pruned entry;
    `ambiguous` marks a key the feed used for several items (never trusted).
    """

    __tablename__ = "entry_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id", ondelete="SET NULL"),
                                                 index=True)
    ambiguous: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (UniqueConstraint("feed_id", "key", name="uq_entry_keys_feed_key"),)


UNCLUSTERED = text("story_id IS NULL AND tombstone_seen_at IS NULL")
"""Entries stored but not yet in a story (tombstones never join one)."""


class Entry(Base):
    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    entry_key: Mapped[str] = mapped_column(String(300))
    """Identity within the feed: `g:<guid>`, `u:<canonical url>` or `h:<hash>`."""
    guid: Mapped[str | None] = mapped_column(String(2048))
    url: Mapped[str | None] = mapped_column(String(2048))
    canonical_url: Mapped[str | None] = mapped_column(String(2048), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    language: Mapped[str | None] = mapped_column(String(20))
    published_at: Mapped[datetime | None]
    event_at: Mapped[datetime]
    """Published/updated time clamped to the fetch time: what windows use."""
    fetched_at: Mapped[datetime] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    revision: Mapped[int] = mapped_column(default=1)
    tombstone_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    """Set once retention pruned the entry to its dedup key; bumped whenever the feed
    still serves it, so the key outlives the feed's memory of the entry."""

    __table_args__ = (
        UniqueConstraint("feed_id", "entry_key", name="uq_entries_feed_key"),
        # The story stage's queue: stored entries not yet clustered, in id order.
        Index("ix_entries_unclustered", "id", sqlite_where=UNCLUSTERED,
              postgresql_where=UNCLUSTERED),
    )


class Story(Base):
    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    source_count: Mapped[int] = mapped_column(default=1)
    entry_count: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(index=True)


class StoryMember(Base):
    """Why an entry belongs to its story: the decision, kept for explanation."""

    __tablename__ = "story_members"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"), unique=True)
    source: Mapped[str] = mapped_column(String(300))
    """The outlet (feed name): source counts are distinct outlets, not entries."""
    similarity: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(30))
    """new_story | exact_guid | exact_url | exact_content | near_copy | cluster"""
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    joined_at: Mapped[datetime]


class Alert(Base):
    """One alert per fingerprint (rule and group key); changes bump `seq`."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    rule_id: Mapped[str] = mapped_column(String(200), index=True)
    group_key: Mapped[str] = mapped_column(String(500))
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="firing")
    severity: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seq: Mapped[int] = mapped_column(default=1)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    first_fired_at: Mapped[datetime]
    last_changed_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    group_labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The rule's `group_by` values for this alert (e.g. country=Ukraine)."""
    story_ids: Mapped[list[Any]] = mapped_column(default=list)
    last_notified_at: Mapped[datetime | None]


class AlertEvent(Base):
    """An alert state change; its payload is frozen so retries send the same bytes."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    """firing | updated | resolved | digest"""
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("alert_id", "seq", name="uq_alert_events_seq"),)


class Delivery(Base):
    """The outbox: one row per (alert change × notifier), each retried on its own."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("alert_events.id", ondelete="CASCADE"))
    notifier: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    """pending | delivered | dead"""
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None]
    requeued_at: Mapped[datetime | None]
    """Set by `storywatch alerts retry`: `max_age` counts from here instead."""

    __table_args__ = (
        UniqueConstraint("event_id", "notifier", name="uq_deliveries_event_notifier"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )


class AlertThread(Base):
    """Where a notifier posted an alert (Slack channel and message `ts`), to reply and edit."""

    __tablename__ = "alert_threads"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    notifier: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(100))
    ts: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("alert_id", "notifier", name="uq_alert_threads_notifier"),)


class RuleState(Base):
    """Open windows and partial sequences of a rule, per group key."""

    __tablename__ = "rule_state"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(200))
    group_key: Mapped[str] = mapped_column(String(500))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("rule_id", "group_key", name="uq_rule_state_key"),)


class Suppression(Base):
    """A rule match that did not notify, and why: analysts can always see what was muted."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(200), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(30))
    """duplicate | inhibited | silenced | outside_active_hours | throttled | digested"""
    event_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Silence(Base):
    """Mutes alerts whose labels match, between two times; who and why are kept."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    matchers: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
