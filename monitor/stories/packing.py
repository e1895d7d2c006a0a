"""Compact encodings of the integer arrays the story index keeps per document or story.

Per-document and per-story arrays dominate the index of a large window, so
they are stored in fewer bytes and fewer objects than their plain form.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import accumulate, chain
from typing import Any

ESCAPE = 0xFFFF
"""In `pack_ids`: the next two items are the high and low 16 bits of a larger gap."""


def pack_ids(ids: Iterable[int]) -> array[int]:
    """A set of term ids as the gaps between them in ascending order, 2 bytes each.

    A document's ids are a few dozen out of a vocabulary of about 100,000, so
    the gaps nearly always fit in 16 bits: half the size of the ids themselves.
    A gap that does not (ids beyond 65,534 apart) takes three items. Ids are
    below 2**32, as in an `array("I")`.
    """
    gaps, last = [], 0
    for i in sorted(ids):
        gap, last = i - last, i
        if gap < ESCAPE:
            gaps.append(gap)
        else:
            gaps += (ESCAPE, gap >> 16, gap & 0xFFFF)
    return array("H", gaps)


def unpack_ids(packed: array[int]) -> Iterable[int]:
    """The ids of `pack_ids`, ascending."""
    if ESCAPE not in packed:
        return accumulate(packed)
    gaps, items = [], iter(packed)
    for gap in items:
        gaps.append(next(items) << 16 | next(items) if gap == ESCAPE else gap)
    return accumulate(gaps)


def flatten(arrays: Iterable[array[Any]], typecode: str) -> tuple[array[int], array[Any]]:
    """Arrays as their concatenation and where each ends in it: two objects to pickle.

    Pickled as they are, hundreds of thousands of small arrays become as many
    bytes copies that the unpickler keeps until the load ends (docs/stories.md,
    "The snapshot")."""
    ends, items = array("q"), array(typecode)
    for a in arrays:
        items.extend(a)
        ends.append(len(items))
    return ends, items


def unflatten(ends: array[int], items: array[Any]) -> list[array[Any]]:
    return [items[a:b] for a, b in zip(chain((0,), ends), ends, strict=False)]
