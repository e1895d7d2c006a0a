"""Storing fetches: feed state and new or updated entries, durably and once.

Polls commit in groups: whatever waited while the writer was busy goes into
one transaction (bulk inserts, batched identity lookups). Clustering, rules
and alerts happen afterwards in the story stage (`monitor/storystage.py`),
which takes every stored entry not yet in a story, so storing stays fast and
a crash between the two stages loses nothing. Runs in a worker thread
(SQLAlchemy is synchronous), one group at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from monitor import metrics
from monitor.db import queries
from monitor.db.models import Feed
from monitor.feeds import fetch, identity
from monitor.feeds.hosts import host_of
from monitor.feeds.parse import ParsedFeed
from monitor.feeds.schedule import (
    Policy,
    interval_for,
    next_check,
    publish_interval,
    should_suspend,
)
from monitor.stories.normalise import NormalisedEntry, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Poll:
    """One finished fetch, as the store needs it."""

    feed_id: int
    result: fetch.FetchResult
    parsed: ParsedFeed | None = None
    parse_error: str | None = None
    items: list[NormalisedEntry] | None = None
    """The parsed entries normalised already (by the parser process), or None."""


@dataclass
class IngestReport:
    new: int = 0
    updated: int = 0
    duplicate: int = 0


@dataclass
class _Fetched:
    """One parsed fetch on its way into the database."""

    feed_id: int
    report: IngestReport
    decisions: list[identity.Decision]


class Ingestor:
    """Applies fetch results to the database: feed state, entries, identity keys."""

    def __init__(self, sessions: sessionmaker[Session], policy: Policy) -> None:
        self.sessions = sessions
        self.policy = policy

    def apply(self, feed_id: int, result: fetch.FetchResult, parsed: ParsedFeed | None,
              parse_error: str | None, now: datetime) -> IngestReport:
        """Commit one fetch in its own transaction."""
        with self.sessions.begin() as session:
            [report] = self._apply(session, [Poll(feed_id, result, parsed, parse_error)], now)
        return report

    def store(self, polls: list[Poll], now: datetime) -> list[IngestReport | Exception]:
        """Commit `polls` in one transaction (a group commit).

        If the group fails, each poll is retried in its own transaction, so one
        poll the database rejects cannot sink the others; its exception takes
        its place in the result.
        """
        try:
            with self.sessions.begin() as session:
                return list(self._apply(session, polls, now))
        except Exception as exc:
            metrics.DB_ERRORS.labels("ingest").inc()
            if len(polls) == 1:
                return [exc]
        out: list[IngestReport | Exception] = []
        for poll in polls:
            try:
                with self.sessions.begin() as session:
                    out += self._apply(session, [poll], now)
            except Exception as exc:
                metrics.DB_ERRORS.labels("ingest").inc()
                out.append(exc)
        return out

    def _apply(self, session: Session, polls: list[Poll], now: datetime) -> list[IngestReport]:
        with session.no_autoflush:  # feed changes go out in one flush at commit
            return self._apply_all(session, polls, now)

    def _apply_all(self, session: Session, polls: list[Poll],
                   now: datetime) -> list[IngestReport]:
        feeds = queries.feeds_by_id(session, [p.feed_id for p in polls])
        items = {p.feed_id: p.items if p.items is not None else normalise(p.parsed.entries, now)
                 for p in polls if p.parsed is not None and p.feed_id in feeds}
        known = queries.known_keys(session, {feed_id: (k for i in its for _, k in i.keys)
                                             for feed_id, its in items.items()})
        reports = []
        fetched: list[_Fetched] = []
        for poll in polls:
            report = IngestReport()
            reports.append(report)
            feed = feeds.get(poll.feed_id)
            if feed is None:
                continue
            outcome = fetch.PARSE_ERROR if poll.parse_error else poll.result.outcome
            self._update_feed(session, feed, poll.result, outcome, poll.parse_error, poll.parsed,
                              now)
            if poll.parsed is not None:
                fetched.append(_Fetched(feed.id, report, self._identify(
                    session, feed, items[feed.id], known[feed.id], report)))
        if fetched:
            self._store_entries(session, fetched, now)
        return reports

    def _identify(self, session: Session, feed: Feed, items: list[NormalisedEntry],
                  known: dict[str, identity.Known],
                  report: IngestReport) -> list[identity.Decision]:
        """Which stored entry each item is; pruned ones are skipped (tombstones)."""
        plan = identity.resolve(items, known, feed.identity_level, feed.identity_strikes)
        if plan.level != feed.identity_level:
            log.warning("feed identity keys proved unstable; using the next kind of key",
                        extra={"feed_id": feed.id, "level": plan.level})
        feed.identity_level, feed.identity_strikes = plan.level, plan.strikes
        queries.mark_ambiguous(session, feed.id, plan.ambiguous)
        live = [d for d in plan.decisions if not d.tombstone]
        report.duplicate += len(plan.decisions) - len(live)
        return live

    @staticmethod
    def _store_entries(session: Session, fetched: list[_Fetched], now: datetime) -> None:
        """New entries in one insert, changed ones as updates, every key indexed once."""
        known = queries.entry_versions(
            session, [d.entry_id for f in fetched for d in f.decisions if d.entry_id is not None])
        updates: dict[int, queries.EntryUpdate] = {}
        seen_again: set[int] = set()
        fresh: list[tuple[int, identity.Decision]] = []
        keyed: list[tuple[int, int | None, tuple[str, ...]]] = []
        """(feed, entry or None for a new one, keys) in insertion order."""
        for f in fetched:
            for d in f.decisions:
                if d.entry_id is None:
                    fresh.append((f.feed_id, d))
                    keyed.append((f.feed_id, None, d.keys))
                    f.report.new += 1
                    continue
                version = known.get(d.entry_id)
                if version is None:  # deleted since its keys were read
                    continue
                keyed.append((f.feed_id, d.entry_id, d.keys))
                if version.tombstoned:  # pruned: its key keeps it from coming back
                    seen_again.add(d.entry_id)
                    f.report.duplicate += 1
                elif version.content_hash == d.item.content_hash or not version.has_content:
                    f.report.duplicate += 1
                else:
                    updates[d.entry_id] = queries.EntryUpdate(d.entry_id, d.item)
                    known[d.entry_id] = version.changed(d.item.content_hash)
                    f.report.updated += 1
        queries.update_entries(session, list(updates.values()))
        queries.mark_tombstones_seen(session, seen_again, now)
        new_ids = iter(queries.insert_entries(
            session, [(feed_id, d.item, d.key) for feed_id, d in fresh], now))
        queries.remember_keys(session, [(feed_id, next(new_ids) if entry_id is None else entry_id,
                                         keys) for feed_id, entry_id, keys in keyed])

    def _update_feed(self, session: Session, feed: Feed, result: fetch.FetchResult,
                     outcome: str, parse_error: str | None, parsed: ParsedFeed | None,
                     now: datetime) -> None:
        feed.last_checked_at = now
        feed.last_status = result.status
        feed.last_outcome = outcome
        feed.lease_owner = None
        feed.lease_expires_at = None
        policy = self.policy
        failed = outcome not in (fetch.OK, fetch.NOT_MODIFIED)
        if outcome == fetch.RATE_LIMITED:
            # The host asked everyone to wait: not the feed's failure, the host's hold.
            hold = result.retry_after if result.retry_after is not None else \
                policy.retry_failed_after
            queries.hold_host(session, feed.host,
                              now + timedelta(seconds=min(hold, policy.suspended_retry)),
                              result.status, now)
            feed.last_error = result.error
        elif failed:
            feed.consecutive_failures += 1
            feed.first_failure_at = feed.first_failure_at or now
            feed.last_error = parse_error or result.error
            feed.state = "blocked" if outcome == fetch.BLOCKED else "failing"
        else:
            feed.consecutive_failures = 0
            feed.first_failure_at = None
            feed.last_error = None
            feed.last_success_at = now
            feed.state = "active"
            feed.etag = result.etag or (feed.etag if outcome == fetch.NOT_MODIFIED else None)
            feed.last_modified = result.last_modified or (
                feed.last_modified if outcome == fetch.NOT_MODIFIED else None)
            feed.body_hash = result.body_hash or feed.body_hash
            self._follow_redirect(session, feed, result)
        suspended = (failed and outcome != fetch.RATE_LIMITED
                     and should_suspend(policy, feed.consecutive_failures,
                                        feed.first_failure_at, now))
        if suspended:
            feed.state = "suspended"
        if outcome == fetch.GONE:
            feed.state, feed.enabled = "gone", False
        if parsed is not None:
            adaptive = publish_interval(e.published for e in parsed.entries if e.published)
            feed.poll_interval = interval_for(policy, feed.interval_seconds, adaptive,
                                              (parsed.ttl_seconds, result.fresh_for))
            interval = feed.poll_interval
        else:
            base = feed.poll_interval if feed.poll_interval is not None else \
                feed.interval_seconds
            interval = interval_for(policy, base, None, (result.fresh_for,))
        feed.next_check_at = next_check(policy, now, outcome, feed.consecutive_failures,
                                        interval, result.retry_after, suspended)

    @staticmethod
    def _follow_redirect(session: Session, feed: Feed, result: fetch.FetchResult) -> None:
        """Adopt a permanent redirect's target only once it has been seen twice in a row."""
        target = result.final_url
        if not result.permanent_redirect or not target or target == feed.url:
            feed.redirect_candidate, feed.redirect_seen = None, 0
            return
        if feed.redirect_candidate != target:
            feed.redirect_candidate, feed.redirect_seen = target, 1
            return
        feed.redirect_seen += 1
        if queries.url_taken(session, target, feed.id):
            return
        log.info("feed moved permanently; adopting its new URL",
                 extra={"feed_id": feed.id, "url": target})
        feed.original_url = feed.original_url or feed.url
        feed.url, feed.host = target, host_of(target)
        feed.redirect_candidate, feed.redirect_seen = None, 0

    def defer(self, feed_id: int, now: datetime, seconds: float) -> None:
        """Release a claimed feed after an internal error, without losing its state."""
        with self.sessions.begin() as session:
            feed = session.get(Feed, feed_id)
            if feed is not None:
                feed.lease_owner = None
                feed.lease_expires_at = None
                feed.next_check_at = now + timedelta(seconds=seconds)

