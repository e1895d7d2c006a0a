"""A table from 64-bit keys to 64-bit values in two flat arrays.

The story index maps every exact-duplicate key of the window (hundreds of
thousands) to the member that first had it. As a dict that costs about 100
bytes per key (an int object for the key and one for the value, plus the
entry); here a key costs 16 bytes per slot at most 70% full. Open addressing
with linear probing; deletion shifts the following run back instead of
leaving tombstones, so lookups never slow down as keys come and go.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

MIN_SLOTS = 16
MAX_LOAD = 0.7


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


class KeyTable:
    """Key → value for any 64-bit signed integers; 0 marks a free slot, so key 0 lives apart."""

    __slots__ = ("_keys", "_used", "_values", "_zero")

    def __init__(self, slots: int = MIN_SLOTS) -> None:
        self._keys = _zeros(slots)
        self._values = _zeros(slots)
        self._used = 0
        self._zero: int | None = None
        """The value of key 0."""

    def __len__(self) -> int:
        return self._used + (self._zero is not None)

    def _slot(self, key: int) -> int:
        """The slot holding `key`, or the free slot where it would go."""
        keys = self._keys
        mask = len(keys) - 1
        i = key & mask
        while True:
            found = keys[i]
            if found == key or not found:
                return i
            i = (i + 1) & mask

    def get(self, key: int) -> int | None:
        if not key:
            return self._zero
        i = self._slot(key)
        return self._values[i] if self._keys[i] else None

    def setdefault(self, key: int, value: int) -> int:
        """The key's value, after storing `value` for it if it had none."""
        if not key:
            if self._zero is None:
                self._zero = value
            return self._zero
        i = self._slot(key)
        if self._keys[i]:
            return self._values[i]
        self._keys[i], self._values[i] = key, value
        self._used += 1
        if self._used > MAX_LOAD * len(self._keys):
            self._resize(2 * len(self._keys))
        return value

    def discard(self, key: int, value: int) -> None:
        """Forget `key` if it maps to `value` (a later holder of the key keeps it)."""
        if not key:
            if self._zero == value:
                self._zero = None
            return
        i = self._slot(key)
        if self._keys[i] and self._values[i] == value:
            self._remove_at(i)
            self._used -= 1
            if len(self._keys) > MIN_SLOTS and self._used < len(self._keys) // 8:
                self._resize(len(self._keys) // 2)

    def _remove_at(self, i: int) -> None:
        """Empty slot `i`, moving back each later key of the run whose probe passes over it."""
        keys, values = self._keys, self._values
        mask = len(keys) - 1
        j = i
        while True:
            j = (j + 1) & mask
            key = keys[j]
            if not key:
                break
            if (j - key) & mask >= (j - i) & mask:  # its home slot is at or before i
                keys[i], values[i] = key, values[j]
                i = j
        keys[i] = values[i] = 0

    def _resize(self, slots: int) -> None:
        keys, values = self._keys, self._values
        self._keys, self._values = _zeros(slots), _zeros(slots)
        for key, value in zip(keys, values, strict=True):
            if key:
                i = self._slot(key)
                self._keys[i], self._values[i] = key, value

    def items(self) -> Iterator[tuple[int, int]]:
        """Every (key, value), in slot order (key 0 first)."""
        if self._zero is not None:
            yield 0, self._zero
        for key, value in zip(self._keys, self._values, strict=True):
            if key:
                yield key, value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyTable) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]
