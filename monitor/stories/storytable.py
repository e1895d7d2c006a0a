"""The open stories of the clustering window, as columns indexed by a slot number.

A window holds hundreds of thousands of stories, nearly all of one entry. As
an object each, with an array for its centroid's terms, one for its weights
and one for its near-copy signatures, a story cost about 750 bytes, 400 of
them object and array headers and spare capacity. Here a story is a slot: a
row of a few flat arrays. A centroid of up to `STRIDE` terms (every story of
one entry: a document keeps `cluster.DOC_TERMS`) sits in the slot's stretch
of one flat array; a longer one, or more than one signature, in a dict by slot
(`_Slab`). Flat arrays also pickle as a few buffers, which the snapshot's
forked writer reads without copying the pages (`snapshot.py`).
"""

from __future__ import annotations

from array import array
from typing import Any

from monitor.stories.packing import flatten, unflatten

STRIDE = 40
"""Centroid terms a slot holds in place (`cluster.DOC_TERMS`: a story of one fits)."""


class _Slab:
    """Per slot, `stride` items in place in each of a few parallel arrays; longer in a dict."""

    __slots__ = ("count", "flat", "stride", "wide")

    def __init__(self, stride: int, typecodes: str) -> None:
        self.stride = stride
        self.flat = tuple(array(t) for t in typecodes)
        self.count = array("B")
        """Items of each slot held in place (0 for a slot whose items are in `wide`)."""
        self.wide: dict[int, tuple[array[Any], ...]] = {}

    def grow(self) -> None:
        """One more slot, empty."""
        self.count.append(0)
        for column in self.flat:
            column.extend(array(column.typecode, bytes(column.itemsize * self.stride)))

    def get(self, slot: int) -> tuple[array[Any], ...]:
        wide = self.wide.get(slot)
        if wide is not None:
            return wide
        start = slot * self.stride
        end = start + self.count[slot]
        return tuple(column[start:end] for column in self.flat)

    def put(self, slot: int, *items: array[Any]) -> None:
        """Replace the slot's items (one array per column, of equal lengths)."""
        n = len(items[0])
        if n > self.stride:
            self.wide[slot] = items
            self.count[slot] = 0
            return
        self.wide.pop(slot, None)
        start = slot * self.stride
        for column, values in zip(self.flat, items, strict=True):
            column[start:start + n] = values
        self.count[slot] = n

    def clear(self, slot: int) -> None:
        self.wide.pop(slot, None)
        self.count[slot] = 0

    def __getstate__(self) -> dict[str, Any]:
        """`wide` as one flat array per column: not an object per entry (`flatten`)."""
        rows = self.wide.values()
        return {"stride": self.stride, "flat": self.flat, "count": self.count,
                "wide": (array("q", self.wide), [flatten((row[c] for row in rows), column.typecode)
                                                 for c, column in enumerate(self.flat)])}

    def __setstate__(self, state: dict[str, Any]) -> None:
        slots, columns = state.pop("wide")
        self.stride, self.flat, self.count = state["stride"], state["flat"], state["count"]
        rows = zip(*(unflatten(*column) for column in columns), strict=True)
        self.wide = dict(zip(slots, rows, strict=True))


class StoryTable:
    """Open stories by slot; `order` lists them least recently updated first.

    A slot is a story's for as long as it is open, so the inverted index can
    name stories by slot; a closed story's slot is reused.
    """

    __slots__ = ("_centroids", "_copies", "_free", "last_at", "names", "order", "size",
                 "story_id")

    def __init__(self) -> None:
        self.order: dict[int, int] = {}
        """Story id → slot, least recently updated first (the order of expiry)."""
        self.story_id = array("q")
        self.last_at = array("q")
        """Microseconds since the epoch of each story's latest member."""
        self.size = array("q")
        self.names: list[tuple[str, ...]] = []
        self._centroids = _Slab(STRIDE, "IH")
        """Term ids (strongest first) and weights (`cluster.WEIGHT_SCALE`) of each story's
        centroid."""
        self._copies = _Slab(2, "Q")
        """SimHash and entry id of each story's latest members, interleaved."""
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.order)

    @property
    def capacity(self) -> int:
        """Slots ever opened: every slot is below this."""
        return len(self.story_id)

    def __contains__(self, story_id: int) -> bool:
        return story_id in self.order

    def update(self, story_id: int, at: int) -> int:
        """The story's slot (a new one, the story starting at `at`, if it has none), as
        the most recently updated."""
        slot = self.order.pop(story_id, None)
        if slot is None:
            slot = self._open(story_id, at)
        self.order[story_id] = slot
        return slot

    def _open(self, story_id: int, at: int) -> int:
        if self._free:
            slot = self._free.pop()
            self.story_id[slot], self.last_at[slot], self.size[slot] = story_id, at, 0
            return slot
        self.story_id.append(story_id)
        self.last_at.append(at)
        self.size.append(0)
        self.names.append(())
        self._centroids.grow()
        self._copies.grow()
        return len(self.story_id) - 1

    def close(self, story_id: int) -> None:
        slot = self.order.pop(story_id)
        self._centroids.clear(slot)
        self._copies.clear(slot)
        self.names[slot] = ()
        self._free.append(slot)

    def centroid(self, slot: int) -> tuple[array[int], array[int]]:
        terms, weights = self._centroids.get(slot)
        return terms, weights

    def set_centroid(self, slot: int, terms: array[int], weights: array[int]) -> None:
        self._centroids.put(slot, terms, weights)

    def copies(self, slot: int) -> array[int]:
        return self._copies.get(slot)[0]

    def set_copies(self, slot: int, copies: array[int]) -> None:
        self._copies.put(slot, copies)

    def __getstate__(self) -> dict[str, Any]:
        """The slot map as two arrays: a dict of ints unpickles as an object per int."""
        state = {name: getattr(self, name) for name in self.__slots__}
        state["order"] = array("q", self.order), array("q", self.order.values())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids, slots = state.pop("order")
        for name, value in state.items():
            setattr(self, name, value)
        self.order = dict(zip(ids, slots, strict=True))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, StoryTable)
                and list(self.order.items()) == list(other.order.items())
                and all(self._row(slot) == other._row(slot) for slot in self.order.values()))

    __hash__ = None  # type: ignore[assignment]

    def _row(self, slot: int) -> tuple[Any, ...]:
        return (self.story_id[slot], self.last_at[slot], self.size[slot], self.names[slot],
                self.centroid(slot), self.copies(slot))

