"""What goes through the scoring core in one batch: the model it calls, points in, results out.

The contract between the core (``streamer.pipeline``) and the edges that feed it (Kafka,
replay); see ``notes/pipeline_api.md``. Plain frozen dataclasses of numpy arrays, no logic.
``streamer.pipeline`` re-exports every name, so callers import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Predictor(Protocol):
    """What the core needs of a model; :class:`streamer.model.OnnxModel` satisfies it."""

    window: int
    features: tuple[str, ...]
    manifest: Any  # streamer.manifest.Manifest: .calibration, .target_index

    def predict(self, windows: np.ndarray) -> np.ndarray: ...
    def error_scale(self, windows: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Points:
    """The decoded, valid points of one poll batch, in arrival order."""

    streams: list[str]  # stream id of each point
    ts_ms: np.ndarray  # int64 [N], event time in epoch milliseconds
    values: np.ndarray  # float64 [N, F], in the model's feature order
    offsets: np.ndarray | None = None  # int64 [N] opaque source index; the core only carries it


@dataclass(frozen=True)
class Scored:
    """One row per point compared with a forecast, in arrival order."""

    index: np.ndarray  # int64 [K] into Points
    predicted: np.ndarray  # float64 [K] raw forecast made from the window before the point
    actual: np.ndarray  # float64 [K] raw target value that arrived
    error: np.ndarray  # actual - predicted (raw units; nan if the model gave no finite value)
    norm_error: np.ndarray  # error / error_scale(window): the manifest's normalised units
    next_predicted: dict[str, float]  # touched stream -> forecast of its next point
    score: np.ndarray | None = None  # anomaly score |error - mu| (raw units), nan if unscored
    threshold: np.ndarray | None = None  # the stream's adaptive threshold (raw units)
    # The volatility forecast: expected range of each touched stream's next value,
    # predicted ± band_k * recent error sigma; arrays aligned with next_streams.
    next_streams: list[str] = field(default_factory=list)
    band_lower: np.ndarray = field(default_factory=lambda: np.empty(0))
    band_upper: np.ndarray = field(default_factory=lambda: np.empty(0))

    def band(self, stream: str) -> tuple[float, float]:
        """(lower, upper) expected range of ``stream``'s next value (KeyError if untouched)."""
        if stream not in self.next_streams:
            raise KeyError(stream)
        i = self.next_streams.index(stream)
        return float(self.band_lower[i]), float(self.band_upper[i])


@dataclass(frozen=True)
class Event:
    """An alert episode transition (see the contract for each field)."""

    type: str
    status: str
    stream: str
    ts_ms: int
    index: int
    value: float
    predicted: float
    error: float
    score: float
    threshold: float
    severity: str
    episode_start_ms: int


@dataclass(frozen=True)
class Rejected:
    """A point the core did not use; ``reason`` is one of metrics.INVALID_REASONS."""

    index: int
    reason: str


@dataclass(frozen=True)
class Result:
    """What one ``Pipeline.process`` call produced."""

    scored: Scored
    events: list[Event]
    rejected: list[Rejected]
