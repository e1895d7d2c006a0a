"""Rule files: YAML → typed, validated rules, with `file:line:col` errors.

A rule file holds one rule (a mapping with `id`) or several (`rules: [...]`),
with optional file-level `lists`, `macros` and `inhibit`. Unknown keys are
errors, regexes and templates are compiled, and references (lists, macros,
signals, notifiers) are resolved at load time, so a rule that loads is a rule
that runs. `rule_json_schema()` exports the format for editors.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.config import Duration
from monitor.yamlpos import Located, Position, SourceError, load_file, pydantic_errors

TEXT_FIELDS = ("title", "text", "summary", "any", "source", "sources", "tags", "feed_tags",
               "language", "entities", "countries", "url", "change", "feed")
NUMBER_FIELDS = ("source_count", "entry_count", "story_id")
FIELDS = TEXT_FIELDS + NUMBER_FIELDS
"""Fields a condition, `group_by` or `distinct` may name."""

Severity = Literal["info", "low", "medium", "high", "critical"]


def _check_field(name: str) -> str:
    if name not in FIELDS:
        raise ValueError(f"unknown field {name!r}; known: {', '.join(FIELDS)}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    """One test on one field: exactly one operator is given."""

    field: str = "any"
    contains: str | None = None
    contains_any: list[str] | None = None
    contains_all: list[str] | None = None
    phrase: str | None = None
    regex: str | None = None
    equals: str | float | None = None
    in_: list[str | float] | None = Field(default=None, alias="in")
    exists: bool | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    case_sensitive: bool = False

    OPERATORS: ClassVar[tuple[str, ...]] = (
        "contains", "contains_any", "contains_all", "phrase", "regex", "equals", "in_",
        "exists", "gt", "gte", "lt", "lte")

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        return _check_field(value)

    @field_validator("contains_any", "contains_all", "in_", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int | float) else value

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [op for op in self.OPERATORS if getattr(self, op) is not None]
        if len(given) != 1:
            names = ", ".join("in" if g == "in_" else g for g in given) or "none"
            raise ValueError("give exactly one operator (contains, contains_any, contains_all, "
                             f"phrase, regex, equals, in, exists, gt, gte, lt, lte); got {names}")
        numeric = given[0] in ("gt", "gte", "lt", "lte")
        if numeric and self.field not in NUMBER_FIELDS:
            raise ValueError(f"{given[0]} needs a numeric field ({', '.join(NUMBER_FIELDS)})")
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

    @property
    def operator(self) -> str:
        return next(op for op in self.OPERATORS if getattr(self, op) is not None)


class MacroRef(_Strict):
    macro: str


def _item_kind(value: Any) -> str:
    """Which model a predicate item is, by its keys: errors then name only that one."""
    if isinstance(value, dict):
        if "macro" in value:
            return "macro"
        return "predicate" if {"all", "any", "none"} & set(value) else "condition"
    if isinstance(value, Condition):
        return "condition"
    return "macro" if isinstance(value, MacroRef) else "predicate"


Item = Annotated[
    Annotated[Condition, Tag("condition")] | Annotated[MacroRef, Tag("macro")]
    | Annotated["Predicate", Tag("predicate")],
    Discriminator(_item_kind)]


class Predicate(_Strict):
    """`all` must hold, at least one of `any`, none of `none`."""

    all: list[Item] = Field(default_factory=list)
    any: list[Item] = Field(default_factory=list)
    none: list[Item] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Predicate:
        if not (self.all or self.any or self.none):
            raise ValueError("a predicate needs at least one of all, any, none")
        return self


class Signal(Predicate):
    """A named predicate over story changes (default) or single new entries."""

    scope: Literal["story", "entry"] = "story"
    min_sources: int = Field(default=1, ge=1)
    """For story signals: the story must have at least this many distinct outlets."""


class _Correlation(_Strict):
    group_by: list[str] = Field(default_factory=list)
    aliases: dict[str, dict[str, str]] = Field(default_factory=dict)
    """`{group field: {signal: field of that signal's events}}` when signals differ."""
    allowed_lateness: Duration = 600.0

    @field_validator("group_by")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"group_by name {name!r} must be an identifier")
        return value

    def signal_names(self) -> list[str]:
        raise NotImplementedError


class MatchCorrelation(_Correlation):
    """Each matching story alerts on its own (grouped by story unless `group_by`)."""

    type: Literal["match"]
    signal: str

    def signal_names(self) -> list[str]:
        return [self.signal]


class CountCorrelation(_Correlation):
    """At least `threshold` distinct matching stories within `within`."""

    type: Literal["count"]
    signal: str
    threshold: int = Field(ge=1)
    within: Duration

    def signal_names(self) -> list[str]:
        return [self.signal]


class DistinctCountCorrelation(_Correlation):
    """At least `threshold` distinct values of `distinct` among matches within `within`."""

    type: Literal["distinct_count"]
    signal: str
    distinct: str
    threshold: int = Field(ge=1)
    within: Duration

    @field_validator("distinct")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_field(value)

    def signal_names(self) -> list[str]:
        return [self.signal]


class SequenceCorrelation(_Correlation):
    """Steps matched in order, all within `within`, each at most `max_gap` after the last."""

    type: Literal["sequence"]
    steps: list[str] = Field(min_length=2)
    within: Duration
    max_gap: Duration | None = None
    distinct_stories: bool = True

    def signal_names(self) -> list[str]:
        return list(dict.fromkeys(self.steps))


class AllOfCorrelation(_Correlation):
    """Every signal matched, in any order, within `within`."""

    type: Literal["all_of"]
    signals: list[str] = Field(min_length=2)
    within: Duration

    def signal_names(self) -> list[str]:
        return list(self.signals)


class AbsenceCorrelation(_Correlation):
    """`after` not followed by `expect` within `within`; without `after`, silence."""

    type: Literal["absence"]
    after: str | None = None
    expect: str
    within: Duration

    def signal_names(self) -> list[str]:
        return [s for s in (self.after, self.expect) if s]


class SpikeCorrelation(_Correlation):
    """Matches in the last `window` at least `factor` times the baseline rate."""

    type: Literal["spike"]
    signal: str
    window: Duration
    baseline: Duration
    factor: float = Field(default=3.0, gt=1.0)
    min_count: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _baseline_longer(self) -> SpikeCorrelation:
        if self.baseline <= self.window:
            raise ValueError("baseline must be longer than window")
        return self

    def signal_names(self) -> list[str]:
        return [self.signal]


class NewValueCorrelation(_Correlation):
    """A value of `field` not seen among matches during `lookback`."""

    type: Literal["new_value"]
    signal: str
    field: str
    lookback: Duration = 30 * 86400.0

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_field(value)

    def signal_names(self) -> list[str]:
        return [self.signal]


AnyCorrelation = (MatchCorrelation | CountCorrelation | DistinctCountCorrelation
                  | SequenceCorrelation | AllOfCorrelation | AbsenceCorrelation
                  | SpikeCorrelation | NewValueCorrelation)
Correlation = Annotated[AnyCorrelation, Field(discriminator="type")]
UNION_TAGS = frozenset({"condition", "macro", "predicate", "match", "count", "distinct_count",
                        "sequence", "all_of", "absence", "spike", "new_value"})
"""Union member tags pydantic puts into error locations; hidden from users."""


def _check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ActiveHours(_Strict):
    """Notify only inside these hours; matches outside are recorded as suppressed."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    start: str = Field(default="00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="24:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")
    timezone: str = "UTC"

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))


DAY = 86400.0


class Digest(_Strict):
    """Deliver a rule's alert changes as one notification per period instead of one each.

    Periods follow the wall clock of `timezone`: with `every: 1h` they start on
    the hour, with `every: 1d, offset: 8h` at 08:00 local time every day, with
    `every: 7d` on Mondays. A digest is sent when its period ends, or as soon
    as it holds `max_items` alerts (the rest of the period goes into the next
    part).
    """

    every: Duration
    max_items: int = Field(default=50, ge=1, le=1000)
    group_by: list[str] = Field(default_factory=list)
    """Alert labels that split the digest (e.g. one per country); default one per rule."""
    timezone: str = "UTC"
    offset: Duration = 0.0
    """Where periods start within a day (or within `every` when shorter than a day)."""

    @field_validator("every")
    @classmethod
    def _divides_days(cls, value: float) -> float:
        if value < 60 or (value < DAY and DAY % value) or (value >= DAY and value % DAY):
            raise ValueError("every must divide a day (e.g. 15m, 1h, 6h) or be whole days "
                             "(1d, 7d), and be at least 1m")
        return value

    @model_validator(mode="after")
    def _offset_inside(self) -> Digest:
        if not 0 <= self.offset < min(self.every, DAY):
            raise ValueError("offset must be shorter than every (and than a day)")
        return self

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))


class Expectation(_Strict):
    """An alert a rule test expects (fields left out are not checked)."""

    change: Literal["firing", "updated", "resolved", "digest"] = "firing"
    at: str | None = None
    items: int | None = None
    """For a digest: how many alerts it lists."""
    group: dict[str, str] | None = None
    sources: list[str] | None = None
    stories: list[int] | None = None


class TestStep(_Strict):
    __test__ = False  # not a pytest test class, despite the name

    """One step of a rule test: an entry joining a story (or alone, for entry signals)."""

    at: str
    story: int | None = None
    title: str = ""
    text: str = ""
    source: str = "test"
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    url: str | None = None


class RuleTest(_Strict):
    name: str
    events: list[TestStep] = Field(default_factory=list)
    until: str | None = None
    """Advance the clock to this time at the end (fires absence and digests)."""
    expect: list[Expectation] = Field(default_factory=list)
    suppressed: list[str] | None = None
    """Expected suppression reasons, in order (omit to not check)."""


class Rule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
    title: str
    description: str = ""
    severity: Severity = "medium"
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    signals: dict[str, Signal] = Field(default_factory=dict)
    where: Predicate | None = None
    """Shorthand for a `match` rule on one unnamed story signal."""
    min_sources: int = Field(default=1, ge=1)
    """With `where`: the story must have at least this many distinct outlets."""
    correlation: Correlation | None = None
    throttle: Duration = 0.0
    """Minimum time between two notifications of the same alert."""
    resolve_after: Duration | None = None
    """Resolve the alert when it has had no new match for this long."""
    resolve_when: str | None = None
    """A signal that resolves the alert of its group when it matches."""
    active_hours: ActiveHours | None = None
    fingerprint: str | None = None
    """Template for the alert identity within the rule (context: `group`, `rule_id`);
    default: the group key. E.g. `"{{ group.country }}"` to merge groups by country."""
    notify: list[str] | None = None
    """Notifier names; `None` routes by the settings' `routes` (else every notifier)."""
    summary: str | None = None
    body: str | None = None
    """Jinja2 templates (sandboxed, StrictUndefined) for the alert text."""
    digest: Digest | None = None
    """Collect the alert changes of a period into one notification."""
    tests: list[RuleTest] = Field(default_factory=list)

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references that the schema alone cannot check, with where they are."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        if self.where is not None and (self.signals or self.correlation):
            out.append((("where",), "use either `where` (a simple match) or `signals` + "
                                    "`correlation`, not both"))
        corr = self.correlation
        if corr is None:
            if len(self.signals) > 1:
                out.append((("signals",), "several signals need a `correlation` saying how "
                                          "they combine"))
            return out
        defined = ", ".join(self.signals) or "none"
        fields = {"match": "signal", "count": "signal", "distinct_count": "signal",
                  "spike": "signal", "new_value": "signal", "sequence": "steps",
                  "all_of": "signals"}
        for i, name in enumerate(corr.signal_names()):
            if name not in self.signals:
                key = fields.get(corr.type)
                path: tuple[str | int, ...] = (("correlation", key, i) if key in ("steps",
                                                                                "signals")
                                               else ("correlation", key or "expect"))
                if corr.type == "absence":
                    path = ("correlation", "after" if name == getattr(corr, "after", None)
                            else "expect")
                out.append((path, f"unknown signal {name!r}; defined: {defined}"))
        if self.resolve_when and self.resolve_when not in self.signals:
            out.append((("resolve_when",), f"unknown signal {self.resolve_when!r}; "
                                           f"defined: {defined}"))
        for group_field, per_signal in corr.aliases.items():
            where = ("correlation", "aliases", group_field)
            if group_field not in corr.group_by:
                out.append((where, f"alias for {group_field!r} which is not in group_by"))
            for sig, fld in per_signal.items():
                if sig not in self.signals:
                    out.append(((*where, sig), f"alias names unknown signal {sig!r}"))
                elif fld not in FIELDS:
                    out.append(((*where, sig), f"unknown field {fld!r}"))
        for i, name in enumerate(corr.group_by):
            missing = [s for s in corr.signal_names()
                       if name not in FIELDS and s not in corr.aliases.get(name, {})]
            if missing:
                out.append((("correlation", "group_by", i),
                            f"{name!r} is not a field; give `aliases` saying which field it "
                            f"is for signal(s) {', '.join(missing)}"))
        return out

    def effective_signals(self) -> dict[str, Signal]:
        """Signals including the one implied by `where` (named `match`)."""
        if self.where is not None:
            return {"match": Signal(all=self.where.all, any=self.where.any,
                                    none=self.where.none, min_sources=self.min_sources)}
        if not self.signals:
            return {"match": Signal.model_construct(all=[], any=[], none=[], scope="story",
                                                    min_sources=self.min_sources)}
        return dict(self.signals)

    def effective_correlation(self) -> AnyCorrelation:
        if self.correlation is not None:
            return self.correlation
        return MatchCorrelation(type="match", signal=next(iter(self.effective_signals())))

    def digest_key(self) -> str:
        """A hash of the definition: state survives a reload only if this is unchanged."""
        body = self.model_dump(mode="json", exclude={"tests", "title", "description"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class InhibitRule(_Strict):
    """While an alert matching `source` fires, alerts matching `target` are muted
    if they agree on the `equal` labels (as in Alertmanager)."""

    source: dict[str, str]
    target: dict[str, str]
    equal: list[str] = Field(default_factory=list)


class RuleFile(_Strict):
    lists: dict[str, list[str]] = Field(default_factory=dict)
    macros: dict[str, Predicate] = Field(default_factory=dict)
    inhibit: list[InhibitRule] = Field(default_factory=list)
    rules: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedRule:
    rule: Rule
    file: str
    line: int = 1


@dataclass
class RuleBundle:
    """Everything loaded from a rules directory."""

    rules: list[LoadedRule] = field(default_factory=list)
    inhibit: list[InhibitRule] = field(default_factory=list)


class RuleErrors(Exception):
    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def _resolve(value: Any, lists: dict[str, list[str]], macros: dict[str, Any],
             located: Located, path: tuple[str | int, ...], depth: int = 0) -> Any:
    """Replace `$list` references by the list, and `{macro: name}` by the macro's predicate."""
    if depth > 20:
        raise SourceError(located.position(path), "macros nest too deeply (a cycle?)")
    if isinstance(value, dict):
        if set(value) == {"macro"}:
            name = value["macro"]
            if name not in macros:
                raise SourceError(located.position(path), f"unknown macro {name!r}")
            return _resolve(macros[name], lists, macros, located, path, depth + 1)
        return {k: _resolve(v, lists, macros, located, (*path, k), depth)
                for k, v in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for i, item in enumerate(value):
            resolved = _resolve(item, lists, macros, located, (*path, i), depth)
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


def _validate(raw: Any, located: Located, prefix: tuple[str | int, ...],
              lists: dict[str, list[str]], macros: dict[str, Any],
              file: str) -> LoadedRule:
    if not isinstance(raw, dict):
        raise RuleErrors([SourceError(located.position(prefix), "a rule must be a mapping")])
    own_lists = {**lists, **(raw.get("lists") or {})}
    own_macros = {**macros, **(raw.get("macros") or {})}
    body = {k: v for k, v in raw.items() if k not in ("lists", "macros")}
    body = _resolve(body, own_lists, own_macros, located, prefix)
    try:
        rule = Rule.model_validate(body)
    except ValidationError as exc:
        raise RuleErrors(pydantic_errors(located, exc.errors(), prefix, UNION_TAGS)) from exc
    problems = rule.problems()
    if problems:
        raise RuleErrors([SourceError(located.position((*prefix, *path)),
                                      f"{'.'.join(str(p) for p in path)}: {msg}")
                          for path, msg in problems])
    return LoadedRule(rule, file, located.position(prefix).line)


def load_rule_file(path: Path) -> RuleBundle:
    """Load every rule in one file; raise RuleErrors with every located error."""
    errors: list[SourceError] = []
    bundle = RuleBundle()
    for located in load_file(path):
        doc = located.value
        if not isinstance(doc, dict):
            errors.append(SourceError(located.position(()), "a rule file must be a mapping"))
            continue
        if "rules" in doc or ("id" not in doc and ("inhibit" in doc or "macros" in doc)):
            try:
                rf = RuleFile.model_validate(doc)
            except ValidationError as exc:
                errors.extend(pydantic_errors(located, exc.errors(), hidden=UNION_TAGS))
                continue
            items: list[tuple[tuple[str | int, ...], Any]] = [
                (("rules", i), raw) for i, raw in enumerate(rf.rules)]
            lists = rf.lists
            macros = {k: v.model_dump(exclude_defaults=True) for k, v in rf.macros.items()}
            bundle.inhibit.extend(rf.inhibit)
        else:
            lists, macros = {}, {}
            items = [((), doc)]
        for prefix, raw in items:
            try:
                bundle.rules.append(_validate(raw, located, prefix, lists, macros, str(path)))
            except SourceError as exc:
                errors.append(exc)
            except RuleErrors as exc:
                errors.extend(exc.errors)
    if errors:
        raise RuleErrors(errors)
    return bundle


def load_bundle(directory: Path) -> RuleBundle:
    """Load every `*.yaml`/`*.yml` under `directory`; all errors reported together."""
    if not directory.is_dir():
        raise RuleErrors([SourceError(Position(str(directory), 1, 1),
                                      "rules directory does not exist")])
    errors: list[SourceError] = []
    bundle = RuleBundle()
    seen: dict[str, LoadedRule] = {}
    for path in sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml")):
        try:
            part = load_rule_file(path)
        except SourceError as exc:
            errors.append(exc)
            continue
        except RuleErrors as exc:
            errors.extend(exc.errors)
            continue
        for lr in part.rules:
            if lr.rule.id in seen:
                other = seen[lr.rule.id]
                errors.append(SourceError(Position(lr.file, lr.line, 1),
                                          f"duplicate rule id {lr.rule.id!r} (also at "
                                          f"{other.file}:{other.line})"))
            seen[lr.rule.id] = lr
        bundle.rules.extend(part.rules)
        bundle.inhibit.extend(part.inhibit)
    if errors:
        raise RuleErrors(errors)
    return bundle


def load_rules(directory: Path) -> list[LoadedRule]:
    return load_bundle(directory).rules


def rule_json_schema() -> dict[str, Any]:
    """JSON Schema of a rule file, for editors (`storywatch rules schema`)."""
    rule = Rule.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Storywatch rule file",
        "description": "One rule, or `rules:` with shared `lists`, `macros` and `inhibit`.",
        "oneOf": [rule, RuleFile.model_json_schema(by_alias=True)],
    }
