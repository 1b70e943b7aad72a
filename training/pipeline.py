"""Windows made on the fly: the trainer never materialises all [N, W, F] windows.

A window is named by (stream, target row t): its input is rows [t - W, t) of the stream and its
target is row t of the target feature (``streamer.windows.windows_and_targets`` semantics).
Training draws random batches of such names and gathers only those rows, so memory is
O(batch * W * F) whatever the series length; evaluation walks an evenly strided subset of at
most ``eval_max_windows`` names in time order. Windows of every stream are pooled.

The training target is the *normalised change* ``(y - last) / error_scale(window)``, which is
what the network outputs before the anchoring layer adds it back to the last value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.windows import Mode, error_scale
from training.config import TrainingConfig
from training.data import Stream, target_ranges


@dataclass(frozen=True)
class WindowSet:
    """The windows of one split over all streams: ``ranges[k] = (lo, hi)`` target rows."""

    streams: tuple[Stream, ...]
    ranges: tuple[tuple[int, int], ...]
    window: int

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        return np.array([hi - lo for lo, hi in self.ranges], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def locate(self, idx: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
        """Global window numbers -> (stream index, target row)."""
        ends = np.cumsum(self.counts)
        k = np.searchsorted(ends, idx, side="right")
        starts = ends - self.counts
        lo = np.array([r[0] for r in self.ranges], dtype=np.int64)
        return k, lo[k] + (idx - starts[k])

    def gather(
        self, idx: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """(windows float32 [B, W, F], targets float64 [B, F], stream index [B]) for ``idx``."""
        k, t = self.locate(np.asarray(idx, dtype=np.int64))
        f = self.streams[0].values.shape[1]
        x = np.empty((len(t), self.window, f), dtype=np.float32)
        y = np.empty((len(t), f), dtype=np.float64)
        offsets = np.arange(-self.window, 0)
        for s in np.unique(k):
            m = k == s
            vals = self.streams[s].values
            x[m] = vals[t[m, None] + offsets]
            y[m] = vals[t[m]]
        return x, y, k


def window_set(streams: list[Stream], cfg: TrainingConfig, split: str) -> WindowSet:
    ranges = tuple(target_ranges(len(s.values), cfg)[split] for s in streams)
    return WindowSet(tuple(streams), ranges, cfg.window)


def normalised_target(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.floating],
    cfg: TrainingConfig,
    diff_scale: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """(y - last) / error_scale: the change the network must output, in normalised units."""
    ti = cfg.target_index
    mode: Mode = cfg.normalisation  # type: ignore[assignment]  # validated in config
    scale = error_scale(x, ti, mode, float(diff_scale[ti]))
    return (np.asarray(y, np.float64) - x[:, -1, ti].astype(np.float64)) / scale


def strided(n: int, cap: int) -> npt.NDArray[np.int64]:
    """At most ``cap`` indices of range(n), evenly spaced, in order (all of them if n <= cap)."""
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def random_batches(
    ws: WindowSet, cfg: TrainingConfig, diff_scale: npt.NDArray[np.float64], seed: int
) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Endless (windows, normalised targets [B, 1]) batches drawn uniformly over all streams."""
    rng = np.random.default_rng(seed)
    n = len(ws)
    while True:
        idx = rng.integers(0, n, size=cfg.batch_size)
        x, y, _ = ws.gather(idx)
        z = normalised_target(x, y[:, cfg.target_index], cfg, diff_scale)
        yield x, z.astype(np.float32)[:, None]


def ordered_batches(
    ws: WindowSet, idx: npt.NDArray[np.int64], batch: int
) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """(windows, targets [B, F], stream index) for ``idx`` in order, ``batch`` at a time."""
    for i in range(0, len(idx), batch):
        yield ws.gather(idx[i : i + batch])


def tf_dataset(
    ws: WindowSet, cfg: TrainingConfig, diff_scale: npt.NDArray[np.float64], seed: int
) -> Any:
    """The training stream as a prefetched ``tf.data.Dataset`` over :func:`random_batches`."""
    import tensorflow as tf

    f = len(cfg.features)
    sig = (
        tf.TensorSpec((None, cfg.window, f), tf.float32),
        tf.TensorSpec((None, 1), tf.float32),
    )
    # If the dataset is iterated again (a new epoch iterator), continue with fresh draws rather
    # than replaying the same batches: iteration k draws from seed + 1_000_003 * k.
    runs = itertools.count()

    def gen() -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
        return random_batches(ws, cfg, diff_scale, seed + 1_000_003 * next(runs))

    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    return ds.prefetch(2)


def eval_dataset(ws: WindowSet, cfg: TrainingConfig, diff_scale: npt.NDArray[np.float64]) -> Any:
    """A finite, re-iterable ``tf.data.Dataset`` of the strided validation windows."""
    import tensorflow as tf

    idx = strided(len(ws), cfg.eval_max_windows)

    def gen() -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
        for x, y, _ in ordered_batches(ws, idx, 1024):
            z = normalised_target(x, y[:, cfg.target_index], cfg, diff_scale)
            yield x, z.astype(np.float32)[:, None]

    f = len(cfg.features)
    sig = (
        tf.TensorSpec((None, cfg.window, f), tf.float32),
        tf.TensorSpec((None, 1), tf.float32),
    )
    return tf.data.Dataset.from_generator(gen, output_signature=sig)
