"""Compile rule predicates into fast matchers over a story view.

Matching is case- and accent-insensitive and respects word boundaries:
`strike` does not match "striker"; `strike*` matches "strikes" and "striking".
Each `contains_any` list becomes one alternation regex, not a loop of regexes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from monitor.rules.schema import Condition, Predicate
from monitor.stories.normalise import fold


@dataclass(frozen=True)
class StoryView:
    """The fields of a story that rules can test."""

    titles: Sequence[str]
    texts: Sequence[str]
    sources: Sequence[str]
    tags: Sequence[str] = field(default_factory=tuple)

    @property
    def source_count(self) -> int:
        return len(set(self.sources))

    @cached_property
    def _raw(self) -> dict[str, str]:
        title = "\n".join(self.titles)
        text = "\n".join(self.texts)
        return {
            "title": title,
            "text": text,
            "any": f"{title}\n{text}",
            "source": "\n".join(self.sources),
            "sources": "\n".join(self.sources),
            "tags": "\n".join(self.tags),
        }

    @cached_property
    def _folded(self) -> dict[str, str]:
        return {k: fold(v) for k, v in self._raw.items()}

    def value(self, name: str, case_sensitive: bool) -> str:
        return self._raw[name] if case_sensitive else self._folded[name]


Matcher = Callable[[StoryView], bool]


def term_pattern(term: str, case_sensitive: bool = False) -> str:
    """Regex for one term or phrase with word boundaries; a trailing `*` is a prefix."""
    text = term.strip() if case_sensitive else fold(term.strip())
    prefix = text.endswith("*")
    words = text.rstrip("*").split()
    body = r"\s+".join(re.escape(w) for w in words)
    tail = r"\w*" if prefix else r"(?!\w)"
    return r"(?<!\w)" + body + tail


def _any_of(terms: list[str], case_sensitive: bool) -> re.Pattern[str]:
    return re.compile("|".join(term_pattern(t, case_sensitive) for t in terms if t.strip()))


def _as_list(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else value


def compile_condition(cond: Condition) -> Matcher:
    cs = cond.case_sensitive
    name = cond.field
    if cond.regex is not None:
        pattern = re.compile(cond.regex, 0 if cs else re.IGNORECASE)
        return lambda view: pattern.search(view.value(name, True)) is not None
    if cond.contains_all is not None:
        patterns = [_any_of([t], cs) for t in _as_list(cond.contains_all)]
        return lambda view: all(p.search(view.value(name, cs)) for p in patterns)
    terms = (_as_list(cond.contains_any) if cond.contains_any is not None
             else [cond.contains or cond.phrase or ""])
    combined = _any_of(terms, cs)
    return lambda view: combined.search(view.value(name, cs)) is not None


def compile_predicate(pred: Predicate) -> Matcher:
    def part(item: Condition | Predicate) -> Matcher:
        return compile_predicate(item) if isinstance(item, Predicate) else compile_condition(item)

    alls = [part(i) for i in pred.all]
    anys = [part(i) for i in pred.any]
    nones = [part(i) for i in pred.none]

    def matches(view: StoryView) -> bool:
        return (all(m(view) for m in alls)
                and (not anys or any(m(view) for m in anys))
                and not any(m(view) for m in nones))

    return matches
