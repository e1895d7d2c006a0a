"""Analyst tooling: lint, inline tests, and backtests through the production engine.

Lint goes past the schema: notifier names, routes and templates are checked
against the settings, and templates are rendered on a sample alert with
StrictUndefined so a typo fails here, not at 3 a.m. Backtests cluster stored
history (or feed files) with the production clusterer and replay the stories
through the same engine and lifecycle as the daemon.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from monitor.alerts.render import RenderError, compile_template, render
from monitor.config import Settings
from monitor.feeds.parse import FeedParseError, parse
from monitor.rules.engine import RuleSet
from monitor.rules.replay import CaseResult, Replay, events_for_test, run_test
from monitor.rules.schema import RuleBundle, RuleErrors, TestStep, load_bundle
from monitor.stories.cluster import Doc, StoryIndex
from monitor.stories.normalise import normalise
from monitor.yamlpos import Position, SourceError

SAMPLE_PAYLOAD: dict[str, Any] = {
    "version": 1, "idempotency_key": "k", "fingerprint": "f", "event": "firing",
    "status": "firing", "seq": 1,
    "rule": {"id": "r", "title": "Rule", "severity": "high", "description": ""},
    "labels": {"rule_id": "r", "severity": "high"}, "group": {"countries": "Ukraine"},
    "story": {"id": 1, "title": "Story", "first_seen": "2026-03-19T05:00:00Z",
              "last_seen": "2026-03-19T07:00:00Z", "source_count": 2, "entry_count": 2},
    "stories": [], "new_sources": [], "summary": "Rule: Story (2 sources)",
    "sources": [{"name": "Outlet", "title": "Headline", "url": "https://o.example/1",
                 "published": "2026-03-19T05:00:00Z"}],
    "first_fired": "2026-03-19T07:00:00Z", "changed_at": "2026-03-19T07:00:00Z",
}
"""What a template sees (docs/webhook.md); used to render templates at lint time."""


class _AnyGroup(dict[str, str]):
    """A group with every label, for rendering fingerprint templates at lint time."""

    def __missing__(self, key: str) -> str:
        return "sample"


def lint(settings: Settings) -> RuleBundle:
    """Load the rules and check references and templates; raise RuleErrors."""
    bundle = load_bundle(settings.resolved_rules_dir())
    errors: list[SourceError] = []
    for lr in bundle.rules:
        where = Position(lr.file, lr.line, 1)
        for name in lr.rule.notify or []:
            if name not in settings.notifiers:
                errors.append(SourceError(where, f"rule {lr.rule.id}: notify: unknown "
                                                 f"notifier {name!r}"))
        for key in ("summary", "body"):
            source = getattr(lr.rule, key)
            if source:
                try:
                    render(compile_template(source, f"rule {lr.rule.id}"), SAMPLE_PAYLOAD)
                except RenderError as exc:
                    errors.append(SourceError(where, f"rule {lr.rule.id}: {key}: {exc}"))
        if lr.rule.fingerprint:
            try:
                compile_template(lr.rule.fingerprint, lr.rule.id).render(
                    group=_AnyGroup(), rule_id=lr.rule.id)
            except TemplateError as exc:
                errors.append(SourceError(where, f"rule {lr.rule.id}: fingerprint: {exc}"))
            except RenderError as exc:
                errors.append(SourceError(where, f"rule {lr.rule.id}: fingerprint: {exc}"))
    for i, route in enumerate(settings.routes):
        for name in route.notify:
            if name not in settings.notifiers:
                errors.append(SourceError(Position("settings", 1, 1),
                                          f"routes.{i}.notify: unknown notifier {name!r}"))
    if errors:
        raise RuleErrors(errors)
    return bundle


def run_tests(bundle: RuleBundle, rule_id: str | None = None) -> list[CaseResult]:
    """Every inline test (of one rule, if given), each run alone on a fresh engine."""
    return [run_test(lr, test, tuple(bundle.inhibit)) for lr in bundle.rules
            if rule_id in (None, lr.rule.id) for test in lr.rule.tests]


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of history to replay: stored, or read from a feed file."""

    id: int
    source: str
    title: str
    text: str
    at: datetime
    tags: tuple[str, ...] = ()
    url: str | None = None
    guid: str | None = None
    canonical_url: str | None = None
    content_hash: str | None = None


def feed_file_entries(paths: Iterable[Path]) -> Iterator[HistoryEntry]:
    """Entries of feed files; each file is one outlet, named after the file."""
    n = 0
    for path in paths:
        try:
            feed = parse(path.read_bytes())
        except (OSError, FeedParseError) as exc:
            raise RuleErrors([SourceError(Position(str(path), 1, 1), str(exc))]) from exc
        fetched = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        for item in normalise(feed.entries, fetched):
            n += 1
            yield HistoryEntry(n, feed.title or path.stem, item.title, item.text,
                               item.event_at, item.tags, item.url, item.guid,
                               item.canonical_url, item.content_hash)


def cluster(entries: Iterable[HistoryEntry], window: timedelta) -> list[TestStep]:
    """Group entries into stories with the production clusterer, in time order."""
    index = StoryIndex(window)
    steps = []
    next_story = 1
    for e in sorted(entries, key=lambda e: (e.at, e.id)):
        feats = index.features(Doc(e.id, e.source, e.title, e.text, e.at, e.guid,
                                   e.canonical_url, e.content_hash))
        story = index.assign(feats).story_id
        if story is None:
            story, next_story = next_story, next_story + 1
        index.observe(feats)
        index.add(feats, story)
        steps.append(TestStep(at=e.at.isoformat(), story=story, title=e.title, text=e.text,
                              source=e.source, tags=list(e.tags), url=e.url))
    return steps


def backtest(rules: RuleSet, entries: Iterable[HistoryEntry], window: timedelta,
             until: datetime | None = None) -> Replay:
    """Replay history through clustering, the engine and the lifecycle."""
    replay = Replay(rules)
    steps = cluster(entries, window)
    end = until or (max((datetime.fromisoformat(s.at) for s in steps), default=None))
    replay.run(events_for_test(steps), end)
    return replay
