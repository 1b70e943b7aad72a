"""Per-stream state in preallocated numpy arrays: stream ids -> rows, columns, ring buffers.

Every piece of per-stream state (window contents, detector statistics, open episodes) lives
in a :class:`StateTable`: named numpy columns whose first axis is the *row* of a stream.
Tables grow by doubling as streams appear, so the hot path only ever does fancy indexing
over rows; a freed row is reset to its defaults and reused. Every column of 64 KiB or more
is an anonymous mapping of its own, so rows never written (the doubling's slack) are not
resident unless the column's default is non-zero. Because the columns are plain fixed-size
numpy dtypes, one stream's state is one record of a structured dtype, which is how
:mod:`streamer.pipeline` exports state as compact bytes (no pickle).

:class:`StreamIndex` maps stream ids to rows (a hash table of int32 rows plus a free list) and
:class:`WindowBuffers` keeps the last ``window`` points of every stream, the count and the
last timestamp; a batch appends all its points in one vectorised pass.
"""

from __future__ import annotations

import itertools
import math
import mmap
import operator
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
Rows = IntArray | slice  # rows of a table: an index array, or slice(None) for all of them


class Columns(Protocol):
    """Anything that maps a column name to its array: a StateTable or a dict of copies."""

    def __getitem__(self, name: str, /) -> np.ndarray: ...


@dataclass(frozen=True)
class Column:
    """One per-stream column: dtype, per-row shape (``()`` for a scalar) and reset value."""

    dtype: str
    shape: tuple[int, ...] = ()
    default: float = 0


MAPPED_MIN_BYTES = 1 << 16  # columns this large get their own mapping (see _filled)


def _filled(rows: int, c: Column) -> np.ndarray:
    """``rows`` rows of ``c`` holding its default; from :data:`MAPPED_MIN_BYTES` on, in a
    private anonymous mapping of its own.

    The kernel zero-fills a page of a mapping on its first write, so rows never written (a
    grown table's slack) cost no RSS when the default is 0; and dropping the array (the old
    column after :meth:`StateTable.grow`) unmaps it, returning its memory to the OS at once.
    Neither holds for malloc'd columns: glibc serves them from the heap once its mmap
    threshold has risen, and ``calloc`` then writes zeros over the whole block. Smaller
    columns stay malloc'd: a page each would be waste, and a process may hold many tables.
    """
    shape = (rows, *c.shape)
    count = math.prod(shape)
    size = np.dtype(c.dtype).itemsize * count
    if size < MAPPED_MIN_BYTES:
        return np.full(shape, c.default, dtype=c.dtype)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    out = np.frombuffer(buf, dtype=c.dtype, count=count).reshape(shape)
    if c.default != 0:
        out.fill(c.default)
    return out


class StateTable:
    """Named per-stream numpy columns sharing one capacity (rows).

    ``table[name]`` is the live array ``[capacity, *shape]``; callers index it by row arrays.
    """

    def __init__(self, spec: Mapping[str, Column], capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"initial_capacity must be >= 1, got {capacity}")
        self.spec = dict(spec)
        self.capacity = capacity
        self.arrays: dict[str, np.ndarray] = {
            name: _filled(capacity, c) for name, c in self.spec.items()
        }
        self.record = np.dtype([(name, c.dtype, c.shape) for name, c in self.spec.items()])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def grow(self, capacity: int) -> None:
        """Enlarge every column to ``capacity`` rows; new rows hold the defaults."""
        if capacity <= self.capacity:
            return
        for name, c in self.spec.items():
            old = self.arrays[name]
            new = _filled(capacity, c)
            new[: self.capacity] = old
            self.arrays[name] = new
        self.capacity = capacity

    def reset(self, rows: IntArray) -> None:
        for name, c in self.spec.items():
            self.arrays[name][rows] = c.default

    def take(self, rows: IntArray) -> dict[str, np.ndarray]:
        """Copies of the rows' columns (a dense working set, see :meth:`put`)."""
        return {name: a[rows] for name, a in self.arrays.items()}

    def put(self, rows: IntArray, columns: dict[str, np.ndarray]) -> None:
        for name, a in self.arrays.items():
            a[rows] = columns[name]

    def pack(self, rows: IntArray) -> np.ndarray:
        """The rows' state as records of :attr:`record` (a copy)."""
        out = np.empty(len(rows), dtype=self.record)
        for name in self.spec:
            out[name] = self.arrays[name][rows]
        return out

    def unpack(self, rows: IntArray, records: np.ndarray) -> None:
        for name in self.spec:
            self.arrays[name][rows] = records[name]

    def nbytes_per_row(self) -> int:
        return self.record.itemsize


class StreamIndex:
    """Stream id <-> row. Rows of removed streams are reused (lowest first).

    ``ids[row]`` is the id a row holds (``None`` for a free row). The way back is an
    open-addressing hash table of int32 rows (linear probing on ``hash(id)``, at most half
    full, so 8-16 bytes a stream) rather than a ``dict[str, int]``, which costs 66 bytes a
    stream: its entry and one int object per row. A batch's lookup is vectorised: the
    probes are numpy gathers and only a candidate's id is compared in Python.
    """

    _EMPTY, _GONE = -1, -2  # a slot never used (a probe stops) / freed (a probe goes on)

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self._free: list[int] = []
        self._live = 0
        self._gone = 0  # freed slots in the table, reclaimed when it is rebuilt
        self._slots = np.full(8, self._EMPTY, dtype=np.int32)

    def __len__(self) -> int:
        return self._live

    def __contains__(self, stream: str) -> bool:
        return self.get(stream) >= 0

    def _find(self, streams: list[str]) -> tuple[IntArray, IntArray]:
        """Each stream's row and slot, -1 for both where the stream is unknown."""
        n = len(streams)
        rows = np.full(n, -1, dtype=np.intp)
        slots = np.full(n, -1, dtype=np.intp)
        if not n or not self._live:
            return rows, slots
        mask = len(self._slots) - 1
        pos = np.fromiter(map(hash, streams), dtype=np.int64, count=n) & mask
        todo = np.arange(n)
        ids, get = self.ids, streams.__getitem__
        while todo.size:  # each round probes one slot further for the streams not yet found
            held = self._slots[pos].astype(np.intp)
            used = held >= 0
            at, cand = todo[used], held[used]
            same = np.fromiter(
                map(operator.eq, map(ids.__getitem__, cand.tolist()), map(get, at.tolist())),
                dtype=bool,
                count=at.size,
            )
            rows[at[same]], slots[at[same]] = cand[same], pos[used][same]
            on = held == self._GONE
            on[used] = ~same
            todo, pos = todo[on], (pos[on] + 1) & mask
        return rows, slots

    def lookup(self, streams: Iterable[str]) -> IntArray:
        """Row of each stream, -1 where the stream is unknown."""
        return self._find(streams if isinstance(streams, list) else list(streams))[0]

    def held(self, streams: Iterable[str]) -> tuple[list[str], IntArray]:
        """Of these streams, the ones held and their rows, in the order given."""
        names = streams if isinstance(streams, list) else list(streams)
        rows = self._find(names)[0]
        return [s for s, r in zip(names, rows.tolist(), strict=True) if r >= 0], rows[rows >= 0]

    def get(self, stream: str) -> int:
        """The row of one stream, -1 if unknown."""
        return int(self._find([stream])[0][0])

    def live(self) -> tuple[list[str], IntArray]:
        """The id and row of every stream held, in row order."""
        # no int object per row, even for a moment: 100,000 of them can leave 3 MiB of
        # the interpreter's pools resident after they are freed
        held = list(map(operator.is_not, self.ids, itertools.repeat(None)))
        names = cast(list[str], list(itertools.compress(self.ids, held)))
        return names, np.flatnonzero(np.array(held, dtype=bool))

    def add(self, stream: str) -> int:
        """Give a stream not held a row (the caller checks it is not held)."""
        return int(self.add_many([stream])[0])

    def add_many(self, streams: list[str]) -> IntArray:
        """Give each of these streams, distinct and none held, a row; the lowest free first."""
        k = len(streams)
        if 2 * (self._live + self._gone + k) > len(self._slots):
            self._rebuild(self._live + k)
        reuse = min(k, len(self._free))
        rows = [self._free.pop() for _ in range(reuse)]
        for row, s in zip(rows, streams, strict=False):
            self.ids[row] = s
        high = len(self.ids)
        out = np.concatenate([np.asarray(rows, dtype=np.intp), np.arange(high, high + k - reuse)])
        self.ids.extend(streams[reuse:])
        self._place(np.fromiter(map(hash, streams), np.int64, k), out.astype(np.int32))
        self._live += k
        return out

    def remove(self, streams: Iterable[str]) -> IntArray:
        """Free the rows of streams held (each must be held, as with a dict's ``pop``)."""
        names = streams if isinstance(streams, list) else list(streams)
        rows, slots = self._find(names)
        if (rows < 0).any():
            raise KeyError(names[int(np.flatnonzero(rows < 0)[0])])
        if np.unique(rows).size != rows.size:
            raise KeyError(f"a stream given twice to remove: {names}")
        self._slots[slots] = self._GONE
        self._live -= rows.size
        self._gone += rows.size
        for r in rows.tolist():
            self.ids[r] = None
        self._free.extend(rows.tolist())
        self._free.sort(reverse=True)  # pop() hands out the lowest free row first
        return rows

    def _rebuild(self, need: int) -> None:
        """A table of 2-4 slots for each of ``need`` streams, freed slots dropped."""
        size = 8
        while size < 2 * need:
            size *= 2
        names, rows = self.live()
        self._slots = np.full(size, self._EMPTY, dtype=np.int32)
        self._gone = 0
        if rows.size:
            self._place(np.fromiter(map(hash, names), np.int64, rows.size), rows.astype(np.int32))

    def _place(self, hashes: npt.NDArray[np.int64], rows: npt.NDArray[np.int32]) -> None:
        """Put rows in the first free slot from their hash on (vectorised linear probing)."""
        mask = len(self._slots) - 1
        pos = hashes & mask
        while rows.size:
            held = self._slots[pos]
            free = np.flatnonzero(held < 0)
            # of several rows aiming at the same free slot, the first takes it
            _, first = np.unique(pos[free], return_index=True)
            took = free[first]
            self._gone -= int(np.count_nonzero(held[took] == self._GONE))
            self._slots[pos[took]] = rows[took]
            left = np.ones(rows.size, dtype=bool)
            left[took] = False
            rows, pos = rows[left], (pos[left] + 1) & mask  # every slot tried is taken now

    @property
    def high_water(self) -> int:
        """Rows ever handed out: tables need at least this capacity."""
        return len(self.ids)


def window_spec(window: int, features: int) -> dict[str, Column]:
    """Columns of :class:`WindowBuffers`: 4*window*features bytes of values + 12 bytes."""
    return {
        "win": Column("float32", (window, features)),  # oldest first, newest at [-1]
        "count": Column("int32"),  # values held, <= window
        "last_ts": Column("int64", (), np.iinfo(np.int64).min),  # event ms of the last point
    }


@dataclass(frozen=True)
class History:
    """The points of one :meth:`WindowBuffers.extend` call laid out per row, old then new::

        flat:  [ row 0: window old values | n0 new ][ row 1: window old | n1 new ] ...
               ^ base[0]                            ^ base[1]

    The window that ends at the ``p``-th new point of the ``g``-th row is
    ``flat[base[g] + p + 1 : base[g] + p + 1 + window]``.
    """

    flat: np.ndarray  # float32 [sum(window + n), F]
    base: IntArray  # start of each row's segment in flat
    window: int

    def windows(self, g: IntArray, p: IntArray) -> np.ndarray:
        """Windows [len(g), window, F] ending at new point p of row g (one strided copy)."""
        if not len(g):
            return np.empty((0, self.window, self.flat.shape[1]), dtype=np.float32)
        view = np.lib.stride_tricks.sliding_window_view(self.flat, self.window, axis=0)
        return view[self.base[g] + p + 1].swapaxes(1, 2)

    def before(self, g: IntArray, p: IntArray) -> np.ndarray:
        """The value [len(g), F] just before new point p of row g (an old one for p = 0)."""
        return self.flat[self.base[g] + self.window + p - 1]


class WindowBuffers:
    """The last ``window`` points of each stream, in a :class:`StateTable` column.

    Each row is kept in time order (oldest first), so a stream's window is a plain row:
    gathering many windows is one row gather, with no wrap-around index arithmetic. A batch
    appends all of its points at once (:meth:`extend`): O(window + new points) per touched
    stream, one vectorised pass for all streams, instead of one pass per point.

    Row of window 3 after p0..p4 were appended::

        win: [p2 p3 p4]   count = 3      (after p0 alone: [0 0 p0], count = 1)
    """

    def __init__(self, table: StateTable, window: int) -> None:
        self.table = table
        self.window = window

    def extend(
        self, rows: IntArray, counts: IntArray, values: np.ndarray, last_ts: np.ndarray
    ) -> History:
        """Append ``counts[i] >= 1`` points to distinct ``rows[i]``; ``values`` [sum, F] are
        grouped by row in that order, oldest first; ``last_ts[i]`` is the row's newest ts."""
        t, w = self.table, self.window
        old = t["win"][rows]
        if len(rows) and counts.min() == counts.max() == 1:  # one new point per row: no scatter
            flat = np.concatenate([old, values[:, None, :].astype(np.float32)], axis=1)
            flat = flat.reshape(-1, old.shape[2])
            base = np.arange(len(rows)) * (w + 1)
        else:
            seg = w + counts
            base = (np.cumsum(seg) - seg).astype(np.intp)
            flat = np.empty((int(seg.sum()), old.shape[2]), dtype=np.float32)
            flat[(base[:, None] + np.arange(w)).reshape(-1)] = old.reshape(-1, old.shape[2])
            g = np.repeat(np.arange(len(rows)), counts)
            p = np.arange(len(g)) - np.repeat(np.cumsum(counts) - counts, counts)
            flat[base[g] + w + p] = values
        hist = History(flat, base, w)
        last = np.asarray(counts, dtype=np.intp) - 1
        t["win"][rows] = hist.windows(np.arange(len(rows)), last)
        t["count"][rows] = np.minimum(t["count"][rows] + counts, w)
        t["last_ts"][rows] = last_ts
        return hist

    def last_values(self, rows: IntArray) -> np.ndarray:
        """The most recent point [len(rows), F] of each row (rows must have count >= 1)."""
        return self.table["win"][rows, -1]


def widened(record: np.dtype) -> np.dtype:
    """``record`` with every float32 scalar field as float64: the record of format v1."""
    fields: Mapping[str, tuple[Any, ...]] = record.fields or {}
    types = {name: fields[name][0] for name in record.names or ()}
    return np.dtype([(n, np.float64 if t == np.float32 else t) for n, t in types.items()])


@dataclass(frozen=True)
class _Format:
    version: int
    records: list[np.dtype]  # little-endian, one per table
    layout: int  # crc32 of the records' layout

    @property
    def sizes(self) -> list[int]:
        return [r.itemsize for r in self.records]

    @property
    def nbytes(self) -> int:
        return StateCodec.HEADER.size + sum(self.sizes)

    @classmethod
    def of(cls, version: int, records: list[np.dtype]) -> _Format:
        le = [r.newbyteorder("<") for r in records]
        return cls(version, le, zlib.crc32(repr([r.descr for r in le]).encode()))


class StateCodec:
    """Per-stream state <-> compact, versioned bytes (no pickle).

    Layout of one stream's bytes: a 16-byte header (magic ``LSST``, format version, window,
    features, crc32 of the record layout) then one record of each table, little-endian.
    A layout mismatch (other window, features or code version) is refused with the reason.

    Format v2 keeps the detectors' EWMA statistics in float32 (40 bytes a stream less);
    states of format v1, the same records with those fields in float64 (:func:`widened`),
    are still read, narrowed on the way in, so an upgrade keeps every stream warm (the v1
    code refuses v2 states: a partition moving back to an old member warms up there).
    """

    MAGIC = b"LSST"
    VERSION = 2
    HEADER = struct.Struct("<4sHHHxxI")

    def __init__(self, tables: list[StateTable], window: int, features: int) -> None:
        self.tables = tables
        self.window, self.features = window, features
        self.format = _Format.of(self.VERSION, [t.record for t in tables])
        self.formats = {
            f.version: f for f in (self.format, _Format.of(1, [widened(t.record) for t in tables]))
        }
        self.header = self.HEADER.pack(
            self.MAGIC, self.VERSION, window, features, self.format.layout
        )

    @property
    def nbytes(self) -> int:
        return self.format.nbytes

    def encode(self, rows: IntArray) -> list[bytes]:
        parts = [t.pack(rows).astype(t.record.newbyteorder("<")) for t in self.tables]
        blob = np.concatenate([p.view(np.uint8).reshape(len(rows), -1) for p in parts], axis=1)
        return [self.header + b.tobytes() for b in blob]

    def check(self, stream: str, data: bytes) -> None:
        if len(data) < self.HEADER.size:
            raise ValueError(f"state of stream {stream!r}: {len(data)} bytes, not a state")
        magic, version, window, features, layout = self.HEADER.unpack_from(data)
        if magic != self.MAGIC or version not in self.formats:
            raise ValueError(
                f"state of stream {stream!r}: format {magic!r} v{version}, expected "
                f"{self.MAGIC!r} v{' or v'.join(map(str, sorted(self.formats)))}"
            )
        if (window, features) != (self.window, self.features):
            raise ValueError(
                f"state of stream {stream!r} is for window {window} x {features} features; "
                f"this model has window {self.window} x {self.features}"
            )
        f = self.formats[version]
        if layout != f.layout or len(data) != f.nbytes:
            raise ValueError(
                f"state of stream {stream!r} was written by an incompatible lstmad version "
                "(record layout differs); it cannot be restored"
            )

    def decode(self, rows: IntArray, blobs: list[bytes]) -> None:
        """Write checked ``blobs`` (see :meth:`check`) into ``rows`` of every table."""
        versions = np.fromiter((self.HEADER.unpack_from(b)[1] for b in blobs), np.int64, len(blobs))
        for version in np.unique(versions):
            pick = np.flatnonzero(versions == version)
            f = self.formats[int(version)]
            raw = np.frombuffer(
                b"".join(blobs[i][self.HEADER.size :] for i in pick), dtype=np.uint8
            ).reshape(len(pick), -1)
            at = 0
            for t, rec in zip(self.tables, f.records, strict=True):
                chunk = np.ascontiguousarray(raw[:, at : at + rec.itemsize])
                t.unpack(rows[pick], chunk.view(rec).reshape(len(pick)))
                at += rec.itemsize


def in_order(last_ts: np.ndarray, rows: IntArray, ts: np.ndarray) -> np.ndarray:
    """accepted[i]: ``ts[i]`` is later than its stream's ``last_ts[rows[i]]`` and than every
    earlier point of the stream here (``rows`` grouped by stream, arrival order inside).

    One segmented running maximum: each group's sequence is its stored last ts followed by
    its points; dense ranks plus a per-group offset keep groups apart without int64
    overflow (timestamps may be hostile). Rejected points never raise the maximum, so this
    equals accepting point by point."""
    if not len(ts):
        return np.zeros(0, dtype=bool)
    first = np.ones(len(ts), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    starts = np.flatnonzero(first)
    # The usual case, every stream's points increasing and newer than its last: O(n).
    newer = np.empty(len(ts), dtype=bool)
    newer[1:] = ts[1:] > ts[:-1]
    newer[starts] = ts[starts] > last_ts[rows[starts]]
    if newer.all():
        return newer
    gid = np.cumsum(first) - 1
    ng = len(starts)
    seq = np.concatenate([last_ts[rows[starts]], ts])
    rank = np.unique(seq, return_inverse=True)[1].reshape(-1).astype(np.int64)
    key = np.concatenate([np.arange(ng), gid]).astype(np.int64) * (int(rank.max()) + 1) + rank
    pos = np.concatenate([starts + np.arange(ng), np.arange(len(ts)) + gid + 1])
    line = np.empty(len(seq), dtype=np.int64)
    line[pos] = key
    best = np.maximum.accumulate(line)
    return key[ng:] > best[pos[ng:] - 1]
