"""streamer.buffers: window buffers against a plain deque oracle, tables, rows, state bytes.

Window 3, one row; extend() with p0 p1 then p2 p3 p4 (one call each)::

    after [p0 p1]:     win [0  p0 p1]  count 2       flat [0 0 0 | p0 p1]
    after [p2 p3 p4]:  win [p2 p3 p4]  count 3       flat [0 p0 p1 | p2 p3 p4]
    window ending at p3 (new point 1): flat[base + 1 + 1 : ...] = [p1 p2 p3]
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.buffers import (
    MAPPED_MIN_BYTES,
    Column,
    StateCodec,
    StateTable,
    StreamIndex,
    WindowBuffers,
    in_order,
    window_spec,
)


def make_buffers(window: int, features: int = 1, capacity: int = 2) -> WindowBuffers:
    return WindowBuffers(StateTable(window_spec(window, features), capacity), window)


def test_timeline_from_the_docstring() -> None:
    buf = make_buffers(3)
    row = np.array([0])
    buf.extend(row, np.array([2]), np.array([[0.5], [1.5]]), np.array([2]))
    np.testing.assert_array_equal(buf.table["win"][0, :, 0], [0, 0.5, 1.5])
    assert buf.table["count"][0] == 2
    h = buf.extend(row, np.array([3]), np.array([[2.5], [3.5], [4.5]]), np.array([5]))
    np.testing.assert_array_equal(buf.table["win"][0, :, 0], [2.5, 3.5, 4.5])
    np.testing.assert_array_equal(h.windows(np.array([0]), np.array([1]))[0, :, 0], [1.5, 2.5, 3.5])
    assert h.before(np.array([0]), np.array([0]))[0, 0] == 1.5
    assert buf.last_values(row)[0, 0] == 4.5 and buf.table["last_ts"][0] == 5 == h.base[0] + 5


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6),
    st.lists(st.dictionaries(st.integers(0, 3), st.integers(1, 8), min_size=1), max_size=15),
)
def test_extend_equals_a_deque_per_stream(window: int, batches: list[dict[int, int]]) -> None:
    """Batches appending several points to several rows == one deque(maxlen=window) per row,
    and every window History hands out == the deque right after that point."""
    buf = make_buffers(window, features=2, capacity=4)
    oracle: dict[int, deque] = {r: deque(maxlen=window) for r in range(4)}
    v = 0.0
    for batch in batches:
        rows = np.array(sorted(batch), dtype=np.intp)
        counts = np.array([batch[r] for r in rows], dtype=np.intp)
        vals = np.array([[v + i, -(v + i)] for i in range(int(counts.sum()))])
        v += len(vals)
        expect_windows, expect_before, gs, ps = [], [], [], []
        at = 0
        for g, (r, c) in enumerate(zip(rows, counts, strict=True)):
            for p in range(c):
                before = oracle[r][-1] if oracle[r] else None
                oracle[r].append(vals[at])
                at += 1
                if len(oracle[r]) == window:
                    expect_windows.append(np.array(oracle[r]))
                    expect_before.append(before)
                    gs.append(g)
                    ps.append(p)
        h = buf.extend(rows, counts, vals, np.zeros(len(rows), dtype=np.int64))
        got = h.windows(np.array(gs, dtype=np.intp), np.array(ps, dtype=np.intp))
        for want, have in zip(expect_windows, got, strict=True):
            np.testing.assert_array_equal(have, want)
        befores = h.before(np.array(gs, dtype=np.intp), np.array(ps, dtype=np.intp))
        for want_b, have_b in zip(expect_before, befores, strict=True):
            if want_b is not None:
                np.testing.assert_array_equal(have_b, want_b)
        for r in range(4):
            n = len(oracle[r])
            assert buf.table["count"][r] == n
            if n:
                np.testing.assert_array_equal(
                    buf.table["win"][r, window - n :], np.array(oracle[r])
                )


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


def test_grown_rows_hold_every_columns_default_and_dirty_rows_reset() -> None:
    """Large zero-default columns come from fresh mappings (never written): they read 0 = the
    default; a row handed out again after use is reset to every column's default."""
    spec = {**window_spec(3, 2), "k": Column("int8"), "m": Column("float64", (), -2.5)}
    t = StateTable(spec, 3)
    for name in t.spec:
        t[name][:] = 9
    t.grow(20_000)
    assert t["k"].nbytes < MAPPED_MIN_BYTES <= t["win"].nbytes  # both kinds of column
    assert all(t[name].flags.writeable and t[name].shape[0] == 20_000 for name in t.spec)
    assert all((t[name][:3] == 9).all() for name in t.spec)
    for name, c in t.spec.items():
        assert (t[name][3:] == c.default).all(), name
    t.reset(np.array([1, 19_999]))
    for name, c in t.spec.items():
        assert (t[name][[1, 19_999]] == c.default).all() and (t[name][[0, 2]] == 9).all(), name


def test_tables_and_grown_columns_never_share_memory() -> None:
    a, b = StateTable(window_spec(2, 1), 10_000), StateTable(window_spec(2, 1), 10_000)
    old = a["win"]
    a.grow(20_000)
    a["win"][0] = 1.0
    assert not np.shares_memory(a["win"], old) and not np.shares_memory(a["win"], b["win"])
    assert (b["win"] == 0).all() and (old == 0).all()


def test_stream_index_reuses_freed_rows_lowest_first() -> None:
    ix = StreamIndex()
    assert [ix.add(s) for s in "abcd"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(ix.lookup(["c", "x", "a"]), [2, -1, 0])
    ix.remove(["c", "a"])
    assert len(ix) == 2 and ix.high_water == 4
    assert ix.add("e") == 0 and ix.add("f") == 2 and ix.add("g") == 4


class _Colliding(str):
    """A stream id whose hash is one of four values, so probes run long and wrap around."""

    __slots__ = ()

    def __hash__(self) -> int:
        return (-1, 5, 7, 2**62)[sum(map(ord, self)) % 4]  # hash() never gives -1: it gives -2


@pytest.mark.parametrize("make", [str, _Colliding], ids=["str", "colliding"])
def test_stream_index_agrees_with_a_dict_through_adds_and_removes(make: type[str]) -> None:
    rng = np.random.default_rng(3)
    ix, oracle, free = StreamIndex(), {}, []  # oracle: name number -> row, as a dict kept it

    def name(i: int) -> str:  # a new object each time: the index compares ids, not objects
        return make(f"s{i}")

    for step in range(400):
        if oracle and rng.random() < 0.45:  # remove some held streams
            held = list(oracle)
            gone = [held[i] for i in rng.choice(len(held), min(len(held), 7), replace=False)]
            rows = ix.remove([name(g) for g in gone])
            assert rows.tolist() == [oracle.pop(g) for g in gone]
            free = sorted(free + rows.tolist(), reverse=True)
        else:  # add some streams not held
            new = [int(i) for i in np.unique(rng.integers(0, 300, 9)) if int(i) not in oracle]
            high = len(oracle) + len(free)  # rows ever handed out
            rows = ix.add_many([name(i) for i in new])
            reuse = [free.pop() for _ in range(min(len(free), len(new)))]  # lowest first
            assert rows.tolist() == reuse + list(range(high, high + len(new) - len(reuse)))
            oracle.update(zip(new, rows.tolist(), strict=True))
        probe = rng.integers(0, 300, 60).tolist()
        got = ix.lookup([name(i) for i in probe]).tolist()
        assert got == [oracle.get(i, -1) for i in probe], step
        assert len(ix) == len(oracle)
        live_ids, live_rows = ix.live()
        assert dict(zip(map(str, live_ids), live_rows.tolist(), strict=True)) == {
            f"s{i}": r for i, r in oracle.items()
        }
    assert all(name(i) in ix for i in oracle) and name(999) not in ix


def test_stream_index_refuses_to_remove_a_stream_it_does_not_hold() -> None:
    ix = StreamIndex()
    ix.add_many(["a", "b"])
    with pytest.raises(KeyError, match="zz"):
        ix.remove(["a", "zz"])
    assert len(ix) == 2 and ix.lookup(["a", "b"]).tolist() == [0, 1]  # nothing was removed
    with pytest.raises(KeyError, match="twice"):
        ix.remove(["a", "a"])
    assert len(ix) == 2


def test_state_codec_round_trip_and_refusals() -> None:
    t1 = StateTable(window_spec(3, 1), 4)
    t2 = StateTable({"x": Column("float64"), "n": Column("int32")}, 4)
    buf = WindowBuffers(t1, 3)
    buf.extend(np.array([1, 2]), np.array([1, 1]), np.array([[1.5], [2.5]]), np.array([10, 20]))
    t2["x"][[1, 2]] = [0.25, -1e300]
    t2["n"][[1, 2]] = [5, 6]
    codec = StateCodec([t1, t2], 3, 1)
    blobs = codec.encode(np.array([1, 2]))
    assert all(len(b) == codec.nbytes for b in blobs)
    u1, u2 = (
        StateTable(window_spec(3, 1), 4),
        StateTable({"x": Column("float64"), "n": Column("int32")}, 4),
    )
    fresh = StateCodec([u1, u2], 3, 1)
    for b in blobs:
        fresh.check("s", b)
    fresh.decode(np.array([3, 0]), blobs)
    for name in t1.spec:
        np.testing.assert_array_equal(u1[name][[3, 0]], t1[name][[1, 2]])
    np.testing.assert_array_equal(u2["x"][[3, 0]], [0.25, -1e300])
    other = StateCodec([StateTable(window_spec(4, 1), 1), t2], 4, 1)
    with pytest.raises(ValueError, match="window 3 x 1 features; this model has window 4"):
        other.check("s", blobs[0])
    with pytest.raises(ValueError, match="format"):
        fresh.check("s", b"XXXX" + blobs[0][4:])
    with pytest.raises(ValueError, match="not a state"):
        fresh.check("s", b"ab")
    narrower = StateCodec([u1, StateTable({"x": Column("float32")}, 1)], 3, 1)
    with pytest.raises(ValueError, match="incompatible"):
        narrower.check("s", blobs[0])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([-(2**63), -5, 0, 1, 2, 3, 7, 2**63 - 1])),
        max_size=40,
    ),
    st.lists(st.sampled_from([-(2**63), 0, 2, 5, 2**62]), min_size=4, max_size=4),
)
def test_in_order_equals_point_by_point_acceptance(
    points: list[tuple[int, int]], last: list[int]
) -> None:
    """Hostile timestamps included: same as accepting each point iff ts > the newest so far."""
    newest = dict(enumerate(last))
    want = []
    for r, t in points:
        want.append(t > newest[r])
        if want[-1]:
            newest[r] = t
    rows = np.array([r for r, _ in points], dtype=np.intp)
    order = np.argsort(rows, kind="stable")
    ts = np.array([t for _, t in points], dtype=np.int64)
    got = np.empty(len(points), dtype=bool)
    got[order] = in_order(np.array(last, dtype=np.int64), rows[order], ts[order])
    assert got.tolist() == want
