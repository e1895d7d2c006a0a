"""Near-exact copies: 64-bit SimHash of word pairs.

Syndicated wire copy reappears with a new headline, a trimmed paragraph or a
local byline; its word-pair set barely changes, so its SimHash is a few bits
away from the original's, while unrelated texts differ in about 32 of 64 bits
and paraphrases of one event in 25 or more. A copy shares nearly all terms
with its original, so the clustering's inverted index already finds its story;
only those candidates' members are compared, and no separate index is kept.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from monitor.stories.normalise import fold

BITS = 64
MAX_DISTANCE = 12
"""Hamming distance (of 64) up to which two texts count as copies of each other.

A one-word swap plus a trimmed sentence in a 50-word lead moves 4-12 bits;
unrelated texts come this close with probability ~5e-7 (binomial 64, 1/2)."""
MIN_WORDS = 12
"""Shorter texts (a bare headline) carry too few word pairs for a meaningful signature."""
_MIX = np.uint64(0x9E3779B97F4A7C15)


@lru_cache(maxsize=200_000)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def simhash(title: str, text: str) -> int | None:
    """SimHash of the folded word pairs of the body; None when too short.

    Copies often get a new headline, so the title counts only when the body
    alone is too short to sign.
    """
    words = fold(text).split()
    if len(words) < MIN_WORDS:
        words = fold(f"{title} {text}").split()
    if len(words) < MIN_WORDS:
        return None
    h = np.array(list(map(_word_hash, words)), dtype=np.uint64)
    pairs = h[:-1] * _MIX + h[1:]  # array arithmetic wraps modulo 2**64 silently
    pairs ^= pairs >> np.uint64(31)
    pairs *= _MIX
    pairs ^= pairs >> np.uint64(29)
    ones = np.unpackbits(pairs.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    bits = ones.sum(axis=0) * 2 > len(pairs)
    return int(np.packbits(bits, bitorder="little").view("<u8")[0])


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()
