"""A bounded memo for per-word work: folding, stemming, hashing.

News text reuses a limited vocabulary, so each distinct word is analysed once
and every later document only looks it up. A hit is a plain dict lookup in C
(usable through `map`), cheaper than a `functools.lru_cache` hit; the
bound is kept by emptying the memo when it is full, which costs one refill of
the words still in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

VOCABULARY = 200_000
"""Distinct tokens (or words) a memo remembers before it starts over."""

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    def __init__(self, make: Callable[[K], V], limit: int) -> None:
        super().__init__()
        self.make = make
        self.limit = limit

    def __missing__(self, key: K) -> V:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.make(key)
        return value
