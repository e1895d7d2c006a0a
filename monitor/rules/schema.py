"""Rule files: YAML → typed, validated rules, with `file:line:col` errors.

A rule file holds one rule (a mapping with `id`) or several (`rules: [...]`),
optionally with file-level `lists` shared by its rules. Unknown keys are
errors, regexes are compiled and list references resolved at load time, so a
rule that loads is a rule that runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.config import Duration
from monitor.yamlpos import Located, Position, SourceError, load_file, pydantic_errors

FIELDS = ("title", "text", "any", "source", "sources", "tags")
"""Story fields a condition can test; `any` means title and text."""

Severity = Literal["info", "low", "medium", "high", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One test on one field: exactly one operator is given."""

    field: Literal["title", "text", "any", "source", "sources", "tags"] = "any"
    contains: str | None = None
    contains_any: list[str] | str | None = None
    contains_all: list[str] | str | None = None
    phrase: str | None = None
    regex: str | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [op for op in ("contains", "contains_any", "contains_all", "phrase", "regex")
                 if getattr(self, op) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of contains, contains_any, contains_all, "
                             f"phrase, regex (got {', '.join(given) or 'none'})")
        return self

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from exc
        return value


class Predicate(_Strict):
    """`all` must hold, at least one of `any`, none of `none`."""

    all: list[Condition | Predicate] = Field(default_factory=list)
    any: list[Condition | Predicate] = Field(default_factory=list)
    none: list[Condition | Predicate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Predicate:
        if not (self.all or self.any or self.none):
            raise ValueError("a predicate needs at least one of all, any, none")
        return self


class Rule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
    title: str
    description: str = ""
    severity: Severity = "medium"
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    where: Predicate | None = None
    """What the story must say; omitted, every story qualifies (e.g. corroboration)."""
    min_sources: int = Field(default=1, ge=1)
    notify: list[str] | None = None
    """Notifier names; `None` means every configured notifier."""
    resolve_after: Duration | None = None
    """Resolve the alert once its story has gained no new source for this long."""


class RuleFile(_Strict):
    lists: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class LoadedRule:
    rule: Rule
    file: str


def _resolve_lists(value: Any, lists: dict[str, list[str]], located: Located,
                   path: tuple[str | int, ...]) -> Any:
    """Replace `$name` strings in operator values by the file's named list."""
    if isinstance(value, dict):
        return {k: _resolve_lists(v, lists, located, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for i, item in enumerate(value):
            resolved = _resolve_lists(item, lists, located, (*path, i))
            if isinstance(item, str) and item.startswith("$") and isinstance(resolved, list):
                out.extend(resolved)
            else:
                out.append(resolved)
        return out
    if isinstance(value, str) and value.startswith("$") and len(value) > 1:
        name = value[1:]
        if name not in lists:
            raise SourceError(located.position(path), f"unknown list ${name}")
        return list(lists[name])
    return value


def load_rule_file(path: Path) -> list[LoadedRule]:
    """Load every rule in one file; raise a list of located errors."""
    errors: list[SourceError] = []
    loaded: list[LoadedRule] = []
    for located in load_file(path):
        doc = located.value
        if not isinstance(doc, dict):
            errors.append(SourceError(located.position(()), "a rule file must be a mapping"))
            continue
        if "rules" in doc:
            try:
                rf = RuleFile.model_validate(doc)
            except ValidationError as exc:
                errors.extend(pydantic_errors(located, exc.errors()))
                continue
            items = [(("rules", i), raw) for i, raw in enumerate(rf.rules)]
            lists = rf.lists
        else:
            lists = doc.get("lists") or {}
            items = [((), {k: v for k, v in doc.items() if k != "lists"})]  # type: ignore[list-item]
        for prefix, raw in items:
            try:
                raw = _resolve_lists(raw, lists, located, prefix)
                loaded.append(LoadedRule(Rule.model_validate(raw), str(path)))
            except SourceError as exc:
                errors.append(exc)
            except ValidationError as exc:
                errors.extend(pydantic_errors(located, exc.errors(), prefix))
    if errors:
        raise RuleErrors(errors)
    return loaded


class RuleErrors(Exception):
    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def load_rules(directory: Path) -> list[LoadedRule]:
    """Load every `*.yaml`/`*.yml` under `directory`; all errors reported together."""
    if not directory.is_dir():
        raise RuleErrors([SourceError(_pos(directory), "rules directory does not exist")])
    errors: list[SourceError] = []
    rules: list[LoadedRule] = []
    seen: dict[str, str] = {}
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml"))
    for path in files:
        try:
            file_rules = load_rule_file(path)
        except SourceError as exc:
            errors.append(exc)
            continue
        except RuleErrors as exc:
            errors.extend(exc.errors)
            continue
        for lr in file_rules:
            if lr.rule.id in seen:
                errors.append(SourceError(_pos(path), f"duplicate rule id {lr.rule.id!r} "
                                          f"(also in {seen[lr.rule.id]})"))
            seen[lr.rule.id] = lr.file
            rules.append(lr)
    if errors:
        raise RuleErrors(errors)
    return rules


def _pos(path: Path) -> Position:
    return Position(str(path), 1, 1)
