"""The rule engine: story changes and entries in, rule hits out.

A `RuleSet` is compiled once per load and immutable, so a reload swaps the
whole set atomically and a failed reload leaves the old set running. The
`Engine` keeps no state of its own: open windows and partial sequences live
in a `StateStore` (the database in production, memory in `rules test` and
backtests), keyed by rule and group, and tagged with the rule's definition
hash so that a rule changed by a reload starts afresh while unchanged rules
keep their state. Time is the events' time; the engine never reads a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Template

from monitor.alerts.render import compile_template
from monitor.rules.correlate import Correlator, Fire, Occurrence, at, ts
from monitor.rules.events import RuleEvent
from monitor.rules.match import Compiler, Matcher
from monitor.rules.schema import (
    AbsenceCorrelation,
    InhibitRule,
    LoadedRule,
    MatchCorrelation,
    Rule,
    RuleBundle,
    Signal,
    load_bundle,
)

DIGEST_PREFIX = "digest:"
"""Rule state rows of open digests (monitor.rules.digest), next to the windows."""
MAX_GROUPS_PER_EVENT = 32
"""A story naming many countries joins at most this many groups of one rule."""


@dataclass(frozen=True)
class Hit:
    """A rule satisfied for one group: what lifecycle and the outbox act on."""

    rule: Rule
    group_key: str
    group: dict[str, str]
    change: str
    """firing | resolved"""
    at: datetime
    story_ids: tuple[int, ...]
    sources: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)
    event: RuleEvent | None = None


class StateStore(Protocol):
    def get(self, rule_id: str, group_key: str) -> dict[str, Any] | None: ...

    def put(self, rule_id: str, group_key: str, state: dict[str, Any]) -> None: ...

    def groups(self, rule_id: str) -> list[tuple[str, dict[str, Any]]]: ...


class MemoryStore:
    """Rule state in a dict: for tests, `rules test` and backtests."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, rule_id: str, group_key: str) -> dict[str, Any] | None:
        return self.data.get((rule_id, group_key))

    def put(self, rule_id: str, group_key: str, state: dict[str, Any]) -> None:
        self.data[(rule_id, group_key)] = state

    def groups(self, rule_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(g, s) for (r, g), s in self.data.items() if r == rule_id]


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    file: str
    signals: dict[str, tuple[Signal, Matcher]]
    correlator: Correlator
    version: str
    trigger: frozenset[int] | None = None
    """Keyword ids one of which an event must contain for any signal to match."""
    fingerprint: Template | None = None

    @property
    def is_silence(self) -> bool:
        corr = self.correlator.corr
        return isinstance(corr, AbsenceCorrelation) and corr.after is None

    def spent(self, key: str, state: dict[str, Any], now: float) -> bool:
        """Whether the stored state of group `key` can be deleted without changing any
        alert: an older version's (the rule starts afresh) or `Correlator.spent`."""
        if key.startswith(DIGEST_PREFIX) or self.is_silence:
            return False  # digests are the outbox's; a silence's state is what fires it
        return state.get("_v") != self.version or self.correlator.spent(state, now)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    inhibit: tuple[InhibitRule, ...] = ()
    compiler: Compiler = field(default_factory=Compiler)
    by_term: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Keyword id → indexes of the rules it can trigger."""
    always: tuple[int, ...] = ()
    """Indexes of rules without a keyword trigger: evaluated for every event."""
    terms: frozenset[int] = frozenset()
    """The keys of `by_term`, as a set to intersect with."""

    @classmethod
    def compile(cls, loaded: list[LoadedRule],
                inhibit: list[InhibitRule] | None = None) -> RuleSet:
        compiler = Compiler()
        out = []
        for lr in loaded:
            if not lr.rule.enabled:
                continue
            sigs = lr.rule.effective_signals()
            signals = {name: (sig, compiler.predicate(sig)) for name, sig in sigs.items()}
            triggers = [compiler.trigger(sig) for sig in sigs.values()]
            trigger = (None if any(t is None for t in triggers) or not triggers
                       else frozenset().union(*(t for t in triggers if t is not None)))
            template = (compile_template(lr.rule.fingerprint, f"rule {lr.rule.id}")
                        if lr.rule.fingerprint else None)
            out.append(CompiledRule(lr.rule, lr.file, signals,
                                    Correlator(lr.rule.effective_correlation()),
                                    lr.rule.digest_key(), trigger, template))
        by_term: dict[int, list[int]] = {}
        for i, c in enumerate(out):
            for term in c.trigger or ():
                by_term.setdefault(term, []).append(i)
        return cls(tuple(out), tuple(inhibit or ()), compiler,
                   {t: tuple(ix) for t, ix in by_term.items()},
                   tuple(i for i, c in enumerate(out) if c.trigger is None), frozenset(by_term))

    def candidates(self, event: RuleEvent) -> list[CompiledRule]:
        """The rules that can match the event, in rule order."""
        if not self.by_term:
            return list(self.rules)
        found = set(self.always)
        for term in self.compiler.keywords.lookup(event, "any").intersection(self.terms):
            found.update(self.by_term[term])
        return [self.rules[i] for i in sorted(found)]

    @classmethod
    def from_bundle(cls, bundle: RuleBundle) -> RuleSet:
        return cls.compile(bundle.rules, bundle.inhibit)

    @classmethod
    def load(cls, directory: Path) -> RuleSet:
        """Load and compile a rules directory; raises RuleErrors on any error."""
        return cls.from_bundle(load_bundle(directory))

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> CompiledRule | None:
        return next((c for c in self.rules if c.rule.id == rule_id), None)


def _group_values(corr: Any, signal: str, event: RuleEvent) -> Iterator[dict[str, str]]:
    fields = []
    for name in corr.group_by:
        source_field = corr.aliases.get(name, {}).get(signal, name)
        values = event.values(source_field)
        if not values:
            return
        fields.append([(name, v) for v in values])
    for combo in itertools.islice(itertools.product(*fields), MAX_GROUPS_PER_EVENT):
        yield dict(combo)


def group_key(group: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(group.items()))


class Engine:
    """Evaluates a rule set against events, keeping windows in a state store."""

    def __init__(self, rules: RuleSet, store: StateStore) -> None:
        self.rules = rules
        self.store = store

    def _state(self, compiled: CompiledRule, key: str) -> dict[str, Any]:
        state = self.store.get(compiled.rule.id, key)
        if state is None or state.get("_v") != compiled.version:
            state = {"_v": compiled.version}
        return state

    def signals_matched(self, compiled: CompiledRule, event: RuleEvent) -> list[str]:
        matched = []
        for name, (sig, matcher) in compiled.signals.items():
            if sig.scope != event.scope:
                continue
            if event.scope == "story" and event.source_count < sig.min_sources:
                continue
            if matcher(event):
                matched.append(name)
        return matched

    def process(self, event: RuleEvent) -> list[Hit]:
        """Every hit this event causes, across the rule set."""
        hits: list[Hit] = []
        for compiled in self.rules.candidates(event):
            signals = self.signals_matched(compiled, event)
            resolve = compiled.rule.resolve_when
            if resolve in signals:
                signals = [resolve]  # the resolve condition wins over a new match
            for signal in signals:
                hits.extend(self._observe(compiled, signal, event))
        return hits

    def _observe(self, compiled: CompiledRule, signal: str, event: RuleEvent) -> list[Hit]:
        rule = compiled.rule
        correlator = compiled.correlator
        corr = correlator.corr
        if not correlator.grouped:
            groups: list[tuple[str, dict[str, str]]] = [(self._own_key(event), {})]
        else:
            groups = [(group_key(g), g) for g in _group_values(corr, signal, event)]
        resolves = signal == rule.resolve_when and signal not in correlator.signals
        field_name = correlator.value_field
        values = [None] if field_name is None else list(event.values(field_name))
        when = ts(event.at)
        hits = []
        for key, group in groups:
            if resolves:
                hits.append(self._hit(compiled, key, group, Fire(when, []), event,
                                      change="resolved"))
                continue
            state = self._state(compiled, key)
            fires = []
            for value in values:
                occ: Occurrence = [when, event.story_id, event.source, value]
                fires.extend(correlator.observe(state, signal, occ))
            if not isinstance(corr, MatchCorrelation):
                self.store.put(rule.id, key, state)
            hits.extend(self._hit(compiled, key, group, f, event) for f in fires)
        return hits

    @staticmethod
    def _own_key(event: RuleEvent) -> str:
        if event.story_id is not None:
            return f"story:{event.story_id}"
        return f"entry:{event.source}:{event.at.isoformat()}"

    def _hit(self, compiled: CompiledRule, key: str, group: dict[str, str], fire: Fire,
             event: RuleEvent | None, change: str | None = None) -> Hit:
        stories = tuple(dict.fromkeys(o[1] for o in fire.occurrences if o[1] is not None))
        sources = tuple(dict.fromkeys(o[2] for o in fire.occurrences))
        if event is not None and event.scope == "story" and len(fire.occurrences) <= 1:
            sources = tuple(dict.fromkeys(event.sources))
        full_key = f"{key}|{fire.subkey}" if fire.subkey else key
        if compiled.fingerprint is not None:
            full_key = compiled.fingerprint.render(group=group, rule_id=compiled.rule.id)
        return Hit(compiled.rule, full_key, group,
                   change or ("resolved" if fire.resolved else "firing"),
                   at(fire.at), stories, sources, fire.detail, event)

    def tick(self, now: datetime) -> list[Hit]:
        """Close absence windows and silences that ended before `now` minus lateness."""
        hits: list[Hit] = []
        for compiled in self.rules.rules:
            corr = compiled.correlator.corr
            if not isinstance(corr, AbsenceCorrelation):
                continue
            watermark = ts(now) - corr.allowed_lateness
            groups = [(key, raw) for key, raw in self.store.groups(compiled.rule.id)
                      if not key.startswith(DIGEST_PREFIX)]
            if compiled.is_silence and not corr.group_by and not groups:
                groups = [("", {})]
            for key, raw in groups:
                state = raw if raw.get("_v") == compiled.version else {"_v": compiled.version}
                if compiled.is_silence:
                    compiled.correlator.start_silence(state, ts(now))
                fires = compiled.correlator.expire(state, watermark)
                self.store.put(compiled.rule.id, key, state)
                group = dict(part.split("=", 1) for part in key.split("|") if "=" in part)
                hits.extend(self._hit(compiled, key, group, f, None) for f in fires)
        return hits
