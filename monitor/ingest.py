"""One fetch's journey through storage: feed state, entries, stories, rules, outbox.

Everything a fetch changes commits in one transaction, so the alert a story
change raises is never lost nor written without the change that caused it.
Runs in a worker thread (SQLAlchemy is synchronous), one fetch at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from monitor import metrics
from monitor.db import queries
from monitor.db.models import Entry, Feed, Story
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
from monitor.rules.live import RuleRunner, entry_event, story_event
from monitor.stories.cluster import Doc, StoryIndex
from monitor.stories.normalise import normalise

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    new: int = 0
    updated: int = 0
    duplicate: int = 0
    stories_created: int = 0
    alerts: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    """One readable line per story change, for logs and the demo."""


class Ingestor:
    """Applies fetch results to the database and the in-memory story index."""

    def __init__(self, sessions: sessionmaker[Session], index: StoryIndex, runner: RuleRunner,
                 policy: Policy) -> None:
        self.sessions = sessions
        self.index = index
        self.runner = runner
        self.policy = policy
        self.seen_member = 0
        """The newest story member the index holds (see `_catch_up`)."""

    def rebuild_index(self, now: datetime) -> int:
        """Reload the clustering state from entries inside the window.

        Runs under the ingest lock so the member id it starts from is exact:
        later members (this or another instance's) arrive through `_catch_up`.
        """
        fresh = StoryIndex(self.index.window, self.index.threshold)
        n = 0
        with self.sessions.begin() as session:
            queries.serialise(session, queries.INGEST_LOCK)
            for entry, source in queries.window_entries(session, now - fresh.window):
                assert entry.story_id is not None
                self._remember(fresh, entry, source, entry.story_id)
                n += 1
            self.seen_member = queries.last_member_id(session)
        self.index = fresh
        metrics.OPEN_STORIES.set(self.index.open_stories)
        return n

    @staticmethod
    def _remember(index: StoryIndex, entry: Entry, source: str, story_id: int) -> None:
        feats = index.features(_doc(entry, source))
        index.observe(feats)
        index.add(feats, story_id)

    def _catch_up(self, session: Session) -> None:
        """Take the lock, then replay members other instances added since we last looked.

        Every instance thus clusters against the same index a single instance
        would hold after the same sequence of members: one total order, many fetchers.
        """
        queries.serialise(session, queries.INGEST_LOCK)
        for entry, source, story_id, member_id in queries.members_since(session,
                                                                        self.seen_member):
            self._remember(self.index, entry, source, story_id)
            self.seen_member = member_id

    def apply(self, feed_id: int, result: fetch.FetchResult, parsed: ParsedFeed | None,
              parse_error: str | None, now: datetime) -> IngestReport:
        """Commit one fetch; on a database error, rebuild the index and re-raise."""
        try:
            with self.sessions.begin() as session:
                return self._apply(session, feed_id, result, parsed, parse_error, now)
        except Exception:
            metrics.DB_ERRORS.labels("ingest").inc()
            self.rebuild_index(now)
            raise

    def apply_states(self, polls: list[tuple[int, fetch.FetchResult, str | None]],
                     now: datetime) -> None:
        """Polls that change only feed state (304s, failures): one transaction for all.

        Nothing else depends on them (no entries, no stories), so a group commit
        keeps the one-fetch-one-transaction guarantee where it matters.
        """
        try:
            with self.sessions.begin() as session:
                for feed_id, result, parse_error in polls:
                    self._apply(session, feed_id, result, None, parse_error, now)
        except Exception:
            metrics.DB_ERRORS.labels("ingest").inc()
            raise

    def _apply(self, session: Session, feed_id: int, result: fetch.FetchResult,
               parsed: ParsedFeed | None, parse_error: str | None,
               now: datetime) -> IngestReport:
        feed = session.get(Feed, feed_id)
        report = IngestReport()
        if feed is None:
            return report
        outcome = fetch.PARSE_ERROR if parse_error else result.outcome
        self._update_feed(session, feed, result, outcome, parse_error, parsed, now)
        if parsed is None:
            return report
        changes: list[tuple[int, int, str]] = []
        """(story id, entry id, change) for each new entry, in order."""
        for stored in self._identify(session, feed, parsed, now, report):
            if stored.updated:
                report.updated += 1
            if not stored.new:
                report.duplicate += int(not stored.updated)
                continue
            report.new += 1
            started = time.perf_counter()
            entry = stored.entry
            if not changes:  # the first new entry: from here on we cluster
                self._catch_up(session)
            feats = self.index.features(_doc(entry, feed.name))
            decision = self.index.assign(feats)
            if decision.story_id is None:
                story = queries.create_story(session, entry.title or "(untitled)",
                                             entry.event_at, now)
                report.stories_created += 1
                metrics.STORIES.labels("created").inc()
            else:
                found = session.get(Story, decision.story_id)
                assert found is not None, "index refers to a story the database lacks"
                story = found
                metrics.STORIES.labels("joined").inc()
            new_source = queries.add_member(session, story, entry, feed.name,
                                            decision.similarity, decision.reason,
                                            decision.detail, now)
            if decision.story_id is None:
                change = "created"
            elif new_source:
                change = "source_added"
                metrics.STORIES.labels("source_added").inc()
            else:
                change = "updated"
            changes.append((story.id, entry.id, change))
            if decision.story_id is None:
                report.events.append(f"new story #{story.id} [{feed.name}] {entry.title}")
            else:
                report.events.append(
                    f"story #{story.id} +[{feed.name}] ({story.source_count} sources; "
                    f"{decision.reason} {decision.similarity:.2f}) {entry.title}")
            self.index.observe(feats)
            self.index.add(feats, story.id)
            metrics.CLUSTER_REASONS.labels(decision.reason).inc()
            metrics.CLUSTER_DURATION.observe(time.perf_counter() - started)
        if changes:
            self._evaluate(session, changes, now, report)
            self.seen_member = queries.last_member_id(session)
        return report

    def _evaluate(self, session: Session, changes: list[tuple[int, int, str]],
                  now: datetime, report: IngestReport) -> None:
        """Every new entry is an entry event and a change of its story."""
        events = []
        members: dict[int, list[queries.MemberRow]] = {}
        for story_id, entry_id, change in changes:
            if story_id not in members:
                members[story_id] = queries.story_members(session, story_id)
            rows = members[story_id]
            trigger = next(r for r in rows if r.entry.id == entry_id)
            upto = [r for r in rows if r.member.id <= trigger.member.id]
            events += [entry_event(trigger), story_event(upto, change, trigger)]
        report.alerts += self.runner.process(session, events, now)

    def _identify(self, session: Session, feed: Feed, parsed: ParsedFeed, now: datetime,
                  report: IngestReport) -> list[queries.StoredEntry]:
        """Store each item once: new entries, updates, and pruned ones skipped (tombstones)."""
        items = normalise(parsed.entries, now)
        known = queries.known_keys(session, feed.id, (k for i in items for _, k in i.keys))
        plan = identity.resolve(items, known, feed.identity_level, feed.identity_strikes)
        if plan.level != feed.identity_level:
            log.warning("feed identity keys proved unstable; using the next kind of key",
                        extra={"feed_id": feed.id, "level": plan.level})
        feed.identity_level, feed.identity_strikes = plan.level, plan.strikes
        queries.mark_ambiguous(session, feed.id, plan.ambiguous)
        live = [d for d in plan.decisions if not d.tombstone]
        report.duplicate += len(plan.decisions) - len(live)
        fresh = iter(queries.insert_entries(
            session, feed.id, [(d.item, d.key) for d in live if d.entry_id is None], now))
        stored = [queries.update_entry(session, d.entry_id, d.item, now) if d.entry_id is not None
                  else queries.StoredEntry(next(fresh), new=True, updated=False)
                  for d in live]
        queries.remember_keys(session, feed.id, ((row.entry.id, d.keys)
                                                 for row, d in zip(stored, live, strict=True)))
        return stored

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


def _doc(entry: Entry, source: str) -> Doc:
    """What clustering reads of a stored entry."""
    return Doc(entry.id, source, entry.title, entry.content or "", entry.event_at, entry.guid,
               entry.canonical_url, entry.content_hash)
