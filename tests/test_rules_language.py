"""The rule language: operators, correlation types, time, lifecycle — on a deterministic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.rules.engine import RuleSet
from monitor.rules.lifecycle import Policy, Silence
from monitor.rules.replay import Replay, events_for_test
from monitor.rules.schema import LoadedRule, Rule, TestStep

T0 = datetime(2026, 3, 19, 0, 0, tzinfo=UTC)


def rule(text: str) -> Rule:
    return Rule.model_validate(yaml.safe_load(text))


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def step(minutes: float, story: int | None, title: str, source: str = "A", text: str = "",
         tags: list[str] | None = None) -> TestStep:
    return TestStep(at=at(minutes), story=story, title=title, source=source, text=text,
                    tags=tags or [])


def replay(r: Rule, steps: list[TestStep], until: float | None = None,
           policy: Policy | None = None) -> Replay:
    rs = RuleSet.compile([LoadedRule(r, "test.yaml")])
    run = Replay(rs, policy)
    run.run(events_for_test(steps), T0 + timedelta(minutes=until) if until else None)
    return run


def changes(run: Replay) -> list[tuple[str, list[Any]]]:
    return [(c["change"], sorted(c["sources"])) for c in run.book.changes]


# -- operators -----------------------------------------------------------------
@pytest.mark.parametrize(("cond", "title", "expected"), [
    ({"contains": "strike"}, "Drone strike", True),
    ({"contains": "strike"}, "Striker scores", False),
    ({"contains": "strike*"}, "Strikes resume", True),
    ({"contains_any": ["flood", "quake"]}, "Quake!", True),
    ({"contains_all": ["flood", "quake"]}, "Quake and flood", True),
    ({"contains_all": ["flood", "quake"]}, "Quake only", False),
    ({"phrase": "power grid"}, "The power   grid failed", True),
    ({"phrase": "power grid"}, "grid power", False),
    ({"contains": "sao paulo"}, "Flooding in São Paulo", True),
    ({"regex": r"\b\d{2,} (dead|killed)\b"}, "At least 12 killed", True),
    ({"contains": "Apple", "case_sensitive": True}, "apple harvest", False),
    ({"contains": "Apple", "case_sensitive": True}, "Apple results", True),
    ({"field": "source", "equals": "Wire"}, "x", True),
    ({"field": "source", "in": ["Other", "wire"]}, "x", True),
    ({"field": "tags", "contains": "energy"}, "x", True),
    ({"field": "countries", "equals": "Ukraine"}, "Kyiv's mayor speaks", True),
    ({"field": "language", "exists": False}, "x", True),
    ({"field": "source_count", "gte": 1}, "x", True),
    ({"field": "entry_count", "gt": 1}, "x", False),
])
def test_operators(cond: dict[str, Any], title: str, expected: bool) -> None:
    r = Rule.model_validate({"id": "r", "title": "t", "where": {"all": [cond]}})
    run = replay(r, [step(0, 1, title, source="Wire", tags=["energy"])])
    assert bool(run.book.changes) is expected


def test_lists_macros_and_exceptions(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""
lists:
  energy: [power plant*, substation*, grid]
macros:
  energy_hit:
    all:
      - {contains_any: $energy}
      - {contains_any: [strike*, struck]}
rules:
  - id: r
    title: t
    where:
      all: [{macro: energy_hit}]
      none: [{field: title, contains: drill}]
""")
    rs = RuleSet.load(tmp_path)
    run = Replay(rs)
    run.run(events_for_test([step(0, 1, "Strikes hit power plants"),
                             step(1, 2, "Grid struck in drill")]))
    assert [c["stories"] for c in run.book.changes] == [[1]]


# -- correlation types ---------------------------------------------------------------
def test_match_fires_once_then_updates_per_new_source() -> None:
    r = rule("{id: r, title: t, min_sources: 2, where: {any: [{contains: quake}]}}")
    run = replay(r, [step(0, 1, "Quake", "A"), step(5, 1, "Quake", "B"),
                     step(6, 1, "Quake again", "B"), step(9, 1, "Quake", "C")])
    assert changes(run) == [("firing", ["A", "B"]), ("updated", ["A", "B", "C"])]
    assert [s["reason"] for s in run.book.suppressed] == ["duplicate"]


COUNT = """
id: r
title: t
signals: {q: {any: [{contains: quake}]}}
correlation: {type: count, signal: q, threshold: 3, within: 1h}
"""


def test_count_within_window_and_exactly_at_t() -> None:
    fired = replay(rule(COUNT), [step(0, 1, "quake"), step(30, 2, "quake"),
                                 step(60, 3, "quake")])
    assert [c["stories"] for c in fired.book.changes] == [[1, 2, 3]], "exactly T is inside"
    missed = replay(rule(COUNT), [step(0, 1, "quake"), step(30, 2, "quake"),
                                  step(60.5, 3, "quake")])
    assert missed.book.changes == []


def test_count_out_of_order_and_late() -> None:
    run = replay(rule(COUNT), [step(50, 3, "quake"), step(0, 1, "quake"), step(20, 2, "quake")])
    assert [c["stories"] for c in run.book.changes] == [[1, 2, 3]]


def test_count_counts_stories_not_entries() -> None:
    run = replay(rule(COUNT), [step(0, 1, "quake", "A"), step(1, 1, "quake", "B"),
                               step(2, 1, "quake", "C")])
    assert run.book.changes == []


def test_distinct_count_of_sources() -> None:
    r = rule("""
id: r
title: t
signals: {q: {scope: entry, any: [{contains: quake}]}}
correlation: {type: distinct_count, signal: q, distinct: source, threshold: 3, within: 2h}
""")
    run = replay(r, [step(0, None, "quake", "A"), step(10, None, "quake", "A"),
                     step(20, None, "quake", "B"), step(30, None, "quake", "C")])
    assert changes(run) == [("firing", ["A", "B", "C"])]


SEQUENCE = """
id: r
title: strike after ceasefire, same country
signals:
  ceasefire: {any: [{contains_any: [ceasefire, truce]}]}
  strike: {all: [{contains_any: [strike*, struck]}, {contains_any: [power plant*, grid]}]}
correlation:
  type: sequence
  steps: [ceasefire, strike]
  within: 72h
  max_gap: 48h
  group_by: [countries]
"""


def test_sequence_in_order_grouped_by_country() -> None:
    run = replay(rule(SEQUENCE), [
        step(0, 1, "Ukraine and Russia agree energy truce"),
        step(60, 2, "Sudan ceasefire announced"),
        step(120, 3, "Strikes hit Ukraine power plants"),
    ])
    assert [(c["group"], c["stories"]) for c in run.book.changes] == [
        ({"countries": "Ukraine"}, [1, 3])]


def test_sequence_wrong_order_or_gap_does_not_fire() -> None:
    reverse = replay(rule(SEQUENCE), [step(0, 2, "Strikes hit Ukraine grid"),
                                      step(60, 1, "Ukraine truce agreed")])
    assert reverse.book.changes == []
    gap = replay(rule(SEQUENCE), [step(0, 1, "Ukraine truce agreed"),
                                  step(49 * 60, 2, "Strikes hit Ukraine grid")])
    assert gap.book.changes == []


def test_sequence_late_first_step_still_completes() -> None:
    run = replay(rule(SEQUENCE), [step(120, 3, "Strikes hit Ukraine power plants"),
                                  step(0, 1, "Ukraine truce agreed")])
    assert [c["stories"] for c in run.book.changes] == [[1, 3]]


def test_all_of_any_order() -> None:
    r = rule("""
id: r
title: t
signals:
  a: {any: [{contains: evacuation}]}
  b: {any: [{contains: landslide}]}
correlation: {type: all_of, signals: [a, b], within: 6h}
""")
    run = replay(r, [step(0, 1, "landslide"), step(300, 2, "evacuation")])
    assert [c["stories"] for c in run.book.changes] == [[1, 2]]
    late = replay(r, [step(0, 1, "landslide"), step(400, 2, "evacuation")])
    assert late.book.changes == []


ABSENCE = """
id: r
title: talks announced, no follow-up
signals:
  announced: {any: [{phrase: talks announced}]}
  held: {any: [{phrase: talks held}]}
correlation: {type: absence, after: announced, expect: held, within: 24h, allowed_lateness: 10m}
"""


def test_absence_fires_when_the_window_expires() -> None:
    run = replay(rule(ABSENCE), [step(0, 1, "Talks announced")], until=24 * 60 + 5)
    assert run.book.changes == [], "still inside the allowed lateness"
    run = replay(rule(ABSENCE), [step(0, 1, "Talks announced")], until=24 * 60 + 10)
    assert [(c["change"], c["at"]) for c in run.book.changes] == [
        ("firing", T0 + timedelta(hours=24))]


def test_absence_cancelled_by_follow_up_even_out_of_order() -> None:
    run = replay(rule(ABSENCE), [step(600, 2, "Talks held"), step(0, 1, "Talks announced")],
                 until=48 * 60)
    assert run.book.changes == []


def test_silence_fires_and_resolves_when_the_feed_group_speaks_again() -> None:
    r = rule("""
id: quiet
title: monitored feeds silent
signals: {any_entry: {scope: entry, all: [{field: feed_tags, contains: watch}]}}
correlation: {type: absence, expect: any_entry, within: 2h, allowed_lateness: 0s}
""")
    run = replay(r, [step(0, None, "a", tags=["watch"]), step(30, None, "b", tags=["other"]),
                     step(200, None, "c", tags=["watch"])], until=300)
    assert [(c["change"], c["at"]) for c in run.book.changes] == [
        ("firing", T0 + timedelta(hours=2)), ("resolved", T0 + timedelta(minutes=200))]


def test_spike_against_baseline() -> None:
    r = rule("""
id: r
title: t
signals: {q: {any: [{contains: protest}]}}
correlation: {type: spike, signal: q, window: 1h, baseline: 24h, factor: 3, min_count: 4}
""")
    base = [step(i * 240, i + 1, "protest") for i in range(5)]
    burst = [step(1300 + i * 10, 100 + i, "protest") for i in range(4)]
    run = replay(r, base + burst)
    assert len(run.book.changes) == 1
    assert run.book.changes[0]["at"] == T0 + timedelta(minutes=1330)


def test_new_value_per_value() -> None:
    r = rule("""
id: r
title: t
signals: {q: {any: [{contains: outbreak}]}}
correlation: {type: new_value, signal: q, field: countries, lookback: 7d}
""")
    run = replay(r, [step(0, 1, "Outbreak in Peru"), step(60, 2, "Outbreak spreads in Peru"),
                     step(120, 3, "Outbreak reaches Chile")])
    assert [c["group_key"] for c in run.book.changes] == ["|Peru", "|Chile"]


# -- lifecycle ---------------------------------------------------------------------
def test_throttle_suppresses_updates_for_a_while() -> None:
    r = rule("{id: r, title: t, throttle: 1h, where: {any: [{contains: quake}]}}")
    run = replay(r, [step(0, 1, "quake", "A"), step(10, 1, "quake", "B"),
                     step(70, 1, "quake", "C")])
    assert changes(run) == [("firing", ["A"]), ("updated", ["A", "B", "C"])]
    assert [s["reason"] for s in run.book.suppressed] == ["throttled"]


def test_fingerprint_template_decides_alert_identity() -> None:
    per_story = rule("{id: r, title: t, where: {any: [{contains: quake}]}}")
    one = rule("{id: r, title: t, fingerprint: 'all quakes', where: {any: [{contains: quake}]}}")
    steps = [step(0, 1, "Quake in Peru", "A"), step(5, 2, "Quake in Chile", "B")]
    assert [c["change"] for c in replay(per_story, steps).book.changes] == ["firing", "firing"]
    assert [(c["change"], c["group_key"]) for c in replay(one, steps).book.changes] == [
        ("firing", "all quakes"), ("updated", "all quakes")]


def test_resolve_when_signal() -> None:
    r = rule("""
id: r
title: t
signals:
  missing: {any: [{contains: missing}]}
  found: {any: [{contains: found}]}
correlation: {type: match, signal: missing}
resolve_when: found
""")
    run = replay(r, [step(0, 1, "Climber missing"), step(60, 1, "Climber found alive", "B")])
    assert [c["change"] for c in run.book.changes] == ["firing", "resolved"]


def test_silences_and_active_hours() -> None:
    r = rule("{id: r, title: t, severity: low, where: {any: [{contains: quake}]}}")
    policy = Policy([Silence(1, {"severity": "low"}, T0, T0 + timedelta(hours=1))])
    run = replay(r, [step(0, 1, "quake"), step(90, 2, "quake")], policy=policy)
    assert [c["stories"] for c in run.book.changes] == [[2]]
    assert [s["reason"] for s in run.book.suppressed] == ["silenced"]
    office = rule("""
id: r
title: t
where: {any: [{contains: quake}]}
active_hours: {days: [thu], start: "09:00", end: "17:00", timezone: UTC}
""")
    run = replay(office, [step(60, 1, "quake"), step(10 * 60, 2, "quake")])
    assert [c["stories"] for c in run.book.changes] == [[2]]
    assert [s["reason"] for s in run.book.suppressed] == ["outside_active_hours"]


def test_inhibition(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""
inhibit:
  - source: {severity: critical}
    target: {severity: info}
    equal: [topic]
rules:
  - id: big
    title: big
    severity: critical
    labels: {topic: quake}
    where: {any: [{contains: magnitude 8}]}
  - id: small
    title: small
    severity: info
    labels: {topic: quake}
    where: {any: [{contains: quake}]}
""")
    run = Replay(RuleSet.load(tmp_path))
    run.run(events_for_test([step(0, 1, "Magnitude 8 quake"), step(5, 2, "Another quake")]))
    assert [c["rule"] for c in run.book.changes] == ["big"]
    assert [(s["rule"], s["reason"]) for s in run.book.suppressed] == [
        ("small", "inhibited"), ("small", "inhibited")]
