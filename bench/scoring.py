"""Clustering scores against gold labels: BCubed and pairwise precision/recall/F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    pair_precision: float
    pair_recall: float
    pair_f1: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score(gold: Mapping[str, Hashable], found: Mapping[str, Hashable]) -> Scores:
    """BCubed (per item, then averaged) and pairwise scores of `found` against `gold`."""
    items = list(gold)
    both = Counter((gold[i], found[i]) for i in items)
    gold_size = Counter(gold[i] for i in items)
    found_size = Counter(found[i] for i in items)
    precision = sum(n * n / found_size[f] for (_, f), n in both.items()) / len(items)
    recall = sum(n * n / gold_size[g] for (g, _), n in both.items()) / len(items)

    def pairs(counts: Counter[Hashable] | Counter[tuple[Hashable, Hashable]]) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    true_pairs, gold_pairs, found_pairs = pairs(both), pairs(gold_size), pairs(found_size)
    pp = true_pairs / found_pairs if found_pairs else 1.0
    pr = true_pairs / gold_pairs if gold_pairs else 1.0
    return Scores(precision, recall, _f1(precision, recall), pp, pr, _f1(pp, pr))
