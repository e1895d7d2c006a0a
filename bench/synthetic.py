"""A synthetic news stream for the speed benchmark: recombined vocabulary, real shape.

Pseudo-words follow a Zipf law like real text; each event draws its own topic
words and names, and 1-4 outlets report it with mostly different wording, so
the clusterer does real candidate search instead of trivially matching copies.
A few reports are wire copies with small edits, exercising the near-copy layer.
Deterministic for a given seed; generated lazily so memory measures the
clusterer, not the data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from bench.labelled import LabelledDoc

VOCABULARY = 60_000
NAMES = 5_000
_SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
_GLUE = ["the", "of", "and", "to", "in", "a", "for", "on", "with", "that", "by", "from", "at", "as"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


class Stream:
    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.words = [_word(rng) for _ in range(VOCABULARY)]
        self.names = [_word(rng).capitalize() for _ in range(NAMES)]
        self.cumulative = list(accumulate(1.0 / (rank + 1) for rank in range(VOCABULARY)))

    def _background(self, n: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=n)

    def _report(self, topic: list[str], names: list[str]) -> tuple[str, str]:
        rng = self.rng
        title = rng.sample(topic, 4) + rng.sample(names, 1) + self._background(4)
        rng.shuffle(title)
        kinds = rng.choices(range(4), weights=(25, 7, 23, 45), k=rng.randint(40, 110))
        background = iter(self._background(kinds.count(3)))
        pick = (lambda: rng.choice(topic), lambda: rng.choice(names),
                lambda: rng.choice(_GLUE), lambda: next(background))
        body = [pick[kind]() for kind in kinds]
        return " ".join(title).capitalize(), " ".join(body).capitalize() + "."

    def docs(self, count: int, window: timedelta, window_docs: int) -> Iterator[LabelledDoc]:
        """`count` reports arriving so that `window` holds about `window_docs` of them."""
        rng = self.rng
        gap = window / window_docs
        at = datetime(2025, 1, 1, tzinfo=UTC)
        made = event = 0
        while made < count:
            event += 1
            topic = self._background(3) + rng.sample(self.words[2000:], 12)
            names = rng.sample(self.names, 3)
            copies = 1 + min(3, int(rng.expovariate(1.2)))
            previous: tuple[str, str] | None = None
            for outlet in range(copies):
                if previous is not None and rng.random() < 0.1:
                    title, text = previous
                    words = text.split()
                    words[rng.randrange(len(words))] = _word(rng)
                    title, text = "Update: " + title, " ".join(words)
                else:
                    title, text = self._report(topic, names)
                previous = (title, text)
                yield LabelledDoc(f"s{made}", f"e{event}", title, text, at, f"outlet-{outlet}",
                                  f"https://outlet-{outlet}.example/{event}/{made}?utm_source=rss")
                at += gap
                made += 1
                if made >= count:
                    return
