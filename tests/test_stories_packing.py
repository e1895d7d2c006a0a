"""The index's compact encodings give back exactly what they were given."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from monitor.stories.packing import ESCAPE, flatten, pack_ids, unflatten, unpack_ids

# Ids near the gaps' 16-bit boundary and up to the largest id an array("I") holds.
IDS = st.sets(st.one_of(st.integers(0, 70_000), st.integers(0, 2**32 - 1),
                        st.sampled_from([0, ESCAPE - 1, ESCAPE, ESCAPE + 1, 2**32 - 1])),
              max_size=120)


@given(IDS)
def test_packed_ids_unpack_to_the_same_set(ids: set[int]) -> None:
    packed = pack_ids(ids)
    assert list(unpack_ids(packed)) == sorted(ids)
    assert packed.itemsize == 2


def test_a_document_s_ids_take_two_bytes_each() -> None:
    ids = range(17, 100_000, 1_300)
    packed = pack_ids(ids)
    assert packed.itemsize == 2 and len(packed) == len(ids)


@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5), max_size=20))
def test_flattened_arrays_unflatten_to_the_same_arrays(rows: list[list[int]]) -> None:
    arrays = [array("q", row) for row in rows]
    assert unflatten(*flatten(arrays, "q")) == arrays
