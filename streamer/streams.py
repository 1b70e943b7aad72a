"""The per-stream store under a pipeline: rows, state tables, and each stream's lifecycle.

A stream gets a row the first time it is seen (up to ``[detect] max_streams``); its window,
pending forecast and detector state live in numpy columns at that row (``streamer.buffers``),
as does the input partition its last point came from. This module creates rows, frees them
(idle eviction, a revoked partition's drop), and moves them in and out as bytes
(``export_state``/``import_state``, the state topic's payload). Scoring is
:class:`streamer.pipeline.Pipeline`, which builds on it. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from streamer.batch import Event, Rejected
from streamer.buffers import Column, StateCodec, StateTable, StreamIndex, WindowBuffers, window_spec
from streamer.detect import AnomalyConfig, AnomalyDetector
from streamer.manifest import Calibration
from streamer.metrics import SEVERITIES
from streamer.seasonal import SeasonalConfig, SeasonalDetector
from streamer.volatility import VolatilityConfig, VolatilityDetector


@dataclass(frozen=True)
class DetectConfig:
    """``[detect]``: the detectors' sections and the stream table's bounds."""

    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    volatility: VolatilityConfig = field(default_factory=VolatilityConfig)
    seasonal: SeasonalConfig = field(default_factory=SeasonalConfig)  # opens anomaly episodes
    max_streams: int = 200_000  # live streams; points of further new streams are rejected
    initial_capacity: int = 1024  # rows preallocated; tables double when full

    def __post_init__(self) -> None:
        for name in ("max_streams", "initial_capacity"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"[detect] {name} must be an integer >= 1, got {v!r}")


FORECAST_SPEC = {
    "has_pred": Column("bool"),  # the window is full and pred is its forecast
    "pred": Column("float64"),  # forecast of the next point
    "pred_scale": Column("float64"),  # error_scale of the window it came from
}
# The input partition the last point applied to a row came from (-1: not known), which the
# caller drops a revoked partition's streams by and sends tombstones to. Outside the
# exported state (the state topic's record header carries it), so :class:`StateCodec` does
# not see this table.
SOURCE_SPEC = {"src_partition": Column("int32", (), -1)}


class StreamStore:
    """Rows, numpy state and lifecycle of the streams of one model's pipeline."""

    def __init__(
        self, config: DetectConfig, window: int, nfeat: int, target: int, calibration: Calibration
    ) -> None:
        self.config = config
        self.window, self.nfeat, self.target = window, nfeat, target
        cap = config.initial_capacity
        self.index = StreamIndex()
        self.state = StateTable({**window_spec(self.window, self.nfeat), **FORECAST_SPEC}, cap)
        self.ring = WindowBuffers(self.state, self.window)
        self.anomaly = AnomalyDetector(config.anomaly, calibration, cap)
        self.volatility = VolatilityDetector(config.volatility, cap)
        self.seasonal = SeasonalDetector(config.seasonal, cap)
        self.tables = [self.state, self.anomaly.table, self.volatility.table, self.seasonal.table]
        self.codec = StateCodec(self.tables, self.window, self.nfeat)
        self.source = StateTable(SOURCE_SPEC, cap)  # not in self.tables: never exported

    def stream_count(self) -> int:
        return len(self.index)

    def state_bytes_per_stream(self) -> int:
        """Bytes of numpy state one stream occupies (window + forecast + detectors)."""
        return sum(t.nbytes_per_row() for t in self.tables)

    def _new_rows(self, rows: np.ndarray) -> None:
        need = self.index.high_water
        if need > self.state.capacity:
            cap = max(need, 2 * self.state.capacity)
            for t in self.tables:
                t.grow(cap)
            self.source.grow(cap)
        self.state.reset(rows)
        self.source.reset(rows)
        self.anomaly.init_rows(rows)
        self.volatility.init_rows(rows)
        self.seasonal.init_rows(rows)

    def _rows(self, streams: list[str], usable: np.ndarray, rejected: list[Rejected]) -> np.ndarray:
        """Row of each point (-1: not usable); new streams get rows up to max_streams."""
        rows = self.index.lookup(streams)
        rows[~usable] = -1
        miss = np.flatnonzero((rows < 0) & usable)
        if miss.size:  # only points of streams never seen before
            new = list(dict.fromkeys(streams[i] for i in miss.tolist()))  # in order of arrival
            room = max(0, self.config.max_streams - len(self.index))
            added = self.index.add_many(new[:room]) if room else np.empty(0, dtype=np.intp)
            row_of = dict(zip(new, added.tolist(), strict=False))
            for i in miss.tolist():
                row = row_of.get(streams[i], -1)
                if row < 0:
                    rejected.append(Rejected(i, "stream_limit"))
                rows[i] = row
            if added.size:
                self._new_rows(added)
        return rows

    def evict_idle(
        self,
        now_ms: int,
        idle_ms: int,
        events: list[Event] | None = None,
        partitions: list[int] | None = None,
    ) -> list[str]:
        """Free the streams whose last point is older than ``now_ms - idle_ms``.

        If ``events`` is given, a ``resolved`` event (index -1, ts = the stream's last point,
        error 0, predicted = its pending forecast or last value) is appended to it for every
        episode still open on an evicted stream. If ``partitions`` is given, the source
        partition of each evicted stream (-1 if never recorded) is appended to it, in the
        order of the returned names.
        """
        if not len(self.index):
            return []
        ids, rows = self.index.live()
        idle = self.state["last_ts"][rows] < now_ms - idle_ms
        gone = rows[idle]
        names = [ids[i] for i in np.flatnonzero(idle)]
        if events is not None and gone.size:
            last = self.ring.last_values(gone)[:, self.target].astype(np.float64)
            pred = np.where(self.state["has_pred"][gone], self.state["pred"][gone], last)
            for kind, det in (("anomaly", self.anomaly), ("volatility", self.volatility)):
                t = det.table
                for j in np.flatnonzero(t["open"][gone]):
                    r = gone[j]
                    events.append(
                        Event(kind, "resolved", names[j], int(self.state["last_ts"][r]), -1,
                              float(last[j]), float(pred[j]), 0.0, 0.0, 0.0,
                              SEVERITIES[int(t["sev"][r])], int(t["ep_start"][r]))
                    )  # fmt: skip
        if partitions is not None:
            partitions.extend(self.source["src_partition"][gone].tolist())
        self.index.remove(names)
        for t in self.tables:
            t.reset(gone)
        self.source.reset(gone)
        return names

    def drop(self, streams: Iterable[str]) -> list[str]:
        """Forget these streams without events (their partition moved to another owner, whose
        copy restored from the state topic carries on); returns the ones that were known."""
        known, _ = self.index.held(streams)
        if known:
            rows = self.index.remove(known)
            for t in self.tables:
                t.reset(rows)
            self.source.reset(rows)
        return known

    def set_source(self, streams: list[str], partitions: np.ndarray) -> np.ndarray:
        """Record the input partition of the last point applied to each stream; unknown
        streams are skipped. Returns each stream's row (-1: unknown)."""
        rows = self.index.lookup(streams)
        known = rows >= 0
        self.source["src_partition"][rows[known]] = np.asarray(partitions)[known]
        return rows

    def source_of(self, streams: Iterable[str]) -> np.ndarray:
        """The partitions recorded for ``streams`` by :meth:`set_source`, as int64; -1 for a
        stream not held or never recorded."""
        rows = self.index.lookup(streams)
        out = np.full(len(rows), -1, dtype=np.int64)
        out[rows >= 0] = self.source["src_partition"][rows[rows >= 0]]
        return out

    def streams_from(self, partitions: Iterable[int]) -> list[str]:
        """The live streams whose recorded source partition is one of ``partitions``."""
        if not len(self.index):
            return []
        ids, rows = self.index.live()
        want = np.fromiter(partitions, dtype=np.int64)
        hit = np.isin(self.source["src_partition"][rows], want)
        return [ids[i] for i in np.flatnonzero(hit)]

    def export_state(self, streams: Iterable[str]) -> dict[str, bytes]:
        """Compact, versioned bytes per known stream (unknown streams are left out)."""
        known, rows = self.index.held(streams)
        return dict(zip(known, self.codec.encode(rows), strict=True)) if known else {}

    def import_state(self, states: Mapping[str, bytes]) -> None:
        """Restore streams exactly as exported (replacing any state they have here)."""
        for s, data in states.items():
            self.codec.check(s, data)
        new = [s for s, r in zip(states, self.index.lookup(list(states)).tolist(), strict=True)
               if r < 0]  # fmt: skip
        if len(self.index) + len(new) > self.config.max_streams:
            raise ValueError(
                f"importing {len(new)} new streams would exceed [detect] max_streams "
                f"= {self.config.max_streams} ({len(self.index)} live)"
            )
        if new:
            self._new_rows(self.index.add_many(new))
        streams = list(states)
        if streams:
            rows = self.index.lookup(streams)
            self.codec.decode(rows, [states[s] for s in streams])
            self.source.reset(rows)  # replaced: the caller records where the import came from
