"""`storywatch alerts preview`: every notifier's message for a rule, from a fixture story.

The fixture is turned into unsaved model objects and goes through the same
`build_payload` and notifier rendering as a real alert, so what the preview
shows is what a receiver would get; nothing is sent and no database is used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor.alerts.notify import Message, build_notifier
from monitor.alerts.outbox import build_payload, fingerprint
from monitor.config import NotifierConfig
from monitor.db.models import Alert, Entry, Story, StoryMember
from monitor.db.queries import MemberRow
from monitor.rules.schema import Rule


class FixtureSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    title: str
    url: str | None = None


class Fixture(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = "Grid operator reports overnight strike on two power stations"
    event: Literal["firing", "updated", "resolved"] = "firing"
    sources: list[FixtureSource] = Field(default_factory=lambda: [
        FixtureSource(name="Meridian Wire", title="Drones hit power plants hours after truce",
                      url="https://meridian.example/news/1"),
        FixtureSource(name="The Northern Ledger", title="Energy truce tested within hours",
                      url="https://ledger.example/world/2"),
        FixtureSource(name="Valley Courier", title="Kresk wakes to darkness after strike"),
    ], min_length=1)


def load_fixture(path: Path | None) -> Fixture:
    """The built-in fixture, or a YAML file with `title`, `event` and `sources`."""
    if path is None:
        return Fixture()
    try:
        return Fixture.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: not a usable fixture: {exc}") from exc


def payload_for(rule: Rule, fixture: Fixture, now: datetime) -> Message:
    first = now - timedelta(hours=len(fixture.sources))
    story = Story(id=1, title=fixture.title, first_seen_at=first, last_seen_at=now,
                  source_count=len(fixture.sources), entry_count=len(fixture.sources))
    members = [
        MemberRow(Entry(id=i, title=s.title, url=s.url, event_at=first + timedelta(hours=i)),
                  StoryMember(source=s.name), s.name, [])
        for i, s in enumerate(fixture.sources)]
    seq = {"firing": 1, "updated": 2, "resolved": 3}[fixture.event]
    alert = Alert(fingerprint=fingerprint(rule.id, "story:1"), rule_id=rule.id,
                  state="resolved" if fixture.event == "resolved" else "firing",
                  labels=dict(rule.labels), seq=seq, first_fired_at=first, last_changed_at=now)
    new = [fixture.sources[-1].name] if fixture.event == "updated" else []
    payload = build_payload(alert, fixture.event, story, members, rule, new)
    return Message(payload, payload["idempotency_key"])


def preview(rule: Rule, notifiers: dict[str, NotifierConfig], fixture: Fixture,
            now: datetime | None = None) -> list[tuple[str, str, str]]:
    """(notifier name, kind, rendered message) for every notifier the rule reaches."""
    msg = payload_for(rule, fixture, now or datetime.now(UTC))
    names = rule.notify if rule.notify is not None else list(notifiers)
    client = httpx.AsyncClient()  # never used to send: rendering only
    return [(name, notifiers[name].type,
             build_notifier(name, notifiers[name], client).preview(msg))
            for name in names if name in notifiers]
