"""Sliding windows and the normalisation scale: the one implementation trainer and daemon share.

Pure numpy, no I/O. Shapes follow Keras: a window batch is ``[batch, window, features]``.

Normalisation modes (DESIGN.md). The exported graph normalises each window itself; what the
daemon needs from this module is the *scale* that turns a raw forecast error into normalised
units, so that thresholds and the manifest's calibration mean the same thing everywhere:

=========  ===========================================  =====================================
mode       graph input per window                       error scale (target feature)
=========  ===========================================  =====================================
ratio      n_i = p_i / p_0 - 1                          |p_0|
zscore     (p_i - mean) / (std + eps(mean))             std + eps(mean)
diff       (p_i - p_{i-1}) / s   (s fitted on train)    s
none       p_i                                          1
=========  ===========================================  =====================================

``eps(mean) = ZSCORE_EPS * (1 + |mean|)`` keeps a flat window finite without hiding a jump out
of it. The forecast is always anchored: prediction = last value + scale * (model output), so a
model that learns nothing is naive persistence.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Mode = Literal["ratio", "zscore", "diff", "none"]
MODES: tuple[Mode, ...] = ("ratio", "zscore", "diff", "none")
ZSCORE_EPS = 1e-6

FloatArray = npt.NDArray[np.floating]


def sliding_windows(series: FloatArray, window: int) -> FloatArray:
    """All windows of ``window`` consecutive rows of ``series`` [T, F] -> [T-window+1, window, F].

    A read-only strided view (no copy): windows[i] == series[i:i+window].
    """
    series = np.asarray(series)
    if series.ndim == 1:
        series = series[:, None]
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if len(series) < window:
        raise ValueError(f"series of {len(series)} rows is shorter than one window ({window})")
    view = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)  # [N, F, W]
    return np.swapaxes(view, 1, 2)


def windows_and_targets(
    series: FloatArray, window: int, target_index: int
) -> tuple[FloatArray, FloatArray]:
    """Supervised pairs: windows[i] = series[i:i+window], targets[i] = series[i+window, target].

    The last window has no next point and is not returned.
    """
    series = np.asarray(series)
    if series.ndim == 1:
        series = series[:, None]
    if len(series) < window + 1:
        raise ValueError(f"series of {len(series)} rows is shorter than window + 1 ({window + 1})")
    x = sliding_windows(series[:-1], window)
    y = series[window:, target_index]
    return x, y


def error_scale(
    windows: FloatArray, target_index: int, mode: Mode, diff_scale: float = 1.0
) -> FloatArray:
    """The per-window scale [batch] that maps a raw error of the target to normalised units."""
    w = np.asarray(windows, dtype=np.float64)
    t = w[:, :, target_index]
    if mode == "ratio":
        return np.abs(t[:, 0])
    if mode == "zscore":
        mean = t.mean(axis=1)
        return t.std(axis=1) + ZSCORE_EPS * (1.0 + np.abs(mean))
    if mode == "diff":
        return np.full(len(w), float(diff_scale))
    if mode == "none":
        return np.ones(len(w))
    raise ValueError(f"unknown normalisation mode {mode!r}; expected one of {MODES}")


def check_ratio_valid(series: FloatArray, names: list[str]) -> None:
    """Ratio mode divides by the window's first value: reject zero or sign-changing columns."""
    series = np.asarray(series)
    if series.ndim == 1:
        series = series[:, None]
    for j, name in enumerate(names):
        col = series[:, j]
        zero = np.flatnonzero(col == 0)
        if zero.size:
            raise ValueError(
                f"normalisation 'ratio' is undefined for column {name!r}: "
                f"zero value at row {int(zero[0])}; use 'zscore' or 'diff'"
            )
        signs = np.sign(col)
        flip = np.flatnonzero(signs != signs[0])
        if flip.size:
            raise ValueError(
                f"normalisation 'ratio' is undefined for column {name!r}: the sign "
                f"changes at row {int(flip[0])}; use 'zscore' or 'diff'"
            )


def fit_diff_scale(series: FloatArray) -> FloatArray:
    """Per-feature scale for ``diff`` mode: the std of first differences (train split only)."""
    d = np.diff(np.asarray(series, dtype=np.float64), axis=0)
    s = d.std(axis=0)
    return np.where(s > 0, s, 1.0)
