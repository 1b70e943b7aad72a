"""The seasonal detector: slow drifts, level changes and frequency changes of periodic streams.

A next-point forecast from a 50-point window cannot see a drift of 0.1 sigma per point (the
window follows it) nor a daily cycle running three times faster (each step stays smooth).
Both are plain in the *seasonal difference*: the value against the value one period ago.
Pure numpy over the rows of its own :class:`~streamer.buffers.StateTable`, one round (at
most one point per stream) at a time, like :mod:`streamer.detect`.

Per stream, on the raw target value:

1. Blocks. Points are averaged in blocks of ``block`` points (noise / sqrt(block)); the last
   ``history`` block means are kept, oldest first (``history * block`` points of memory in
   ``4 * history`` bytes: a 288-point daily cycle at ``block`` 8 is 36 blocks).
2. Period. When a block completes and the history is full, the average magnitude difference
   ``amdf(L) = mean |h[L:] - h[:-L]|`` over lags ``min_lag..max_lag`` (blocks) is computed;
   its minimum at lag ``L*`` (refined by a parabola through its neighbours, so a period
   between two blocks is read as a fraction) is the period if ``L*`` is inside the range
   and ``amdf(L*) <= strength * max(amdf(min_lag..L*))`` (a deep notch: a random walk's
   amdf grows with the lag and has none). An estimate that fails keeps the last period;
   ``history`` failures in a row make the stream non-periodic again. While an episode is
   open the period is frozen (the anomaly must not redefine the cycle).
3. Seasonal difference ``s = m - h(-L*)`` (the new block mean against the block one period
   before, linearly interpolated at the fractional lag), in units of its own spread
   ``sigma = sqrt(pi/2) * EWMA|s|`` (span ``span`` blocks; a running mean over the first
   blocks; a block with ``|s| >= protect * sigma`` does not teach after warm-up).
4. A two-sided CUSUM of ``z = s / sigma`` (allowance ``cusum_drift``, each block clipped to
   ``cusum_clip``) reaching ``cusum_threshold`` after ``warmup`` taught blocks is a trigger
   for the stream's *anomaly* episode (:class:`streamer.detect.AnomalyDetector`: one
   episode per incident whichever path saw it); while the CUSUM is above half its threshold
   the episode cannot resolve (``hold``); ``critical`` from twice the threshold.

Timeline (block 4, period 3 blocks, one drift starting at point 40)::

    point:   0 .. 3 | 4 .. 7 | ... | 40 .. 43 | 44 .. 47 | ...
    block:     m0   |   m1   | ... |   m10    |   m11    |        s10 = m10 - m7, ...
    CUSUM:                          g += |z| - k per block -> trigger when g >= h

Measured on corpora of seeds 11 and 12 (``bench.detection.corpus``, not the benchmark's
seed): the CUSUM reaches 10-40 within 100 points of a drift's, level shift's or frequency
change's onset on daily-cycle and sine streams, and stays <= 5 on their clean files;
random walks are never periodic here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from streamer.buffers import Column, Columns, IntArray, Rows, StateTable
from streamer.detect import SQRT_HALF_PI, _non_negative_int, _positive


@dataclass(frozen=True)
class SeasonalConfig:
    """``[detect.seasonal]``. Lags and spans are in blocks of ``block`` points."""

    SECTION: ClassVar[str] = "detect.seasonal"

    block: int = 8  # points averaged into one block
    history: int = 80  # block means kept (80 x 8 = 640 points: two daily cycles of 5 min)
    min_lag: int = 4  # shortest period searched (blocks)
    max_lag: int = 40  # longest period searched (blocks); at most history // 2
    strength: float = 0.4  # amdf at the period / its max at shorter lags, at most: periodic
    span: float = 50.0  # EWMA span (blocks) of the seasonal difference's spread
    warmup: int = 20  # taught blocks with a period before the stream may trigger
    protect: float = 3.0  # |z| at or above: the block does not teach the spread
    cusum_drift: float = 1.0  # CUSUM allowance k (sigmas per block)
    cusum_clip: float = 4.0  # a single block adds at most this much
    cusum_threshold: float = 10.0  # CUSUM h that triggers an anomaly episode
    relearn_after: int = 60  # odd blocks in a row after which they enter the history again

    def __post_init__(self) -> None:
        _non_negative_int(self, "block", "history", "min_lag", "max_lag", "warmup",
                          "relearn_after")  # fmt: skip
        _positive(self, "block", "strength", "span", "protect")
        _positive(self, "cusum_drift", "cusum_clip", "cusum_threshold")
        if not 2 <= self.min_lag < self.max_lag <= self.history // 2:
            raise ValueError(
                "[detect.seasonal] need 2 <= min_lag < max_lag <= history // 2 "
                f"(got {self.min_lag}, {self.max_lag}, history {self.history})"
            )
        if not self.strength < 1:
            raise ValueError(f"[detect.seasonal] strength must be < 1, got {self.strength}")


def seasonal_spec(history: int) -> dict[str, Column]:
    return {
        "acc": Column("float64"),  # sum of the current block's points
        "cnt": Column("int32"),  # points in the current block
        "hist": Column("float32", (history,)),  # block means, oldest first
        "n_blk": Column("int32"),  # completed blocks (saturates at history)
        "lag": Column("float32"),  # period in blocks (fractional), 0: not periodic
        "miss": Column("int32"),  # consecutive failed period estimates
        "n_taught": Column("int32"),  # blocks that taught the spread
        "mad": Column("float32"),  # EWMA of |s| (float32 as streamer.detect.ANOMALY_SPEC)
        "gpos": Column("float64"),  # upper CUSUM of z
        "gneg": Column("float64"),  # lower CUSUM of z
        "n_odd": Column("int32"),  # consecutive odd blocks (anomalous or in an episode)
        "owned": Column("bool"),  # the CUSUM rose inside an anomaly episode: its incident
    }


SIGMA_EPS = 1e-9  # spread floor relative to 1 + |block mean|


def estimate_period(hist: np.ndarray, min_lag: int, max_lag: int, strength: float) -> np.ndarray:
    """Fractional period (blocks) of each row of ``hist`` [R, H], 0 where not periodic."""
    lags = np.arange(min_lag, max_lag + 2)  # one beyond max_lag for the parabola
    h = hist.astype(np.float64)
    am = np.stack([np.abs(h[:, lag:] - h[:, :-lag]).mean(axis=1) for lag in lags], axis=1)
    inner = am[:, :-1]
    j = np.argmin(inner, axis=1)
    r = np.arange(len(h))
    best = inner[r, j]
    run_max = np.maximum.accumulate(inner, axis=1)[r, j]
    ok = (j > 0) & (best <= strength * run_max)
    jj = np.clip(j, 1, am.shape[1] - 2)
    a, b, c = am[r, jj - 1], am[r, jj], am[r, jj + 1]
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(den > 0, 0.5 * (a - c) / den, 0.0)
    return np.where(ok, lags[jj] + np.clip(frac, -0.5, 0.5), 0.0)


def lagged(hist: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """The block mean ``lag`` (fractional, >= 1) blocks before the newest-plus-one slot:
    ``hist[H - lag]`` linearly interpolated (``hist[-1]`` is one block back)."""
    h = hist.shape[1]
    lo = np.floor(lag).astype(np.intp)
    f = lag - lo
    r = np.arange(len(hist))
    a = hist[r, np.clip(h - lo, 0, h - 1)].astype(np.float64)
    b = hist[r, np.clip(h - lo - 1, 0, h - 1)].astype(np.float64)
    return (1 - f) * a + f * b


@dataclass(frozen=True)
class SeasonalStep:
    """Per point of the round: ``trigger`` (the CUSUM reached its threshold on an armed
    stream), ``hold`` (above half of it: an open episode must not resolve), ``critical``,
    ``score`` the CUSUM (sigma-blocks) and ``threshold`` the CUSUM threshold."""

    trigger: np.ndarray
    hold: np.ndarray
    critical: np.ndarray
    score: np.ndarray
    threshold: np.ndarray


class SeasonalDetector:
    """Vectorised seasonal detector over the rows of its own :class:`StateTable`."""

    def __init__(self, cfg: SeasonalConfig, capacity: int) -> None:
        self.cfg = cfg
        self.alpha = 2.0 / (cfg.span + 1.0)
        self.table = StateTable(seasonal_spec(cfg.history), capacity)

    def init_rows(self, rows: IntArray) -> None:
        self.table.reset(rows)

    def update(
        self,
        rows: Rows,
        actual: np.ndarray,
        frozen: np.ndarray,
        quiet: np.ndarray,
        table: Columns | None = None,
    ) -> SeasonalStep:
        """Add one finite target value per distinct row; at a block's end, judge it.
        ``frozen`` rows (an anomaly episode is open) keep their period and spread; ``quiet``
        rows (a flat-line episode is open) also drop their CUSUM (see the module doc)."""
        c, t = self.cfg, self.table if table is None else table
        acc = t["acc"][rows] + actual
        cnt = t["cnt"][rows] + 1
        done = cnt >= c.block
        t["acc"][rows] = np.where(done, 0.0, acc)
        t["cnt"][rows] = np.where(done, 0, cnt)
        idx = np.flatnonzero(done)
        if idx.size:
            sub = idx if isinstance(rows, slice) else np.asarray(rows)[idx]
            self._blocks(sub, acc[idx] / c.block, frozen[idx], quiet[idx], t)
        g = np.maximum(t["gpos"][rows], t["gneg"][rows])
        armed = (t["lag"][rows] > 0) & (t["n_taught"][rows] >= c.warmup) & ~t["owned"][rows]
        return SeasonalStep(
            armed & (g >= c.cusum_threshold), armed & (g >= c.cusum_threshold / 2),
            armed & (g >= 2 * c.cusum_threshold), g, np.full(len(g), c.cusum_threshold),
        )  # fmt: skip

    def _blocks(
        self, rows: IntArray, m: np.ndarray, frozen: np.ndarray, quiet: np.ndarray, t: Columns
    ) -> None:
        """One completed block mean ``m`` per row in ``rows``."""
        c = self.cfg
        frozen = frozen | quiet
        hist = t["hist"][rows]
        full = t["n_blk"][rows] >= c.history
        lag = t["lag"][rows]
        miss = t["miss"][rows]
        if full.any():
            est = np.zeros(len(rows))
            est[full] = estimate_period(hist[full], c.min_lag, c.max_lag, c.strength)
            fresh = full & (est > 0) & ~frozen
            miss = np.where(full & (est == 0) & ~frozen, miss + 1, np.where(fresh, 0, miss))
            lag = np.where(fresh, est, np.where(miss >= c.history, 0.0, lag))
        periodic = full & (lag > 0)
        ref = lagged(hist, np.maximum(lag, 1.0))
        s = m - ref
        n_taught = t["n_taught"][rows]
        mad = np.where(n_taught == 0, np.abs(s), t["mad"][rows])
        sigma = np.maximum(mad * SQRT_HALF_PI, SIGMA_EPS * (1.0 + np.abs(m)))
        z = np.where(periodic, s / sigma, 0.0)
        warm = n_taught >= c.warmup
        odd = warm & (frozen | (np.abs(z) >= c.protect))
        n_odd = np.where(periodic & odd, t["n_odd"][rows] + 1, 0)
        # An odd block (anomalous, or inside an episode) is kept out of the history: the
        # cycle's own value takes its place, so the incident does not come back one period
        # later. Past relearn_after odd blocks in a row the new behaviour is the cycle.
        keep = ~periodic | ~odd | (n_odd > c.relearn_after)
        teach = periodic & keep & ~quiet
        alpha = np.maximum(self.alpha, 1.0 / (n_taught + 1))
        t["mad"][rows] = np.where(teach, mad + alpha * (np.abs(s) - mad), t["mad"][rows])
        t["n_taught"][rows] = np.where(periodic, n_taught + teach, 0)
        zc = np.clip(z, -c.cusum_clip, c.cusum_clip)
        on = periodic & warm
        on = on & ~quiet  # a flat-line is the volatility detector's incident, not ours
        # Capped at twice the threshold (critical): after a long incident it must come down
        # in a few calm blocks, not in as many as it took to rise.
        top = 2 * c.cusum_threshold
        gpos = np.where(on, np.clip(t["gpos"][rows] + zc - c.cusum_drift, 0.0, top), 0.0)
        gneg = np.where(on, np.clip(t["gneg"][rows] - zc - c.cusum_drift, 0.0, top), 0.0)
        t["n_odd"][rows] = n_odd
        g = np.maximum(gpos, gneg)
        t["owned"][rows] = (t["owned"][rows] | (frozen & (g > 0))) & (g > 0)
        t["gpos"][rows], t["gneg"][rows] = gpos, gneg
        t["lag"][rows], t["miss"][rows] = lag, miss
        hist[:, :-1] = hist[:, 1:]
        hist[:, -1] = np.where(keep, m, ref)
        t["hist"][rows] = hist
        t["n_blk"][rows] = np.minimum(t["n_blk"][rows] + 1, c.history)
