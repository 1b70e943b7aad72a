"""Per-stream state in preallocated numpy arrays: stream ids -> rows, columns, ring buffers.

Every piece of per-stream state (window contents, detector statistics, open episodes) lives
in a :class:`StateTable`: named numpy columns whose first axis is the *row* of a stream.
Tables grow by doubling as streams appear, so the hot path only ever does fancy indexing
over rows; a freed row is reset to its defaults and reused. Because the columns are plain
fixed-size numpy dtypes, one stream's state is one record of a structured dtype, which is
how :mod:`streamer.pipeline` exports state as compact bytes (no pickle).

:class:`StreamIndex` maps stream ids to rows (a dict plus a free list) and
:class:`RingBuffers` keeps the last ``window`` points of every stream: O(1) push per point,
a vectorised gather of many windows at once, and the last timestamp per stream.

Ring layout of one row (window = 4, ``head`` is where the next value goes)::

    slots:   [ p4 | p5 | p2 | p3 ]      head = 2, count = 4
    gather:  p2 p3 p4 p5                (oldest first: slots head, head+1, ... mod window)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Column:
    """One per-stream column: dtype, per-row shape (``()`` for a scalar) and reset value."""

    dtype: str
    shape: tuple[int, ...] = ()
    default: float = 0


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
            name: np.full((capacity, *c.shape), c.default, dtype=c.dtype)
            for name, c in self.spec.items()
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
            new = np.full((capacity, *c.shape), c.default, dtype=c.dtype)
            new[: self.capacity] = old
            self.arrays[name] = new
        self.capacity = capacity

    def reset(self, rows: IntArray) -> None:
        for name, c in self.spec.items():
            self.arrays[name][rows] = c.default

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
    """Stream id <-> row. Rows of removed streams are reused (lowest first)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.ids: list[str | None] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, streams: Iterable[str]) -> IntArray:
        """Row of each stream, -1 where the stream is unknown."""
        get = self.rows.get
        return np.fromiter((get(s, -1) for s in streams), dtype=np.intp)

    def add(self, stream: str) -> int:
        if self._free:
            row = self._free.pop()
            self.ids[row] = stream
        else:
            row = len(self.ids)
            self.ids.append(stream)
        self.rows[stream] = row
        return row

    def remove(self, streams: Iterable[str]) -> IntArray:
        rows = [self.rows.pop(s) for s in streams]
        for r in rows:
            self.ids[r] = None
        self._free.extend(rows)
        self._free.sort(reverse=True)  # pop() hands out the lowest free row first
        return np.asarray(rows, dtype=np.intp)

    @property
    def high_water(self) -> int:
        """Rows ever handed out: tables need at least this capacity."""
        return len(self.ids)


RING_COLUMNS = ("ring", "head", "count", "last_ts")


def ring_spec(window: int, features: int) -> dict[str, Column]:
    """Columns of :class:`RingBuffers`: 4*window*features bytes of values + 16 bytes."""
    return {
        "ring": Column("float32", (window, features)),
        "head": Column("int32"),  # slot the next value goes to
        "count": Column("int32"),  # values held, <= window
        "last_ts": Column("int64", (), np.iinfo(np.int64).min),  # event ms of the last point
    }


class RingBuffers:
    """The last ``window`` points of each stream, stored in a :class:`StateTable`."""

    def __init__(self, table: StateTable, window: int) -> None:
        self.table = table
        self.window = window

    def push(self, rows: IntArray, values: np.ndarray, ts_ms: np.ndarray) -> None:
        """Append one point [F] per row. ``rows`` must be distinct (one round of a batch)."""
        t = self.table
        head = t["head"][rows]
        t["ring"][rows, head] = values
        t["head"][rows] = (head + 1) % self.window
        t["count"][rows] = np.minimum(t["count"][rows] + 1, self.window)
        t["last_ts"][rows] = ts_ms

    def gather(self, rows: IntArray) -> np.ndarray:
        """Windows [len(rows), window, F] float32, oldest point first (only full rows make
        sense to the model; callers check ``count``)."""
        slots = (self.table["head"][rows, None] + np.arange(self.window)) % self.window
        return self.table["ring"][rows[:, None], slots]

    def last_values(self, rows: IntArray) -> np.ndarray:
        """The most recent point [len(rows), F] of each row (rows must have count >= 1)."""
        return self.table["ring"][rows, (self.table["head"][rows] - 1) % self.window]


class StateCodec:
    """Per-stream state <-> compact, versioned bytes (no pickle).

    Layout of one stream's bytes: a 16-byte header (magic ``LSST``, format version, window,
    features, crc32 of the record layout) then one record of each table, little-endian.
    A layout mismatch (other window, features or code version) is refused with the reason.
    """

    MAGIC = b"LSST"
    VERSION = 1
    HEADER = struct.Struct("<4sHHHxxI")

    def __init__(self, tables: list[StateTable], window: int, features: int) -> None:
        self.tables = tables
        self.window, self.features = window, features
        descr = repr([t.record.newbyteorder("<").descr for t in tables]).encode()
        self.layout = zlib.crc32(descr)
        self.header = self.HEADER.pack(self.MAGIC, self.VERSION, window, features, self.layout)
        self.sizes = [t.record.itemsize for t in tables]

    @property
    def nbytes(self) -> int:
        return self.HEADER.size + sum(self.sizes)

    def encode(self, rows: IntArray) -> list[bytes]:
        parts = [t.pack(rows).astype(t.record.newbyteorder("<")) for t in self.tables]
        blob = np.concatenate([p.view(np.uint8).reshape(len(rows), -1) for p in parts], axis=1)
        return [self.header + b.tobytes() for b in blob]

    def check(self, stream: str, data: bytes) -> None:
        if len(data) < self.HEADER.size:
            raise ValueError(f"state of stream {stream!r}: {len(data)} bytes, not a state")
        magic, version, window, features, layout = self.HEADER.unpack_from(data)
        if magic != self.MAGIC or version != self.VERSION:
            raise ValueError(
                f"state of stream {stream!r}: format {magic!r} v{version}, expected "
                f"{self.MAGIC!r} v{self.VERSION}"
            )
        if (window, features) != (self.window, self.features):
            raise ValueError(
                f"state of stream {stream!r} is for window {window} x {features} features; "
                f"this model has window {self.window} x {self.features}"
            )
        if layout != self.layout or len(data) != self.nbytes:
            raise ValueError(
                f"state of stream {stream!r} was written by an incompatible lstmad version "
                "(record layout differs); it cannot be restored"
            )

    def decode(self, rows: IntArray, blobs: list[bytes]) -> None:
        """Write checked ``blobs`` (see :meth:`check`) into ``rows`` of every table."""
        raw = np.frombuffer(b"".join(b[self.HEADER.size :] for b in blobs), dtype=np.uint8)
        raw = raw.reshape(len(blobs), -1)
        at = 0
        for t, size in zip(self.tables, self.sizes, strict=True):
            chunk = np.ascontiguousarray(raw[:, at : at + size])
            recs = chunk.view(t.record.newbyteorder("<")).reshape(len(blobs))
            t.unpack(rows, recs)
            at += size
