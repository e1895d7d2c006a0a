"""Regex prefiltering: required literals never hide a match the regex would find."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.rules.engine import Engine, MemoryStore, RuleSet
from monitor.rules.events import RuleEvent
from monitor.rules.literals import required_runs
from monitor.rules.match import Compiler, tokens
from monitor.rules.schema import Condition, LoadedRule, Rule
from monitor.stories.normalise import fold

AT = datetime(2026, 3, 19, tzinfo=UTC)


def event(title: str, text: str = "") -> RuleEvent:
    return RuleEvent("story", "created", AT, 1, (title,), (text,), "A", ("A",))


@pytest.mark.parametrize(("pattern", "flags", "runs"), [
    (r"\b(killed|dead)\s+\d+", 0, {"killed", "dead"}),
    (r"\b\d{2,} (dead|killed)\b", re.IGNORECASE, {"dead", "lled"}),
    (r"\d+\s*km", 0, {"km"}),
    (r"[ab]cdef", 0, {"cdef"}),
    (r"Café au lait", 0, {"cafe"}),
    (r"x(ab)+y", 0, {"ab"}),
    (r"\d+", 0, None),
    (r"(foo|)bar?", 0, {"ba"}),
    (r"(foo|)b?", 0, None),
    (r"a.b", 0, None),
])
def test_required_runs(pattern: str, flags: int, runs: set[str] | None) -> None:
    got = required_runs(pattern, flags)
    assert (set(got) if got is not None else None) == runs


def test_regex_rules_are_indexed_not_run_on_every_event() -> None:
    rule = Rule.model_validate({"id": "r", "title": "t", "where": {"any": [
        {"field": "text", "regex": r"\b(killed|dead)\s+\d+"}]}})
    rules = RuleSet.compile([LoadedRule(rule, "t.yaml")])
    assert rules.rules[0].trigger is not None and not rules.always
    engine = Engine(rules, MemoryStore())
    assert not rules.candidates(event("Markets", "shares rose 3 percent"))
    assert engine.process(event("Ferry", "Officials said killed 12 in the storm"))
    assert not engine.process(event("Ferry", "Officials said twelve killed"))


def test_case_equivalence_of_re_is_folding_except_dotless_i() -> None:
    """`re` equates characters by simple lowercase and a table of extra cases; folding
    must map each such class to one form, or a prefilter could hide a match."""
    import _sre
    from re import _casefix  # type: ignore[attr-defined]

    classes: dict[int, set[int]] = {}
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp < 0xE000:
            continue
        low = _sre.unicode_tolower(cp)
        if low != cp:
            classes.setdefault(low, {low}).add(cp)
    for key, extras in _casefix._EXTRA_CASES.items():
        classes.setdefault(key, {key}).update(extras)
    split = [k for k, members in classes.items() if len({fold(chr(m)) for m in members}) > 1]
    assert {chr(k) for k in split} <= {"i", "ı"}


PIECES = ["ab", "in", "K", "ſt", "İn", "x", r"\b", r"\w*", r"\s+", r"\d", "(?:ab|cd)", "[ab]",
          "(in|ın)", "e+", "(?i:Ab)", ".", "é"]
TEXT = "abcdinıIKkKſstéeE ñ1"


@settings(max_examples=300, deadline=None)
@example(parts=["in"], text="ın", case_sensitive=False)
@example(parts=["(in|ın)", "K"], text="İnK", case_sensitive=False)
@example(parts=["ſt"], text="ST", case_sensitive=False)
@given(parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=4),
       text=st.text(alphabet=TEXT, max_size=30), case_sensitive=st.booleans())
def test_prefiltered_regex_matches_exactly_what_the_regex_matches(
        parts: list[str], text: str, case_sensitive: bool) -> None:
    pattern = "".join(parts)
    cond = Condition.model_validate({"field": "title", "regex": pattern,
                                     "case_sensitive": case_sensitive})
    matcher = Compiler().condition(cond)
    expected = re.search(pattern, text, 0 if case_sensitive else re.IGNORECASE) is not None
    assert matcher(event(text)) is expected


@given(text=st.text(max_size=60))
def test_fast_tokens_are_the_word_runs(text: str) -> None:
    assert tokens(text) == re.findall(r"\w+", text)
