"""A real outbox on a real SQLite file, and a Deliverer driven against local receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter
from sqlalchemy import select

from monitor.alerts import outbox
from monitor.alerts.deliver import Deliverer
from monitor.alerts.notify import build_notifiers
from monitor.config import DeliveryConfig, NotifierConfig
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert, AlertEvent, Delivery, Feed, Story
from monitor.feeds.parse import RawEntry
from monitor.rules.schema import Rule
from monitor.stories.normalise import normalise

NOTIFIERS: TypeAdapter[dict[str, NotifierConfig]] = TypeAdapter(dict[str, NotifierConfig])
RULE = Rule(id="quake", title="Earthquake reported", severity="high",
            labels={"team": "desk"}, description="A strong earthquake.")


class Outbox:
    """Stories, alerts and deliveries in a migrated SQLite database under `tmp`."""

    def __init__(self, tmp: Path, name: str = "outbox.db") -> None:
        self.url = f"sqlite:///{tmp / name}"
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)
        self.now = datetime.now(UTC)

    def story(self, title: str, sources: list[str]) -> int:
        with self.sessions.begin() as session:
            story = queries.create_story(session, title, self.now - timedelta(hours=1), self.now)
            for source in sources:
                self._member(session, story, source)
            return story.id

    def _member(self, session: Any, story: Story, source: str) -> None:
        feed = session.scalar(select(Feed).where(Feed.name == source)) or queries.upsert_feed(
            session, f"http://127.0.0.1/{source}.xml", source, [], None, False, self.now)
        n = story.entry_count
        raw = RawEntry(f"{story.id}-{n}",
                       f"https://{source.lower().replace(' ', '')}.example/{story.id}",
                       f"{source} on {story.title}", None, f"{source} report {n}",
                       published=self.now - timedelta(minutes=50 - n))
        (item,) = normalise([raw], self.now)
        entry = queries.store_entry(session, feed.id, item, item.key, None, self.now).entry
        queries.add_member(session, story, entry, source, 1.0, "cluster", {}, self.now)

    def fire(self, story_id: int, notifiers: list[str], rule: Rule = RULE,
             add_source: str | None = None) -> str | None:
        """Evaluate `rule` on the story (after adding a source): firing, updated or None."""
        with self.sessions.begin() as session:
            story = session.get(Story, story_id)
            assert story is not None
            if add_source:
                self._member(session, story, add_source)
            members = queries.story_members(session, story_id)
            return outbox.raise_or_update(session, rule, story, members, notifiers,
                                          datetime.now(UTC))

    def resolve(self, notifiers: list[str], rule: Rule) -> list[str]:
        with self.sessions.begin() as session:
            return outbox.resolve_quiet(session, [rule], notifiers, datetime.now(UTC))

    def deliveries(self) -> list[tuple[Delivery, AlertEvent]]:
        with self.sessions() as session:
            return [(d, ev) for d, ev in session.execute(
                select(Delivery, AlertEvent).join(AlertEvent, AlertEvent.id == Delivery.event_id)
                .order_by(Delivery.id))]

    def alerts(self) -> list[Alert]:
        with self.sessions() as session:
            return list(session.scalars(select(Alert).order_by(Alert.id)))

    def pending(self) -> int:
        return sum(d.status == "pending" for d, _ in self.deliveries())

    def deliver(self, notifiers: dict[str, Any], until: Callable[[], bool] | None = None,
                timeout: float = 20, **delivery: Any) -> Deliverer:
        """Run the delivery loop until `until()` (default: nothing pending) holds."""
        configs = NOTIFIERS.validate_python(notifiers)
        cfg = DeliveryConfig.model_validate({"backoff_initial": 0.05, "backoff_max": 0.2,
                                             **delivery})
        done = until or (lambda: self.pending() == 0)

        async def main() -> Deliverer:
            async with httpx.AsyncClient() as client:
                deliverer = Deliverer(self.sessions, build_notifiers(configs, client), cfg,
                                      "test", configs)
                deadline = time.monotonic() + timeout
                while not done():
                    if time.monotonic() > deadline:
                        raise AssertionError("outbox did not reach the expected state")
                    if not await deliverer.run_once():
                        await asyncio.sleep(0.02)
                return deliverer

        return asyncio.run(main())

    def resend(self, notifiers: dict[str, Any]) -> None:
        """One re-send pass of firing alerts, as the daemon's upkeep tick does it."""
        configs = NOTIFIERS.validate_python(notifiers)

        async def main() -> None:
            async with httpx.AsyncClient() as client:
                await Deliverer(self.sessions, build_notifiers(configs, client),
                                DeliveryConfig(), "test", configs).resend_firing()

        asyncio.run(main())

    def close(self) -> None:
        self.engine.dispose()
