"""Rule state in the database: restarts, reloads, and live == backtest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from monitor import retention
from monitor.config import RetentionConfig
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert, AlertEvent, RuleState, Story
from monitor.rules.engine import RuleSet
from monitor.rules.events import RuleEvent
from monitor.rules.live import RuleRunner
from monitor.rules.replay import Replay, events_for_test
from monitor.rules.schema import LoadedRule, Rule, TestStep

T0 = datetime(2026, 3, 19, tzinfo=UTC)
SEQUENCE = Rule.model_validate(yaml.safe_load("""
id: seq
title: strike after truce
signals:
  truce: {any: [{contains: truce}]}
  strike: {any: [{contains: strike*}]}
correlation: {type: sequence, steps: [truce, strike], within: 6h}
resolve_after: 2h
"""))
RULES = [SEQUENCE] + [Rule.model_validate(yaml.safe_load(text)) for text in (
    "{id: m, title: m, min_sources: 2, where: {any: [{contains: quake}]}}",
    "{id: c, title: c, signals: {q: {any: [{contains: quake}]}},"
    " correlation: {type: count, signal: q, threshold: 2, within: 1h}, throttle: 30m}",
    "{id: a, title: a, signals: {t: {any: [{contains: truce}]}, s: {any: [{contains: strike*}]}},"
    " correlation: {type: absence, after: t, expect: s, within: 2h, allowed_lateness: 0s}}",
    "{id: d, title: d, where: {any: [{contains: weather}]}, digest: {every: 1h, max_items: 2}}",
)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'rules.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def runner(rules: list[Rule]) -> RuleRunner:
    compiled = RuleSet.compile([LoadedRule(r, "t.yaml") for r in rules])
    return RuleRunner(lambda: compiled, lambda: ["hook"], list)


def live(sessions: sessionmaker[Session], rules: list[Rule], events: list[RuleEvent],
         until: datetime | None = None, prune: bool = False) -> None:
    """Each event in its own transaction, ticking the clock to its time first
    (and with `prune`, deleting spent rule state before that, as retention would)."""
    for event in sorted(events, key=lambda e: e.at):
        with sessions.begin() as session:
            if event.story_id is not None and session.get(Story, event.story_id) is None:
                session.add(Story(id=event.story_id, title=event.story_title,
                                  first_seen_at=event.at, last_seen_at=event.at,
                                  source_count=1, entry_count=1, updated_at=event.at))
                session.flush()
            run = runner(rules)
            if prune:  # as if the event came as late as the rules allow (10 minutes)
                run.prune(session, event.at + timedelta(minutes=10), 0, 1_000_000)
            run.tick(session, event.at)
            run.process(session, [event], event.at)
    if until is not None:
        with sessions.begin() as session:
            runner(rules).tick(session, until)


def live_changes(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    """(rule, group, change) for every alert change, in order."""
    with sessions() as session:
        rows = session.execute(select(Alert.rule_id, Alert.group_key, AlertEvent.kind)
                               .join(AlertEvent, AlertEvent.alert_id == Alert.id)
                               .order_by(AlertEvent.id))
        return [(r, g, k) for r, g, k in rows]


def live_sources(sessions: sessionmaker[Session]) -> dict[tuple[str, str], list[str]]:
    with sessions() as session:
        return {(a.rule_id, a.group_key): sorted(a.sources)
                for a in session.scalars(select(Alert)) if a.state != "digest"}


def step(minutes: float, story: int, title: str, source: str = "A") -> TestStep:
    return TestStep(at=(T0 + timedelta(minutes=minutes)).isoformat(), story=story,
                    title=title, source=source)


def test_restart_in_the_middle_of_a_sequence(db: sessionmaker[Session]) -> None:
    first = events_for_test([step(0, 1, "Truce agreed")])
    live(db, [SEQUENCE], first)          # the first step commits, then the process "dies"
    second = events_for_test([step(60, 2, "Strikes resume")])
    live(db, [SEQUENCE], second)         # a fresh runner continues from the database
    assert [(r, k) for r, _, k in live_changes(db)] == [("seq", "firing")]
    live(db, [SEQUENCE], second)         # the same event again after a crash: no double
    assert [(r, k) for r, _, k in live_changes(db)] == [("seq", "firing")]


def test_state_of_unchanged_rules_survives_a_reload(db: sessionmaker[Session]) -> None:
    live(db, [SEQUENCE], events_for_test([step(0, 1, "Truce agreed")]))
    edited = SEQUENCE.model_copy(update={"title": "renamed only"})
    live(db, [edited], events_for_test([step(60, 2, "Strikes resume")]))
    assert len(live_changes(db)) == 1, "a new title keeps the partial sequence"
    changed = Rule.model_validate({**SEQUENCE.model_dump(exclude_none=True, by_alias=True),
                                   "correlation": {"type": "sequence", "steps": ["truce", "strike"],
                                                   "within": 3600 * 5}})
    live(db, [changed], events_for_test([step(120, 3, "Strikes resume")]))
    assert len(live_changes(db)) == 1, "a changed definition starts from scratch"


def test_resolve_after_in_the_database(db: sessionmaker[Session]) -> None:
    live(db, [SEQUENCE], events_for_test([step(0, 1, "Truce agreed"),
                                          step(30, 2, "Strikes resume")]),
         until=T0 + timedelta(hours=3))
    assert [k for _, _, k in live_changes(db)] == ["firing", "resolved"]


PER_STORY = [Rule.model_validate(yaml.safe_load(text)) for text in (
    "{id: g, title: g, signals: {q: {any: [{contains: quake}]}}, correlation:"
    " {type: count, signal: q, threshold: 2, within: 1h, group_by: [story_id]}}",
    "{id: s, title: s, signals: {w: {any: [{contains: weather}]}}, correlation:"
    " {type: absence, expect: w, within: 3h, group_by: [source]}}",
    "{id: h, title: h, signals: {q: {any: [{contains: quake}]}}, correlation:"
    " {type: count, signal: q, threshold: 3, within: 2h, group_by: [source]}}",
)]
"""A state row per story (which would pile up for ever), a silence and a count per outlet."""


def rule_state_keys(sessions: sessionmaker[Session]) -> set[tuple[str, str]]:
    with sessions() as session:
        return {(r, k) for r, k in session.execute(select(RuleState.rule_id, RuleState.group_key))}


def test_retention_deletes_rule_state_no_alert_needs(db: sessionmaker[Session]) -> None:
    steps = [step(30 * i, i, "quake weather", "AB"[i % 2]) for i in range(1, 21)]
    live(db, RULES + PER_STORY, events_for_test(steps))
    kept = rule_state_keys(db)
    assert {("g", f"story_id={i}") for i in range(1, 21)} <= kept
    now = T0 + timedelta(minutes=540) + 2 * timedelta(hours=1, minutes=10)
    compiled = RuleSet.compile([LoadedRule(r, "t.yaml") for r in RULES + PER_STORY])
    done = retention.prune(db, RetentionConfig(batch=7), timedelta(hours=72), now,
                           RuleRunner(lambda: compiled, list, list))
    left = rule_state_keys(db)
    # g keeps 1h + 10 min of lateness behind its watermark; twice that before `now` is
    # story 18's time (minute 540): older stories' state can no longer count
    assert {k for k in left if k[0] == "g"} == {("g", f"story_id={i}") for i in range(18, 21)}
    assert {("s", "source=A"), ("s", "source=B")} <= left, "a silence's state stays"
    assert done["rule_state"] == len(kept - left) > 16


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 600), st.integers(1, 30),
                                st.sampled_from(["quake", "weather", "quake weather", "truce",
                                                 "strikes"]), st.sampled_from("AB")),
                      min_size=1, max_size=30))
def test_deleting_spent_rule_state_changes_no_alert(
        tmp_path_factory: pytest.TempPathFactory,
        steps: list[tuple[int, int, str, str]]) -> None:
    events = events_for_test([step(*s) for s in steps])
    until = T0 + timedelta(hours=24)
    changes = []
    for prune in (False, True):
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('prune') / 'p.db'}")
        upgrade(engine)
        sessions = session_factory(engine)
        live(sessions, RULES + PER_STORY, events, until, prune=prune)
        changes.append((live_changes(sessions), live_sources(sessions)))
        engine.dispose()
    assert changes[0] == changes[1]


WORDS = ["quake", "truce", "strikes", "weather"]


@st.composite
def streams(draw: st.DrawFn) -> list[TestStep]:
    n = draw(st.integers(1, 12))
    return [step(draw(st.integers(0, 600)), draw(st.integers(1, 4)),
                 " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=2))),
                 draw(st.sampled_from("ABC"))) for _ in range(n)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(steps=streams())
def test_backtest_and_live_give_the_same_alerts(tmp_path_factory: pytest.TempPathFactory,
                                                steps: list[TestStep]) -> None:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    events = events_for_test(steps)
    until = T0 + timedelta(hours=14)
    live(sessions, RULES, events, until)
    replay = Replay(RuleSet.compile([LoadedRule(r, "t.yaml") for r in RULES]))
    replay.run(events, until)
    engine.dispose()
    assert live_changes(sessions) == [(c["rule"], c["group_key"], c["change"])
                                      for c in replay.book.changes]
    assert live_sources(sessions) == {(a["rule"].id, a["group_key"]): sorted(a["sources"])
                                      for a in replay.book.alerts.values()}
