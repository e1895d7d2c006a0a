"""Alerts in the database: raise, update and resolve them with their outbox rows.

`DbBook` is the live `AlertBook` of the rule lifecycle: every alert change it
applies writes the alert row, a frozen payload and one delivery row per
notifier in the caller's transaction (the one that changed the story), and
every suppressed match is recorded with its reason. A dead-lettered delivery
raises a meta-alert on the fallback notifier, so failures are seen rather
than logged and forgotten.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import Template
from sqlalchemy.orm import Session

from monitor import metrics
from monitor.alerts.render import RenderError, compile_template, render
from monitor.config import Route
from monitor.db import queries
from monitor.db.models import Alert, AlertEvent, Delivery, Story
from monitor.rules import digest
from monitor.rules.engine import Hit
from monitor.rules.lifecycle import AlertInfo, Decision, digest_item, fingerprint, labels_of
from monitor.rules.schema import Rule

log = logging.getLogger(__name__)
MAX_STORIES_IN_PAYLOAD = 20
PAYLOAD_VERSION = 1
DEAD_LETTER_RULE = "storywatch.dead-letter"


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
                  rule: Rule, new_sources: Sequence[str] = (),
                  stories: Sequence[Story] = ()) -> dict[str, Any]:
    """The payload of a story alert; `stories` lists every story of a correlation."""
    n = story.source_count
    payload = _envelope(
        alert, kind,
        {"id": rule.id, "title": rule.title, "severity": rule.severity,
         "description": rule.description},
        _story(story), _sources(members),
        f"{rule.title}: {story.title} ({n} source{'s' if n != 1 else ''})",
        new_sources=list(new_sources), group=dict(alert.group_labels or {}),
        stories=[_story(s) for s in stories or [story]])
    return _templated(rule, payload)


def _story(story: Story) -> dict[str, Any]:
    return {"id": story.id, "title": story.title, "first_seen": _iso(story.first_seen_at),
            "last_seen": _iso(story.last_seen_at), "source_count": story.source_count,
            "entry_count": story.entry_count}


def _groupless_payload(alert: Alert, kind: str, rule: Rule, hit: Hit) -> dict[str, Any]:
    """An alert with no story behind it (an absence or silence)."""
    group = ", ".join(f"{k}={v}" for k, v in sorted(alert.group_labels.items())) or "all"
    title = f"{rule.title} ({group})"
    story = {"id": None, "title": title, "first_seen": _iso(hit.at), "last_seen": _iso(hit.at),
             "source_count": 0, "entry_count": 0}
    payload = _envelope(alert, kind, {"id": rule.id, "title": rule.title,
                                      "severity": rule.severity,
                                      "description": rule.description},
                        story, [], title, new_sources=[], group=dict(alert.group_labels),
                        stories=[], detail=dict(hit.detail))
    return _templated(rule, payload)


@lru_cache(maxsize=512)
def _template(source: str, name: str) -> Template:
    return compile_template(source, name)


def _templated(rule: Rule, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply the rule's own summary/body templates; a broken one keeps the default text."""
    for key in ("summary", "body"):
        source = getattr(rule, key)
        if not source:
            continue
        try:
            payload[key] = render(_template(source, f"rule {rule.id} {key}"), payload)
        except RenderError as exc:
            metrics.CONFIG_ERRORS.inc()
            log.error("rule template failed; default text used",
                      extra={"rule": rule.id, "error": str(exc)})
    return payload


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


def route(rule: Rule, labels: dict[str, str], notifiers: Sequence[str],
          routes: Sequence[Route]) -> list[str]:
    """The rule's own `notify`, else the first matching route(s), else every notifier."""
    from monitor.rules.lifecycle import label_matches

    if rule.notify is not None:
        targets = list(rule.notify)
    else:
        targets = []
        for r in routes:
            if label_matches(r.match, labels):
                targets += [n for n in r.notify if n not in targets]
                if not r.continue_:
                    break
        if not targets and not any(label_matches(r.match, labels) for r in routes):
            targets = list(notifiers)
    return [n for n in targets if n in notifiers]


def _record(session: Session, alert: Alert, payload: dict[str, Any],
            targets: Sequence[str], now: datetime) -> AlertEvent:
    key = payload["idempotency_key"]
    return queries.add_alert_event(session, alert, payload["event"], payload, targets,
                                   [key] * len(targets), now)


class DbBook:
    """The live alert book: alert rows, outbox rows and suppressions in one session."""

    def __init__(self, session: Session, notifiers: Sequence[str],
                 routes: Sequence[Route] = ()) -> None:
        self.session = session
        self.notifiers = list(notifiers)
        self.routes = list(routes)
        self._firing: list[dict[str, str]] | None = None

    def info(self, fp: str) -> AlertInfo | None:
        alert = queries.alert_by_fingerprint(self.session, fp)
        if alert is None:
            return None
        return AlertInfo(alert.state, tuple(alert.story_ids or ()), tuple(alert.sources),
                         {**alert.labels, **alert.group_labels}, alert.last_notified_at)

    def firing_labels(self) -> list[dict[str, str]]:
        if self._firing is None:
            self._firing = queries.firing_alert_labels(self.session)
        return self._firing

    def apply(self, hit: Hit, decision: Decision, fp: str, now: datetime,
              notify: bool = True) -> dict[str, Any]:
        rule = hit.rule
        alert = queries.alert_by_fingerprint(self.session, fp)
        kind = {"fire": "firing", "update": "updated", "resolve": "resolved"}[decision.action]
        if alert is None:
            alert = Alert(fingerprint=fp, rule_id=rule.id, group_key=hit.group_key,
                          story_id=hit.story_ids[-1] if hit.story_ids else None,
                          state="firing", severity=rule.severity, title=rule.title,
                          labels=dict(rule.labels), group_labels=dict(hit.group), seq=0,
                          sources=[], story_ids=[], first_fired_at=now, last_changed_at=now)
            self.session.add(alert)
        if decision.action == "fire":
            alert.sources, alert.story_ids = list(hit.sources), list(hit.story_ids)
            alert.state, alert.resolved_at = "firing", None
        elif decision.action == "update":
            alert.sources = [*alert.sources, *decision.new_sources]
            alert.story_ids = [*alert.story_ids, *decision.new_stories]
        else:
            alert.state, alert.resolved_at = "resolved", now
        if alert.story_ids:
            alert.story_id = alert.story_ids[-1]
        alert.seq += notify
        alert.last_changed_at = alert.last_notified_at = now
        self.session.flush()
        payload = self._payload(alert, kind, rule, hit, decision)
        metrics.RULE_MATCHES.labels(kind).inc()
        self._firing = None
        if notify:
            labels = labels_of(rule, hit.group)
            _record(self.session, alert, payload,
                    route(rule, labels, self.notifiers, self.routes), now)
        return {**digest_item(fp, kind, alert.state, hit, now, list(alert.story_ids),
                              list(alert.sources)),
                **{k: payload[k] for k in ("summary", "story", "stories", "new_sources")},
                "outlets": payload["sources"]}

    def _payload(self, alert: Alert, kind: str, rule: Rule, hit: Hit,
                 decision: Decision) -> dict[str, Any]:
        ids = list(alert.story_ids)[-MAX_STORIES_IN_PAYLOAD:]
        stories = [s for s in (self.session.get(Story, i) for i in ids) if s is not None]
        if not stories:
            return _groupless_payload(alert, kind, rule, hit)
        members = [m for s in stories for m in queries.story_members(self.session, s.id)]
        return build_payload(alert, kind, stories[-1], members, rule,
                             decision.new_sources if kind == "updated" else (), stories)

    def suppress(self, hit: Hit, decision: Decision, fp: str, now: datetime) -> None:
        reason = decision.reason or "unknown"
        queries.add_suppression(self.session, hit.rule.id, fp, hit.group_key, reason,
                                hit.at, now, {"stories": list(hit.story_ids),
                                              "sources": list(hit.sources)})
        metrics.SUPPRESSIONS.labels(reason).inc()


    def open_digest(self, rule_id: str, key: str) -> dict[str, Any] | None:
        return queries.rule_state_get(self.session, rule_id, key)

    def save_digest(self, rule_id: str, key: str, state: dict[str, Any] | None) -> None:
        if state is None:
            queries.rule_state_delete(self.session, rule_id, key)
        else:
            queries.rule_state_put(self.session, rule_id, key, state, datetime.now(UTC))

    def open_digests(self) -> list[tuple[str, str, dict[str, Any]]]:
        return queries.rule_states_like(self.session, digest.PREFIX)

    def send_digest(self, rule: Rule, key: str, state: dict[str, Any], now: datetime) -> None:
        """One notification listing the digest's alerts, in this transaction: a crash
        before commit sends it on the next tick, with the same idempotency key."""
        fp = fingerprint(rule.id, key)
        alert = queries.alert_by_fingerprint(self.session, fp)
        if alert is None:
            alert = Alert(fingerprint=fp, rule_id=rule.id, group_key=key, story_id=None,
                          state="digest", severity=rule.severity, title=rule.title,
                          labels=dict(rule.labels), group_labels=dict(state["group"]), seq=0,
                          sources=[], story_ids=[], first_fired_at=now, last_changed_at=now)
            self.session.add(alert)
        alert.seq += 1
        alert.sources, alert.story_ids = digest.sources(state), digest.stories(state)
        alert.last_changed_at = alert.last_notified_at = now
        self.session.flush()
        payload = digest_payload(alert, rule, state)
        _record(self.session, alert, payload,
                route(rule, labels_of(rule, state["group"]), self.notifiers, self.routes), now)
        metrics.RULE_MATCHES.labels("digest").inc()


def digest_key(fp: str, state: dict[str, Any]) -> str:
    """Stable per digest (fingerprint, period, part), whatever happens in between."""
    return hashlib.sha256(f"{fp}:digest:{state['start']}:{state['part']}".encode()).hexdigest()[:40]


def digest_payload(alert: Alert, rule: Rule, state: dict[str, Any]) -> dict[str, Any]:
    """The webhook payload of a digest: the usual envelope, plus `digest` and `items`."""
    items = state["items"]
    start, end = datetime.fromisoformat(state["start"]), datetime.fromisoformat(state["end"])
    n = len(items)
    group = ", ".join(f"{k}={v}" for k, v in sorted(state["group"].items()))
    title = (f"{n} alert{'s' if n != 1 else ''} from {_iso(start)} to {_iso(end)}"
             f"{f' ({group})' if group else ''}")
    story = {"id": None, "title": title, "first_seen": _iso(start), "last_seen": _iso(end),
             "source_count": len(digest.sources(state)), "entry_count": n}
    outlets = list({o["name"]: o for item in items for o in item.get("outlets", [])}.values())
    payload = _envelope(
        alert, "digest", {"id": rule.id, "title": rule.title, "severity": rule.severity,
                          "description": rule.description},
        story, outlets, f"{rule.title}: {title}", new_sources=[], group=dict(state["group"]),
        stories=[], digest={"period_start": _iso(start), "period_end": _iso(end),
                            "part": state["part"], "items": n,
                            "complete": n < (rule.digest.max_items if rule.digest else n + 1)},
        items=items)
    payload["idempotency_key"] = digest_key(alert.fingerprint, state)
    return _templated(rule, payload)


def quiet_alerts(session: Session, rules: Sequence[Rule], now: datetime) -> list[Hit]:
    """Resolution hits for firing alerts with no change for their rule's `resolve_after`."""
    by_id = {r.id: r for r in rules if r.resolve_after is not None}
    hits = []
    for alert in queries.firing_alerts(session, list(by_id)):
        rule = by_id[alert.rule_id]
        assert rule.resolve_after is not None
        if now - alert.last_changed_at < timedelta(seconds=rule.resolve_after):
            continue
        hits.append(Hit(rule, alert.group_key, dict(alert.group_labels), "resolved", now,
                        tuple(alert.story_ids), tuple(alert.sources)))
    return hits


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
