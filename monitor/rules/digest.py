"""Digests: a rule's alert changes of one period, delivered as one notification.

Pure decisions shared by the live book (state in the `rule_state` table, next
to the rule's windows) and the memory book of tests and backtests, so that a
digest in `rules test` is the digest production sends. An open digest is a
JSON-able dict: its group, period bounds, part number and items. Items are
keyed by alert fingerprint: an alert that changes twice within a period is
one item with two changes, so `max_items` counts alerts, not matches.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitor.rules.engine import DIGEST_PREFIX
from monitor.rules.schema import DAY, Digest

PREFIX = DIGEST_PREFIX
"""Group keys of open digests in the rule state; no window's group key starts so."""
_MONDAY = date(1970, 1, 5)


def period(spec: Digest, now: datetime) -> tuple[datetime, datetime]:
    """The period holding `now`, on the wall clock of the digest's time zone."""
    zone = ZoneInfo(spec.timezone)
    local = now.astimezone(zone)
    if spec.every >= DAY:
        days = int(spec.every // DAY)
        start_day = local.date() - timedelta(days=(local.date() - _MONDAY).days % days)
        start = _at(start_day, spec.offset, zone)
        if start > now:
            start_day -= timedelta(days=days)
            start = _at(start_day, spec.offset, zone)
        return start, _at(start_day + timedelta(days=days), spec.offset, zone)
    midnight = datetime.combine(local.date(), time(), zone)
    into = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)).total_seconds()
    k = (into - spec.offset) // spec.every
    start = _wall(midnight, spec.offset + k * spec.every, zone)
    return start, _wall(midnight, spec.offset + (k + 1) * spec.every, zone)


def _at(day: date, offset: float, zone: ZoneInfo) -> datetime:
    return _wall(datetime.combine(day, time(), zone), offset, zone)


def _wall(midnight: datetime, seconds: float, zone: ZoneInfo) -> datetime:
    """`seconds` of wall-clock time after a local midnight, as UTC."""
    naive = midnight.replace(tzinfo=None) + timedelta(seconds=seconds)
    return naive.replace(tzinfo=zone).astimezone(UTC)


def key_of(spec: Digest, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The open-digest key and the labels it is grouped by."""
    group = {name: labels.get(name, "") for name in spec.group_by}
    return PREFIX + "|".join(f"{k}={v}" for k, v in sorted(group.items())), group


def opened(spec: Digest, group: dict[str, str], now: datetime, part: int = 1) -> dict[str, Any]:
    start, end = period(spec, now)
    return {"group": group, "start": start.isoformat(), "end": end.isoformat(), "part": part,
            "items": []}


def add(state: dict[str, Any], item: dict[str, Any]) -> None:
    """Add an alert change; a second change of the same alert updates its item."""
    for i, existing in enumerate(state["items"]):
        if existing["fingerprint"] == item["fingerprint"]:
            state["items"][i] = {**item, "event": existing["event"],
                                 "first_at": existing["first_at"],
                                 "changes": existing["changes"] + 1}
            return
    state["items"].append({**item, "changes": 1})


def ends(state: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(state["end"])


def full(spec: Digest, state: dict[str, Any]) -> bool:
    return len(state["items"]) >= spec.max_items


def after_sending(state: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """What stays open once a digest went out: the next part of an unfinished period."""
    if now >= ends(state):
        return None
    return {**state, "part": state["part"] + 1, "items": []}


def sources(state: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s for item in state["items"] for s in item["sources"]))


def stories(state: dict[str, Any]) -> list[int]:
    return list(dict.fromkeys(s for item in state["items"] for s in item["story_ids"]))
