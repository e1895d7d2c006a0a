"""Decide which stored entry (if any) each item of a fetch is: pure, no I/O.

Every entry is remembered under all its identity keys (GUID, link,
title+date, title+text; see `normalise.identity_keys`), and those keys
outlive the entry, so a pruned item that is still in the feed is recognised
instead of resurrected. A key several items of one fetch share (a feed that
repeats one GUID for every item) is marked ambiguous and never trusted
again. When an item's most trusted key is unknown but its next key names an
existing entry, the feed's GUIDs (or links) are unstable: the item is that
entry, and after a few such strikes the feed is degraded to the next level
so its unstable keys are no longer consulted at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.stories.normalise import TITLE_TEXT, NormalisedEntry

STRIKES_TO_DEGRADE = 3


@dataclass(frozen=True)
class Known:
    """What the database holds for one key of this feed."""

    entry_id: int | None
    """None: the entry was pruned (a tombstone) or the key is ambiguous."""
    ambiguous: bool = False


@dataclass(frozen=True)
class Decision:
    item: NormalisedEntry
    key: str
    """The key the entry is stored under when new."""
    entry_id: int | None
    """The existing entry, or None for a new one."""
    tombstone: bool
    """Seen before and since pruned: skip it."""
    keys: tuple[str, ...]
    """Keys to remember for this entry (trusted ones only)."""


@dataclass(frozen=True)
class Plan:
    decisions: list[Decision]
    ambiguous: frozenset[str]
    """Keys to mark ambiguous for this feed."""
    level: int
    """The feed's identity level after this fetch."""
    strikes: int
    """Strikes carried after this fetch (reset to 0 when the level changes)."""


def resolve(items: Sequence[NormalisedEntry], known: Mapping[str, Known], level: int,
            strikes: int) -> Plan:
    counts = Counter(k for item in items for _, k in item.keys)
    shared = frozenset(k for k, n in counts.items() if n > 1)
    decisions: list[Decision] = []
    struck_level: int | None = None
    for item in items:
        usable = [(lvl, k) for lvl, k in item.keys
                  if lvl >= level and k not in shared
                  and not (k in known and known[k].ambiguous)]
        if not usable:  # every key shared or ambiguous: the title+text key is all we have
            usable = [item.keys[-1]]
        (lvl, key), rest = usable[0], usable[1:]
        hit = known.get(key)
        if hit is None and rest and rest[0][1] in known and not known[rest[0][1]].ambiguous:
            hit = known[rest[0][1]]
            strikes += 1
            struck_level = lvl
        decisions.append(Decision(
            item=item, key=key, entry_id=hit.entry_id if hit else None,
            tombstone=hit is not None and hit.entry_id is None,
            keys=tuple(k for _, k in usable)))
    if struck_level is not None and strikes >= STRIKES_TO_DEGRADE and struck_level < TITLE_TEXT:
        level, strikes = struck_level + 1, 0
    ambiguous = frozenset(k for item in items for lvl, k in item.keys
                          if k in shared and lvl < TITLE_TEXT)
    return Plan(decisions, ambiguous, level, strikes)
