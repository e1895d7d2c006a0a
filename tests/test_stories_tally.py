"""The candidate search's per-slot sums against the sort-based grouping they replace."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from monitor.stories.tally import SlotTally

queries = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0.0, 0.25, 0.5, 1.0, 0.1])),
                   max_size=200)


def _reference(slots: np.ndarray, weights: np.ndarray, keep: int) -> list[int]:
    """`np.unique` + `np.bincount`: strongest first, among equals the first met."""
    unique, first, which = np.unique(slots, return_index=True, return_inverse=True)
    partial = np.bincount(which, weights=weights)
    return list(unique[np.lexsort((first, -partial))[:keep]].tolist())


@given(st.lists(queries, min_size=1, max_size=5), st.integers(1, 10))
def test_tally_ranks_as_unique_and_bincount(batches: list[list[tuple[int, float]]],
                                            keep: int) -> None:
    tally = SlotTally()
    for capacity, batch in enumerate(batches, 1):  # the scratch grows between queries
        slots = np.array([s for s, _ in batch], np.int64)
        weights = np.array([w for _, w in batch])
        room = max(capacity, int(slots.max()) + 1 if batch else 0)
        assert tally.top(slots, weights, room, keep) == _reference(slots, weights, keep)
    assert not tally._sums.any()  # left clean for the next query
