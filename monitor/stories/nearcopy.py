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
_SHIFT_1, _SHIFT_2 = np.uint64(31), np.uint64(29)


def word_hashes(token: str) -> bytes:
    """64-bit hashes (little-endian) of the folded words of one whitespace-separated token.

    As bytes, not a tuple of ints: the token memo keeps one per distinct token
    (`features._TOKENS`), and numpy reads a document's joined hashes as they are."""
    return b"".join(hashlib.blake2b(w.encode(), digest_size=8).digest()
                    for w in fold(token).split())


def of_words(title: bytes, body: bytes) -> int | None:
    """SimHash of the folded word pairs from the word hashes of title and body (joined
    `word_hashes` of their tokens, as `features.analyse` looks them up); None when too short.

    Copies often get a new headline, so the title counts only when the body
    alone is too short to sign.
    """
    return _signature(body if len(body) >= 8 * MIN_WORDS else title + body)


def _signature(words: bytes) -> int | None:
    """SimHash of the word pairs of these word hashes; None when there are too few."""
    if len(words) < 8 * MIN_WORDS:
        return None
    h = np.frombuffer(words, "<u8")
    pairs = h[:-1] * _MIX  # array arithmetic wraps modulo 2**64 silently
    pairs += h[1:]
    pairs ^= pairs >> _SHIFT_1
    pairs *= _MIX
    pairs ^= pairs >> _SHIFT_2
    ones = np.unpackbits(pairs.view(np.uint8), bitorder="little").reshape(-1, BITS)
    bits = ones.sum(axis=0) * 2 > len(pairs)
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()
