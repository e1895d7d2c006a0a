"""Replaying events through the production engine on a deterministic clock.

`rules test` (inline `tests:` in rule files) and `rules backtest` both feed
events here in time order: the clock is the events' own time, absences and
silences close as it advances, and every alert change and suppression is
recorded in a `MemoryBook` — the same engine and lifecycle code as live.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.rules.engine import Engine, MemoryStore, RuleSet
from monitor.rules.events import RuleEvent
from monitor.rules.lifecycle import MemoryBook, Policy, handle, send_due_digests
from monitor.rules.schema import Expectation, LoadedRule, RuleTest, TestStep


def parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Replay:
    """Engine + lifecycle over an in-memory store and book."""

    def __init__(self, rules: RuleSet, policy: Policy | None = None) -> None:
        self.engine = Engine(rules, MemoryStore())
        self.policy = policy or Policy(inhibit=rules.inhibit)
        self.book = MemoryBook()
        self.rules = {c.rule.id: c.rule for c in rules.rules}
        self.clock: datetime | None = None

    def advance(self, now: datetime) -> None:
        """Move the clock forward, closing absence windows that ended."""
        if self.clock is not None and now <= self.clock:
            return
        self.clock = now
        send_due_digests(self.book, self.rules, now)
        for hit in self.engine.tick(now) + self.book.quiet(now):
            handle(self.book, self.policy, hit, now)

    def feed(self, event: RuleEvent) -> None:
        self.advance(event.at)
        now = self.clock or event.at
        for hit in self.engine.process(event):
            handle(self.book, self.policy, hit, now)

    def run(self, events: Iterable[RuleEvent], until: datetime | None = None) -> MemoryBook:
        for event in sorted(events, key=lambda e: e.at):
            self.feed(event)
        if until is not None:
            self.advance(until)
        return self.book


@dataclass
class _Story:
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def events_for_test(steps: list[TestStep]) -> list[RuleEvent]:
    """Turn a rule test's steps into the entry and story events production would emit."""
    stories: dict[int, _Story] = {}
    out: list[RuleEvent] = []
    for step in sorted(steps, key=lambda s: parse_time(s.at)):
        when = parse_time(step.at)
        urls = (step.url,) if step.url else ()
        langs = (step.language,) if step.language else ()
        out.append(RuleEvent("entry", "new", when, step.story, (step.title,), (step.text,),
                             step.source, (step.source,), tags=tuple(step.tags),
                             feed_tags=tuple(step.tags), languages=langs, urls=urls,
                             story_title=step.title))
        if step.story is None:
            continue
        story = stories.get(step.story)
        change = "created" if story is None else (
            "source_added" if step.source not in story.sources else "updated")
        story = stories.setdefault(step.story, _Story())
        story.titles.append(step.title)
        story.texts.append(step.text)
        story.sources.append(step.source)
        story.tags += [t for t in step.tags if t not in story.tags]
        out.append(RuleEvent("story", change, when, step.story, tuple(story.titles),
                             tuple(story.texts), step.source, tuple(story.sources),
                             tags=tuple(story.tags), feed_tags=tuple(story.tags),
                             languages=langs, urls=urls, entry_count=len(story.titles),
                             story_title=story.titles[0]))
    return out


@dataclass(frozen=True)
class CaseResult:
    rule_id: str
    name: str
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def _check(expect: Expectation, got: dict[str, Any]) -> list[str]:
    problems = []
    if got["change"] != expect.change:
        problems.append(f"change {got['change']} (expected {expect.change})")
    if expect.at is not None and got["at"] != parse_time(expect.at):
        problems.append(f"at {got['at'].isoformat()} (expected {expect.at})")
    if expect.group is not None and got["group"] != expect.group:
        problems.append(f"group {got['group']} (expected {expect.group})")
    if expect.sources is not None and sorted(got["sources"]) != sorted(expect.sources):
        problems.append(f"sources {got['sources']} (expected {expect.sources})")
    if expect.stories is not None and sorted(got["stories"]) != sorted(expect.stories):
        problems.append(f"stories {got['stories']} (expected {expect.stories})")
    if expect.items is not None and got.get("items") != expect.items:
        problems.append(f"items {got.get('items')} (expected {expect.items})")
    return problems


def run_test(loaded: LoadedRule, test: RuleTest, inhibit: tuple[Any, ...] = ()) -> CaseResult:
    """Run one inline test of one rule, alone, on a deterministic clock."""
    rules = RuleSet.compile([loaded], list(inhibit))
    book = Replay(rules).run(events_for_test(test.events),
                             parse_time(test.until) if test.until else None)
    failures = []
    if len(book.changes) != len(test.expect):
        failures.append(f"expected {len(test.expect)} alert change(s), got "
                        f"{len(book.changes)}: " + ", ".join(
                            f"{c['change']}@{c['at'].isoformat()}" for c in book.changes))
    for i, (want, got) in enumerate(zip(test.expect, book.changes, strict=False)):
        failures += [f"change {i + 1}: {p}" for p in _check(want, got)]
    if test.suppressed is not None:
        reasons = [s["reason"] for s in book.suppressed]
        if reasons != test.suppressed:
            failures.append(f"suppressions {reasons} (expected {test.suppressed})")
    return CaseResult(loaded.rule.id, test.name, failures)
