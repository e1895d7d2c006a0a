"""The rule engine: which rules a story change satisfies.

Rules are compiled once per load; a `RuleSet` is immutable, so a reload swaps
the whole set atomically and a failed reload leaves the old set running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monitor.rules.match import Matcher, StoryView, compile_predicate
from monitor.rules.schema import LoadedRule, Rule, load_rules


def _always(view: StoryView) -> bool:
    return True


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    file: str
    matcher: Matcher

    def matches(self, view: StoryView) -> bool:
        return view.source_count >= self.rule.min_sources and self.matcher(view)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]

    @classmethod
    def compile(cls, loaded: list[LoadedRule]) -> RuleSet:
        return cls(tuple(
            CompiledRule(lr.rule, lr.file,
                         compile_predicate(lr.rule.where) if lr.rule.where else _always)
            for lr in loaded if lr.rule.enabled))

    @classmethod
    def load(cls, directory: Path) -> RuleSet:
        """Load and compile a rules directory; raises RuleErrors on any error."""
        return cls.compile(load_rules(directory))

    def evaluate(self, view: StoryView) -> list[Rule]:
        """Rules the story satisfies now."""
        return [c.rule for c in self.rules if c.matches(view)]

    def __len__(self) -> int:
        return len(self.rules)
