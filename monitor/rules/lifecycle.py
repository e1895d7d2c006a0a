"""What happens to a rule hit: fire, update, resolve, or a suppression with its reason.

The same decisions run live (alerts in the database) and in `rules test` and
backtests (alerts in memory), so an analyst's test predicts production.
Order matters and follows Alertmanager: a hit that brings nothing new is a
duplicate; then inhibition, silences, active hours, and throttling.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from monitor.rules import digest
from monitor.rules.engine import Hit
from monitor.rules.schema import DAYS, ActiveHours, InhibitRule, Rule


@dataclass(frozen=True)
class AlertInfo:
    """What lifecycle needs to know of an existing alert."""

    state: str
    story_ids: tuple[int, ...]
    sources: tuple[str, ...]
    labels: dict[str, str]
    last_notified_at: datetime | None


@dataclass(frozen=True)
class Decision:
    action: str
    """fire | update | resolve | suppress | ignore"""
    reason: str | None = None
    new_sources: tuple[str, ...] = ()
    new_stories: tuple[int, ...] = ()


def labels_of(rule: Rule, group: dict[str, str]) -> dict[str, str]:
    """An alert's labels: its rule, severity, the rule's own labels and the group."""
    return {"rule_id": rule.id, "severity": rule.severity, **rule.labels, **group}


def fingerprint(rule_id: str, group_key: str) -> str:
    return hashlib.sha256(f"{rule_id}\x00{group_key}".encode()).hexdigest()[:32]


def label_matches(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """`value` equals, `!value` differs, `~regex` matches fully, `!~regex` does not."""
    for key, want in matchers.items():
        have = labels.get(key, "")
        if want.startswith("!~"):
            ok = re.fullmatch(want[2:], have) is None
        elif want.startswith("~"):
            ok = re.fullmatch(want[1:], have) is not None
        elif want.startswith("!"):
            ok = have != want[1:]
        else:
            ok = have == want
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    author: str = ""
    comment: str = ""

    def mutes(self, labels: dict[str, str], now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at and label_matches(self.matchers, labels)


def in_active_hours(hours: ActiveHours, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(hours.timezone))
    if DAYS[local.weekday()] not in hours.days:
        return False
    minute = local.hour * 60 + local.minute
    start = int(hours.start[:2]) * 60 + int(hours.start[3:])
    end = int(hours.end[:2]) * 60 + int(hours.end[3:])
    return start <= minute < end if start <= end else (minute >= start or minute < end)


@dataclass
class Policy:
    """Silences and inhibition rules in force; refreshed by the caller."""

    silences: list[Silence] = field(default_factory=list)
    inhibit: tuple[InhibitRule, ...] = ()

    def decide(self, hit: Hit, alert: AlertInfo | None, firing: list[dict[str, str]],
               now: datetime) -> Decision:
        """`firing`: labels of the other alerts firing now (for inhibition)."""
        rule = hit.rule
        if hit.change == "resolved":
            if alert is not None and alert.state == "firing":
                return Decision("resolve")
            return Decision("ignore")
        new_sources: tuple[str, ...] = hit.sources
        new_stories: tuple[int, ...] = hit.story_ids
        if alert is not None:
            new_sources = tuple(s for s in hit.sources if s not in alert.sources)
            new_stories = tuple(s for s in hit.story_ids if s not in alert.story_ids)
            # A resolved alert re-opens on news; one about nothing (a silence) always may.
            about_nothing = not hit.sources and not hit.story_ids
            stale = alert.state == "firing" or not about_nothing
            if stale and not new_sources and not new_stories:
                return Decision("suppress", "duplicate")
        labels = labels_of(rule, hit.group)
        reason = self._muted(rule, labels, firing, now)
        if reason is None and alert is not None and alert.last_notified_at is not None \
                and rule.throttle and now - alert.last_notified_at < timedelta(
                    seconds=rule.throttle):
            reason = "throttled"
        if reason:
            return Decision("suppress", reason, new_sources, new_stories)
        action = "update" if alert is not None and alert.state == "firing" else "fire"
        return Decision(action, None, new_sources, new_stories)

    def _muted(self, rule: Rule, labels: dict[str, str], firing: list[dict[str, str]],
               now: datetime) -> str | None:
        for inh in self.inhibit:
            if not label_matches(inh.target, labels):
                continue
            for other in firing:
                if other == labels or not label_matches(inh.source, other):
                    continue
                if all(other.get(k) == labels.get(k) for k in inh.equal):
                    return "inhibited"
        if any(s.mutes(labels, now) for s in self.silences):
            return "silenced"
        if rule.active_hours and not in_active_hours(rule.active_hours, now):
            return "outside_active_hours"
        return None


class AlertBook(Protocol):
    """Where alerts live: the database live, memory in tests and backtests."""

    def info(self, fingerprint: str) -> AlertInfo | None: ...

    def firing_labels(self) -> list[dict[str, str]]: ...

    def apply(self, hit: Hit, decision: Decision, fingerprint: str, now: datetime,
              notify: bool = True) -> dict[str, Any]:
        """Record an alert change; notify it now, or return it as a digest item."""

    def suppress(self, hit: Hit, decision: Decision, fingerprint: str,
                 now: datetime) -> None: ...

    def open_digest(self, rule_id: str, key: str) -> dict[str, Any] | None: ...

    def save_digest(self, rule_id: str, key: str, state: dict[str, Any] | None) -> None: ...

    def open_digests(self) -> list[tuple[str, str, dict[str, Any]]]: ...

    def send_digest(self, rule: Rule, key: str, state: dict[str, Any], now: datetime) -> None: ...


def handle(book: AlertBook, policy: Policy, hit: Hit, now: datetime) -> Decision:
    """Decide on a hit and record the outcome in the book."""
    fp = fingerprint(hit.rule.id, hit.group_key)
    decision = policy.decide(hit, book.info(fp), book.firing_labels(), now)
    if decision.action == "suppress":
        book.suppress(hit, decision, fp, now)
    elif decision.action != "ignore" and hit.rule.digest is None:
        book.apply(hit, decision, fp, now)
    elif decision.action != "ignore":
        _collect(book, hit, book.apply(hit, decision, fp, now, notify=False), now)
        book.suppress(hit, Decision("suppress", "digested", decision.new_sources,
                                    decision.new_stories), fp, now)
    return decision


def _collect(book: AlertBook, hit: Hit, item: dict[str, Any], now: datetime) -> None:
    """Put an alert change into its rule's open digest; send the digest when full."""
    spec = hit.rule.digest
    assert spec is not None
    key, group = digest.key_of(spec, labels_of(hit.rule, hit.group))
    state = book.open_digest(hit.rule.id, key)
    if state is not None and now >= digest.ends(state):
        book.send_digest(hit.rule, key, state, now)  # its period ended before the tick came
        state = None
    state = state or digest.opened(spec, group, now)
    digest.add(state, item)
    if digest.full(spec, state):
        book.send_digest(hit.rule, key, state, now)
        state = digest.after_sending(state, now)
    book.save_digest(hit.rule.id, key, state)


def send_due_digests(book: AlertBook, rules: dict[str, Rule], now: datetime) -> None:
    """Send every open digest whose period has ended (of rules still loaded)."""
    for rule_id, key, state in book.open_digests():
        rule = rules.get(rule_id)
        if rule is not None and now >= digest.ends(state):
            book.send_digest(rule, key, state, now)
            book.save_digest(rule_id, key, None)


@dataclass
class MemoryBook:
    """Alerts in memory: `rules test` and backtests record every change here."""

    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    digests: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Open digests by (rule id, digest key)."""

    def info(self, fp: str) -> AlertInfo | None:
        a = self.alerts.get(fp)
        if a is None:
            return None
        return AlertInfo(a["state"], tuple(a["stories"]), tuple(a["sources"]), a["labels"],
                         a["notified"])

    def firing_labels(self) -> list[dict[str, str]]:
        return [a["labels"] for a in self.alerts.values() if a["state"] == "firing"]

    def apply(self, hit: Hit, decision: Decision, fp: str, now: datetime,
              notify: bool = True) -> dict[str, Any]:
        a = self.alerts.setdefault(fp, {"stories": [], "sources": [], "state": "resolved",
                                        "labels": labels_of(hit.rule, hit.group),
                                        "notified": None, "rule": hit.rule,
                                        "group": hit.group, "group_key": hit.group_key})
        change = {"fire": "firing", "update": "updated", "resolve": "resolved"}[decision.action]
        if decision.action == "fire":
            a["stories"], a["sources"] = list(hit.story_ids), list(hit.sources)
        else:
            a["stories"] += [s for s in hit.story_ids if s not in a["stories"]]
            a["sources"] += [s for s in hit.sources if s not in a["sources"]]
        a["state"] = "resolved" if change == "resolved" else "firing"
        a["notified"] = now
        if notify:
            self.changes.append({"rule": hit.rule.id, "change": change, "group": hit.group,
                                 "group_key": hit.group_key, "at": hit.at, "now": now,
                                 "stories": list(a["stories"]), "sources": list(a["sources"])})
        return digest_item(fp, change, a["state"], hit, now, a["stories"], a["sources"])

    def quiet(self, now: datetime) -> list[Hit]:
        """Resolution hits for firing alerts unchanged for their rule's `resolve_after`."""
        return [Hit(a["rule"], a["group_key"], a["group"], "resolved", now,
                    tuple(a["stories"]), tuple(a["sources"]))
                for a in self.alerts.values()
                if a["state"] == "firing" and a["rule"].resolve_after is not None
                and now - a["notified"] >= timedelta(seconds=a["rule"].resolve_after)]

    def suppress(self, hit: Hit, decision: Decision, fp: str, now: datetime) -> None:
        self.suppressed.append({"rule": hit.rule.id, "reason": decision.reason,
                                "group": hit.group, "at": hit.at, "now": now})

    def open_digest(self, rule_id: str, key: str) -> dict[str, Any] | None:
        return self.digests.get((rule_id, key))

    def save_digest(self, rule_id: str, key: str, state: dict[str, Any] | None) -> None:
        if state is None:
            self.digests.pop((rule_id, key), None)
        else:
            self.digests[(rule_id, key)] = state

    def open_digests(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(r, k, s) for (r, k), s in self.digests.items()]

    def send_digest(self, rule: Rule, key: str, state: dict[str, Any], now: datetime) -> None:
        # A replay's clock jumps from event to event: the daemon, ticking every second,
        # would have sent a digest due by time when its period ended.
        sent = min(now, digest.ends(state))
        self.changes.append({"rule": rule.id, "change": "digest", "group": state["group"],
                             "group_key": key, "at": sent, "now": sent,
                             "stories": digest.stories(state), "sources": digest.sources(state),
                             "items": len(state["items"]), "part": state["part"]})


def digest_item(fp: str, change: str, state: str, hit: Hit, now: datetime,
                stories: list[int], sources: list[str]) -> dict[str, Any]:
    """What a digest lists about one alert change (the live book adds the story text)."""
    return {"fingerprint": fp, "event": change, "status": state, "group": dict(hit.group),
            "story_ids": list(stories), "sources": list(sources), "first_at": now.isoformat(),
            "last_at": now.isoformat()}
