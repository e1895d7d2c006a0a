"""Raise, update and resolve alerts, writing the outbox rows in the same transaction.

One alert per (rule, story); a new source joining a story that already
alerted produces an `updated` change (same fingerprint, next sequence
number), never a second alert. A rule with `resolve_after` resolves its
alert once the story has gained no source for that long; a later source
re-opens it as `firing`. A dead-lettered delivery raises a meta-alert on the
fallback notifier, so failures are seen rather than logged and forgotten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from monitor.db import queries
from monitor.db.models import Alert, AlertEvent, Delivery, Story
from monitor.rules.schema import Rule

PAYLOAD_VERSION = 1
DEAD_LETTER_RULE = "storywatch.dead-letter"


def fingerprint(rule_id: str, group_key: str) -> str:
    return hashlib.sha256(f"{rule_id}\x00{group_key}".encode()).hexdigest()[:32]


def idempotency_key(fp: str, state: str, seq: int) -> str:
    """Stable per alert change: a retried delivery carries the same key."""
    return hashlib.sha256(f"{fp}:{state}:{seq}".encode()).hexdigest()[:40]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def _envelope(alert: Alert, kind: str, rule: dict[str, Any], story: dict[str, Any],
              sources: list[dict[str, Any]], summary: str,
              **extra: Any) -> dict[str, Any]:
    """The documented, versioned alert body (see docs/webhook.md)."""
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": idempotency_key(alert.fingerprint, kind, alert.seq),
        "fingerprint": alert.fingerprint,
        "event": kind,
        "status": alert.state,
        "seq": alert.seq,
        "rule": rule,
        "labels": {"rule_id": rule["id"], "severity": rule["severity"], **alert.labels},
        "story": story,
        "sources": sources,
        "summary": summary,
        "first_fired": _iso(alert.first_fired_at),
        "changed_at": _iso(alert.last_changed_at),
        **extra,
    }


def build_payload(alert: Alert, kind: str, story: Story, members: Sequence[queries.MemberRow],
                  rule: Rule, new_sources: Sequence[str] = ()) -> dict[str, Any]:
    n = story.source_count
    return _envelope(
        alert, kind,
        {"id": rule.id, "title": rule.title, "severity": rule.severity,
         "description": rule.description},
        {"id": story.id, "title": story.title, "first_seen": _iso(story.first_seen_at),
         "last_seen": _iso(story.last_seen_at), "source_count": n,
         "entry_count": story.entry_count},
        _sources(members),
        f"{rule.title}: {story.title} ({n} source{'s' if n != 1 else ''})",
        new_sources=list(new_sources))


def _sources(members: Sequence[queries.MemberRow]) -> list[dict[str, Any]]:
    """One line per outlet (its first entry in the story)."""
    seen: dict[str, dict[str, Any]] = {}
    for row in members:
        if row.member.source not in seen:
            seen[row.member.source] = {
                "name": row.member.source,
                "title": row.entry.title,
                "url": row.entry.url,
                "published": _iso(row.entry.event_at),
            }
    return list(seen.values())


def _targets(rule: Rule, notifiers: Sequence[str]) -> list[str]:
    targets = list(rule.notify) if rule.notify is not None else list(notifiers)
    return [n for n in targets if n in notifiers]


def _record(session: Session, alert: Alert, payload: dict[str, Any],
            targets: Sequence[str], now: datetime) -> AlertEvent:
    key = payload["idempotency_key"]
    return queries.add_alert_event(session, alert, payload["event"], payload, targets,
                                   [key] * len(targets), now)


def raise_or_update(session: Session, rule: Rule, story: Story,
                    members: Sequence[queries.MemberRow], notifiers: Sequence[str],
                    now: datetime) -> str | None:
    """Open the alert or record a new source; returns the change kind or None."""
    group_key = f"story:{story.id}"
    fp = fingerprint(rule.id, group_key)
    alert = queries.alert_by_fingerprint(session, fp)
    source_names = sorted({m.member.source for m in members})
    new_sources: list[str] = []
    if alert is None:
        alert = Alert(fingerprint=fp, rule_id=rule.id, group_key=group_key, story_id=story.id,
                      state="firing", severity=rule.severity, title=rule.title,
                      labels=dict(rule.labels), seq=1, sources=source_names,
                      first_fired_at=now, last_changed_at=now)
        session.add(alert)
        session.flush()
        kind = "firing"
    elif set(source_names) - set(alert.sources):
        new_sources = sorted(set(source_names) - set(alert.sources))
        kind = "updated" if alert.state == "firing" else "firing"
        alert.state, alert.resolved_at = "firing", None
        alert.seq += 1
        alert.sources = source_names
        alert.last_changed_at = now
    else:
        return None
    payload = build_payload(alert, kind, story, members, rule, new_sources)
    _record(session, alert, payload, _targets(rule, notifiers), now)
    return kind


def resolve_quiet(session: Session, rules: Sequence[Rule], notifiers: Sequence[str],
                  now: datetime) -> list[str]:
    """Resolve firing alerts whose story gained no source for the rule's `resolve_after`."""
    by_id = {r.id: r for r in rules if r.resolve_after is not None}
    resolved: list[str] = []
    for alert in queries.firing_alerts(session, list(by_id)):
        rule = by_id[alert.rule_id]
        assert rule.resolve_after is not None
        if alert.story_id is None or (
                now - alert.last_changed_at < timedelta(seconds=rule.resolve_after)):
            continue
        story = session.get(Story, alert.story_id)
        assert story is not None
        alert.state, alert.resolved_at, alert.last_changed_at = "resolved", now, now
        alert.seq += 1
        members = queries.story_members(session, story.id)
        _record(session, alert, build_payload(alert, "resolved", story, members, rule),
                _targets(rule, notifiers), now)
        resolved.append(alert.fingerprint)
    return resolved


def raise_dead_letter(session: Session, delivery: Delivery, event: AlertEvent, fallback: str,
                      now: datetime) -> None:
    """A meta-alert on the fallback notifier for a delivery that gave up."""
    fp = fingerprint(DEAD_LETTER_RULE, f"delivery:{delivery.id}")
    alert = queries.alert_by_fingerprint(session, fp)
    original = event.payload
    if alert is None:
        alert = Alert(fingerprint=fp, rule_id=DEAD_LETTER_RULE, group_key=f"delivery:{delivery.id}",
                      story_id=original["story"]["id"], state="firing", severity="high",
                      title="Alert delivery failed", labels={"notifier": delivery.notifier},
                      seq=1, sources=[], first_fired_at=now, last_changed_at=now)
        session.add(alert)
        session.flush()
    else:
        alert.state, alert.seq, alert.last_changed_at = "firing", alert.seq + 1, now
    rule = {"id": DEAD_LETTER_RULE, "title": alert.title, "severity": alert.severity,
            "description": f"Delivery #{delivery.id} to {delivery.notifier!r} gave up after "
                           f"{delivery.attempts} attempt(s): {delivery.last_error}"}
    payload = _envelope(
        alert, "firing", rule, original["story"], original["sources"],
        f"Delivery to {delivery.notifier} failed: {original['summary']}",
        new_sources=[],
        dead_letter={"delivery_id": delivery.id, "notifier": delivery.notifier,
                     "attempts": delivery.attempts, "error": delivery.last_error,
                     "idempotency_key": delivery.idempotency_key,
                     "rule_id": original["rule"]["id"]})
    _record(session, alert, payload, [fallback], now)
