"""The NAB score (Numenta Anomaly Benchmark, v1.1 ``nab/sweeper.py``) and window metrics.

Pure functions over one file's rows: ``ts`` (int64 [N], epoch ms, increasing), ``detected``
(bool [N], True where the detector raised an alert at that row) and the file's labelled
anomaly windows ``[(start_ms, end_ms), ...]``. Faithful to NAB's sweeper:

- probationary period: the first ``min(floor(0.15 * N), 0.15 * 5000)`` rows are not scored;
  a window whose rows all lie in it counts neither as TP nor as FN;
- a detection at row ``i`` inside a window of rows ``l..r`` (width ``w = r - l + 1``) is worth
  ``S(-(r - i + 1) / w) * tp_weight / S(-1)`` where ``S(x) = 2 / (1 + e^(5x)) - 1`` (and
  ``S(x) = -1`` for ``x > 3``): 1.0 * tp_weight at the left edge, less the later it comes;
- a window is worth the best of its detections, or ``-fn_weight`` without one;
- a detection outside every window costs ``fp_weight * S(|r_prev - i| / (w_prev - 1))`` after
  a window (little right after it, nearly the full weight far from it) and ``-fp_weight``
  before the first window;
- the corpus score, normalised: ``100 * (raw - null) / (perfect - null)`` with ``null`` the
  raw score of a detector that never fires and ``perfect = tp_weight * number of windows``
  (NAB's ``runner.normalize``).

One deliberate difference: NAB divides by ``w_prev - 1``, which is zero after a one-row window;
here the divisor is at least 1. Window edges are matched to rows like NAB's ``Window``: the
first row with ``ts >= start`` to the last row with ``ts <= end``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = PROBATION_PERCENT * 5000  # 750 rows, as NAB computes it


@dataclass(frozen=True)
class Profile:
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(1.0, 0.11, 1.0),
    "reward_low_FP": Profile(1.0, 0.22, 1.0),
    "reward_low_FN": Profile(1.0, 0.11, 2.0),
}

Window = tuple[int, int]


def scaled_sigmoid(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 x) - 1``, and -1 for ``x > 3``."""
    a = np.asarray(x, dtype=np.float64)
    return np.where(a > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * a)) - 1.0)


def probationary_length(n_rows: int) -> int:
    """Rows at the start of a file that are never scored."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP_ROWS))


def window_rows(ts: npt.NDArray[np.int64], windows: Sequence[Window], where: str) -> list[Window]:
    """Row index ranges ``(l, r)`` (inclusive) of ``windows``; raise ValueError if one is empty,
    unsorted or overlapping, naming the file and the window."""
    rows: list[Window] = []
    for k, (start, end) in enumerate(windows):
        l_ = int(np.searchsorted(ts, start, side="left"))
        r = int(np.searchsorted(ts, end, side="right")) - 1
        if start > end or l_ > r:
            raise ValueError(f"{where}: anomaly window {k} [{start}, {end}] covers no row")
        if rows and l_ <= rows[-1][1]:
            raise ValueError(f"{where}: anomaly window {k} overlaps or precedes window {k - 1}")
        rows.append((l_, r))
    return rows


def row_weights(n: int, rows: Sequence[Window], profile: Profile) -> npt.NDArray[np.float64]:
    """NAB's per-row ``sweepScore``: what a detection at each row would be worth."""
    i = np.arange(n, dtype=np.float64)
    out = np.full(n, -profile.fp_weight)  # before the first window
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (l_, r) in enumerate(rows):
        width = r - l_ + 1
        inside = slice(l_, r + 1)
        out[inside] = scaled_sigmoid(-(r - i[inside] + 1) / width) * profile.tp_weight / max_tp
        stop = rows[k + 1][0] if k + 1 < len(rows) else n
        after = slice(r + 1, stop)
        out[after] = profile.fp_weight * scaled_sigmoid(np.abs(r - i[after]) / max(width - 1, 1))
    return out


@dataclass(frozen=True)
class FileScore:
    """One file under one profile. ``detected_windows[k]`` is the first detecting row or -1;
    windows entirely in the probationary period are left out of every list and count."""

    score: float
    null_score: float
    windows: int
    window_rows: list[Window]
    first_detection: list[int]
    tp_rows: int
    fp_rows: int
    fp_score: float


def score_file(
    ts: npt.ArrayLike,
    detected: npt.ArrayLike,
    windows: Sequence[Window],
    profile: Profile,
    where: str = "file",
) -> FileScore:
    """Raw NAB score of one file's detections (see the module docstring for the rules)."""
    t = np.asarray(ts, dtype=np.int64)
    d = np.asarray(detected, dtype=bool)
    if t.ndim != 1 or d.shape != t.shape:
        raise ValueError(f"{where}: ts and detected must be 1-d of equal length")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"{where}: timestamps must be strictly increasing")
    n = len(t)
    rows = window_rows(t, windows, where)
    weights = row_weights(n, rows, profile)
    scorable = np.arange(n) >= probationary_length(n)
    in_window = np.zeros(n, dtype=bool)
    kept: list[Window] = []
    firsts: list[int] = []
    total = 0.0
    for l_, r in rows:
        in_window[l_ : r + 1] = True
        idx = np.arange(l_, r + 1)
        idx = idx[scorable[idx]]
        if idx.size == 0:
            continue  # NAB: every row of the window is probationary; not scored
        kept.append((int(idx[0]), r))
        hits = idx[d[idx]]
        firsts.append(int(hits[0]) if hits.size else -1)
        total += (
            max(-profile.fn_weight, float(weights[hits].max()))
            if hits.size
            else (-profile.fn_weight)
        )
    fp = d & scorable & ~in_window
    fp_score = float(weights[fp].sum())
    return FileScore(
        score=total + fp_score,
        null_score=-profile.fn_weight * len(kept),
        windows=len(kept),
        window_rows=kept,
        first_detection=firsts,
        tp_rows=int((d & scorable & in_window).sum()),
        fp_rows=int(fp.sum()),
        fp_score=fp_score,
    )


def normalised(raw: float, null: float, label_windows: int, profile: Profile) -> float:
    """NAB's final score: 0 for the null detector, 100 for the perfect one."""
    perfect = profile.tp_weight * label_windows
    if perfect == null:
        raise ValueError("the corpus has no anomaly window: the NAB score is undefined")
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class WindowMetrics:
    """Window recall (windows with a detection), alert precision (scored detections that fall
    in a window), their F1, and time-to-detect of detected windows from their onsets."""

    windows: int
    detected: int
    alerts: int
    alerts_in_window: int
    recall: float
    precision: float
    f1: float
    median_ttd_s: float
    median_ttd_rows: float


def window_metrics(
    files: Mapping[str, tuple[npt.NDArray[np.int64], FileScore]],
    onsets: Mapping[str, Sequence[int]] | None = None,
) -> WindowMetrics:
    """Pool ``(ts, FileScore)`` per file. ``onsets[file][k]`` is the ts (ms) where window k's
    anomaly begins (defaults to the window's first scored row)."""
    windows = detected = alerts = inside = 0
    ttd_s: list[float] = []
    ttd_rows: list[float] = []
    for name, (ts, fs) in files.items():
        windows += fs.windows
        alerts += fs.tp_rows + fs.fp_rows
        inside += fs.tp_rows
        for k, ((l_, _), first) in enumerate(zip(fs.window_rows, fs.first_detection, strict=True)):
            if first < 0:
                continue
            detected += 1
            onset_ms = onsets[name][k] if onsets and name in onsets else int(ts[l_])
            onset_row = int(np.searchsorted(ts, onset_ms, side="left"))
            ttd_s.append((int(ts[first]) - onset_ms) / 1000.0)
            ttd_rows.append(float(first - onset_row))
    recall = detected / windows if windows else math.nan
    precision = inside / alerts if alerts else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if alerts and windows and precision + recall > 0
        else 0.0
    )
    return WindowMetrics(
        windows=windows,
        detected=detected,
        alerts=alerts,
        alerts_in_window=inside,
        recall=recall,
        precision=precision,
        f1=f1,
        median_ttd_s=float(np.median(ttd_s)) if ttd_s else math.nan,
        median_ttd_rows=float(np.median(ttd_rows)) if ttd_rows else math.nan,
    )
