"""The rule engine in production: events from stored stories, state and alerts in the DB.

Runs inside the ingest transaction, so a story change, the rule state it
advances and the alert it raises commit together; after a crash nothing is
half-applied and nothing is evaluated twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from monitor import metrics
from monitor.alerts.outbox import DbBook, quiet_alerts
from monitor.config import Route
from monitor.db import queries
from monitor.rules.engine import Engine, Hit, RuleSet
from monitor.rules.events import RuleEvent
from monitor.rules.lifecycle import Policy, Silence, handle, send_due_digests


class DbStore:
    """Rule state rows, read and written in the caller's session."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    def get(self, rule_id: str, group_key: str) -> dict[str, Any] | None:
        return queries.rule_state_get(self.session, rule_id, group_key)

    def put(self, rule_id: str, group_key: str, state: dict[str, Any]) -> None:
        queries.rule_state_put(self.session, rule_id, group_key, state, self.now)

    def groups(self, rule_id: str) -> list[tuple[str, dict[str, Any]]]:
        return queries.rule_state_groups(self.session, rule_id)


def story_event(members: Sequence[queries.MemberRow], change: str,
                trigger: queries.MemberRow) -> RuleEvent:
    """A story change as the rule engine sees it: the whole story after the change."""
    tags: list[str] = []
    feed_tags: list[str] = []
    for row in members:
        feed_tags += [str(t) for t in row.feed_tags if str(t) not in feed_tags]
        tags += [str(t) for t in row.entry.tags if str(t) not in tags]
    first = members[0]
    return RuleEvent(
        "story", change, trigger.entry.event_at, trigger.member.story_id,
        tuple(r.entry.title for r in members),
        tuple(r.entry.content or r.entry.summary or "" for r in members),
        trigger.member.source, tuple(r.member.source for r in members),
        tags=tuple(tags), feed_tags=tuple(feed_tags),
        languages=tuple(r.entry.language for r in members if r.entry.language),
        urls=tuple(r.entry.url for r in members if r.entry.url),
        summary=trigger.entry.summary or "", entry_count=len(members),
        story_title=first.entry.title)


def entry_event(row: queries.MemberRow) -> RuleEvent:
    e = row.entry
    return RuleEvent(
        "entry", "new", e.event_at, row.member.story_id, (e.title,),
        (e.content or e.summary or "",), row.member.source, (row.member.source,),
        tags=tuple(str(t) for t in e.tags), feed_tags=tuple(str(t) for t in row.feed_tags),
        languages=(e.language,) if e.language else (), urls=(e.url,) if e.url else (),
        summary=e.summary or "", story_title=e.title)


class RuleRunner:
    """Evaluates events and clock ticks against the current rule set, in a session."""

    def __init__(self, rules: Callable[[], RuleSet], notifiers: Callable[[], list[str]],
                 routes: Callable[[], Sequence[Route]]) -> None:
        self.rules = rules
        self.notifiers = notifiers
        self.routes = routes

    def _policy(self, session: Session, rules: RuleSet, now: datetime) -> Policy:
        silences = [Silence(s.id, dict(s.matchers), s.starts_at, s.ends_at, s.author,
                            s.comment) for s in queries.active_silences(session, now)]
        return Policy(silences, rules.inhibit)

    def _handle(self, session: Session, rules: RuleSet, hits: list[Hit],
                now: datetime) -> list[str]:
        if not hits:
            return []
        book = DbBook(session, self.notifiers(), self.routes())
        policy = self._policy(session, rules, now)
        done = []
        for hit in hits:
            metrics.RULE_MATCHES_BY_RULE.labels(
                metrics.rule_label(hit.rule.id, len(rules))).inc()
            decision = handle(book, policy, hit, now)
            done.append(f"{decision.action}:{decision.reason or ''}:{hit.rule.id}:"
                        f"{hit.group_key}")
        return done

    def process(self, session: Session, events: Sequence[RuleEvent],
                now: datetime) -> list[str]:
        """Evaluate events in time order; returns one line per decision."""
        rules = self.rules()
        engine = Engine(rules, DbStore(session, now))
        hits: list[Hit] = []
        for event in sorted(events, key=lambda e: (e.at, e.scope != "entry")):
            metrics.RULE_EVALUATIONS.inc()
            hits += engine.process(event)
        return self._handle(session, rules, hits, now)

    def prune(self, session: Session, now: datetime, after: int, limit: int) -> tuple[int, int]:
        """Delete spent group state (`CompiledRule.spent`) among the next `limit` rows
        after id `after`: a story's count or sequence would otherwise stay forever.
        Returns the rows deleted and the last id read, 0 once every row was read.
        State of a rule not loaded now (disabled, or its file being edited) stays."""
        rules, at = {c.rule.id: c for c in self.rules().rules}, now.timestamp()
        rows = queries.rule_states_after(session, after, limit)
        spent = [row_id for row_id, rule_id, key, state in rows
                 if (c := rules.get(rule_id)) is not None and c.spent(key, state, at)]
        queries.delete_rule_states(session, spent)
        return len(spent), rows[-1][0] if len(rows) == limit else 0

    def tick(self, session: Session, now: datetime) -> list[str]:
        """Send digests whose period ended, close absence windows, resolve quiet alerts."""
        rules = self.rules()
        send_due_digests(DbBook(session, self.notifiers(), self.routes()),
                         {c.rule.id: c.rule for c in rules.rules}, now)
        hits = Engine(rules, DbStore(session, now)).tick(now)
        hits += quiet_alerts(session, [c.rule for c in rules.rules], now)
        return self._handle(session, rules, hits, now)
