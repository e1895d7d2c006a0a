"""Every query Storywatch runs, in one place.

Callers pass a Session and plain values; the transaction boundary belongs to
the caller so that a story change and the alert it raises commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler

from monitor.db.models import (
    UNCLUSTERED,
    Alert,
    AlertEvent,
    AlertThread,
    DatabaseInfo,
    Delivery,
    Entry,
    EntryKey,
    Feed,
    Host,
    RuleState,
    Silence,
    Story,
    StoryMember,
    Suppression,
)
from monitor.feeds.hosts import host_of
from monitor.feeds.identity import Known
from monitor.stories.normalise import NormalisedEntry

_IN_CHUNK = 500
ENTRIES = cast(Table, Entry.__table__)
"""Core tables for bulk statements: rows in, no ORM objects out."""
ENTRY_KEYS = cast(Table, EntryKey.__table__)
FEEDS = cast(Table, Feed.__table__)
STORIES = cast(Table, Story.__table__)
MEMBERS = cast(Table, StoryMember.__table__)


# -- feeds ---------------------------------------------------------------------
def upsert_feed(session: Session, url: str, name: str, tags: list[str],
                interval: float | None, enabled: bool, now: datetime) -> Feed:
    """Create the feed or update its configured fields (fetch state is kept)."""
    feed = session.scalar(select(Feed).where(or_(Feed.url == url, Feed.original_url == url))
                          .order_by(Feed.id).limit(1))
    if feed is None:
        feed = Feed(url=url, name=name, tags=tags, interval_seconds=interval, enabled=enabled,
                    next_check_at=now, created_at=now, consecutive_failures=0, state="active",
                    host=host_of(url), redirect_seen=0, identity_level=0, identity_strikes=0)
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


def feeds_by_id(session: Session, ids: Sequence[int]) -> dict[int, Feed]:
    """Load a group of feeds in one query."""
    out: dict[int, Feed] = {}
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), _IN_CHUNK):
        out.update((f.id, f) for f in session.scalars(
            select(Feed).where(Feed.id.in_(wanted[i:i + _IN_CHUNK]))))
    return out


@dataclass(frozen=True)
class Claim:
    """A claimed feed: what its poll needs, detached from any session."""

    feed_id: int
    url: str
    host: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    due: datetime


_CLAIM = (
    select(Feed.id, Feed.url, Feed.host, Feed.etag, Feed.last_modified, Feed.body_hash,
           Feed.next_check_at)
    .outerjoin(Host, Host.host == Feed.host)
    .where(Feed.enabled.is_(True), Feed.next_check_at <= bindparam("now"),
           or_(Feed.lease_expires_at.is_(None), Feed.lease_expires_at < bindparam("now")),
           or_(Host.retry_after_until.is_(None), Host.retry_after_until <= bindparam("now")))
    .order_by(Feed.next_check_at)
    .limit(bindparam("rows"))
    .with_for_update(skip_locked=True, of=Feed)
)
"""Statements built once: building one costs more CPU than SQLite spends running it."""
_LEASE = (update(FEEDS).where(FEEDS.c.id.in_(bindparam("ids", expanding=True)))
          .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until")))
_LEASES = (select(Feed.host, func.count()).where(Feed.lease_expires_at > bindparam("now"))
           .group_by(Feed.host))


def claim_due_feeds(session: Session, owner: str, now: datetime, limit: int,
                    lease: timedelta, room: Callable[[str], int] | None = None,
                    ) -> tuple[list[Claim], datetime | None]:
    """Lease up to `limit` due feeds, oldest due first, skipping held hosts.

    Hosts that sent `Retry-After` are skipped until it passes; `room(host)`
    says how many more fetches a host may take now (the per-host cap).
    `FOR UPDATE SKIP LOCKED` lets several instances claim disjoint sets on
    PostgreSQL; SQLite ignores it (one process owns an SQLite database).
    Also returns when the oldest due feed left unclaimed was due (the schedule
    lag's source), read from the same rows: one more row than can be claimed is
    read. Plain rows and one UPDATE, no ORM objects: a claim runs every few polls.
    """
    left: dict[str, int] = {}
    claims: list[Claim] = []
    oldest: datetime | None = None
    rows = (limit * 4 if room else limit) + 1
    for row in session.execute(_CLAIM, {"now": now, "rows": rows}):
        claim = Claim(*row)
        if len(claims) < limit:
            if room is None:
                claims.append(claim)
                continue
            left.setdefault(claim.host, room(claim.host))
            if left[claim.host] > 0:
                left[claim.host] -= 1
                claims.append(claim)
                continue
        if oldest is None:
            oldest = claim.due
    if claims:
        session.execute(_LEASE, {"ids": [c.feed_id for c in claims], "owner": owner,
                                 "until": now + lease})
    return claims, oldest


def leases_by_host(session: Session, now: datetime) -> dict[str, int]:
    """Feeds in flight per host across every instance: their leases are live."""
    return {h: n for h, n in session.execute(_LEASES, {"now": now})}


def hold_host(session: Session, host: str, until: datetime, status: int | None,
              now: datetime) -> None:
    """Record a host's `Retry-After`; a later hold never shortens an earlier one."""
    row = session.get(Host, host)
    if row is None:
        session.add(Host(host=host, retry_after_until=until, last_status=status, updated_at=now))
    else:
        if row.retry_after_until is None or row.retry_after_until < until:
            row.retry_after_until = until
        row.last_status, row.updated_at = status, now
    session.flush()


def held_hosts(session: Session, now: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Host)
                          .where(Host.retry_after_until > now)) or 0


def url_taken(session: Session, url: str, feed_id: int) -> bool:
    return session.scalar(select(Feed.id).where(Feed.url == url, Feed.id != feed_id)
                          .limit(1)) is not None


def find_feed(session: Session, ref: str) -> Feed | None:
    """A feed by id or by (current or original) URL."""
    if ref.isdigit():
        return session.get(Feed, int(ref))
    return session.scalar(select(Feed).where(or_(Feed.url == ref, Feed.original_url == ref))
                          .order_by(Feed.id).limit(1))


def delete_feed(session: Session, feed: Feed) -> None:
    """Delete a feed; its entries and keys go with it (ON DELETE CASCADE)."""
    session.execute(delete(Feed).where(Feed.id == feed.id))


def release_leases(session: Session, owner: str) -> None:
    """On a clean stop: the next start takes over this worker's feeds and deliveries at once."""
    session.execute(update(Feed).where(Feed.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None))
    session.execute(update(Delivery).where(Delivery.lease_owner == owner,
                                           Delivery.status == "pending")
                    .values(lease_owner=None, lease_expires_at=None))


# -- entries -------------------------------------------------------------------
@dataclass(frozen=True)
class StoredEntry:
    entry: Entry
    new: bool
    updated: bool


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


_KNOWN_KEYS = (select(EntryKey.key, EntryKey.entry_id, EntryKey.ambiguous)
               .where(EntryKey.feed_id == bindparam("feed"),
                      EntryKey.key.in_(bindparam("keys", expanding=True))))
"""One cached statement for every lookup; only the expanded keys differ. (A row-value
IN over (feed, key) pairs would do it in one query, but SQLite scans the table for it.)"""


def known_keys(session: Session,
               wanted: Mapping[int, Iterable[str]]) -> dict[int, dict[str, Known]]:
    """What each feed's key index holds for its keys (entries, tombstones, ambiguous keys)."""
    out: dict[int, dict[str, Known]] = {}
    for feed_id, keys in wanted.items():
        found = out[feed_id] = {}
        ordered = sorted(set(keys))
        for i in range(0, len(ordered), _IN_CHUNK):
            for key, entry_id, ambiguous in session.execute(
                    _KNOWN_KEYS, {"feed": feed_id, "keys": ordered[i:i + _IN_CHUNK]}):
                found[key] = Known(entry_id, bool(ambiguous))
    return out


_REMEMBER: dict[str, SQLCompiler] = {}
"""The key insert compiled once per dialect (see `remember_keys`)."""
_KEY_COLUMNS = ("feed_id", "key", "entry_id", "ambiguous")


def remember_keys(session: Session,
                  entries: Iterable[tuple[int, int, Iterable[str]]]) -> None:
    """Index entries under their keys, as (feed, entry, keys); known keys keep their entry.

    The rows go to the driver's executemany as they are: SQLAlchemy would process
    every parameter of every row in Python, which costs more than the insert itself
    at tens of thousands of keys per group commit, and these plain ints, strings and
    booleans need no conversion.
    """
    rows = [(feed_id, k, entry_id, False) for feed_id, entry_id, keys in entries for k in keys]
    if not rows:
        return
    conn = session.connection()
    compiled = _REMEMBER.get(conn.dialect.name)
    if compiled is None:
        stmt = _insert(session)(ENTRY_KEYS).on_conflict_do_nothing(
            index_elements=["feed_id", "key"])
        compiled = _REMEMBER[conn.dialect.name] = cast(SQLCompiler, stmt.compile(
            dialect=conn.dialect, column_keys=list(_KEY_COLUMNS)))
    if compiled.positional:
        order = [_KEY_COLUMNS.index(name) for name in compiled.positiontup or ()]
        conn.exec_driver_sql(str(compiled), [tuple(row[i] for i in order) for row in rows])
    else:
        conn.exec_driver_sql(str(compiled), [dict(zip(_KEY_COLUMNS, row, strict=True))
                                             for row in rows])


def mark_ambiguous(session: Session, feed_id: int, keys: Iterable[str]) -> None:
    """Keys a feed used for several items at once: never trusted again."""
    rows = [{"feed_id": feed_id, "key": k, "entry_id": None, "ambiguous": True} for k in keys]
    if rows:
        stmt = _insert(session)(EntryKey).values(rows)
        session.execute(stmt.on_conflict_do_update(index_elements=["feed_id", "key"],
                                                   set_={"ambiguous": True}))


def _entry_values(feed_id: int, key: str, e: NormalisedEntry,
                  fetched_at: datetime) -> dict[str, Any]:
    return {
        "feed_id": feed_id, "entry_key": key, "guid": e.guid, "url": e.url,
        "canonical_url": e.canonical_url, "title": e.title, "summary": e.summary,
        "content": e.text, "author": e.author, "tags": list(e.tags), "language": e.language,
        "published_at": e.published, "event_at": e.event_at, "fetched_at": fetched_at,
        "content_hash": e.content_hash, "revision": 1,
    }


def insert_entries(session: Session, items: Sequence[tuple[int, NormalisedEntry, str]],
                   fetched_at: datetime) -> list[int]:
    """Insert new entries, each (feed, entry, key), in one statement; their ids in order.

    Ids are matched back by (feed, key), which is unique: asking for RETURNING in
    parameter order instead makes SQLAlchemy insert one row per statement on SQLite.
    """
    if not items:
        return []
    rows = [_entry_values(feed_id, key, e, fetched_at) for feed_id, e, key in items]
    ids = {(feed_id, key): entry_id for entry_id, feed_id, key in session.execute(
        insert(ENTRIES).returning(ENTRIES.c.id, ENTRIES.c.feed_id, ENTRIES.c.entry_key), rows)}
    return [ids[feed_id, key] for feed_id, _, key in items]


@dataclass(frozen=True)
class EntryVersion:
    """What deciding "same, updated or pruned" needs of a stored entry."""

    content_hash: str
    has_content: bool
    tombstoned: bool

    def changed(self, content_hash: str) -> EntryVersion:
        return EntryVersion(content_hash, self.has_content, self.tombstoned)


def entry_versions(session: Session, ids: Sequence[int]) -> dict[int, EntryVersion]:
    wanted = sorted(set(ids))
    out: dict[int, EntryVersion] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        rows = session.execute(select(Entry.id, Entry.content_hash, Entry.content.is_not(None),
                                      Entry.tombstone_seen_at.is_not(None))
                               .where(Entry.id.in_(wanted[i:i + _IN_CHUNK])))
        for entry_id, content_hash, has_content, tombstoned in rows:
            out[entry_id] = EntryVersion(content_hash, bool(has_content), bool(tombstoned))
    return out


@dataclass(frozen=True)
class EntryUpdate:
    entry_id: int
    item: NormalisedEntry


def update_entries(session: Session, updates: Sequence[EntryUpdate]) -> None:
    """Record changed content (title, text, hash) and bump each entry's revision."""
    if not updates:
        return
    session.execute(
        update(ENTRIES).where(ENTRIES.c.id == bindparam("b_id")).values(
            title=bindparam("b_title"), summary=bindparam("b_summary"),
            content=bindparam("b_content"), content_hash=bindparam("b_hash"),
            revision=ENTRIES.c.revision + 1),
        [{"b_id": u.entry_id, "b_title": u.item.title, "b_summary": u.item.summary,
          "b_content": u.item.text, "b_hash": u.item.content_hash} for u in updates])


def mark_tombstones_seen(session: Session, ids: Iterable[int], now: datetime) -> None:
    """Pruned entries their feed still serves: the key must outlive the feed's memory."""
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), _IN_CHUNK):
        session.execute(update(Entry).where(Entry.id.in_(wanted[i:i + _IN_CHUNK]))
                        .values(tombstone_seen_at=now)
                        .execution_options(synchronize_session=False))


def update_entry(session: Session, entry_id: int, e: NormalisedEntry,
                 fetched_at: datetime) -> StoredEntry:
    """An existing entry seen again: an update when its content changed."""
    existing = session.get(Entry, entry_id)
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


def store_entry(session: Session, feed_id: int, e: NormalisedEntry, key: str,
                entry_id: int | None, fetched_at: datetime) -> StoredEntry:
    """Insert a new entry under `key`, or update entry `entry_id` when its content changed."""
    if entry_id is not None:
        return update_entry(session, entry_id, e, fetched_at)
    [new_id] = insert_entries(session, [(feed_id, e, key)], fetched_at)
    entry = session.get(Entry, new_id)
    assert entry is not None
    return StoredEntry(entry, new=True, updated=False)


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


DOC_COLUMNS = (Entry.id, Entry.title, Entry.content, Entry.event_at, Entry.guid,
               Entry.canonical_url, Entry.content_hash)
"""What clustering reads of an entry (see `storystage.doc`), in this order."""


def window_docs(session: Session, since: datetime, upto: int) -> Iterable[Any]:
    """Entries since `since` with a story member up to id `upto`, in time order.

    The clustering state to rebuild, as plain rows (DOC_COLUMNS, then source and
    story), streamed: no ORM objects.
    """
    return session.execute(
        select(*DOC_COLUMNS, StoryMember.source, StoryMember.story_id)
        .join(StoryMember, StoryMember.entry_id == Entry.id)
        .where(Entry.event_at >= since, StoryMember.id <= upto)
        .order_by(Entry.event_at, Entry.id)
        .execution_options(yield_per=2000))


def members_since(session: Session, after: int) -> Iterable[Any]:
    """Story members added after member `after`, in the order they were added.

    Members are only inserted under `INGEST_LOCK`, so member ids grow in commit
    order and "after the last id I know" is exactly "what other instances did".
    Rows as `window_docs`, then the member id.
    """
    return session.execute(
        select(*DOC_COLUMNS, StoryMember.source, StoryMember.story_id, StoryMember.id)
        .join(StoryMember, StoryMember.entry_id == Entry.id)
        .where(StoryMember.id > after)
        .order_by(StoryMember.id)
        .execution_options(yield_per=2000))


def unclustered(session: Session, limit: int) -> list[Any]:
    """The story stage's next batch: stored entries in no story yet, in id order.

    Rows as `window_docs` with the feed's id and name, and the entry's fetch time
    (one fetch = one feed and one fetch time) instead of source and story.
    """
    return list(session.execute(
        select(*DOC_COLUMNS, Entry.feed_id, Feed.name, Entry.fetched_at)
        .join(Feed, Feed.id == Entry.feed_id)
        .where(UNCLUSTERED)
        .order_by(Entry.id).limit(limit)))


def backlog(session: Session) -> int:
    """Entries stored but not clustered yet."""
    return session.scalar(select(func.count()).select_from(Entry).where(UNCLUSTERED)) or 0


def has_backlog(session: Session) -> bool:
    return session.scalar(select(Entry.id).where(UNCLUSTERED).limit(1)) is not None


def reserve_story_id(session: Session, last: int | None) -> int:
    """An id for a story the current batch is about to create, without writing anything.

    PostgreSQL: the id sequence (gaps are harmless). SQLite: one instance, and only
    the story stage creates stories, so the next id is the highest so far plus one;
    `last` is the previous id this batch reserved.
    """
    if session.get_bind().dialect.name == "postgresql":
        return int(session.scalar(text("SELECT nextval(pg_get_serial_sequence('stories', 'id'))"))
                   or 0)
    if last is None:
        last = session.scalar(select(func.max(Story.id))) or 0
    return last + 1


@dataclass
class Tally:
    """A story's counts while a batch adds members to it."""

    story_id: int
    entry_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    sources: set[str]
    title: str = ""
    """Set for a story the batch creates."""


def story_tally(session: Session, story_id: int) -> Tally | None:
    row = session.execute(select(Story.entry_count, Story.first_seen_at, Story.last_seen_at)
                          .where(Story.id == story_id)).first()
    if row is None:
        return None
    sources = set(session.scalars(select(StoryMember.source).distinct()
                                  .where(StoryMember.story_id == story_id)))
    return Tally(story_id, row[0], row[1], row[2], sources)


def save_stories(session: Session, created: Iterable[Tally], changed: Iterable[Tally],
                 now: datetime) -> None:
    """Insert the batch's new stories (ids reserved) and update the counts of the others."""
    new = [{"id": t.story_id, "title": t.title, "first_seen_at": t.first_seen_at,
            "last_seen_at": t.last_seen_at, "source_count": len(t.sources),
            "entry_count": t.entry_count, "updated_at": now} for t in created]
    if new:
        session.execute(insert(STORIES), new)
    rows = [{"b_id": t.story_id, "b_entries": t.entry_count, "b_sources": len(t.sources),
             "b_first": t.first_seen_at, "b_last": t.last_seen_at, "b_now": now}
            for t in changed]
    if rows:
        session.execute(update(STORIES).where(STORIES.c.id == bindparam("b_id")).values(
            entry_count=bindparam("b_entries"), source_count=bindparam("b_sources"),
            first_seen_at=bindparam("b_first"), last_seen_at=bindparam("b_last"),
            updated_at=bindparam("b_now")), rows)


def insert_members(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Story members, in order, and their entries' `story_id`: two statements.

    `story_members.entry_id` is unique: an entry can never join two stories,
    whatever happens around a crash or between instances.
    """
    if not rows:
        return
    session.execute(insert(MEMBERS), rows)
    session.execute(update(ENTRIES).where(ENTRIES.c.id == bindparam("b_id"))
                    .values(story_id=bindparam("b_story")),
                    [{"b_id": r["entry_id"], "b_story": r["story_id"]} for r in rows])


def members_of(session: Session, story_ids: Iterable[int]) -> dict[int, list[MemberRow]]:
    """Members of several stories in one query, each story's in time order."""
    out: dict[int, list[MemberRow]] = {}
    wanted = sorted(set(story_ids))
    for i in range(0, len(wanted), _IN_CHUNK):
        rows = session.execute(
            select(Entry, StoryMember, Feed.name, Feed.tags)
            .join(StoryMember, StoryMember.entry_id == Entry.id)
            .join(Feed, Feed.id == Entry.feed_id)
            .where(StoryMember.story_id.in_(wanted[i:i + _IN_CHUNK]))
            .order_by(Entry.event_at, Entry.id))
        for e, m, name, tags in rows:
            out.setdefault(m.story_id, []).append(MemberRow(e, m, name, tags))
    return out


def last_member_id(session: Session) -> int:
    return session.scalar(select(func.max(StoryMember.id))) or 0


def member_ids(session: Session, member_id: int) -> tuple[int, int] | None:
    """A story member's (entry id, story id), if it exists."""
    row = session.execute(select(StoryMember.entry_id, StoryMember.story_id)
                          .where(StoryMember.id == member_id)).first()
    return None if row is None else (row[0], row[1])


def database_id(session: Session) -> str:
    """The database's random id (migration 0007): tells copies of state for it apart."""
    return session.scalar(select(DatabaseInfo.id)) or ""


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
    """Lease due outbox rows (oldest first), skipping rows another worker holds.

    A row waits while an earlier change of the same alert is still pending
    for the same notifier, so each notifier sees an alert's changes in order
    (a Slack thread reply needs its parent first).
    """
    earlier, earlier_event = aliased(Delivery), aliased(AlertEvent)
    blocked = (select(earlier.id).join(earlier_event, earlier_event.id == earlier.event_id)
               .where(earlier.notifier == Delivery.notifier, earlier.status == "pending",
                      earlier_event.alert_id == AlertEvent.alert_id,
                      earlier_event.seq < AlertEvent.seq)
               .exists())
    rows = session.execute(
        select(Delivery, AlertEvent)
        .join(AlertEvent, AlertEvent.id == Delivery.event_id)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now,
               or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
               ~blocked)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)).all()
    for delivery, _ in rows:
        delivery.lease_owner = owner
        delivery.lease_expires_at = now + lease
    session.flush()
    return [(d, ev) for d, ev in rows]


def renew_leases(session: Session, ids: Sequence[int], owner: str, until: datetime) -> None:
    """Keep holding rows still being sent (only those this worker holds)."""
    session.execute(update(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.lease_owner == owner,
                           Delivery.status == "pending")
                    .values(lease_expires_at=until))


def deliveries_by_id(session: Session, ids: Sequence[int]) -> dict[int, Delivery]:
    """Outbox rows in one query, to record a batch's outcomes."""
    return {d.id: d for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}


def firing_alerts(session: Session, rule_ids: Sequence[str]) -> list[Alert]:
    if not rule_ids:
        return []
    return list(session.scalars(select(Alert).where(Alert.state == "firing",
                                                    Alert.rule_id.in_(rule_ids))))


def alert_threads(session: Session,
                  alert_ids: Iterable[int]) -> dict[tuple[int, str], AlertThread]:
    """Threads notifiers opened for these alerts, by (alert id, notifier)."""
    rows = session.scalars(select(AlertThread).where(AlertThread.alert_id.in_(set(alert_ids))))
    return {(t.alert_id, t.notifier): t for t in rows}


def save_thread(session: Session, alert_id: int, notifier: str, channel: str, ts: str,
                now: datetime) -> None:
    """Remember where a notifier posted an alert (the first post wins)."""
    stmt = (_insert(session)(AlertThread)
            .values(alert_id=alert_id, notifier=notifier, channel=channel, ts=ts, created_at=now)
            .on_conflict_do_nothing(index_elements=["alert_id", "notifier"]))
    session.execute(stmt)


def firing_payloads(session: Session, notifier: str) -> list[dict[str, Any]]:
    """Latest payload of every firing alert this notifier has received at least once."""
    latest = (select(AlertEvent.alert_id, func.max(AlertEvent.seq).label("seq"))
              .group_by(AlertEvent.alert_id).subquery())
    sent = (select(Delivery.id).join(AlertEvent, AlertEvent.id == Delivery.event_id)
            .where(AlertEvent.alert_id == Alert.id, Delivery.notifier == notifier,
                   Delivery.status == "delivered").exists())
    return list(session.scalars(
        select(AlertEvent.payload)
        .join(latest, (latest.c.alert_id == AlertEvent.alert_id)
              & (latest.c.seq == AlertEvent.seq))
        .join(Alert, Alert.id == AlertEvent.alert_id)
        .where(Alert.state == "firing", sent)
        .order_by(Alert.id)))


def dead_letters(session: Session, limit: int) -> list[tuple[Delivery, AlertEvent]]:
    rows = session.execute(
        select(Delivery, AlertEvent).join(AlertEvent, AlertEvent.id == Delivery.event_id)
        .where(Delivery.status == "dead")
        .order_by(Delivery.dead_at.desc(), Delivery.id.desc()).limit(limit))
    return [(d, ev) for d, ev in rows]


def requeue(session: Session, delivery_id: int, now: datetime) -> Delivery | None:
    """Put a dead letter back in the outbox with fresh attempts; None if it is not dead."""
    row = session.get(Delivery, delivery_id)
    if row is None or row.status != "dead":
        return None
    row.status, row.attempts, row.next_attempt_at = "pending", 0, now
    row.requeued_at, row.dead_at = now, None
    row.lease_owner = row.lease_expires_at = None
    return row


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



# -- instance coordination -----------------------------------------------------
INGEST_LOCK = 0x5357_0001
"""Advisory lock key: clustering and rule evaluation run one transaction at a time."""
CLAIM_LOCK = 0x5357_0002
"""Advisory lock key: feed claims count per-host leases without racing each other."""
SETUP_LOCK = 0x5357_0003
"""Advisory lock key: instances starting together migrate and sync feeds one at a time."""


def serialise(session: Session, key: int) -> None:
    """Wait for the cluster-wide lock `key`, held until this transaction ends.

    PostgreSQL only: a transaction-level advisory lock is released by commit,
    rollback or a dropped connection, so a killed instance never leaves it held.
    SQLite has one instance, serialised in-process already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


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


# -- rule state, suppressions, silences ------------------------------------------
def rule_state_get(session: Session, rule_id: str, group_key: str) -> dict[str, Any] | None:
    row = session.scalar(select(RuleState).where(RuleState.rule_id == rule_id,
                                                 RuleState.group_key == group_key))
    return dict(row.state) if row is not None else None


def rule_state_put(session: Session, rule_id: str, group_key: str, state: dict[str, Any],
                   now: datetime) -> None:
    row = session.scalar(select(RuleState).where(RuleState.rule_id == rule_id,
                                                 RuleState.group_key == group_key))
    if row is None:
        session.add(RuleState(rule_id=rule_id, group_key=group_key, state=state,
                              updated_at=now))
    elif row.state != state:
        row.state, row.updated_at = state, now
    session.flush()


def rule_state_delete(session: Session, rule_id: str, group_key: str) -> None:
    session.execute(delete(RuleState).where(RuleState.rule_id == rule_id,
                                            RuleState.group_key == group_key))


def rule_states_like(session: Session, key_prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(rule id, group key, state) of every rule's rows whose key starts with the prefix."""
    rows = session.execute(select(RuleState.rule_id, RuleState.group_key, RuleState.state)
                           .where(RuleState.group_key.startswith(key_prefix, autoescape=True))
                           .order_by(RuleState.id))
    return [(rule_id, key, dict(state)) for rule_id, key, state in rows]


def rule_state_groups(session: Session, rule_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = session.execute(select(RuleState.group_key, RuleState.state)
                           .where(RuleState.rule_id == rule_id))
    return [(key, dict(state)) for key, state in rows]


def rule_states_after(session: Session, after: int,
                      limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
    """(id, rule id, group key, state) of the next `limit` rows by id after `after`."""
    rows = session.execute(select(RuleState.id, RuleState.rule_id, RuleState.group_key,
                                  RuleState.state)
                           .where(RuleState.id > after).order_by(RuleState.id).limit(limit))
    return [(row_id, rule_id, key, dict(state)) for row_id, rule_id, key, state in rows]


def delete_rule_states(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(delete(RuleState).where(RuleState.id.in_(ids)))


def add_suppression(session: Session, rule_id: str, fingerprint: str, group_key: str,
                    reason: str, event_at: datetime, now: datetime,
                    detail: dict[str, Any]) -> None:
    session.add(Suppression(rule_id=rule_id, fingerprint=fingerprint, group_key=group_key,
                            reason=reason, event_at=event_at, created_at=now, detail=detail))


def list_suppressions(session: Session, limit: int) -> list[Suppression]:
    return list(session.scalars(select(Suppression)
                                .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                                .limit(limit)))


def firing_alert_labels(session: Session) -> list[dict[str, str]]:
    rows = session.execute(select(Alert.rule_id, Alert.severity, Alert.labels,
                                  Alert.group_labels).where(Alert.state == "firing"))
    return [{"rule_id": r, "severity": s, **(labels or {}), **(group or {})}
            for r, s, labels, group in rows]


def active_silences(session: Session, now: datetime) -> list[Silence]:
    return list(session.scalars(select(Silence).where(Silence.ends_at > now)
                                .order_by(Silence.id)))


def add_silence(session: Session, matchers: dict[str, str], starts_at: datetime,
                ends_at: datetime, author: str, comment: str, now: datetime) -> Silence:
    silence = Silence(matchers=matchers, starts_at=starts_at, ends_at=ends_at, author=author,
                      comment=comment, created_at=now)
    session.add(silence)
    session.flush()
    return silence


def expire_silence(session: Session, silence_id: int, now: datetime) -> bool:
    silence = session.get(Silence, silence_id)
    if silence is None or silence.ends_at <= now:
        return False
    silence.ends_at = now
    return True


def list_silences(session: Session, include_expired: bool, now: datetime) -> list[Silence]:
    stmt = select(Silence).order_by(Silence.id)
    if not include_expired:
        stmt = stmt.where(Silence.ends_at > now)
    return list(session.scalars(stmt))


def history(session: Session, since: datetime, until: datetime) -> Iterator[
        tuple[Entry, str, list[Any]]]:
    """Stored entries between two times with their feed's name and tags, in time order."""
    rows = session.execute(
        select(Entry, Feed.name, Feed.tags).join(Feed, Feed.id == Entry.feed_id)
        .where(Entry.event_at >= since, Entry.event_at <= until)
        .order_by(Entry.event_at, Entry.id).execution_options(yield_per=1000))
    for entry, name, tags in rows:
        yield entry, name, list(tags or [])


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
