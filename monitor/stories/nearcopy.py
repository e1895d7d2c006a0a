"""Near-exact copies: 64-bit SimHash of word pairs, found through band buckets.

Syndicated wire copy reappears with a new headline, a trimmed paragraph or a
local byline; its word-pair set barely changes, so its SimHash is a few bits
away from the original's. Splitting the 64 bits into BANDS buckets finds every
signature within BANDS - 1 bits (pigeonhole) with a few dictionary lookups.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from monitor.stories.normalise import fold

BITS = 64
BANDS = 6
"""Signatures within BANDS - 1 differing bits share a band; more bands, larger buckets."""
MAX_DISTANCE = 5
"""Hamming distance (of 64) up to which two texts count as copies of each other."""
MIN_WORDS = 12
"""Shorter texts (a bare headline) carry too few word pairs for a meaningful signature."""
_SHIFTS = np.arange(BITS, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BAND_WIDTHS = [BITS // BANDS + (1 if i < BITS % BANDS else 0) for i in range(BANDS)]


@lru_cache(maxsize=200_000)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def simhash(title: str, text: str) -> int | None:
    """SimHash of the folded word pairs of title and text; None when too short."""
    words = fold(f"{title} {text}").split()
    if len(words) < MIN_WORDS:
        return None
    h = np.array(list(map(_word_hash, words)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        pairs = h[:-1] * _MIX + h[1:]
        pairs ^= pairs >> np.uint64(31)
        pairs *= _MIX
        pairs ^= pairs >> np.uint64(29)
    ones = ((pairs[:, None] >> _SHIFTS) & np.uint64(1)).sum(axis=0)
    bits = ones * 2 > len(pairs)
    return int(np.packbits(bits, bitorder="little").view("<u8")[0])


def bands(signature: int) -> list[int]:
    """Bucket keys of a signature: (band number, band bits) packed into one int."""
    out = []
    shift = 0
    for i, width in enumerate(_BAND_WIDTHS):
        out.append((i << BITS) | ((signature >> shift) & ((1 << width) - 1)))
        shift += width
    return out


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()
