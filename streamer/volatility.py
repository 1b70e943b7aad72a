"""The volatility detector and the volatility forecast (expected range of the next value).

Pure numpy over rows of a :class:`~streamer.buffers.StateTable`, one round (at most one
point per stream) at a time, like :mod:`streamer.detect`.

Two spreads per stream, each as a short-horizon EWMA against a long-horizon EWMA (mean
absolute values, raw units; during the first points a running mean):

- the model's error band: ``|actual - predicted|``;
- the stream's own volatility: ``|x_t - x_{t-1}|``.

``ratio = short / long``. A regime change is ``ratio >= burst_ratio`` (variance burst,
frequency change, the model losing track) or ``ratio <= collapse_ratio`` (flat-line,
drop-out to a constant) on ``min_run`` consecutive points, whichever of the two spreads is
further from 1. It resolves, with hysteresis, after ``resolve_points`` consecutive points
with both ratios inside ``[1/resolve_ratio, resolve_ratio]``, and a cooldown follows
(:func:`streamer.detect.step_episodes`).

Robustness: a single spike must not look like a volatility regime, so what enters the
*short* EWMAs is clipped at ``clip`` times the long baseline (the long EWMAs see the raw
value: one spike moves a 500-point mean very little). While an episode is open the long
baselines stop learning (they are the "before" the regime is compared with), until the
episode has lasted ``relearn_after`` points: then the new regime becomes the baseline and
the episode resolves.

Volatility forecast: :meth:`VolatilityDetector.band` gives ``predicted ± band_k * sigma``
with ``sigma = sqrt(pi/2) * short EWMA of |error|``, the recent error scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from streamer.buffers import Column, Columns, IntArray, Rows, StateTable
from streamer.detect import SQRT_HALF_PI, _non_negative_int, _positive
from streamer.episodes import EPISODE_SPEC, Transitions, step_episodes


@dataclass(frozen=True)
class VolatilityConfig:
    """``[detect.volatility]``. Ratios are short-horizon spread / long-horizon spread."""

    SECTION: ClassVar[str] = "detect.volatility"

    warmup: int = 100  # scored points per stream before it may alert
    short_span: float = 20.0  # EWMA span (points) of the recent spread
    long_span: float = 500.0  # EWMA span (points) of the baseline spread
    burst_ratio: float = 2.2  # ratio at or above: volatility burst
    collapse_ratio: float = 0.3  # ratio at or below: volatility collapse (flat-line)
    critical_ratio: float = 4.0  # ratio >= this or <= 1/this: severity critical
    resolve_ratio: float = 1.5  # both ratios within [1/this, this]: a calm point
    min_run: int = 3  # consecutive regime points that open an episode
    resolve_points: int = 10  # consecutive calm points that resolve it
    cooldown_points: int = 20  # points after a resolve during which nothing opens
    relearn_after: int = 300  # an episode this long lets the baseline learn again
    clip: float = 5.0  # short EWMAs take at most clip * long baseline per point
    band_k: float = 3.0  # expected range = predicted ± band_k * recent error sigma

    def __post_init__(self) -> None:
        _non_negative_int(self, "warmup", "cooldown_points", "relearn_after")
        _non_negative_int(self, "min_run", "resolve_points")
        _positive(self, "short_span", "long_span", "burst_ratio", "collapse_ratio")
        _positive(self, "critical_ratio", "resolve_ratio", "clip", "band_k")
        _positive(self, "min_run", "resolve_points")
        if self.short_span >= self.long_span:
            raise ValueError(
                "[detect.volatility] short_span must be < long_span "
                f"({self.short_span} >= {self.long_span})"
            )
        if not self.collapse_ratio < 1 / self.resolve_ratio <= 1 <= self.resolve_ratio:
            raise ValueError(
                "[detect.volatility] need collapse_ratio < 1/resolve_ratio and "
                f"resolve_ratio >= 1 (got {self.collapse_ratio}, {self.resolve_ratio})"
            )
        if not 1 <= self.resolve_ratio < self.burst_ratio <= self.critical_ratio:
            raise ValueError(
                "[detect.volatility] need 1 <= resolve_ratio < burst_ratio <= critical_ratio "
                f"(got {self.resolve_ratio}, {self.burst_ratio}, {self.critical_ratio})"
            )


VOLATILITY_SPEC = {
    "n_seen": Column("int32"),
    # float32 as the anomaly detector's spreads (streamer.detect.ANOMALY_SPEC)
    "s_err": Column("float32"),  # short EWMA of |error| (clipped)
    "l_err": Column("float32"),  # long EWMA of |error|
    "s_dv": Column("float32"),  # short EWMA of |x_t - x_{t-1}| (clipped)
    "l_dv": Column("float32"),  # long EWMA of |x_t - x_{t-1}|
    "run": Column("int32"),  # consecutive regime points
    "collapse": Column("bool"),  # the open episode is a collapse (ratio <= collapse_ratio)
    **EPISODE_SPEC,
}


def ratio(short: np.ndarray, long: np.ndarray) -> np.ndarray:
    """short / long with 0/0 = 1 (no information) and x/0 = inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = short / long
    return np.where((short == 0) & (long == 0), 1.0, r)


@dataclass(frozen=True)
class VolatilityStep:
    """Per point: ``score`` = fold change max(r, 1/r) of the further ratio, ``threshold`` =
    the fold change that opens in that direction, and the transitions."""

    score: np.ndarray
    threshold: np.ndarray
    transitions: Transitions


class VolatilityDetector:
    """Vectorised volatility detector over the rows of its own :class:`StateTable`."""

    def __init__(self, cfg: VolatilityConfig, capacity: int) -> None:
        self.cfg = cfg
        self.a_short = 2.0 / (cfg.short_span + 1.0)
        self.a_long = 2.0 / (cfg.long_span + 1.0)
        self.table = StateTable(VOLATILITY_SPEC, capacity)

    def init_rows(self, rows: IntArray) -> None:
        self.table.reset(rows)

    def update(
        self,
        rows: Rows,
        error: np.ndarray,
        dv: np.ndarray,
        ts_ms: np.ndarray,
        table: Columns | None = None,
    ) -> VolatilityStep:
        """Learn one finite (error, x_t - x_{t-1}) per distinct row, then judge the regime.
        ``table`` defaults to :attr:`table`; the pipeline passes a dense working copy."""
        c, t = self.cfg, self.table if table is None else table
        n = t["n_seen"][rows] + 1
        armed = n > c.warmup
        learn_long = ~t["open"][rows] | (t["ep_len"][rows] > c.relearn_after)
        a_s = np.maximum(self.a_short, 1.0 / n)
        a_l = np.where(learn_long, np.maximum(self.a_long, 1.0 / n), 0.0)
        rs = []
        for col, x in (("err", np.abs(error)), ("dv", np.abs(dv))):
            s, lo = t["s_" + col][rows], t["l_" + col][rows]
            xs = np.where(armed, np.minimum(x, c.clip * lo), x)
            s = s + a_s * (xs - s)
            lo = lo + a_l * (x - lo)
            t["s_" + col][rows], t["l_" + col][rows] = s, lo
            rs.append(ratio(s, lo))
        r_err, r_dv = rs
        with np.errstate(divide="ignore"):
            le, ld = np.abs(np.log(r_err)), np.abs(np.log(r_dv))
            r = np.where(le >= ld, r_err, r_dv)
            fold = np.maximum(r, 1.0 / r)
        burst = r >= c.burst_ratio
        regime = burst | (r <= c.collapse_ratio)
        run = np.where(regime, t["run"][rows] + 1, 0)
        critical = fold >= c.critical_ratio
        lim = c.resolve_ratio
        calm = (np.maximum(le, ld) <= math.log(lim)) & ~regime
        tr = step_episodes(
            t, rows, ts_ms, run >= c.min_run, critical, calm, armed,
            c.resolve_points, c.cooldown_points,
        )  # fmt: skip
        t["run"][rows] = np.where(tr.opened | tr.resolved, 0, run)
        t["collapse"][rows] = np.where(tr.opened, ~burst, t["collapse"][rows] & t["open"][rows])
        t["n_seen"][rows] = n
        threshold = np.where(r >= 1.0, c.burst_ratio, 1.0 / c.collapse_ratio)
        return VolatilityStep(fold, threshold, tr)

    def collapsed(self, rows: Rows, table: Columns | None = None) -> np.ndarray:
        """Rows with an open collapse episode (flat-line / drop-out to a constant)."""
        t = self.table if table is None else table
        return t["open"][rows] & t["collapse"][rows]

    def sigma(self, rows: IntArray) -> np.ndarray:
        """Recent error scale (raw units): sqrt(pi/2) * short EWMA of |error|."""
        return self.table["s_err"][rows] * SQRT_HALF_PI

    def band(self, rows: IntArray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected range [lower, upper] of each row's next value around ``predicted``."""
        half = self.cfg.band_k * self.sigma(rows)
        return predicted - half, predicted + half
