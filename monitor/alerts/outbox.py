"""Raise or update alerts, writing the outbox rows in the story change's transaction.

One alert per (rule, story); a new source joining a story that already
alerted produces an `updated` change (same fingerprint, next sequence
number), never a second alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from monitor.db import queries
from monitor.db.models import Alert, Story
from monitor.rules.schema import Rule

PAYLOAD_VERSION = 1


def fingerprint(rule_id: str, group_key: str) -> str:
    return hashlib.sha256(f"{rule_id}\x00{group_key}".encode()).hexdigest()[:32]


def idempotency_key(fp: str, state: str, seq: int) -> str:
    """Stable per alert change: a retried delivery carries the same key."""
    return hashlib.sha256(f"{fp}:{state}:{seq}".encode()).hexdigest()[:40]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def build_payload(alert: Alert, kind: str, story: Story,
                  members: Sequence[queries.MemberRow], rule: Rule) -> dict[str, Any]:
    """The documented, versioned alert body (see docs/webhook.md)."""
    sources = _sources(members)
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": idempotency_key(alert.fingerprint, kind, alert.seq),
        "fingerprint": alert.fingerprint,
        "event": kind,
        "status": alert.state,
        "seq": alert.seq,
        "rule": {"id": rule.id, "title": rule.title, "severity": rule.severity,
                 "description": rule.description},
        "labels": {"rule_id": rule.id, "severity": rule.severity, **rule.labels},
        "story": {
            "id": story.id,
            "title": story.title,
            "first_seen": _iso(story.first_seen_at),
            "last_seen": _iso(story.last_seen_at),
            "source_count": story.source_count,
            "entry_count": story.entry_count,
        },
        "sources": sources,
        "summary": f"{rule.title}: {story.title} ({story.source_count} "
                   f"source{'s' if story.source_count != 1 else ''})",
        "first_fired": _iso(alert.first_fired_at),
        "changed_at": _iso(alert.last_changed_at),
    }


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


def raise_or_update(session: Session, rule: Rule, story: Story,
                    members: Sequence[queries.MemberRow], notifiers: Sequence[str],
                    now: datetime) -> str | None:
    """Open the alert or record a new source; returns the change kind or None."""
    group_key = f"story:{story.id}"
    fp = fingerprint(rule.id, group_key)
    alert = queries.alert_by_fingerprint(session, fp)
    source_names = sorted({m.member.source for m in members})
    if alert is None:
        alert = Alert(fingerprint=fp, rule_id=rule.id, group_key=group_key, story_id=story.id,
                      state="firing", severity=rule.severity, title=rule.title,
                      labels=dict(rule.labels), seq=1, sources=source_names,
                      first_fired_at=now, last_changed_at=now)
        session.add(alert)
        session.flush()
        kind = "firing"
    elif alert.state == "firing" and set(source_names) - set(alert.sources):
        alert.seq += 1
        alert.sources = source_names
        alert.last_changed_at = now
        kind = "updated"
    else:
        return None
    targets = list(rule.notify) if rule.notify is not None else list(notifiers)
    targets = [n for n in targets if n in notifiers]
    payload = build_payload(alert, kind, story, members, rule)
    key = payload["idempotency_key"]
    queries.add_alert_event(session, alert, kind, payload, targets, [key] * len(targets), now)
    return kind
