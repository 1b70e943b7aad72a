"""The anomaly detector and the episode rules (open/resolve) both detectors share.

Pure numpy over rows of a :class:`~streamer.buffers.StateTable`: :meth:`AnomalyDetector.update`
takes one *round* (at most one point per stream) for many streams at once.

What it computes, per stream and point (``z`` = the point's ``norm_error``, the raw error
divided by the model's per-window ``error_scale``; signed, normalised units):

1. Per-stream adaptive normalisation. ``mu`` and ``mad`` are EWMAs of ``z`` and of
   ``|z - mu|`` (span ``span``; during the first points a running mean, weighted against a
   prior of ``prior_points`` points). The prior comes from the manifest's calibration
   (validation residuals in the same units): ``mu = 0`` and the Gaussian-consistent
   ``sigma = max(q50/0.674, q90/1.645, q99/2.576)``, the most cautious of the three, so a
   heavy-tailed model starts with a wide threshold and narrows it online.
   ``sigma = mad * sqrt(pi/2)`` afterwards; the point's score is ``u = (z - mu) / sigma``,
   two-sided, so dips count as much as spikes.
2. Adaptive threshold ``mu ± warn_threshold * sigma`` (reported as ``threshold`` =
   ``warn_threshold * sigma`` in normalised units beside ``score = |z - mu|``).
3. Protection (river's ``protect_anomaly_detector``): a point with ``|u| >= warn_threshold``
   does not teach ``mu``/``mad``, so an anomaly cannot widen the threshold that should catch
   the next one. Escape hatch: once an episode has lasted ``relearn_after`` points, every
   point teaches again, so a permanent regime change is eventually learnt and resolves.
4. Alarm rules (Merlion's calibrated score + alarm rules): an episode opens when
   ``|u| >= critical_threshold`` (one point is enough: a spike is one point), or
   ``|u| >= warn_threshold`` on ``min_run`` consecutive points, or a two-sided CUSUM of
   ``u`` (drift ``cusum_drift``, each step clipped to ``cusum_clip``) reaches
   ``cusum_threshold``: persistent moderate errors, i.e. a level shift the model has not yet
   re-anchored on, or a drift. No alert during the first ``warmup`` scored points of a
   stream, nor for ``cooldown_points`` points after an episode resolved.
5. An episode resolves after ``resolve_points`` consecutive calm points
   (``|u| < resolve_threshold`` and CUSUM below half its threshold): hysteresis, one
   ``open`` and one ``resolved`` event per episode, no alert storm in between.
   Severity is ``critical`` if the opening point reached ``critical_threshold`` (or the
   CUSUM twice its threshold), else ``warning``; the resolved event carries the peak.

Why not telemanom's dynamic threshold as is: it picks epsilon = mean + z*std of smoothed
errors by searching z over a *batch* of errors (and prunes afterwards), which needs the
error history of every stream; here the same idea (threshold = location + k * spread of the
stream's own errors, anomalies excluded from the spread) is kept as O(1) EWMA state per
stream, and its error smoothing reappears as the CUSUM path for sustained deviations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from streamer.buffers import Column, IntArray, StateTable
from streamer.manifest import Calibration

SQRT_HALF_PI = math.sqrt(math.pi / 2)  # sigma / E|x - mu| for a Gaussian
WARNING, CRITICAL = 0, 1


def _section(obj: object) -> str:
    return str(getattr(obj, "SECTION", obj.__class__.__name__))


def _positive(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            msg = f"[{_section(obj)}] {name} must be a positive number, got {v!r}"
            raise ValueError(msg)


def _non_negative_int(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            msg = f"[{_section(obj)}] {name} must be an integer >= 0, got {v!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class AnomalyConfig:
    """``[detect.anomaly]``. Thresholds are in per-stream sigmas of the normalised error."""

    SECTION: ClassVar[str] = "detect.anomaly"

    warmup: int = 30  # scored points per stream before it may alert
    span: float = 300.0  # EWMA span (points) of the stream's error location and spread
    prior_points: float = 20.0  # weight, in points, of the manifest calibration prior
    warn_threshold: float = 5.0  # |u| at or above: anomalous (opens after min_run points)
    critical_threshold: float = 8.0  # |u| at or above: opens at once, severity critical
    min_run: int = 2  # consecutive points >= warn_threshold that open an episode
    cusum_drift: float = 1.0  # CUSUM allowance k (sigmas per point)
    cusum_clip: float = 4.0  # a single point adds at most this much to the CUSUM
    cusum_threshold: float = 10.0  # CUSUM h that opens an episode (sustained deviation)
    resolve_threshold: float = 3.0  # |u| below: a calm point (hysteresis below warn)
    resolve_points: int = 5  # consecutive calm points that resolve an episode
    cooldown_points: int = 10  # points after a resolve during which nothing opens
    relearn_after: int = 200  # an episode this long teaches the statistics again

    def __post_init__(self) -> None:
        _non_negative_int(self, "warmup", "cooldown_points", "relearn_after")
        _positive(self, "span", "prior_points", "warn_threshold", "critical_threshold")
        _positive(self, "cusum_drift", "cusum_clip", "cusum_threshold", "resolve_threshold")
        _non_negative_int(self, "min_run", "resolve_points")
        _positive(self, "min_run", "resolve_points")
        if self.critical_threshold < self.warn_threshold:
            raise ValueError(
                "[detect.anomaly] critical_threshold must be >= warn_threshold "
                f"({self.critical_threshold} < {self.warn_threshold})"
            )
        if self.resolve_threshold > self.warn_threshold:
            raise ValueError(
                "[detect.anomaly] resolve_threshold must be <= warn_threshold for hysteresis "
                f"({self.resolve_threshold} > {self.warn_threshold})"
            )


def calibration_sigma(cal: Calibration) -> float:
    """Gaussian-consistent spread of the manifest's |normalised error| quantiles (cautious)."""
    q = cal.abs_error_quantiles
    cands = [q.get("0.5", 0.0) / 0.6745, q.get("0.9", 0.0) / 1.6449, q.get("0.99", 0.0) / 2.5758]
    sigma = max(cands)
    return sigma if math.isfinite(sigma) and sigma > 0 else 1.0


# ---------------------------------------------------------------- episodes (shared rules)

EPISODE_SPEC = {
    "open": Column("bool"),
    "ep_start": Column("int64"),  # event ms of the point that opened the episode
    "ep_len": Column("int32"),  # points since it opened
    "calm": Column("int32"),  # consecutive calm points while open
    "cool": Column("int32"),  # points left in the cooldown after a resolve
    "sev": Column("int8"),  # peak severity of the open episode
}


@dataclass(frozen=True)
class Transitions:
    """One round's episode changes, aligned with the round's rows."""

    opened: np.ndarray  # bool
    resolved: np.ndarray  # bool
    severity: np.ndarray  # int8, WARNING/CRITICAL (peak for resolved)
    episode_start: np.ndarray  # int64 ms


def step_episodes(
    t: StateTable,
    rows: IntArray,
    ts_ms: np.ndarray,
    trigger: np.ndarray,
    critical: np.ndarray,
    calm: np.ndarray,
    armed: np.ndarray,
    resolve_points: int,
    cooldown_points: int,
) -> Transitions:
    """Advance the episode state machine of ``rows`` by one point.

    closed --(armed & trigger & cool == 0)--> open --(resolve_points calm points)--> closed
    (then ``cooldown_points`` points during which nothing opens).
    """
    was_open = t["open"][rows]
    cool = t["cool"][rows]
    opened = ~was_open & armed & trigger & (cool == 0)
    calm_run = np.where(was_open & calm, t["calm"][rows] + 1, 0)
    resolved = was_open & (calm_run >= resolve_points)
    sev = np.where(
        opened, critical.astype(np.int8), np.maximum(t["sev"][rows], critical & was_open)
    ).astype(np.int8)
    now_open = (was_open & ~resolved) | opened
    t["open"][rows] = now_open
    t["calm"][rows] = np.where(resolved, 0, calm_run)
    t["ep_len"][rows] = np.where(opened, 1, np.where(now_open, t["ep_len"][rows] + 1, 0))
    t["ep_start"][rows] = np.where(opened, ts_ms, t["ep_start"][rows])
    start = t["ep_start"][rows]
    t["sev"][rows] = np.where(now_open, sev, 0)
    t["cool"][rows] = np.where(resolved, cooldown_points, np.maximum(cool - ~was_open, 0))
    return Transitions(opened, resolved, sev, start)


# ---------------------------------------------------------------- anomaly detector

ANOMALY_SPEC = {
    "n_seen": Column("int32"),  # scored points
    "n_taught": Column("int32"),  # points that updated mu/mad
    "mu": Column("float64"),
    "mad": Column("float64"),  # EWMA of |z - mu|; set from the calibration when a row opens
    "run": Column("int32"),  # consecutive points >= warn_threshold
    "gpos": Column("float64"),  # upper CUSUM of u
    "gneg": Column("float64"),  # lower CUSUM of u
    **EPISODE_SPEC,
}


@dataclass(frozen=True)
class AnomalyStep:
    """Per point of the round: ``score`` = |z - mu|, ``threshold`` = warn * sigma (both in
    normalised units, before this point taught the statistics), and the transitions."""

    score: np.ndarray
    threshold: np.ndarray
    transitions: Transitions


class AnomalyDetector:
    """Vectorised anomaly detector over the rows of its own :class:`StateTable`."""

    def __init__(self, cfg: AnomalyConfig, calibration: Calibration, capacity: int) -> None:
        self.cfg = cfg
        self.alpha = 2.0 / (cfg.span + 1.0)
        self.mad0 = calibration_sigma(calibration) / SQRT_HALF_PI
        self.table = StateTable(ANOMALY_SPEC, capacity)

    def init_rows(self, rows: IntArray) -> None:
        """State of brand-new streams: the calibration prior."""
        self.table.reset(rows)
        self.table["mad"][rows] = self.mad0

    def update(self, rows: IntArray, z: np.ndarray, ts_ms: np.ndarray) -> AnomalyStep:
        """Score one finite ``z`` per distinct row, then learn from it (unless protected)."""
        c, t = self.cfg, self.table
        mu, mad = t["mu"][rows], t["mad"][rows]
        sigma = np.maximum(mad * SQRT_HALF_PI, 1e-12)
        dev = z - mu
        u = dev / sigma
        a = np.abs(u)
        n_seen = t["n_seen"][rows] + 1
        armed = n_seen > c.warmup
        hot = a >= c.warn_threshold
        run = np.where(hot, t["run"][rows] + 1, 0)
        uc = np.clip(u, -c.cusum_clip, c.cusum_clip)
        gpos = np.where(armed, np.maximum(0.0, t["gpos"][rows] + uc - c.cusum_drift), 0.0)
        gneg = np.where(armed, np.maximum(0.0, t["gneg"][rows] - uc - c.cusum_drift), 0.0)
        g = np.maximum(gpos, gneg)
        trigger = (a >= c.critical_threshold) | (run >= c.min_run) | (g >= c.cusum_threshold)
        critical = (a >= c.critical_threshold) | (g >= 2 * c.cusum_threshold)
        calm = (a < c.resolve_threshold) & (g < c.cusum_threshold / 2)
        tr = step_episodes(
            t, rows, ts_ms, trigger, critical, calm, armed, c.resolve_points, c.cooldown_points
        )
        # Protection: anomalous points do not teach, except during warm-up (the prior may be
        # far off for this stream) or when an episode has gone on so long that the "anomaly"
        # is the new normal.
        teach = ~hot | ~armed | (t["ep_len"][rows] > c.relearn_after)
        n_taught = t["n_taught"][rows] + teach
        alpha = np.maximum(self.alpha, 1.0 / (n_taught + c.prior_points))
        t["mu"][rows] = np.where(teach, mu + alpha * dev, mu)
        t["mad"][rows] = np.where(teach, mad + alpha * (np.abs(dev) - mad), mad)
        t["n_taught"][rows] = n_taught
        t["n_seen"][rows] = n_seen
        t["run"][rows] = np.where(tr.opened | tr.resolved, 0, run)
        # A fresh episode keeps its CUSUM (it is the evidence); a resolved one starts over.
        t["gpos"][rows] = np.where(tr.resolved, 0.0, gpos)
        t["gneg"][rows] = np.where(tr.resolved, 0.0, gneg)
        return AnomalyStep(np.abs(dev), c.warn_threshold * sigma, tr)

    def sigma(self, rows: IntArray) -> np.ndarray:
        return self.table["mad"][rows] * SQRT_HALF_PI

    def set_calibration(self, calibration: Calibration) -> None:
        """Prior for streams that appear from now on (a hot-reloaded model's calibration)."""
        self.mad0 = calibration_sigma(calibration) / SQRT_HALF_PI
