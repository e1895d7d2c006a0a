"""Correlation state machines: one per type, over a JSON-able state per (rule, group).

Each occurrence of a signal is kept as `[time, story id, outlet, value]` in
event time, so late and out-of-order events are placed where they belong and
every check looks for *any* qualifying window, not just the newest one.
State is pruned behind a watermark (newest event time minus the window and
the allowed lateness), which bounds memory by the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.rules.schema import (
    AbsenceCorrelation,
    AllOfCorrelation,
    AnyCorrelation,
    CountCorrelation,
    DistinctCountCorrelation,
    MatchCorrelation,
    NewValueCorrelation,
    SequenceCorrelation,
    SpikeCorrelation,
)

Occurrence = list[Any]
"""[epoch seconds, story id or None, outlet, value]"""


@dataclass(frozen=True)
class Fire:
    """A correlation that is satisfied now."""

    at: float
    occurrences: list[Occurrence]
    resolved: bool = False
    subkey: str = ""
    """Extra identity within the group (new_value: the value)."""
    detail: dict[str, Any] = field(default_factory=dict)


def ts(dt: datetime) -> float:
    return dt.timestamp()


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _prune(items: list[Occurrence], before: float) -> list[Occurrence]:
    return [o for o in items if o[0] >= before]


def _add(items: list[Occurrence], occ: Occurrence) -> bool:
    """Insert in time order; a story counts once per value (its earliest time)."""
    if occ[1] is not None:
        for existing in items:
            if existing[1] == occ[1] and existing[3] == occ[3]:
                if occ[0] < existing[0]:
                    existing[0] = occ[0]
                    items.sort(key=lambda o: o[0])
                return False
    items.append(occ)
    items.sort(key=lambda o: o[0])
    return True


def _per_signal(state: dict[str, Any], key: str, signal: str, occ: Occurrence,
                keep_from: float) -> dict[str, list[Occurrence]] | None:
    """Occurrences per signal, pruned, with `occ` added; None if it was already known."""
    lists: dict[str, list[Occurrence]] = state.setdefault(key, {})
    for name in list(lists):
        lists[name] = _prune(lists[name], keep_from)
    return lists if _add(lists.setdefault(signal, []), occ) else None


def _watermark(state: dict[str, Any], when: float) -> float:
    state["wm"] = max(state.get("wm", when), when)
    return float(state["wm"])


class Correlator:
    """Applies one rule's correlation to its per-group state."""

    def __init__(self, corr: AnyCorrelation) -> None:
        self.corr = corr
        self.signals = frozenset(corr.signal_names())
        self.value_field: str | None = (
            corr.distinct if isinstance(corr, DistinctCountCorrelation)
            else corr.field if isinstance(corr, NewValueCorrelation) else None)
        """The field whose values an occurrence carries (distinct_count, new_value)."""
        self.grouped = bool(corr.group_by) or not isinstance(corr, MatchCorrelation)
        """False for an ungrouped `match`: each story is its own group, with no state."""
        self.keep = self._horizon()
        """How far behind the watermark state must be kept."""

    def _horizon(self) -> float:
        c = self.corr
        if isinstance(c, SpikeCorrelation):
            span = c.baseline
        elif isinstance(c, NewValueCorrelation):
            span = c.lookback
        elif isinstance(c, MatchCorrelation):
            span = 0.0
        else:
            span = c.within
        return float(span) + c.allowed_lateness

    def spent(self, state: dict[str, Any], now: float) -> bool:
        """Whether `state` can be deleted: any event up to `allowed_lateness` late would
        prune everything it holds, so a fresh group behaves exactly the same.

        Such an event at t >= now - lateness prunes before t - keep >= now - 2 * keep,
        and everything held is at or before the watermark. Not for a silence, whose
        last sighting is what fires it (`CompiledRule.spent`).
        """
        return not state.get("pending") and state.get("wm", now) < now - 2 * self.keep

    def observe(self, state: dict[str, Any], signal: str, occ: Occurrence) -> list[Fire]:
        """Record an occurrence of `signal`; return what fires because of it."""
        wm = _watermark(state, occ[0])
        keep_from = wm - self.keep
        c = self.corr
        if isinstance(c, MatchCorrelation):
            return [Fire(occ[0], [occ])]
        if isinstance(c, CountCorrelation | DistinctCountCorrelation):
            items = _prune(state.get("items", []), keep_from)
            added = _add(items, occ)
            state["items"] = items
            return self._count(items, occ) if added else []
        if isinstance(c, SequenceCorrelation):
            return self._sequence(state, signal, occ, keep_from)
        if isinstance(c, AllOfCorrelation):
            return self._all_of(state, signal, occ, keep_from)
        if isinstance(c, AbsenceCorrelation):
            return self._absence(state, signal, occ, keep_from)
        if isinstance(c, SpikeCorrelation):
            return self._spike(state, occ, keep_from)
        return self._new_value(state, occ, keep_from)

    # -- count and distinct_count ------------------------------------------------
    def _count(self, items: list[Occurrence], occ: Occurrence) -> list[Fire]:
        c = self.corr
        assert isinstance(c, CountCorrelation | DistinctCountCorrelation)
        distinct = isinstance(c, DistinctCountCorrelation)
        lo = 0
        best: list[Occurrence] = []
        for hi in range(len(items)):
            while items[hi][0] - items[lo][0] > c.within:
                lo += 1
            window = items[lo:hi + 1]
            if occ not in window:
                continue
            size = len({o[3] for o in window}) if distinct else len(window)
            if size >= c.threshold and len(window) > len(best):
                best = window
        if not best:
            return []
        size = len({o[3] for o in best}) if distinct else len(best)
        return [Fire(best[-1][0], list(best), detail={"count": size})]

    # -- sequence and all_of -------------------------------------------------------
    def _sequence(self, state: dict[str, Any], signal: str, occ: Occurrence,
                  keep_from: float) -> list[Fire]:
        c = self.corr
        assert isinstance(c, SequenceCorrelation)
        steps = _per_signal(state, "steps", signal, occ, keep_from)
        if steps is None:
            return []
        chain = best_chain([steps.get(s, []) for s in c.steps], c.within, c.max_gap,
                           c.distinct_stories)
        if chain is None or occ not in chain:
            return []
        return [Fire(chain[-1][0], chain, detail={"steps": list(c.steps)})]

    def _all_of(self, state: dict[str, Any], signal: str, occ: Occurrence,
                keep_from: float) -> list[Fire]:
        c = self.corr
        assert isinstance(c, AllOfCorrelation)
        seen = _per_signal(state, "seen", signal, occ, keep_from)
        if seen is None:
            return []
        tagged = sorted(((o[0], name, o) for name in c.signals for o in seen.get(name, [])),
                        key=lambda t: t[0])
        lo = 0
        for hi in range(len(tagged)):
            while tagged[hi][0] - tagged[lo][0] > c.within:
                lo += 1
            latest: dict[str, Occurrence] = {}
            for _, name, o in tagged[lo:hi + 1]:
                latest[name] = o
            if len(latest) == len(set(c.signals)) and occ in latest.values():
                members = sorted(latest.values(), key=lambda o: o[0])
                return [Fire(members[-1][0], members, detail={"signals": list(c.signals)})]
        return []

    # -- absence and silence -------------------------------------------------------
    def _absence(self, state: dict[str, Any], signal: str, occ: Occurrence,
                 keep_from: float) -> list[Fire]:
        c = self.corr
        assert isinstance(c, AbsenceCorrelation)
        expected = _prune(state.get("expected", []), keep_from)
        fires: list[Fire] = []
        if signal == c.expect:
            _add(expected, occ)
            if c.after is None:
                state["last"] = max(state.get("last", occ[0]), occ[0])
                if state.pop("fired", False):
                    fires.append(Fire(occ[0], [occ], resolved=True))
            state["pending"] = [p for p in state.get("pending", [])
                                if not p[0] <= occ[0] <= p[0] + c.within]
        state["expected"] = expected
        if signal == c.after:
            followed = any(occ[0] <= e[0] <= occ[0] + c.within for e in expected)
            if not followed:
                _add(state.setdefault("pending", []), occ)
        return fires

    def start_silence(self, state: dict[str, Any], now: float) -> None:
        """A silence rule counts from when it started watching, if nothing came yet."""
        state.setdefault("last", now)

    def expire(self, state: dict[str, Any], watermark: float) -> list[Fire]:
        """Fire absences whose window closed before `watermark` (now minus lateness)."""
        c = self.corr
        if not isinstance(c, AbsenceCorrelation):
            return []
        if c.after is None:
            last = state.get("last")
            if last is None or state.get("fired") or watermark - last < c.within:
                return []
            state["fired"] = True
            return [Fire(last + c.within, [], detail={"silent_since": at(last).isoformat()})]
        pending = state.get("pending", [])
        due = [p for p in pending if p[0] + c.within <= watermark]
        if not due:
            return []
        state["pending"] = [p for p in pending if p not in due]
        return [Fire(p[0] + c.within, [p], detail={"expected": c.expect}) for p in due]

    # -- spike and new_value -------------------------------------------------------
    def _spike(self, state: dict[str, Any], occ: Occurrence, keep_from: float) -> list[Fire]:
        c = self.corr
        assert isinstance(c, SpikeCorrelation)
        items = _prune(state.get("items", []), keep_from)
        added = _add(items, occ)
        state["items"] = items
        if not added:
            return []
        now = occ[0]
        recent = [o for o in items if now - c.window < o[0] <= now]
        base = [o for o in items if now - c.baseline < o[0] <= now - c.window]
        expected = len(base) * c.window / (c.baseline - c.window)
        if len(recent) >= c.min_count and len(recent) >= c.factor * max(expected, 1.0):
            return [Fire(now, recent, detail={"recent": len(recent),
                                              "baseline_expected": round(expected, 2)})]
        return []

    def _new_value(self, state: dict[str, Any], occ: Occurrence,
                   keep_from: float) -> list[Fire]:
        c = self.corr
        assert isinstance(c, NewValueCorrelation)
        seen: dict[str, float] = {k: v for k, v in state.get("seen", {}).items()
                                  if v >= keep_from}
        value = str(occ[3])
        previous = seen.get(value)
        seen[value] = max(previous or occ[0], occ[0])
        state["seen"] = seen
        if previous is not None and abs(occ[0] - previous) <= c.lookback:
            return []
        return [Fire(occ[0], [occ], subkey=value, detail={"value": value})]


def best_chain(steps: Sequence[list[Occurrence]], within: float, max_gap: float | None,
               distinct: bool) -> list[Occurrence] | None:
    """A chain through every step in order that fits, starting as late as possible.

    Dynamic programming over steps: for each occurrence keep the predecessor
    chain with the latest start (most slack for `within`), subject to order,
    `max_gap` and, when `distinct`, a story not used earlier in the chain.
    """
    if any(not s for s in steps):
        return None
    chains: list[tuple[float, list[Occurrence]]] = [(o[0], [o]) for o in steps[0]]
    for step in steps[1:]:
        nxt: list[tuple[float, list[Occurrence]]] = []
        for occ in step:
            best: tuple[float, list[Occurrence]] | None = None
            for start, chain in chains:
                prev = chain[-1]
                if prev[0] > occ[0] or occ[0] - start > within:
                    continue
                if max_gap is not None and occ[0] - prev[0] > max_gap:
                    continue
                if distinct and occ[1] is not None and any(o[1] == occ[1] for o in chain):
                    continue
                if best is None or start > best[0]:
                    best = (start, chain)
            if best is not None:
                nxt.append((best[0], [*best[1], occ]))
        if not nxt:
            return None
        chains = nxt
    return max(chains, key=lambda sc: (sc[1][-1][0], sc[0]))[1]
