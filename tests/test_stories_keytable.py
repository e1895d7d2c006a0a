"""The exact-key table behaves as a dict of ints through any run of inserts and deletes."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.stories.keytable import MIN_SLOTS, KeyTable

# Keys that share low bits land in one run of slots, so deletes must shift runs back;
# 0 and the extremes of 64 bits are keys like any other.
KEYS = st.one_of(st.integers(0, 7).map(lambda k: k * MIN_SLOTS + 3),
                 st.integers(0, 3).map(lambda k: k * MIN_SLOTS - 1),
                 st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
                 st.integers(-(2**63), 2**63 - 1))
OPS = st.lists(st.tuples(st.sampled_from(["set", "discard", "discard_other"]), KEYS,
                         st.integers(-(2**63), 2**63 - 1)), max_size=300)


@settings(max_examples=500, deadline=None)
@given(OPS)
def test_the_table_agrees_with_a_dict(ops: list[tuple[str, int, int]]) -> None:
    table, model = KeyTable(), {}
    for op, key, value in ops:
        if op == "set":
            assert table.setdefault(key, value) == model.setdefault(key, value)
        elif op == "discard":  # the value it holds, if any
            if key in model:
                table.discard(key, model.pop(key))
        else:  # another value: the key stays
            table.discard(key, model.get(key, value) ^ 1)
        assert len(table) == len(model)
    assert all(table.get(key) == model.get(key) for _, key, _ in ops)
    assert dict(table.items()) == model
    copy = pickle.loads(pickle.dumps(table))
    assert copy == table and list(copy.items()) == list(table.items())


def test_the_table_grows_and_shrinks_with_its_keys() -> None:
    table = KeyTable()
    for key in range(1, 10_001):
        table.setdefault(key * 7919, key)
    grown = len(table._keys)
    assert 10_000 / grown <= 0.7 and len(table) == 10_000
    for key in range(1, 9_901):
        table.discard(key * 7919, key)
    assert len(table._keys) < grown / 8
    assert dict(table.items()) == {key * 7919: key for key in range(9_901, 10_001)}
