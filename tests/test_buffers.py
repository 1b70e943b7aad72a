"""streamer.buffers: ring buffers against a plain deque oracle, tables, rows, state bytes.

Ring of window 3, pushes p0..p4 (``h`` = head, the slot the next value goes to)::

    after p0: [p0 .  . ] h=1 count=1
    after p2: [p0 p1 p2] h=0 count=3      gather -> p0 p1 p2
    after p4: [p3 p4 p2] h=2 count=3      gather -> p2 p3 p4
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.buffers import (
    Column,
    RingBuffers,
    StateCodec,
    StateTable,
    StreamIndex,
    ring_spec,
)


def make_ring(window: int, features: int = 1, capacity: int = 2) -> RingBuffers:
    return RingBuffers(StateTable(ring_spec(window, features), capacity), window)


def test_ring_timeline_from_the_docstring() -> None:
    ring = make_ring(3)
    row = np.array([0])
    for i in range(5):
        ring.push(row, np.array([[float(i)]]), np.array([i]))
        if i == 0:
            assert ring.table["head"][0] == 1 and ring.table["count"][0] == 1
        if i == 2:
            np.testing.assert_array_equal(ring.gather(row)[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(ring.table["ring"][0, :, 0], [3, 4, 2])
    np.testing.assert_array_equal(ring.gather(row)[0, :, 0], [2, 3, 4])
    assert ring.last_values(row)[0, 0] == 4 and ring.table["last_ts"][0] == 4


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6),
    st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True), max_size=40),
)
def test_ring_equals_a_deque_per_stream(window: int, rounds: list[list[int]]) -> None:
    """Many rounds of pushes to several rows at once == one deque(maxlen=window) per row."""
    ring = make_ring(window, features=2, capacity=4)
    oracle = {r: deque(maxlen=window) for r in range(4)}
    v = 0.0
    for rnd in rounds:
        rows = np.array(rnd, dtype=np.intp)
        vals = np.array([[v + i, -(v + i)] for i in range(len(rnd))])
        for r, x in zip(rnd, vals, strict=True):
            oracle[r].append(x)
        ring.push(rows, vals, np.full(len(rows), int(v)))
        v += len(rnd)
        got = ring.gather(np.arange(4))
        for r in range(4):
            n = len(oracle[r])
            assert ring.table["count"][r] == n
            if n == window:
                np.testing.assert_array_equal(got[r], np.array(oracle[r]))


def test_table_grows_keeping_rows_and_defaults() -> None:
    t = StateTable({"a": Column("float64", (), 7.0), "w": Column("float32", (2, 1))}, 2)
    t["a"][1] = 3.0
    t.grow(5)
    assert t.capacity == 5 and t["w"].shape == (5, 2, 1)
    np.testing.assert_array_equal(t["a"], [7, 3, 7, 7, 7])
    t.reset(np.array([1]))
    assert t["a"][1] == 7.0
    with pytest.raises(ValueError, match="initial_capacity"):
        StateTable({"a": Column("int8")}, 0)


def test_stream_index_reuses_freed_rows_lowest_first() -> None:
    ix = StreamIndex()
    assert [ix.add(s) for s in "abcd"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(ix.lookup(["c", "x", "a"]), [2, -1, 0])
    ix.remove(["c", "a"])
    assert len(ix) == 2 and ix.high_water == 4
    assert ix.add("e") == 0 and ix.add("f") == 2 and ix.add("g") == 4


def test_state_codec_round_trip_and_refusals() -> None:
    t1 = StateTable(ring_spec(3, 1), 4)
    t2 = StateTable({"x": Column("float64"), "n": Column("int32")}, 4)
    ring = RingBuffers(t1, 3)
    ring.push(np.array([1, 2]), np.array([[1.5], [2.5]]), np.array([10, 20]))
    t2["x"][[1, 2]] = [0.25, -1e300]
    t2["n"][[1, 2]] = [5, 6]
    codec = StateCodec([t1, t2], 3, 1)
    blobs = codec.encode(np.array([1, 2]))
    assert all(len(b) == codec.nbytes for b in blobs)
    u1, u2 = (
        StateTable(ring_spec(3, 1), 4),
        StateTable({"x": Column("float64"), "n": Column("int32")}, 4),
    )
    fresh = StateCodec([u1, u2], 3, 1)
    for b in blobs:
        fresh.check("s", b)
    fresh.decode(np.array([3, 0]), blobs)
    for name in t1.spec:
        np.testing.assert_array_equal(u1[name][[3, 0]], t1[name][[1, 2]])
    np.testing.assert_array_equal(u2["x"][[3, 0]], [0.25, -1e300])
    other = StateCodec([StateTable(ring_spec(4, 1), 1), t2], 4, 1)
    with pytest.raises(ValueError, match="window 3 x 1 features; this model has window 4"):
        other.check("s", blobs[0])
    with pytest.raises(ValueError, match="format"):
        fresh.check("s", b"XXXX" + blobs[0][4:])
    with pytest.raises(ValueError, match="not a state"):
        fresh.check("s", b"ab")
    narrower = StateCodec([u1, StateTable({"x": Column("float32")}, 1)], 3, 1)
    with pytest.raises(ValueError, match="incompatible"):
        narrower.check("s", blobs[0])
