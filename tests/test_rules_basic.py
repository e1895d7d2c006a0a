"""Rule files: loading with located errors, and matching semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.rules.engine import RuleSet
from monitor.rules.match import StoryView
from monitor.rules.schema import RuleErrors, load_rules
from tests.helpers import ROOT


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def rules_from(tmp: Path, text: str) -> RuleSet:
    write(tmp, "r.yaml", text)
    return RuleSet.load(tmp)


def view(*titles: str, text: str = "", sources: tuple[str, ...] = ("A",)) -> StoryView:
    return StoryView(titles=list(titles), texts=[text], sources=list(sources))


def test_shipped_rules_load() -> None:
    rules = load_rules(ROOT / "rules")
    ids = {r.rule.id for r in rules}
    assert {"energy-strike-after-ceasefire", "corroborated-story"} <= ids


def test_word_boundaries_accents_case_and_prefix(tmp_path: Path) -> None:
    rs = rules_from(tmp_path, """
id: r1
title: t
where:
  all:
    - {field: title, contains: strike}
    - {field: text, contains_any: ["évacu*", "power grid"]}
""")
    assert rs.evaluate(view("Drone STRIKE hits city", text="Residents EVACUATED from the area"))
    assert rs.evaluate(view("strike", text="the Power   Grid failed"))
    assert not rs.evaluate(view("Striker scores twice", text="evacuation"))
    assert not rs.evaluate(view("strike", text="grid power"))


def test_none_excludes_and_min_sources(tmp_path: Path) -> None:
    rs = rules_from(tmp_path, """
id: r1
title: t
min_sources: 2
where:
  any: [{phrase: "oil depot"}]
  none: [{field: title, regex: "(?i)exercise"}]
""")
    assert not rs.evaluate(view("Oil depot fire", sources=("A",)))
    assert rs.evaluate(view("Oil depot fire", sources=("A", "B")))
    assert not rs.evaluate(view("Oil depot fire", sources=("A", "A")))
    assert not rs.evaluate(view("Oil depot fire in exercise", sources=("A", "B")))


def test_several_rules_per_file_with_shared_lists(tmp_path: Path) -> None:
    rs = rules_from(tmp_path, """
lists:
  quake: [earthquake, quake, tremor*]
rules:
  - id: a
    title: A
    where: {any: [{contains_any: $quake}]}
  - id: b
    title: B
    where: {all: [{contains_any: [$quake, aftershock]}, {contains: tsunami}]}
""")
    assert [r.id for r in rs.evaluate(view("Tremors felt", text="tsunami warning"))] == ["a", "b"]


@pytest.mark.parametrize(("text", "expected"), [
    ("id: r\ntitle: t\nwhere: {all: [{contains: x}]}\nseverity: urgent\n",
     r"r\.yaml:4:11: severity: Input should be 'info', 'low'"),
    ("id: r\ntitle: t\nwhere:\n  all:\n    - {contains: x, colour: red}\n",
     r"r\.yaml:5:21: where\.all\.0\.colour: unknown key"),
    ("id: r\ntitle: t\nwhere:\n  all:\n    - regex: '(unclosed'\n",
     r"r\.yaml:5:\d+: where\.all\.0.*invalid regex"),
    ("id: r\ntitle: t\nwhere:\n  all:\n    - contains_any: $nolist\n",
     r"r\.yaml:5:\d+: unknown list \$nolist"),
    ("id: r\ntitle: t\nwhere: {all: [{contains: x, regex: y}]}\n",
     r"r\.yaml:3:\d+: where\.all\.0.*exactly one of"),
    ("id: r\ntitle: [unclosed\n", r"r\.yaml:3:1: YAML syntax error"),
    ("title: no id\n", r"r\.yaml:1:1: id: Field required"),
])
def test_errors_are_located(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "r.yaml", text)
    with pytest.raises(RuleErrors) as err:
        load_rules(tmp_path)
    assert any(__import__("re").search(expected, str(e)) for e in err.value.errors), \
        [str(e) for e in err.value.errors]


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "id: same\ntitle: a\n")
    write(tmp_path, "b.yml", "id: same\ntitle: b\n")
    with pytest.raises(RuleErrors, match="duplicate rule id 'same'"):
        load_rules(tmp_path)


def test_disabled_rules_do_not_run(tmp_path: Path) -> None:
    assert len(rules_from(tmp_path, "id: r\ntitle: t\nenabled: false\n")) == 0
